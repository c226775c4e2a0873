import { expect, type Page } from "@playwright/test";

// What the server sent, not what the page chose to show: an init script wraps the page's
// `EventSource`, and every event dispatched to a type the page listens to is recorded as it
// arrives, with its `lastEventId`. (The page drops a message whose id is not after the last it
// shows, so the DOM alone cannot see a duplicate.)

export type Recorded = { type: string; id: string; data: string };
export type Source = { url: string; opens: number; events: Recorded[] };

/// Records every EventSource the page makes, from the next navigation on.
export async function recordEventSources(page: Page): Promise<void> {
  await page.addInitScript(() => {
    const Original = window.EventSource;
    const sources: { url: string; opens: number; events: { type: string; id: string; data: string }[] }[] = [];
    (window as any).__eventSources = sources;
    (window as any).EventSource = class extends Original {
      constructor(url: string | URL, init?: EventSourceInit) {
        super(url, init);
        const rec = { url: String(url), opens: 0, events: [] as { type: string; id: string; data: string }[] };
        sources.push(rec);
        const add = EventTarget.prototype.addEventListener.bind(this);
        add("open", () => rec.opens++);
        const recording = new Set<string>(["open", "error"]);
        // The page listens by name (a channel, `ringback.*`): each name it listens to is recorded.
        (this as any).addEventListener = (type: string, listener: any, options?: any) => {
          if (!recording.has(type)) {
            recording.add(type);
            add(type, (e: Event) => {
              const m = e as MessageEvent;
              rec.events.push({ type, id: m.lastEventId, data: String(m.data) });
            });
          }
          return add(type, listener, options);
        };
      }
    };
  });
}

/// The EventSources the page has made so far, with what each received.
export async function recorded(page: Page): Promise<Source[]> {
  return page.evaluate(() => (window as any).__eventSources ?? []);
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
/// but not hydrated, so no EventSource is open yet.
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
  await recordEventSources(page);
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
