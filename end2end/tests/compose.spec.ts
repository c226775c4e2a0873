import { test, expect, type Page } from "@playwright/test";
import { createHmac } from "node:crypto";
import { type ChildProcess } from "node:child_process";
import { freePort, startRingback, stop, healthy } from "./ringback";

// Publishing from the page, and a channel's subscribers on its box.

async function live(page: Page): Promise<void> {
  await expect(page.locator(".state")).toHaveAttribute("data-state", "live");
}

async function send(page: Page, channel: string, text: string): Promise<void> {
  await page.locator('.compose input[name="channel"]').fill(channel);
  await page.locator('.compose input[name="text"]').fill(text);
  await page.locator(".compose button").click();
}

test("a channel's subscriber count goes up when a second page opens it and down when it closes", async ({ browser, request }) => {
  const channel = `presence-${Date.now()}`;
  expect((await request.post("/messages", { data: { type: channel, data: "the channel exists" } })).status()).toBe(202);
  const count = (page: Page) => page.locator(`.channel[data-channel="${channel}"] h2`);
  const first = await browser.newPage();
  await first.goto(`/?type=${channel}`);
  await live(first);
  await expect(count(first)).toHaveAttribute("data-count", "1");
  const second = await browser.newPage();
  await second.goto(`/?type=${channel}`);
  await live(second);
  await expect(count(first)).toHaveAttribute("data-count", "2");
  await expect(count(second)).toHaveAttribute("data-count", "2");
  await second.close();
  await expect(count(first)).toHaveAttribute("data-count", "1");
  await first.close();
});

test("a message composed on one page appears on another", async ({ browser }) => {
  const writer = await browser.newPage();
  const reader = await browser.newPage();
  for (const page of [writer, reader]) {
    await page.goto("/");
    await live(page);
  }
  // With publishing open there is no token to ask for.
  await expect(writer.locator('.compose input[name="token"]')).toHaveCount(0);
  const channel = `composed-${Date.now()}`;
  await send(writer, channel, "written on the page");
  await expect(writer.locator(".compose .status")).toHaveText(/^Sent \(#\d+\)\.$/);
  // Its latency is the benchmarks' to measure, not a functional test's.
  await expect(reader.locator(`.channel[data-channel="${channel}"] li`)).toHaveText("written on the page");
  await expect(writer.locator('.compose input[name="text"]')).toHaveValue("");
  await writer.close();
  await reader.close();
});

/// An HS256 JWT, as an operator's token service would sign it.
function jwt(secret: string, claims: object): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const body = `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
}

test("with credentials the page asks for a token, keeps it for the session, and says why a publish is refused", async ({ browser }) => {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const secret = "compose-test-secret";
  let server: ChildProcess | undefined;
  try {
    server = startRingback([
      "--addr", `127.0.0.1:${port}`,
      "--publish-token", "right-token",
      "--jwt-secret", secret,
      "--publish-rate", "0.01",
      // Three per credential, then one per 100 s. Failed credentials spend their address's
      // allowance at the same rate: the two below leave it one, enough to go on.
      "--publish-burst", "3",
    ]);
    await healthy(base, 10_000);
    const page = await browser.newPage();
    await page.goto(base);
    await live(page);
    const status = page.locator(".compose .status");
    const token = page.locator('.compose input[name="token"]');
    await expect(token).toBeVisible();

    await send(page, "blue", "no token");
    await expect(status).toHaveText("Not sent: publishing needs a token.");
    await expect(status).toHaveAttribute("data-sent", "false");
    await token.fill("wrong-token");
    await send(page, "blue", "a wrong token");
    await expect(status).toHaveText(/^Not sent: the token was not accepted \(.+\)\.$/);

    const blueOnly = jwt(secret, { exp: Math.floor(Date.now() / 1000) + 3600, ringback: { publish: ["blue"] } });
    await token.fill(blueOnly);
    await send(page, "red", "not my channel");
    await expect(status).toHaveText(/^Not sent: this token may not publish there \(.+\)\.$/);

    await token.fill("right-token");
    for (let i = 1; i <= 3; i++) {
      await send(page, "blue", `with the right token ${i}`);
      await expect(status).toHaveText(/^Sent \(#\d+\)\.$/);
      await expect(status).toHaveAttribute("data-sent", "true");
      await expect(page.locator('.channel[data-channel="blue"] li').last()).toHaveText(`with the right token ${i}`);
    }
    // The credential's burst is spent: the next is refused, with when to retry.
    await send(page, "blue", "too soon");
    await expect(status).toHaveText(/^Not sent: too many messages; try again in \d+ s\.$/);

    // The token lives in this tab's session: a reload keeps it, and it is in no cookie.
    await page.reload();
    await live(page);
    await expect(token).toHaveValue("right-token");
    const cookies = await page.context().cookies();
    expect(cookies.filter((c) => c.value.includes("right-token"))).toHaveLength(0);
    expect(await page.evaluate(() => sessionStorage.getItem("ringback.publish_token"))).toBe("right-token");

    await page.setViewportSize({ width: 360, height: 740 });
    const scrollWidth = await page.evaluate(() => document.documentElement.scrollWidth);
    expect(scrollWidth, "nothing wider than the screen").toBeLessThanOrEqual(360);
    const shot = test.info().outputPath("compose-360px.png");
    await page.screenshot({ path: shot, fullPage: true });
    await test.info().attach("compose box at 360 px", { path: shot, contentType: "image/png" });
  } finally {
    await stop(server);
  }
});
