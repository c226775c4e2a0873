import { test, expect, type Page, type APIRequestContext } from "@playwright/test";

async function publish(request: APIRequestContext, type: string, data: unknown): Promise<number> {
  const res = await request.post("/messages", { data: { type, data } });
  expect(res.status()).toBe(202);
  return (await res.json()).id;
}

// Hydration done and the EventSource open: the page is following the feed.
async function openLive(page: Page) {
  await page.goto("/");
  await expect(page.locator(".state")).toHaveAttribute("data-state", "live");
}

test("a published message appears live in its channel's box", async ({ page, request }, testInfo) => {
  await openLive(page);
  for (const channel of ["red", "yellow", "blue"]) {
    await expect(page.locator(`.channel[data-channel="${channel}"]`)).toBeVisible();
  }
  const id = await publish(request, "blue", "hello from playwright");
  const item = page.locator(`.channel[data-channel="blue"] li[data-id="${id}"]`);
  await expect(item).toHaveText("hello from playwright");
  await expect(page.locator(`.channel[data-channel="red"] li[data-id="${id}"]`)).toHaveCount(0);

  const shot = testInfo.outputPath("feed.png");
  await page.screenshot({ path: shot, fullPage: true });
  await testInfo.attach("feed", { path: shot, contentType: "image/png" });
});

test("a message shows when it was published, and its age moves on", async ({ page, request }) => {
  // The page's clock is Playwright's: it runs as usual until moved on below.
  await page.clock.install();
  await openLive(page);
  const id = await publish(request, "yellow", "how long ago?");
  const item = page.locator(`.channel[data-channel="yellow"] li[data-id="${id}"]`);
  await expect(item).toHaveText("how long ago?");
  await expect(item).toHaveAttribute("data-ago", "just now");
  await expect(item).toHaveAttribute("title", /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC$/);
  await page.clock.fastForward(90_000);
  await expect(item).toHaveAttribute("data-ago", /^1 min ago$/);
  await expect(item).toHaveText("how long ago?");
});

test("a message on a new channel makes a new box", async ({ page, request }) => {
  await openLive(page);
  const channel = `ch-${Date.now()}`;
  await expect(page.locator(`.channel[data-channel="${channel}"]`)).toHaveCount(0);
  const first = await publish(request, channel, "first on a new channel");
  const second = await publish(request, channel, "second");
  const box = page.locator(`.channel[data-channel="${channel}"]`);
  await expect(box.locator(`li[data-id="${first}"]`)).toHaveText("first on a new channel");
  await expect(box.locator(`li[data-id="${second}"]`)).toHaveText("second");
  await expect(box.locator("h2")).toHaveText(channel);
});

test("first paint shows the latest messages and continues live with no gap or duplicate", async ({ page, request }) => {
  const channel = `paint-${Date.now()}`;
  const before = await publish(request, channel, "before the page loaded");
  // The server-rendered HTML already holds it, before any script runs.
  const html = await (await request.get("/")).text();
  expect(html).toContain("before the page loaded");

  await openLive(page);
  const box = page.locator(`.channel[data-channel="${channel}"]`);
  await expect(box.locator(`li[data-id="${before}"]`)).toHaveText("before the page loaded");
  const after = await publish(request, channel, "after the page loaded");
  await expect(box.locator(`li[data-id="${after}"]`)).toHaveText("after the page loaded");
  await expect(box.locator("li")).toHaveCount(2);
});

test("each box keeps only the last N messages", async ({ page, request }) => {
  await openLive(page);
  const channel = `bounded-${Date.now()}`;
  const ids: number[] = [];
  for (let i = 0; i < 30; i++) ids.push(await publish(request, channel, `m${i}`));
  const box = page.locator(`.channel[data-channel="${channel}"]`);
  await expect(box.locator(`li[data-id="${ids[29]}"]`)).toHaveText("m29");
  // The server runs with --ui-messages 20.
  await expect(box.locator("li")).toHaveCount(20);
  await expect(box.locator("li").first()).toHaveText("m10");
});

test("the page opens exactly one EventSource", async ({ page }) => {
  await page.addInitScript(() => {
    const Original = window.EventSource;
    (window as any).__eventSources = 0;
    (window as any).EventSource = class extends Original {
      constructor(url: string | URL, init?: EventSourceInit) {
        super(url, init);
        (window as any).__eventSources++;
      }
    };
  });
  await openLive(page);
  expect(await page.evaluate(() => (window as any).__eventSources)).toBe(1);
});
