import { test, expect } from "@playwright/test";
import { baseURL } from "../playwright.config";

// The same server, over TLS: one port serves HTTP/1.1, h2c and HTTPS with HTTP/2.
const httpsURL = baseURL.replace("http://", "https://");
test.use({ ignoreHTTPSErrors: true });

test("the live feed works over HTTPS with HTTP/2", async ({ page, request }, testInfo) => {
  // Chromium refuses push (SETTINGS_ENABLE_PUSH=0), so the server answers with 103 Early Hints.
  // The server's own counter proves it sent them for this navigation; the DevTools protocol
  // event is recorded too, but Chromium reports it only intermittently, so it is not asserted.
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Network.enable");
  const hinted: string[] = [];
  cdp.on("Network.responseReceivedEarlyHints", (e: any) => {
    for (const [k, v] of Object.entries(e.headers ?? {})) if (k.toLowerCase() === "link") hinted.push(String(v));
  });
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

  // What Chromium records for the hashed assets: "early-hints" when the 103 preloaded them.
  const assets = await page.evaluate(() =>
    performance
      .getEntriesByType("resource")
      .filter((e) => e.name.includes("/pkg/"))
      .map((e) => ({
        name: new URL(e.name).pathname,
        initiatorType: (e as PerformanceResourceTiming).initiatorType,
        protocol: (e as PerformanceResourceTiming).nextHopProtocol,
      })),
  );
  const observed = JSON.stringify({ earlyHintsLink: hinted, assets });
  testInfo.annotations.push({ type: "assets", description: observed });
  console.log(`hashed assets as Chromium recorded them: ${observed}`);
  expect(assets.length).toBeGreaterThanOrEqual(2);
  for (const a of assets) expect(a.protocol).toBe("h2");
  if (assets.some((a) => a.initiatorType === "early-hints")) {
    // Then every preloaded asset came from the hints.
    for (const a of assets.filter((a) => !a.name.endsWith(".css"))) expect(a.initiatorType).toBe("early-hints");
  }
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
  const kinds = [...encodings.entries()].map(([name, enc]) => `${name.split(".").pop()}:${enc}`).sort();
  expect(kinds).toEqual(["css:br", "js:br", "wasm:br"]);
});
