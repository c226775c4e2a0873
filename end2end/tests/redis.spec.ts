import { test, expect, type Page } from "@playwright/test";
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { freePort, startRingback, stop, live, publish } from "./ringback";
import { firstPaintToLive, messageIds, recordStreams, recorded } from "./recorder";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

// Two servers on one Redis, all three owned by this test, each on a free port (never the
// machine's default Redis instance).

function startRedis(port: number, dir: string): ChildProcess {
  return spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir], {
    stdio: "ignore",
  });
}

function startServer(port: number, redisPort: number): ChildProcess {
  return startRingback(["--addr", `127.0.0.1:${port}`, "--retry", "500ms", "--redis-url", `redis://127.0.0.1:${redisPort}/`]);
}

/// Ready means connected to Redis and following the log.
async function ready(base: string): Promise<void> {
  await expect
    .poll(async () => (await fetch(`${base}/readyz`).catch(() => null))?.status ?? 0, { timeout: 15_000 })
    .toBe(200);
}

/// Redis on a free port, and servers A and B following it, both ready. A test may stop and
/// restart any of them (the fields follow); `stopAll` stops whatever runs and removes Redis's
/// directory.
class TwoServers {
  a?: ChildProcess;
  b?: ChildProcess;
  readonly baseA: string;
  readonly baseB: string;
  private constructor(
    readonly redisPort: number,
    readonly portA: number,
    readonly portB: number,
    readonly dir: string,
    public redis: ChildProcess,
  ) {
    this.baseA = `http://127.0.0.1:${portA}`;
    this.baseB = `http://127.0.0.1:${portB}`;
  }

  static async start(): Promise<TwoServers> {
    const [redisPort, portA, portB] = [await freePort(), await freePort(), await freePort()];
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ringback-e2e-redis-"));
    const servers = new TwoServers(redisPort, portA, portB, dir, startRedis(redisPort, dir));
    servers.a = startServer(portA, redisPort);
    servers.b = startServer(portB, redisPort);
    try {
      await ready(servers.baseA);
      await ready(servers.baseB);
    } catch (e) {
      await servers.stopAll();
      throw e;
    }
    return servers;
  }

  async stopAll(): Promise<void> {
    await stop(this.a);
    await stop(this.b);
    await stop(this.redis);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

test("two servers on one Redis: one feed, and a restarted server's page recovers every message once", async ({ browser }) => {
  const servers = await TwoServers.start();
  const { redisPort, baseA, baseB } = servers;
  try {
    const pageA = await browser.newPage();
    const pageB = await browser.newPage();
    await recordStreams(pageA);
    await pageA.goto(baseA);
    await pageB.goto(baseB);
    await live(pageA);
    await live(pageB);
    await expect(pageA.locator(".source")).toHaveCount(0);

    // Published through B, shown on A's page.
    const viaB = await publish(baseB, "blue", "published on B");
    await expect(pageA.locator(`.channel[data-channel="blue"] li[data-id="${viaB}"]`)).toHaveText("published on B");

    // The original's command line reaches both pages, under the same id.
    execFileSync("redis-cli", ["-p", String(redisPort), "publish", "events", '{"id":1,"data":"an important message","type":"blue"}']);
    for (const page of [pageA, pageB]) {
      await expect(page.locator('.channel[data-channel="blue"] li').last()).toHaveText("an important message");
    }
    const seedIdA = await pageA.locator('.channel[data-channel="blue"] li').last().getAttribute("data-id");
    const seedIdB = await pageB.locator('.channel[data-channel="blue"] li').last().getAttribute("data-id");
    expect(seedIdA).toBe(seedIdB);

    // A restarts; what B publishes meanwhile reaches A's page once A is back, in order, once.
    await stop(servers.a);
    await expect(pageA.locator(".state")).toHaveAttribute("data-state", "reconnecting");
    const expected: string[] = [];
    for (let i = 1; i <= 3; i++) {
      const text = `while A was down ${i}`;
      await publish(baseB, "red", text);
      expected.push(text);
    }
    servers.a = startServer(servers.portA, redisPort);
    await ready(baseA);
    await live(pageA);
    const after = await publish(baseA, "red", "after A is back");
    expected.push("after A is back");
    await expect(pageA.locator(`.channel[data-channel="red"] li[data-id="${after}"]`)).toBeVisible();
    await expect(pageA.locator('.channel[data-channel="red"] li')).toHaveText(expected);
    // What the server sent, not what the page chose to show: every message once, in order,
    // across the restart (the browser's own reconnection, with Last-Event-ID).
    const ids = (await recorded(pageA)).flatMap(messageIds);
    expect(ids.filter((id) => id > viaB)).toHaveLength(1 /* the seed */ + expected.length);
    expect(ids).toEqual([...ids].sort((x, y) => x - y));
    expect(new Set(ids).size).toBe(ids.length);
    await pageA.screenshot({ path: test.info().outputPath("two-servers.png") });

    // Redis goes away: the page stays live on its open stream and says its source is offline;
    // when Redis returns, the badge goes and messages flow again.
    await stop(servers.redis);
    await expect(pageA.locator('.source[data-source="offline"]')).toHaveText("source offline");
    await live(pageA);
    servers.redis = startRedis(redisPort, servers.dir);
    await ready(baseA);
    await ready(baseB);
    await expect(pageA.locator(".source")).toHaveCount(0);
    const back = await publish(baseB, "yellow", "Redis is back");
    await expect(pageA.locator(`.channel[data-channel="yellow"] li[data-id="${back}"]`)).toHaveText("Redis is back");
    // Closed, or their EventSources would find the next test's servers on these ports.
    await pageA.close();
    await pageB.close();
  } finally {
    await servers.stopAll();
  }
});

test("two servers on one Redis: a channel's subscriber count is the sum of both, live", async ({ browser }) => {
  const servers = await TwoServers.start();
  const { baseA, baseB } = servers;
  try {
    const count = (page: Page) => page.locator('.channel[data-channel="blue"] h2');
    const pageA = await browser.newPage();
    await pageA.goto(`${baseA}/?type=blue`);
    await live(pageA);
    await expect(count(pageA)).toHaveAttribute("data-count", "1");
    // A second page, on the other server: both pages count two.
    const pageB = await browser.newPage();
    await pageB.goto(`${baseB}/?type=blue`);
    await live(pageB);
    await expect(count(pageA)).toHaveAttribute("data-count", "2");
    await expect(count(pageB)).toHaveAttribute("data-count", "2");
    await pageB.close();
    await expect(count(pageA)).toHaveAttribute("data-count", "1");
    await pageA.close();
  } finally {
    await servers.stopAll();
  }
});

test("two servers on one Redis: a page on A continues from its first paint with what B publishes, once", async ({ page }) => {
  const servers = await TwoServers.start();
  try {
    // Published on B before, while and after the page on A loads: A's stream resumes after its
    // first-paint id and has each message once.
    await firstPaintToLive(page, `${servers.baseA}/`, (type, data) => publish(servers.baseB, type, data));
    await page.close();
  } finally {
    await servers.stopAll();
  }
});
