import { test, expect } from "@playwright/test";
import { type ChildProcess } from "node:child_process";
import { freePort, startRingback, stop, publish, healthy } from "./ringback";
import { holdHydration, recordStreams, recorded, firstPaintId } from "./recorder";

// A page that resumes from beyond the history: the server tells it of the gap, and it reloads
// its snapshot (`POST /api/snapshot`) rather than show old messages beside new ones with a hole
// between. This server keeps four messages.

let server: ChildProcess | undefined;
let base = "";

test.beforeAll(async () => {
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = startRingback(["--addr", `127.0.0.1:${port}`, "--history", "4"]);
  await healthy(base);
});

test.afterAll(async () => {
  await stop(server);
});

test("a page resuming past the history is told of the gap and reloads its snapshot", async ({ page }) => {
  const channel = `gap-${Date.now()}`;
  const old = await publish(base, channel, "before the gap");
  await recordStreams(page);
  // Painted, not yet hydrated: meanwhile six more messages push the painted one out of the
  // four the history keeps.
  const release = await holdHydration(page);
  await page.goto(base, { waitUntil: "domcontentloaded" });
  const box = page.locator(`.channel[data-channel="${channel}"]`);
  await expect(box.locator(`li[data-id="${old}"]`)).toHaveText("before the gap");
  const painted = await firstPaintId(page);
  const later: number[] = [];
  for (let i = 1; i <= 6; i++) later.push(await publish(base, channel, `after ${i}`));
  const reload = page.waitForRequest(
    (r) => r.method() === "POST" && new URL(r.url()).pathname === "/api/snapshot",
    { timeout: 10_000 },
  );
  release();
  await reload;
  // The stream said so, with the id the page asked to resume after.
  await expect.poll(async () => (await recorded(page))[0]?.events.some((e) => e.type === "ringback.gap")).toBe(true);
  const gap = (await recorded(page))[0].events.find((e) => e.type === "ringback.gap")!;
  expect(JSON.parse(gap.data).after).toBe(painted);
  // The boxes are the fresh snapshot's: the four messages the history holds, and not the one
  // from before the gap.
  await expect(box.locator("li")).toHaveText(["after 3", "after 4", "after 5", "after 6"]);
  await expect(box.locator(`li[data-id="${old}"]`)).toHaveCount(0);
  await expect(page.locator(".state")).toHaveAttribute("data-state", "live");
  // And it follows the feed on from there.
  const next = await publish(base, channel, "after the reload");
  await expect(box.locator(`li[data-id="${next}"]`)).toHaveText("after the reload");
});
