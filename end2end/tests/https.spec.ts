import { test, expect } from "@playwright/test";
import { baseURL } from "../playwright.config";
import { firstPaintToLive } from "./recorder";
import { ASSETS, assetName } from "./ringback";

// The same server, over TLS: one port serves HTTP/1.1, h2c and HTTPS with HTTP/2.
const httpsURL = baseURL.replace("http://", "https://");
test.use({ ignoreHTTPSErrors: true });

test("the live feed works over HTTPS with HTTP/2", async ({ page, request }) => {
  // Chromium refuses push (SETTINGS_ENABLE_PUSH=0), so the server answers with 103 Early Hints:
  // its own counter proves it sent them for this navigation. (Over this certificate, which the
  // page was told to ignore, Chromium discards the hints' preloads; over a trusted one it takes
  // them: early-hints.spec.ts.)
  const hintsSent = async () => {
    const metrics = await (await request.get(`${baseURL}/metrics`)).text();
    return Number(/ringback_early_hints_total (\d+)/.exec(metrics)?.[1]);
  };
  const hintsBefore = await hintsSent();
  await page.goto(`${httpsURL}/`);
  expect(await hintsSent()).toBe(hintsBefore + 1);
  await expect(page.locator(".state")).toHaveAttribute("data-state", "live");
  const protocol = await page.evaluate(
    () => (performance.getEntriesByType("navigation")[0] as PerformanceNavigationTiming).nextHopProtocol,
  );
  expect(protocol).toBe("h2");

  const res = await request.post(`${httpsURL}/messages`, { data: { type: "yellow", data: "over https" } });
  expect(res.status()).toBe(202);
  const { id } = await res.json();
  await expect(page.locator(`.channel[data-channel="yellow"] li[data-id="${id}"]`)).toHaveText("over https");

  // Every hashed asset came over the same HTTP/2 connection.
  const assets = await page.evaluate(() =>
    performance
      .getEntriesByType("resource")
      .filter((e) => e.name.includes("/pkg/"))
      .map((e) => ({
        name: e.name,
        protocol: (e as PerformanceResourceTiming).nextHopProtocol,
      })),
  );
  expect(assets.map((a) => assetName(a.name)).sort()).toEqual(ASSETS);
  for (const a of assets) expect(a.protocol).toBe("h2");
});

test("over TLS and HTTP/2, first paint continues live with nothing lost or twice", async ({ page, request }) => {
  await firstPaintToLive(page, `${httpsURL}/`, async (type, data) => {
    const res = await request.post(`${httpsURL}/messages`, { data: { type, data } });
    expect(res.status()).toBe(202);
    return (await res.json()).id;
  });
  const protocol = await page.evaluate(
    () => (performance.getEntriesByType("navigation")[0] as PerformanceNavigationTiming).nextHopProtocol,
  );
  expect(protocol).toBe("h2");
});

test("hashed assets are served precompressed to browsers that accept it", async ({ page }) => {
  // The browser's own fetches: the page hydrates from the brotli variants (a wrong encoding
  // would break the WASM), and each response says how it was encoded.
  const encodings = new Map<string, string>();
  page.on("response", async (r) => {
    if (r.url().includes("/pkg/")) encodings.set(r.url().split("/").pop()!, (await r.allHeaders())["content-encoding"] ?? "identity");
  });
  await page.goto(`${httpsURL}/`);
  await expect(page.locator(".state")).toHaveAttribute("data-state", "live");
  const kinds = [...encodings.entries()].map(([name, enc]) => `${assetName(name)}:${enc}`).sort();
  expect(kinds).toEqual(ASSETS.map((kind) => `${kind}:br`));
});
