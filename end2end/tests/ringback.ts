import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import * as net from "node:net";
import * as path from "node:path";

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
