import { test, expect, chromium, type Browser, type BrowserContext, type Page } from "@playwright/test";
import { type ChildProcess } from "node:child_process";
import { launchOptions } from "../chromium";
import { SilencingProxy } from "./proxy";
import { freePort, startRingback, stop, publish, healthy } from "./ringback";
import { hubModes } from "./tabs";

// A phone's page over days: its stream's connection dies without a word while it sleeps or
// changes network, and nothing tells the browser for minutes. The page is back at once when it
// is back: online again, visible again, restored from the back/forward cache. Live within 1 s
// of that event, with every message published meanwhile, once. Each case in each way the tabs
// of a browser share the stream (SharedWorker, leader tab, the tab's own).

let server: ChildProcess | undefined;
let serverPort = 0;
let proxy: SilencingProxy;
let browser: Browser;

test.beforeAll(async () => {
  serverPort = await freePort();
  // Every test makes a new channel.
  server = startRingback(["--addr", `127.0.0.1:${serverPort}`, "--ui-messages", "50", "--new-channel-rate", "0"]);
  await healthy(`http://127.0.0.1:${serverPort}`);
  proxy = await SilencingProxy.start(serverPort);
  // Playwright turns the back/forward cache off by default; a phone's browser has it on.
  browser = await chromium.launch({ ...launchOptions, ignoreDefaultArgs: ["--disable-back-forward-cache"] });
});

test.afterAll(async () => {
  await browser?.close();
  await proxy?.close();
  await stop(server);
});

/// A live page on `channel` through the proxy, with one message shown; returns the ids shown.
async function livePage(context: BrowserContext, channel: string): Promise<{ page: Page; ids: number[] }> {
  const first = await publish(`http://127.0.0.1:${serverPort}`, channel, "before");
  const page = await context.newPage();
  await page.goto(`http://127.0.0.1:${proxy.port}/?type=${channel}`);
  await expect(page.locator(".state")).toHaveAttribute("data-state", "live");
  await expect(page.locator(`li[data-id="${first}"]`)).toHaveText("before");
  return { page, ids: [first] };
}

/// The stream goes silent: the one connection carrying it stops forwarding, with no FIN.
function silenceTheStream(): void {
  expect(proxy.silenceStreams(), "one stream for the browser").toBe(1);
}

/// Publishes two messages while the page cannot hear them.
async function meanwhile(channel: string, ids: number[]): Promise<void> {
  ids.push(await publish(`http://127.0.0.1:${serverPort}`, channel, "meanwhile 1"));
  ids.push(await publish(`http://127.0.0.1:${serverPort}`, channel, "meanwhile 2"));
}

/// Within 1 s of the event: live, and every message published shown once, in order.
async function backWithin1s(page: Page, channel: string, ids: number[]): Promise<void> {
  const box = page.locator(`.channel[data-channel="${channel}"] li`);
  await expect(page.locator(`li[data-id="${ids[ids.length - 1]}"]`)).toHaveText("meanwhile 2", { timeout: 1_000 });
  await expect(page.locator(".state")).toHaveAttribute("data-state", "live", { timeout: 1_000 });
  const shown = await box.evaluateAll((items) => items.map((li) => Number(li.getAttribute("data-id"))));
  expect(shown).toEqual(ids);
}

/// What a phone's browser does to a page it puts in the background and brings back (headless
/// Chromium has no visibility emulation: a minimized window stays `visible`, and
/// `Page.setWebLifecycleState` leaves a visible page as it is; checked by hand).
async function setVisibility(page: Page, state: "hidden" | "visible"): Promise<void> {
  await page.evaluate((state) => {
    Object.defineProperty(document, "visibilityState", { configurable: true, get: () => state });
    Object.defineProperty(document, "hidden", { configurable: true, get: () => state === "hidden" });
    if (state === "visible") document.dispatchEvent(new Event("resume"));
    document.dispatchEvent(new Event("visibilitychange"));
    if (state === "hidden") document.dispatchEvent(new Event("freeze"));
  }, state);
}

for (const mode of hubModes) {
  test.describe(`with ${mode.name}`, () => {
    let context: BrowserContext;
    test.beforeEach(async () => {
      context = await browser.newContext();
      await context.addInitScript(mode.script);
    });
    test.afterEach(async () => {
      await context.close();
    });

    test("a page whose stream died silently is back within 1 s of coming online", async () => {
      const channel = `online-${mode.key}-${Date.now()}`;
      const { page, ids } = await livePage(context, channel);
      silenceTheStream();
      await context.setOffline(true);
      await expect(page.locator(".state")).toHaveAttribute("data-state", "reconnecting");
      await meanwhile(channel, ids);
      await context.setOffline(false);
      await backWithin1s(page, channel, ids);
    });

    test("a page whose stream died silently is back within 1 s of being shown", async () => {
      const channel = `shown-${mode.key}-${Date.now()}`;
      const { page, ids } = await livePage(context, channel);
      await setVisibility(page, "hidden");
      silenceTheStream();
      await meanwhile(channel, ids);
      await setVisibility(page, "visible");
      await backWithin1s(page, channel, ids);
    });

    test("a page restored from the back/forward cache is back within 1 s", async () => {
      const channel = `bfcache-${mode.key}-${Date.now()}`;
      const { page, ids } = await livePage(context, channel);
      await page.evaluate(() => {
        (window as any).__restored = false;
        addEventListener("pageshow", (e) => ((window as any).__restored = e.persisted));
      });
      silenceTheStream();
      await page.goto(`http://127.0.0.1:${proxy.port}/healthz`);
      await meanwhile(channel, ids);
      await page.goBack({ waitUntil: "commit" });
      await backWithin1s(page, channel, ids);
      expect(await page.evaluate(() => (window as any).__restored), "restored from the cache, not loaded again").toBe(
        true,
      );
    });
  });
}
