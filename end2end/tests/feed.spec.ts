import { test, expect } from "@playwright/test";
import { baseURL } from "../playwright.config";
import { firstPaintToLive, recordStreams, recorded } from "./recorder";
import { openLive, publish } from "./ringback";

test("a published message appears live in its channel's box", async ({ page }, testInfo) => {
  await openLive(page, "/");
  for (const channel of ["red", "yellow", "blue"]) {
    await expect(page.locator(`.channel[data-channel="${channel}"]`)).toBeVisible();
  }
  const id = await publish(baseURL, "blue", "hello from playwright");
  const item = page.locator(`.channel[data-channel="blue"] li[data-id="${id}"]`);
  await expect(item).toHaveText("hello from playwright");
  await expect(page.locator(`.channel[data-channel="red"] li[data-id="${id}"]`)).toHaveCount(0);

  const shot = testInfo.outputPath("feed.png");
  await page.screenshot({ path: shot, fullPage: true });
  await testInfo.attach("feed", { path: shot, contentType: "image/png" });
});

test("a message shows when it was published, and its age moves on", async ({ page }) => {
  // The page's clock is Playwright's: it runs as usual until moved on below.
  await page.clock.install();
  await openLive(page, "/");
  const id = await publish(baseURL, "yellow", "how long ago?");
  const item = page.locator(`.channel[data-channel="yellow"] li[data-id="${id}"]`);
  await expect(item).toHaveText("how long ago?");
  await expect(item).toHaveAttribute("data-ago", "just now");
  await expect(item).toHaveAttribute("title", /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC$/);
  await page.clock.fastForward(90_000);
  await expect(item).toHaveAttribute("data-ago", /^1 min ago$/);
  await expect(item).toHaveText("how long ago?");
});

test("pages on different filters show only their channels, and the filter is in the address", async ({ browser }, testInfo) => {
  const reds = await browser.newPage();
  const blues = await browser.newPage();
  for (const [page, query] of [[reds, "?type=red"], [blues, "?type=blue"]] as const) {
    await page.goto(`/${query}`);
    await expect(page.locator(".state")).toHaveAttribute("data-state", "live");
  }
  const red = await publish(baseURL, "red", "for the red page");
  const blue = await publish(baseURL, "blue", "for the blue page");
  await expect(reds.locator(`.channel[data-channel="red"] li[data-id="${red}"]`)).toHaveText("for the red page");
  await expect(blues.locator(`.channel[data-channel="blue"] li[data-id="${blue}"]`)).toHaveText("for the blue page");
  await expect(reds.locator(".channel")).toHaveCount(1);
  await expect(blues.locator(".channel")).toHaveCount(1);
  await expect(reds.locator(`li[data-id="${blue}"]`)).toHaveCount(0);

  // A reload keeps the filter; the picker adds a channel to it, in the address.
  await reds.reload();
  await expect(reds.locator(".state")).toHaveAttribute("data-state", "live");
  await expect(reds.locator(".channel")).toHaveCount(1);
  await expect(reds.locator('.picker a[data-channel="red"]')).toHaveClass(/on/);
  await reds.locator('.picker a[data-channel="blue"]').click();
  await expect(reds).toHaveURL(/\?type=red&type=blue$/);
  await expect(reds.locator(".state")).toHaveAttribute("data-state", "live");
  await expect(reds.locator(".channel")).toHaveCount(2);
  const both = await publish(baseURL, "blue", "now for both");
  await expect(reds.locator(`li[data-id="${both}"]`)).toHaveText("now for both");
  await reds.locator('.picker a[data-channel=""]').click();
  await expect(reds).toHaveURL(/\/$/);
  await expect(reds.locator('.channel[data-channel="yellow"]')).toBeVisible();

  // A phone's width: the picker wraps, the boxes stack (kept as an artifact to look at).
  await reds.setViewportSize({ width: 360, height: 740 });
  const scrollWidth = await reds.evaluate(() => document.documentElement.scrollWidth);
  expect(scrollWidth, "nothing wider than the screen").toBeLessThanOrEqual(360);
  const shot = testInfo.outputPath("feed-360px.png");
  await reds.screenshot({ path: shot, fullPage: true });
  await testInfo.attach("feed at 360 px", { path: shot, contentType: "image/png" });
  await reds.close();
  await blues.close();
});

test("a message on a new channel makes a new box", async ({ page }) => {
  await openLive(page, "/");
  const channel = `ch-${Date.now()}`;
  await expect(page.locator(`.channel[data-channel="${channel}"]`)).toHaveCount(0);
  const first = await publish(baseURL, channel, "first on a new channel");
  const second = await publish(baseURL, channel, "second");
  const box = page.locator(`.channel[data-channel="${channel}"]`);
  await expect(box.locator(`li[data-id="${first}"]`)).toHaveText("first on a new channel");
  await expect(box.locator(`li[data-id="${second}"]`)).toHaveText("second");
  await expect(box.locator("h2")).toHaveText(channel);
});

test("first paint shows the latest messages and continues live with no gap or duplicate", async ({ page, request }) => {
  // The server-rendered HTML already holds what was published before, before any script runs.
  const channel = `html-${Date.now()}`;
  await publish(baseURL, channel, "in the first paint");
  expect(await (await request.get("/")).text()).toContain("in the first paint");
  // Then a page through its load: before, while it hydrates, after (tests/recorder.ts).
  await firstPaintToLive(page, "/", (type, data) => publish(baseURL, type, data));
});

test("each box keeps only the last N messages", async ({ page }) => {
  await openLive(page, "/");
  const channel = `bounded-${Date.now()}`;
  const ids: number[] = [];
  for (let i = 0; i < 30; i++) ids.push(await publish(baseURL, channel, `m${i}`));
  const box = page.locator(`.channel[data-channel="${channel}"]`);
  await expect(box.locator(`li[data-id="${ids[29]}"]`)).toHaveText("m29");
  // The server runs with --ui-messages 20.
  await expect(box.locator("li")).toHaveCount(20);
  await expect(box.locator("li").first()).toHaveText("m10");
});

test("the page follows the feed through exactly one stream", async ({ page }) => {
  await recordStreams(page);
  await openLive(page, "/");
  const sources = await recorded(page);
  expect(sources).toHaveLength(1);
  expect(sources[0].opens).toBe(1);
});
