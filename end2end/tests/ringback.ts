import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import * as net from "node:net";
import * as path from "node:path";
import { expect, type Page } from "@playwright/test";

// Shared by the specs that own their servers: the release binary, started with the LEPTOS_*
// layout cargo-leptos gives it, and stopped with SIGTERM (a graceful shutdown).
export const root = path.resolve(__dirname, "../..");

export function startRingback(args: string[]): ChildProcess {
  return spawn(path.join(root, "target/release/ringback"), args, {
    cwd: root,
    stdio: "ignore",
    env: {
      ...process.env,
      LEPTOS_OUTPUT_NAME: "ringback",
      LEPTOS_SITE_ROOT: "target/site",
      LEPTOS_SITE_PKG_DIR: "pkg",
      LEPTOS_HASH_FILES: "true",
      RINGBACK_LOG: "warn",
    },
  });
}

export async function stop(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGTERM");
  await exited;
}

/// A port nothing listens on now.
export async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as net.AddressInfo;
  server.close();
  await once(server, "close");
  return port;
}

/// The hashed assets a page loads (`/pkg/<name>.<hash>.<ext>`, as `<name>.<ext>`): cargo-leptos's
/// build, and the feed script the server adds to it.
export const ASSETS = ["feed.js", "ringback.css", "ringback.js", "ringback.wasm"];

/// `…/pkg/ringback.<hash>.wasm` → `ringback.wasm`.
export function assetName(url: string): string {
  const parts = url.split("/").pop()!.split(".");
  return `${parts[0]}.${parts.pop()}`;
}

/// Waits until the server at `base` answers `GET /healthz` with `200`: started, listening.
export async function healthy(base: string, timeout = 15_000): Promise<void> {
  await expect
    .poll(async () => (await fetch(`${base}/healthz`).catch(() => null))?.status ?? 0, { timeout })
    .toBe(200);
}

/// Publishes a message with `POST /messages` to the server at `base` and returns its id; any
/// answer but `202` fails the test. `headers` add to the request's (a credential).
export async function publish(
  base: string,
  type: string,
  data: unknown,
  headers: Record<string, string> = {},
): Promise<number> {
  const res = await fetch(`${base}/messages`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ type, data }),
  });
  expect(res.status).toBe(202);
  return (await res.json()).id;
}

/// Waits until the page follows the feed: hydrated, its stream open (its state `live`).
export async function live(page: Page): Promise<void> {
  await expect(page.locator(".state")).toHaveAttribute("data-state", "live");
}

/// Opens `url` and waits until the page follows the feed.
export async function openLive(page: Page, url: string): Promise<void> {
  await page.goto(url);
  await live(page);
}
