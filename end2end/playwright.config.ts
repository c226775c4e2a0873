import { defineConfig } from "@playwright/test";
import { launchOptions } from "./chromium";

// The server under test is the release binary that `scripts/test.sh` built with cargo-leptos,
// started here with the same LEPTOS_* layout cargo-leptos would give it.
const port = Number(process.env.RINGBACK_E2E_PORT ?? 3100);
export const baseURL = `http://127.0.0.1:${port}`;


export default defineConfig({
  testDir: "./tests",
  timeout: 30_000,
  expect: { timeout: 10_000 },
  fullyParallel: false,
  workers: 1,
  forbidOnly: !!process.env.CI,
  reporter: [["list"]],
  outputDir: "test-results",
  use: {
    baseURL,
    trace: "retain-on-failure",
    launchOptions,
  },
  webServer: {
    command: `../target/release/ringback --addr 127.0.0.1:${port} --ui-messages 20`,
    url: `${baseURL}/healthz`,
    reuseExistingServer: false,
    timeout: 30_000,
    stdout: "pipe",
    env: {
      LEPTOS_OUTPUT_NAME: "ringback",
      LEPTOS_SITE_ROOT: "../target/site",
      LEPTOS_SITE_PKG_DIR: "pkg",
      LEPTOS_HASH_FILES: "true",
      LEPTOS_ENV: "PROD",
      RINGBACK_LOG: "warn",
    },
  },
});
