import { test, expect, chromium, type Browser } from "@playwright/test";
import { type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { homeTrusting, launchOptions } from "../chromium";
import { ASSETS, assetName, freePort, startRingback, stop, healthy } from "./ringback";

// Chromium acts on `103 Early Hints` only over a certificate it trusts. This spec does what the
// docs/http2.md tells a developer to do: the server makes its development authority and certificate
// (in a data directory of the test's own), and the authority goes into an NSS database under a
// HOME of the test's own, which Chromium on Linux reads.
let port = 0;
let host = "";
let server: ChildProcess | undefined;
let browser: Browser;
let scratch: string;

async function hintsSent(): Promise<number> {
  const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return Number(/ringback_early_hints_total (\d+)/.exec(metrics)?.[1]);
}

// One retry: see the first test.
test.describe.configure({ retries: 1 });

test.beforeAll(async () => {
  port = await freePort();
  host = `localhost:${port}`;
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), "ringback-early-hints-"));
  const data = path.join(scratch, "data");
  server = startRingback(["--addr", `127.0.0.1:${port}`, "--data-dir", data]);
  await healthy(`http://127.0.0.1:${port}`);
  const home = homeTrusting(path.join(data, "tls", "ca.crt.pem"), scratch);
  browser = await chromium.launch({ ...launchOptions, env: { ...process.env, HOME: home } });
});

test.afterAll(async () => {
  await browser?.close();
  await stop(server);
  fs.rmSync(scratch, { recursive: true, force: true });
});

/// The hashed assets as Chromium's resource timing recorded them: kind → initiator.
async function assetInitiators(page: import("@playwright/test").Page): Promise<Record<string, string>> {
  return page.evaluate(() =>
    Object.fromEntries(
      performance
        .getEntriesByType("resource")
        .filter((e) => e.name.includes("/pkg/"))
        .map((e) => [e.name, (e as PerformanceResourceTiming).initiatorType]),
    ),
  );
}

test("over a trusted certificate, Chromium preloads the hashed assets from the 103", async () => {
  // Each navigation in a fresh context: no cookie, an empty cache, a new connection; the server
  // sends the 103 every time. Chromium counts an asset as `early-hints` only when the page's own
  // fetch is answered from the cache the hinted preload filled; in a fresh context its browser
  // process handles the 103 only as the 200 arrives (its UI thread is starting the renderer),
  // so the preloads and the parser's fetches race, and on loopback each side wins about half
  // the time (the server log shows one request per asset either way: the page's fetch joins the
  // preload's). So: navigate until a navigation's assets all come from the hints, at most 10
  // times (both tries failing by chance: < 1 in 10^6). With an untrusted certificate, or no 103,
  // it never happens.
  const seen: string[] = [];
  for (let navigation = 0; navigation < 10; navigation++) {
    const context = await browser.newContext();
    const page = await context.newPage();
    const before = await hintsSent();
    await page.goto(`https://${host}/`);
    expect(await hintsSent(), "a 103 for every fresh navigation").toBe(before + 1);
    await expect(page.locator(".state")).toHaveAttribute("data-state", "live");
    expect(await page.evaluate(() => window.isSecureContext)).toBe(true);
    const initiators = await assetInitiators(page);
    await context.close();
    expect(Object.keys(initiators).map(assetName).sort()).toEqual(ASSETS);
    seen.push(JSON.stringify(initiators));
    if (Object.values(initiators).every((i) => i === "early-hints")) {
      test.info().annotations.push({ type: "navigations", description: seen.join(" ") });
      return;
    }
  }
  throw new Error(`no navigation took its assets from the hints: ${seen.join(" ")}`);
});

test("a repeat visit gets no 103: the assets come from the cache", async () => {
  const context = await browser.newContext();
  const first = await context.newPage();
  await first.goto(`https://${host}/`);
  await expect(first.locator(".state")).toHaveAttribute("data-state", "live");
  await first.close();
  // The asset cookie says this browser holds this build: no hints, and the page's own
  // preloads are answered by the cache.
  const before = await hintsSent();
  const again = await context.newPage();
  await again.goto(`https://${host}/`);
  await expect(again.locator(".state")).toHaveAttribute("data-state", "live");
  expect(await hintsSent()).toBe(before);
  const assets = await again.evaluate(() =>
    performance
      .getEntriesByType("resource")
      .filter((e) => e.name.includes("/pkg/"))
      .map((e) => ({ name: e.name, transferred: (e as PerformanceResourceTiming).transferSize })),
  );
  // Every hashed asset was loaded, and each from the cache.
  expect([...new Set(assets.map((a) => assetName(a.name)))].sort()).toEqual(ASSETS);
  for (const a of assets) expect(a.transferred, `${a.name} from the cache`).toBe(0);
  await context.close();
});
