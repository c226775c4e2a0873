import { test, expect, type BrowserContext, type Page } from "@playwright/test";
import { type ChildProcess } from "node:child_process";
import { freePort, startRingback, stop, publish, healthy } from "./ringback";
import { hubModes } from "./tabs";

// The tabs of one browser share one stream: the server's subscriber gauge counts one stream
// whatever the number of tabs, each tab shows its own filter's channels, and each message
// reaches each tab once, also while the tab holding the stream closes. Over cleartext HTTP/1.1
// (six connections per origin), so a seventh tab with a stream of its own would never be live.

let server: ChildProcess | undefined;
let base = "";

test.beforeAll(async () => {
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  // Every test makes new channels.
  server = startRingback(["--addr", `127.0.0.1:${port}`, "--ui-messages", "100", "--new-channel-rate", "0"]);
  await healthy(base);
});

test.afterAll(async () => {
  await stop(server);
});

/// The event streams the server holds now (`ringback_subscribers`).
async function streams(): Promise<number> {
  const metrics = await (await fetch(`${base}/metrics`)).text();
  return Number(/^ringback_subscribers (\d+)$/m.exec(metrics)?.[1]);
}

/// A live tab following `channels` (every channel when empty).
async function openTab(context: BrowserContext, channels: string[]): Promise<Page> {
  const page = await context.newPage();
  const query = channels.map((c) => `type=${c}`).join("&");
  await page.goto(query ? `${base}/?${query}` : `${base}/`);
  await expect(page.locator(".state")).toHaveAttribute("data-state", "live");
  return page;
}

/// The ids a tab shows in `channel`'s box, in order.
function shown(page: Page, channel: string): Promise<number[]> {
  return page
    .locator(`.channel[data-channel="${channel}"] li`)
    .evaluateAll((items) => items.map((li) => Number(li.getAttribute("data-id"))));
}

/// `id` shows once in each of `tabs`, in `channel`'s box, and nowhere in `others`.
async function reachesOnly(id: number, channel: string, tabs: Page[], others: Page[]): Promise<void> {
  for (const tab of tabs) {
    await expect(tab.locator(`.channel[data-channel="${channel}"] li[data-id="${id}"]`)).toHaveCount(1);
  }
  for (const tab of others) {
    await expect(tab.locator(`li[data-id="${id}"]`)).toHaveCount(0);
    await expect(tab.locator(`.channel[data-channel="${channel}"]`)).toHaveCount(0);
  }
}

/// Publishes on `channel` every 20 ms until `stop` is called; `ids` are those published so far.
function keepPublishing(channel: string): { ids: number[]; stop: () => Promise<void> } {
  const ids: number[] = [];
  let going = true;
  const done = (async () => {
    for (let i = 0; going; i++) {
      ids.push(await publish(base, channel, `m${i}`));
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    ids,
    stop: async () => {
      going = false;
      await done;
    },
  };
}

for (const mode of hubModes.filter((m) => m.key !== "alone")) {
  test.describe(`with ${mode.name}`, () => {
    let context: BrowserContext;
    test.beforeEach(async ({ browser }) => {
      context = await browser.newContext();
      await context.addInitScript(mode.script);
    });
    test.afterEach(async () => {
      await context.close();
    });

    test("two and three tabs hold one stream; each shows its own channels; each message reaches each tab once", async () => {
      const stamp = `${mode.key}-${Date.now()}`;
      const [a, b, c] = [`a-${stamp}`, `b-${stamp}`, `c-${stamp}`];
      const tabA = await openTab(context, [a]);
      const tabB = await openTab(context, [b]);
      await expect.poll(streams).toBe(1);
      await reachesOnly(await publish(base, a, "to A"), a, [tabA], [tabB]);
      await reachesOnly(await publish(base, b, "to B"), b, [tabB], [tabA]);
      const tabAll = await openTab(context, []);
      await expect.poll(streams).toBe(1);
      await reachesOnly(await publish(base, a, "to A and all"), a, [tabA, tabAll], [tabB]);
      await reachesOnly(await publish(base, b, "to B and all"), b, [tabB, tabAll], [tabA]);
      // A new channel: a box in the tab that follows every channel, none in the others.
      await reachesOnly(await publish(base, c, "new"), c, [tabAll], [tabA, tabB]);
      expect(await shown(tabA, a)).toHaveLength(2);
      expect(await shown(tabB, b)).toHaveLength(2);
      // Presence counts browsers: one stream reads `a`.
      await expect(tabAll.locator(`.channel[data-channel="${a}"] h2`)).toHaveAttribute("data-count", "1");
      expect(await streams()).toBe(1);
    });

    test("closing the tab that holds the stream moves it without losing or doubling a message", async () => {
      const channel = `move-${mode.key}-${Date.now()}`;
      const seed = await publish(base, channel, "seed");
      // The first tab made the worker, or holds the lock.
      const holder = await openTab(context, [channel]);
      const others = [await openTab(context, [channel]), await openTab(context, [])];
      await expect.poll(streams).toBe(1);
      const traffic = keepPublishing(channel);
      const count = (tab: Page) => shown(tab, channel).then((ids) => ids.length);
      await expect.poll(() => count(others[0])).toBeGreaterThan(3);
      await holder.close();
      // The traffic goes on while the stream moves, and reaches the other tabs after it.
      const atClose = traffic.ids.length;
      for (const tab of others) await expect.poll(() => count(tab)).toBeGreaterThan(atClose + 5);
      await traffic.stop();
      const all = [seed, ...traffic.ids];
      for (const tab of others) {
        await expect(tab.locator(`li[data-id="${all[all.length - 1]}"]`)).toHaveCount(1);
        expect(await shown(tab, channel)).toEqual(all);
      }
      await expect.poll(streams).toBe(1);
    });

    test("seven tabs over cleartext HTTP/1.1 are all live, on one stream", async () => {
      const channel = `seven-${mode.key}-${Date.now()}`;
      const tabs: Page[] = [];
      for (let i = 0; i < 7; i++) tabs.push(await openTab(context, i % 2 ? [channel] : []));
      await expect.poll(streams).toBe(1);
      const id = await publish(base, channel, "to all seven");
      await reachesOnly(id, channel, tabs, []);
      expect(await streams()).toBe(1);
    });
  });
}

test.describe(`with ${hubModes[2].name}`, () => {
  test("each tab holds its own stream, and shows its own channels", async ({ browser }) => {
    const context = await browser.newContext();
    await context.addInitScript(hubModes[2].script);
    const stamp = Date.now();
    const [a, b] = [`a-alone-${stamp}`, `b-alone-${stamp}`];
    const tabA = await openTab(context, [a]);
    const tabB = await openTab(context, [b]);
    const tabAll = await openTab(context, []);
    await expect.poll(streams).toBe(3);
    await reachesOnly(await publish(base, a, "to A"), a, [tabA, tabAll], [tabB]);
    await reachesOnly(await publish(base, b, "to B"), b, [tabB, tabAll], [tabA]);
    await context.close();
    await expect.poll(streams).toBe(0);
  });
});
