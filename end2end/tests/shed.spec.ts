import { test, expect } from "@playwright/test";
import { type ChildProcess } from "node:child_process";
import { freePort, startRingback, stop, publish, healthy } from "./ringback";

// A server over capacity sheds a subscription (200 text/event-stream, `retry:`, one
// `ringback.refused` event, the end) instead of refusing it with a status a plain EventSource
// would never retry after. This server holds one subscriber.

let server: ChildProcess | undefined;
let base = "";

test.beforeAll(async () => {
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = startRingback(["--addr", `127.0.0.1:${port}`, "--max-subscribers", "1", "--retry", "500ms"]);
  await healthy(base);
});

test.afterAll(async () => {
  await stop(server);
});

/// Takes the server's one place with a stream read from here; `release` gives it back.
async function holdThePlace(): Promise<{ release: () => Promise<void> }> {
  const controller = new AbortController();
  const res = await fetch(`${base}/messages`, { signal: controller.signal });
  expect(res.status).toBe(200);
  const reader = res.body!.getReader();
  const first = new TextDecoder().decode((await reader.read()).value);
  expect(first).toMatch(/^retry: \d+/); // a stream, not a shed answer
  return {
    release: async () => {
      controller.abort();
      await reader.cancel().catch(() => {});
    },
  };
}

test("a plain EventSource refused over capacity keeps retrying by itself and goes live once there is room", async ({ page }) => {
  const holder = await holdThePlace();
  // Any page of the server's origin: the test's own, with nothing but `new EventSource`.
  await page.route(`${base}/plain.html`, (route) =>
    route.fulfill({ contentType: "text/html", body: "<!doctype html><title>plain</title>" }),
  );
  await page.goto(`${base}/plain.html`);
  await page.evaluate(() => {
    const w = window as any;
    w.seen = [] as string[];
    const es = new EventSource("/messages");
    w.es = es;
    es.addEventListener("ringback.refused", (e) => w.seen.push(`refused ${(e as MessageEvent).data}`));
    es.addEventListener("red", (e) => w.seen.push(`red ${JSON.parse((e as MessageEvent).data).data}`));
    es.addEventListener("ringback.presence", () => w.seen.push("presence"));
  });
  const seen = () => page.evaluate(() => (window as any).seen as string[]);
  const refusals = async () => (await seen()).filter((s) => s.startsWith("refused")).length;
  // Shed again and again, and never given up on: EventSource retries after each `retry:`.
  await expect.poll(refusals, { timeout: 15_000 }).toBeGreaterThanOrEqual(2);
  const refused = (await seen()).find((s) => s.startsWith("refused"))!;
  const body = JSON.parse(refused.slice("refused ".length));
  expect(body.reason).toBe("subscribers");
  expect(body.retry_ms).toBeGreaterThanOrEqual(500);
  expect(body.retry_ms).toBeLessThanOrEqual(2000);
  expect(await page.evaluate(() => (window as any).es.readyState)).not.toBe(2 /* CLOSED */);

  // Room again: the EventSource comes back by itself within one retry, and is live: the server
  // streams it the subscriber counts (a shed answer never does).
  const freed = Date.now();
  await holder.release();
  await expect.poll(seen, { timeout: 10_000 }).toContain("presence");
  // The longest shed retry (4 × 500 ms), a presence interval (1 s), and a margin.
  expect(Date.now() - freed).toBeLessThan(2_000 + 1_000 + 1_000);
  expect(await page.evaluate(() => (window as any).es.readyState)).toBe(1 /* OPEN */);
  await publish(base, "red", "in at last");
  await expect.poll(seen, { timeout: 10_000 }).toContain("red in at last");
});

test("the page says why it was shed and goes live once there is room", async ({ page }) => {
  const holder = await holdThePlace();
  try {
    await page.goto(base);
    const reason = page.locator(".reason");
    await expect(reason).toHaveAttribute("data-reason", "subscribers");
    await expect(reason).toHaveText("server full; retrying");
    await expect(reason).toBeVisible();
    await expect(page.locator(".state")).toHaveAttribute("data-state", "reconnecting");
    await page.screenshot({ path: test.info().outputPath("shed.png") });
  } finally {
    await holder.release();
  }
  await expect(page.locator(".state")).toHaveAttribute("data-state", "live");
  await expect(page.locator(".reason")).toHaveAttribute("data-reason", "");
  await expect(page.locator(".reason")).toBeHidden();
  const id = await publish(base, "red", "after the shed");
  await expect(page.locator(`.channel[data-channel="red"] li[data-id="${id}"]`)).toHaveText("after the shed");
});
