import { test, expect } from "@playwright/test";
import { spawn, type ChildProcess } from "node:child_process";
import { freePort, startRingback, stop } from "./ringback";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

// Redis failing over under a page: a primary, two replicas and three Sentinels, all owned by
// this test on free ports; one server following them with `redis+sentinel://` and
// `--redis-min-replicas 1`. The primary is killed (-9) with the page open.
let port = 0;
let base = "";
const master = "feed";

function startRedis(port: number, dir: string, primary?: number): ChildProcess {
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir];
  if (primary) args.push("--replicaof", "127.0.0.1", String(primary));
  return spawn("redis-server", args, { stdio: "ignore" });
}

function startSentinel(port: number, primary: number, dir: string): ChildProcess {
  // Sentinel rewrites its configuration as it learns: a file of its own.
  const conf = path.join(dir, `sentinel-${port}.conf`);
  fs.writeFileSync(
    conf,
    [
      `port ${port}`,
      "bind 127.0.0.1",
      `dir ${dir}`,
      `sentinel monitor ${master} 127.0.0.1 ${primary} 2`,
      `sentinel down-after-milliseconds ${master} 1000`,
      `sentinel failover-timeout ${master} 10000`,
      "",
    ].join("\n"),
  );
  return spawn("redis-sentinel", [conf], { stdio: "ignore" });
}

async function publish(type: string, data: string): Promise<Response> {
  return fetch(`${base}/messages`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ type, data }),
  });
}

test("a page stays live while Redis fails over", async ({ page }) => {
  test.setTimeout(60_000);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ringback-e2e-failover-"));
  const children: ChildProcess[] = [];
  let server: ChildProcess | undefined;
  try {
    port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const [p, r1, r2] = [await freePort(), await freePort(), await freePort()];
    const primary = startRedis(p, fs.mkdtempSync(path.join(dir, "p")));
    children.push(primary);
    children.push(startRedis(r1, fs.mkdtempSync(path.join(dir, "r")), p));
    children.push(startRedis(r2, fs.mkdtempSync(path.join(dir, "r")), p));
    const sentinels = [await freePort(), await freePort(), await freePort()];
    for (const s of sentinels) children.push(startSentinel(s, p, dir));
    const url = `redis+sentinel://${sentinels.map((s) => `127.0.0.1:${s}`).join(",")}/${master}`;
    server = startRingback([
      "--addr", `127.0.0.1:${port}`, "--retry", "500ms", "--redis-url", url,
      "--redis-min-replicas", "1", "--redis-backoff-max", "300ms",
    ]);
    // Ready, and publishes acknowledged: the replicas are in sync.
    await expect
      .poll(async () => (await publish("blue", "ready?").catch(() => null))?.status ?? 0, { timeout: 20_000 })
      .toBe(202);
    await page.goto(base);
    await expect(page.locator(".state")).toHaveAttribute("data-state", "live");
    const before = await (await publish("blue", "before the failover")).json();
    await expect(page.locator(`.channel[data-channel="blue"] li[data-id="${before.id}"]`)).toHaveText("before the failover");

    // Sentinel needs its peers before it can fail over: wait until each knows two replicas and
    // two other Sentinels (they find each other through the primary within a few seconds).
    for (const s of sentinels) {
      await expect
        .poll(async () => {
          const known = async (what: string) => {
            const out = await new Promise<string>((resolve) => {
              const cli = spawn("redis-cli", ["-p", String(s), "SENTINEL", what, master]);
              let text = "";
              cli.stdout.on("data", (d) => (text += d));
              cli.on("close", () => resolve(text));
            });
            return out.split("\n").filter((l) => l.trim() === "name").length;
          };
          return (await known("replicas")) >= 2 && (await known("sentinels")) >= 2;
        }, { timeout: 20_000 })
        .toBe(true);
    }

    primary.kill("SIGKILL");
    // The page says its source is offline, keeps its stream, and comes back by itself.
    await expect(page.locator('.source[data-source="offline"]')).toHaveText("source offline");
    await expect(page.locator(".state")).toHaveAttribute("data-state", "live");
    let after: { id: number } | undefined;
    await expect
      .poll(async () => {
        const res = await publish("red", "after the failover").catch(() => null);
        if (res?.status === 202) after = await res.json();
        return res?.status ?? 0;
      }, { timeout: 20_000, intervals: [250] })
      .toBe(202);
    await expect(page.locator(`.channel[data-channel="red"] li[data-id="${after!.id}"]`).first()).toHaveText("after the failover");
    await expect(page.locator(".source")).toHaveCount(0);
    await expect(page.locator(".state")).toHaveAttribute("data-state", "live");
    expect(after!.id).toBeGreaterThan(before.id);
  } finally {
    await stop(server);
    for (const child of children) child.kill("SIGKILL");
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
