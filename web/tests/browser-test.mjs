// Opens the site in headless Chromium (WebGPU on; SwiftShader where there is no GPU),
// waits for the model given in the URL to load, generates greedily through the page's API
// and saves a screenshot; then opens the page again without the URL and waits for it to
// load the model from the browser's storage; last, opens it in a Chromium without WebGPU,
// which must say so. Prints one JSON line:
// {state, status, gpu, result, reload, without_webgpu, logs}.
//
//   node web/tests/browser-test.mjs URL SCREENSHOT.png PROMPT MAX_TOKENS [HF_FILE...]
//
// With HF_FILEs (a Hugging Face model's files), they are then picked in the file input and
// the same prompt is generated again from them: {hf_status, hf_result}. With
// HEADROOM_COPY_PROMPT set, that prompt is also generated after PROMPT (one that prompt
// lookup drafts from): {copy_result}.
import { chromium } from "playwright-core";

const [url, shot, prompt, maxTokens, ...hfFiles] = process.argv.slice(2);
const timeout = Number(process.env.HEADROOM_BROWSER_TIMEOUT_S || 900) * 1000;
const flags = [
  "--no-sandbox",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const launch = (extra) =>
  chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [...flags, ...extra],
  });
const browser = await launch(["--enable-unsafe-webgpu"]);
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
    if (process.env.HEADROOM_COPY_PROMPT) {
      out.copy_result = await page.evaluate(
        ([p, n]) => window.headroom.generate(p, n, false),
        [process.env.HEADROOM_COPY_PROMPT, Number(maxTokens)],
      );
    }
    // let the Generate tab paint the finished text
    await page.waitForTimeout(1000);
  }
  await page.screenshot({ path: shot });
  if (out.state === "ready") {
    // a later visit: the page loads the last model from its storage, not the network
    await page.waitForFunction(() => document.body.dataset.stored === "yes", null, { timeout });
    await page.goto(new URL("/", url).href);
    await page.waitForFunction(
      () => ["ready", "error"].includes(document.body.dataset.state),
      null,
      { timeout, polling: 250 },
    );
    out.reload = await read();
    if (hfFiles.length) {
      await page.setInputFiles("#file", hfFiles);
      await page.waitForFunction(
        () => ["ready", "error"].includes(document.body.dataset.state) &&
          document.getElementById("status").textContent.includes("local files"),
        null,
        { timeout, polling: 250 },
      );
      const hf = await read();
      out.hf_status = hf.status;
      if (hf.state === "ready") {
        out.hf_result = await page.evaluate(
          ([p, n]) => window.headroom.generate(p, n, false),
          [prompt, Number(maxTokens)],
        );
      }
    }
  }
} catch (e) {
  out.error = `${e}`;
} finally {
  await browser.close();
}
try {
  const plain = await launch(["--disable-features=WebGPU"]);
  const page = await plain.newPage();
  await page.goto(new URL("/", url).href);
  await page.waitForFunction(() => document.body.dataset.state !== "starting", null, { timeout: 60000 });
  out.without_webgpu = await page.evaluate(() => ({
    state: document.body.dataset.state,
    message: document.getElementById("no-webgpu").hidden ? null : document.getElementById("no-webgpu").innerText,
  }));
  await plain.close();
} catch (e) {
  out.error = `${out.error || ""} without WebGPU: ${e}`;
}
out.logs = logs.slice(-40);
console.log(JSON.stringify(out));
