import { test, expect } from "@playwright/test";
import { freePort, startRingback, stop, healthy } from "./ringback";

// This test owns its server: it stops it and starts it again under the open page.
let port = 0;
let base = "";

test.beforeAll(async () => {
  port = await freePort();
  base = `http://127.0.0.1:${port}`;
});

function startServer() {
  return startRingback(["--addr", `127.0.0.1:${port}`, "--retry", "500ms"]);
}

test("the page shows reconnecting while the server is gone, and recovers on its own", async ({ page }) => {
  let server = startServer();
  try {
    await healthy(base);
    await page.goto(base);
    const state = page.locator(".state");
    await expect(state).toHaveAttribute("data-state", "live");

    await stop(server);
    await expect(state).toHaveAttribute("data-state", "reconnecting");

    // The restarted server's ids are newer than any the page saw: it is told of the gap,
    // reloads its snapshot and follows the new feed.
    const reload = page.waitForRequest(
      (r) => r.method() === "POST" && new URL(r.url()).pathname === "/api/snapshot",
      { timeout: 15_000 },
    );
    server = startServer();
    await healthy(base);
    await reload;
    await expect(state).toHaveAttribute("data-state", "live", { timeout: 15_000 });
    const res = await fetch(`${base}/messages`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ type: "red", data: "after the restart" }),
    });
    expect(res.status).toBe(202);
    const { id } = await res.json();
    await expect(page.locator(`.channel[data-channel="red"] li[data-id="${id}"]`)).toHaveText("after the restart");
  } finally {
    await stop(server);
  }
});
