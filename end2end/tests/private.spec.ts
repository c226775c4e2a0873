import { test, expect, type Page } from "@playwright/test";
import { createHmac } from "node:crypto";
import { freePort, startRingback, stop, openLive, publish, healthy } from "./ringback";
import { holdHydration, recordStreams, recorded, messageIds } from "./recorder";

// This spec owns a server with credentials: a JWT key, and private channels `secret-*`.
let port = 0;
let base = "";
const secret = "e2e-jwt-secret";

function jwt(claims: object): string {
  const b64 = (v: object) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ exp: Math.floor(Date.now() / 1000) + 3600, ...claims })}`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
}

/// The credential this test's publisher sends.
function publisher(): Record<string, string> {
  return { authorization: `Bearer ${jwt({ ringback: { publish: ["*"] } })}` };
}

test("a private channel shows only on the page whose cookie grants it", async ({ browser }) => {
  port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const server = startRingback(["--addr", `127.0.0.1:${port}`, "--jwt-secret", secret, "--private-channels", "secret-*"]);
  try {
    await healthy(base);
    const granted = await browser.newContext();
    await granted.addCookies([
      { name: "ringback_token", value: jwt({ ringback: { subscribe: ["secret-a"] } }), url: base },
    ]);
    const stranger = await browser.newContext();
    const mine = await granted.newPage();
    const theirs = await stranger.newPage();
    await openLive(mine, base);
    await openLive(theirs, base);

    const hidden = await publish(base, "secret-a", "for the granted page only", publisher());
    const shown = await publish(base, "blue", "for everyone", publisher());
    // The granted page learns the private channel from the stream and shows its message.
    await expect(mine.locator(`.channel[data-channel="secret-a"] li[data-id="${hidden}"]`)).toHaveText(
      "for the granted page only",
    );
    await expect(mine.locator(`.channel[data-channel="blue"] li[data-id="${shown}"]`)).toHaveText("for everyone");
    // The other page gets the public message, published after the private one: by then it
    // would have had the private one too, and has nothing of it.
    await expect(theirs.locator(`.channel[data-channel="blue"] li[data-id="${shown}"]`)).toHaveText("for everyone");
    await expect(theirs.locator(`.channel[data-channel="secret-a"]`)).toHaveCount(0);
    await expect(theirs.locator("body")).not.toContainText("for the granted page only");
    // A page that resumes over a private message (published while it loaded, so its stream
    // replays from before it) is replayed the public one after it, and nothing private.
    const resuming = await stranger.newPage();
    await recordStreams(resuming);
    const release = await holdHydration(resuming);
    await resuming.goto(base, { waitUntil: "domcontentloaded" });
    const replayedHidden = await publish(base, "secret-a", "private, published while a page loaded", publisher());
    const replayedShown = await publish(base, "blue", "public, published after it", publisher());
    release();
    await expect(resuming.locator(`.channel[data-channel="blue"] li[data-id="${replayedShown}"]`)).toHaveText(
      "public, published after it",
    );
    const [stream] = await recorded(resuming);
    expect(messageIds(stream)).toEqual([replayedShown]);
    expect(stream.events.map((e) => e.data).join("\n")).not.toContain("secret-a");
    expect(replayedHidden).toBeLessThan(replayedShown);
    await expect(resuming.locator("body")).not.toContainText("private, published while a page loaded");
    await granted.close();
    await stranger.close();
  } finally {
    await stop(server);
  }
});
