// Opens the site in headless Chromium (WebGPU on; SwiftShader where there is no GPU),
// waits for the model given in the URL to load, generates greedily through the page's API
// and saves a screenshot. Prints one JSON line: {state, status, gpu, result, logs}.
//
//   node web/tests/browser-test.mjs URL SCREENSHOT.png PROMPT MAX_TOKENS
import { chromium } from "playwright-core";

const [url, shot, prompt, maxTokens] = process.argv.slice(2);
const timeout = Number(process.env.HEADROOM_BROWSER_TIMEOUT_S || 900) * 1000;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--enable-unsafe-webgpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const logs = [];
let out = {};
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.on("console", (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => logs.push(`pageerror: ${e}`));
  await page.goto(url);
  await page.waitForFunction(
    () => ["ready", "error", "no-webgpu"].includes(document.body.dataset.state),
    null,
    { timeout, polling: 250 },
  );
  const read = () =>
    page.evaluate(() => ({
      state: document.body.dataset.state,
      status: document.getElementById("status").textContent,
      gpu: document.getElementById("gpu").textContent,
    }));
  out = await read();
  if (out.state === "ready") {
    out.result = await page.evaluate(
      ([p, n]) => window.headroom.generate(p, n, false),
      [prompt, Number(maxTokens)],
    );
    // let the Generate tab paint the finished text
    await page.waitForTimeout(1000);
  }
  await page.screenshot({ path: shot });
} catch (e) {
  out.error = `${e}`;
} finally {
  out.logs = logs.slice(-40);
  console.log(JSON.stringify(out));
  await browser.close();
}
