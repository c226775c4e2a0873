import { expect, type Page } from "@playwright/test";

// What the server sent, not what the page chose to show. The browser's one stream lives in
// `feed.js`'s hub (a SharedWorker, a leader tab, or the page itself), which hands the page every
// event of its stream before the page drops what it has already shown or does not follow: an
// init script wraps the page's `RingbackFeed` and records each event as the hub hands it over,
// with its `lastEventId`, per stream (each EventSource the hub opened). The DOM alone cannot
// see a duplicate.

export type Recorded = { type: string; id: string; data: string };
export type Source = { url: string; opens: number; events: Recorded[] };

/// Records the streams the page's feed receives from, from the next navigation on.
export async function recordStreams(page: Page): Promise<void> {
  await page.addInitScript(() => {
    const sources: { url: string; opens: number; events: { type: string; id: string; data: string }[] }[] = [];
    const byStream = new Map<string, (typeof sources)[number]>();
    (window as any).__streams = sources;
    const source = (stream: string, url: string) => {
      let rec = byStream.get(stream);
      if (!rec) {
        rec = { url, opens: 0, events: [] };
        byStream.set(stream, rec);
        sources.push(rec);
      }
      return rec;
    };
    let feed: any;
    Object.defineProperty(window, "RingbackFeed", {
      configurable: true,
      get: () => feed,
      set: (value) => {
        feed = value;
        const receive = value.prototype.receive;
        value.prototype.receive = function (m: any) {
          if (m.kind === "state" && m.opened) source(m.stream, m.opened).opens++;
          if (m.kind === "event") source(m.stream, "").events.push({ type: m.type, id: m.id, data: String(m.data) });
          return receive.call(this, m);
        };
      },
    });
  });
}

/// The streams the page's feed has received from so far, with what each delivered.
export async function recorded(page: Page): Promise<Source[]> {
  return page.evaluate(() => (window as any).__streams ?? []);
}

/// The ids of the message events (not `ringback.*`) a source received, in order.
export function messageIds(source: Source): number[] {
  return source.events.filter((e) => !e.type.startsWith("ringback.")).map((e) => Number(e.id));
}

/// The first-paint id: the snapshot's `last_id`, serialised into the server-rendered page for
/// hydration.
export async function firstPaintId(page: Page): Promise<number> {
  const html = await page.content();
  const id = /\\?"last_id\\?":(\d+)/.exec(html)?.[1];
  expect(id, "the page carries the id its stream resumes after").toBeDefined();
  return Number(id);
}

/// Holds the page's WASM until `release` is called: the page is painted from the server's HTML
/// but not hydrated, so its feed has no stream yet.
export async function holdHydration(page: Page): Promise<() => void> {
  let release = () => {};
  const gate = new Promise<void>((resolve) => (release = resolve));
  await page.route(/\/pkg\/.*\.wasm$/, async (route) => {
    await gate;
    await route.continue();
  });
  return release;
}

/// First paint → live, as a browser goes through it, with messages published before the page
/// loads, while it hydrates and after it is live (each by `publish`, on `channel`): the page's
/// one stream starts right after its first-paint id and receives every message published after
/// it exactly once; the box shows all three, once.
export async function firstPaintToLive(
  page: Page,
  url: string,
  publish: (channel: string, data: string) => Promise<number>,
): Promise<void> {
  const channel = `paint-${Date.now()}`;
  await recordStreams(page);
  const before = await publish(channel, "before the page loaded");
  const release = await holdHydration(page);
  await page.goto(url, { waitUntil: "domcontentloaded" });
  await expect(page.locator(`.channel[data-channel="${channel}"] li[data-id="${before}"]`)).toHaveText(
    "before the page loaded",
  );
  const painted = await firstPaintId(page);
  expect(painted).toBeGreaterThanOrEqual(before);
  const during = await publish(channel, "while the page hydrated");
  expect(during).toBeGreaterThan(painted);
  release();
  await expect(page.locator(".state")).toHaveAttribute("data-state", "live");
  const after = await publish(channel, "after the page was live");
  const box = page.locator(`.channel[data-channel="${channel}"]`);
  await expect(box.locator(`li[data-id="${after}"]`)).toHaveText("after the page was live");
  // One stream, resuming after the first-paint id; every message after it, once, in order.
  const sources = await recorded(page);
  expect(sources).toHaveLength(1);
  expect(sources[0].url).toContain(`lastEventId=${painted}`);
  expect(sources[0].opens).toBe(1);
  expect(messageIds(sources[0])).toEqual([during, after]);
  await expect(box.locator("li")).toHaveText([
    "before the page loaded",
    "while the page hydrated",
    "after the page was live",
  ]);
}
