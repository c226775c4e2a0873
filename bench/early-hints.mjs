// Time from navigation to the first live message, in Chromium, with and without `103 Early
// Hints`: two servers from one release build (`--early-hints=true` and `=false`), one
// development certificate authority trusted in a throw-away NSS database (as docs/http2.md says),
// a publisher at 50 messages/s, and N navigations each in a fresh browser context (no cookie,
// empty cache), alternating the servers. Run by bench/early-hints.sh.
import { createRequire } from "node:module";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const require = createRequire(path.join(root, "end2end", "package.json"));
const { chromium } = require("@playwright/test");
const { launchOptions, homeTrusting } = require(path.join(root, "end2end", "chromium.js"));
const rounds = Number(process.argv[2] ?? 20);
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "ringback-hints-bench-"));
const data = path.join(scratch, "data");
const env = {
  ...process.env,
  LEPTOS_OUTPUT_NAME: "ringback", LEPTOS_SITE_ROOT: "target/site", LEPTOS_SITE_PKG_DIR: "pkg",
  LEPTOS_HASH_FILES: "true", RINGBACK_LOG: "warn",
};
const servers = [
  { name: "with 103", port: 3620, flag: "--early-hints=true" },
  { name: "without 103", port: 3621, flag: "--early-hints=false" },
].map((s) => ({
  ...s,
  child: spawn(path.join(root, "target/release/ringback"),
    ["--addr", `127.0.0.1:${s.port}`, "--data-dir", data, s.flag], { cwd: root, env, stdio: "ignore" }),
}));
const up = async (port) => {
  for (let i = 0; i < 200; i++) {
    try { if ((await fetch(`http://127.0.0.1:${port}/healthz`)).ok) return; } catch {}
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`server on ${port} did not start`);
};
const stopServers = () => { for (const s of servers) s.child.kill("SIGTERM"); };
process.on("exit", stopServers);
await up(servers[0].port);
await up(servers[1].port);
const ca = path.join(data, "tls", "ca.crt.pem");
for (let i = 0; i < 100 && !fs.existsSync(ca); i++) await new Promise((r) => setTimeout(r, 50));
const home = homeTrusting(ca, scratch);
const browser = await chromium.launch({ ...launchOptions, env: { ...process.env, HOME: home } });
// A publisher per server, 50 messages/s, so a live message is never more than 20 ms away.
let publishing = true;
const latest = new Map();
const publishers = servers.map(async (s) => {
  while (publishing) {
    const r = await fetch(`http://127.0.0.1:${s.port}/messages`, {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ type: "blue", data: "tick" }),
    });
    if (r.ok) latest.set(s.port, (await r.json()).id);
    await new Promise((r) => setTimeout(r, 20));
  }
});
await new Promise((r) => setTimeout(r, 200));
const results = Object.fromEntries(servers.map((s) => [s.name, { live: [], message: [], hinted: 0 }]));
for (let round = 0; round < rounds; round++) {
  for (const s of round % 2 ? [...servers].reverse() : servers) {
    const context = await browser.newContext();
    const page = await context.newPage();
    const before = latest.get(s.port) ?? 0;
    await page.goto(`https://localhost:${s.port}/`, { waitUntil: "commit" });
    // Milliseconds since navigation start: the stream open (hydrated, EventSource live), and the
    // first message published after the navigation began, shown on the page.
    const live = await page.waitForFunction(
      () => document.querySelector('.state[data-state="live"]') && performance.now(), null, { polling: 2 });
    const message = await page.waitForFunction(
      (after) => [...document.querySelectorAll("li[data-id]")].some((li) => Number(li.dataset.id) > after)
        && performance.now(), before, { polling: 2 });
    results[s.name].live.push(await live.jsonValue());
    results[s.name].message.push(await message.jsonValue());
    const initiators = await page.evaluate(() => performance.getEntriesByType("resource")
      .filter((e) => e.name.includes("/pkg/")).map((e) => e.initiatorType));
    if (initiators.length > 0 && initiators.every((i) => i === "early-hints")) results[s.name].hinted++;
    await context.close();
  }
}
publishing = false;
await Promise.all(publishers);
await browser.close();
stopServers();
fs.rmSync(scratch, { recursive: true, force: true });
const median = (xs) => { const v = [...xs].sort((a, b) => a - b); return v[Math.floor(v.length / 2)]; };
const p90 = (xs) => { const v = [...xs].sort((a, b) => a - b); return v[Math.floor(v.length * 0.9)]; };
for (const [name, r] of Object.entries(results)) {
  console.log(`${name.padEnd(12)} live: median ${median(r.live).toFixed(0)} ms, p90 ${p90(r.live).toFixed(0)} ms;` +
    ` first live message: median ${median(r.message).toFixed(0)} ms, p90 ${p90(r.message).toFixed(0)} ms;` +
    ` assets from the hints in ${r.hinted} of ${r.live.length} navigations`);
}
