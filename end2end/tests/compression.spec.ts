import { test, expect, type Page } from "@playwright/test";
import { type ChildProcess } from "node:child_process";
import { freePort, startRingback, stop, publish, healthy } from "./ringback";

// Compressed event streams (`--stream-compression gzip`, the default) decoded by Chromium's own EventSource,
// event by event as they arrive: live, resumed mid-window, filtered, and resumed past the
// history (a gap first), over HTTP/1.1 and over TLS + HTTP/2. Chromium asks for gzip on an
// EventSource by itself; each stream's response says it got it.

let server: ChildProcess | undefined;
let port = 0;
let base = "";
let before: number[] = [];

// A realistic event: a JSON object of ~150 bytes with repeated keys (a price tick).
const tick = (i: number) => ({ symbol: "ACME", price: 100 + (i % 7) + (i % 100) / 100, volume: 1000 + ((i * 37) % 500), venue: "XNAS" });
const channel = (i: number) => (i % 3 === 0 ? "red" : "blue");

// A server of its own for each test: a resume past the history replays all it holds.
test.beforeEach(async () => {
  before = [];
  port = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = startRingback(["--addr", `127.0.0.1:${port}`, "--stream-compression", "gzip"]);
  await healthy(base);
  for (let i = 0; i < 100; i++) before.push(await publish(base, channel(i), tick(i)));
});

test.afterEach(async () => {
  await stop(server);
});

type Got = { type: string; id: string };

/// Opens one EventSource per path on the page and records its events.
async function open(page: Page, paths: string[]): Promise<void> {
  await page.evaluate((paths) => {
    const w = window as unknown as { got: Got[][]; sources: EventSource[] };
    w.got = paths.map(() => []);
    w.sources = paths.map((path, n) => {
      const source = new EventSource(path);
      for (const type of ["red", "blue", "ringback.gap"]) {
        source.addEventListener(type, (e) => w.got[n].push({ type, id: (e as MessageEvent).lastEventId }));
      }
      return source;
    });
  }, paths);
  // Open: the server has subscribed each (it does before it answers).
  await expect
    .poll(() => page.evaluate(() => (window as unknown as { sources: EventSource[] }).sources.map((s) => s.readyState)))
    .toEqual(paths.map(() => 1));
}

const got = (page: Page) => page.evaluate(() => (window as unknown as { got: Got[][] }).got);

for (const [shape, scheme] of [
  ["HTTP/1.1", "http"],
  ["TLS + HTTP/2", "https"],
] as const) {
  test.describe(shape, () => {
    test.use({ ignoreHTTPSErrors: true });

    test("an EventSource receives every event of a compressed stream, in order", async ({ page }) => {
      const origin = `${scheme}://127.0.0.1:${port}`;
      const encodings: string[] = [];
      page.on("response", async (res) => {
        if (new URL(res.url()).pathname === "/messages") {
          encodings.push((await res.headerValue("content-encoding")) ?? "none");
        }
      });
      await page.goto(`${origin}/healthz`);
      const resume = before[70];
      await open(page, [
        "/messages",
        `/messages?lastEventId=${resume}`,
        `/messages?type=blue&lastEventId=${resume}`,
        // Older than anything this server handed out: a gap first, then all it holds.
        "/messages?lastEventId=1",
      ]);
      // The streams are open (the resumed ones have replayed) before the live messages.
      await expect.poll(async () => (await got(page)).map((g) => g.length).slice(1)).toEqual([29, 19, 101]);
      const after: number[] = [];
      for (let i = 100; i < 400; i++) after.push(await publish(base, channel(i), tick(i)));
      const all = [...before, ...after];
      const ids = (from: number, blueOnly = false) =>
        all.slice(from).filter((_, i) => !blueOnly || channel(i + from) === "blue").map(String);
      const want = [
        ids(100),
        ids(71),
        ids(71, true),
        ids(0),
      ];
      await expect
        .poll(async () => (await got(page)).map((g) => g.length), { timeout: 20_000 })
        .toEqual(want.map((w, n) => w.length + (n === 3 ? 1 : 0)));
      const streams = await got(page);
      for (let n = 0; n < 3; n++) expect(streams[n].map((e) => e.id)).toEqual(want[n]);
      expect(streams[3][0].type).toBe("ringback.gap");
      expect(streams[3].slice(1).map((e) => e.id)).toEqual(want[3]);
      expect(streams[2].every((e) => e.type === "blue")).toBe(true);
      expect(encodings).toEqual(["gzip", "gzip", "gzip", "gzip"]);
      if (scheme === "https") {
        const protocol = await page.evaluate(
          () => (performance.getEntriesByType("navigation")[0] as PerformanceNavigationTiming).nextHopProtocol,
        );
        expect(protocol).toBe("h2");
      }
    });
  });
}
