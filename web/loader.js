// The page's loader: checks for WebGPU, starts the viewer (wasm), and streams model files
// into it: picked or dropped files (kept in the origin-private file system) and URLs (kept
// in the Cache API), so a reload loads from the browser's storage instead of fetching again.
//
// `window.headroom` is the page's API (the browser test uses it):
//   headroom.ready                      a promise: the viewer is running
//   headroom.loadUrl(url)               loads a GGUF from a URL (or the cache)
//   headroom.generate(prompt, n, chat)  greedy, in the Generate tab; resolves with
//                                       {prompt_ids, ids, text, finish, decode_tokens_per_s, ...}
// `document.body.dataset.state` is "no-webgpu", "starting", "idle", "loading", "ready" or
// "error"; `document.body.dataset.stored` is "yes" once the loaded file is in the browser's
// storage (it is copied there while it loads and may finish after "ready").

import init, * as wasm from "./headroom.js";

const CACHE = "headroom-models";
const LAST = "headroom.last-model";
const $ = (id) => document.getElementById(id);

function setState(state, text) {
  document.body.dataset.state = state;
  if (text !== undefined) $("status").textContent = text;
}

function progress(done, total) {
  const p = $("progress");
  p.hidden = total === 0;
  p.max = total || 1;
  p.value = done;
}

function mib(n) {
  return `${(n / 1048576).toFixed(1)} MiB`;
}

// --- WebGPU: what the adapter offers, and a plain message when there is none
async function probeWebGpu() {
  if (!("gpu" in navigator)) {
    return { error: "navigator.gpu is missing: this browser does not expose WebGPU (or it is switched off)." };
  }
  let adapter;
  try {
    adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  } catch (e) {
    return { error: `requestAdapter failed: ${e}` };
  }
  if (!adapter) {
    return { error: "navigator.gpu.requestAdapter() returned no adapter: WebGPU is present but no GPU is available to it (blocklisted driver, or GPU access switched off)." };
  }
  const info = adapter.info || {};
  const f = adapter.features;
  const text =
    `adapter: ${info.vendor || "?"} ${info.architecture || ""} ${info.description || ""} · ` +
    `subgroups: ${f.has("subgroups") ? "yes" : "no"} · ` +
    `shader-f16: ${f.has("shader-f16") ? "yes" : "no (not needed: f16 storage is unpacked to f32)"} · ` +
    `timestamps: ${f.has("timestamp-query") ? "yes" : "no (wall clock)"} · ` +
    `max storage binding: ${mib(adapter.limits.maxStorageBufferBindingSize)} (the page asks for all of it)`;
  return { text };
}

function noWebGpu(why) {
  $("no-webgpu-why").textContent = why;
  $("no-webgpu").hidden = false;
  $("headroom").hidden = true;
  $("bar").hidden = true;
  setState("no-webgpu", why);
}

// --- moving bytes into the engine
let busy = false;

// Streams `stream` (`size` bytes, or unknown: 0) into wasm memory, then uploads it.
async function streamIn(name, stream, size, from) {
  if (busy) throw new Error("a model is already loading");
  busy = true;
  delete document.body.dataset.stored;
  try {
    setState("loading", `reading ${name} (${from})…`);
    const reader = stream.getReader();
    let done = 0;
    let pending = [];
    if (size > 0) wasm.begin_model(name, size);
    for (;;) {
      const { value, done: end } = await reader.read();
      if (end) break;
      if (size > 0) wasm.push_model_bytes(value);
      else pending.push(value);
      done += value.length;
      progress(done, size);
      $("status").textContent = `reading ${name} (${from}): ${mib(done)}${size ? " of " + mib(size) : ""}`;
    }
    if (size === 0) {
      wasm.begin_model(name, done);
      for (const c of pending) wasm.push_model_bytes(c);
      pending = null;
    }
    progress(0, 0);
    setState("loading", `uploading ${name} to the GPU…`);
    const summary = await wasm.load_model();
    setState("ready", `${name} (${from}) · ${summary}`);
  } catch (e) {
    progress(0, 0);
    setState("error", `${name}: ${e.message || e}`);
    throw e;
  } finally {
    busy = false;
  }
}

async function opfsRoot() {
  if (!navigator.storage || !navigator.storage.getDirectory) return null;
  try {
    return await navigator.storage.getDirectory();
  } catch {
    return null;
  }
}

// A picked or dropped file: loaded directly, and copied into the origin-private file
// system (only the latest one is kept) for the next visit.
async function loadFile(file) {
  const keep = (async () => {
    const root = await opfsRoot();
    if (!root) return;
    for await (const name of root.keys()) {
      if (name !== file.name) await root.removeEntry(name).catch(() => {});
    }
    const w = await (await root.getFileHandle(file.name, { create: true })).createWritable();
    await w.write(file);
    await w.close();
    localStorage.setItem(LAST, JSON.stringify({ kind: "file", name: file.name }));
    return true;
  })().catch((e) => console.warn("not kept in browser storage:", e));
  await streamIn(file.name, file.stream(), file.size, "local file");
  if (await keep) document.body.dataset.stored = "yes";
  showCached();
}

// A URL: from the Cache API when it was fetched before, else fetched and cached while it
// streams in.
async function loadUrl(url) {
  const abs = new URL(url, location.href).href;
  const name = decodeURIComponent(abs.split("/").pop().split("?")[0]) || abs;
  const cache = "caches" in window ? await caches.open(CACHE).catch(() => null) : null;
  let resp = cache ? await cache.match(abs) : undefined;
  let from = "browser cache";
  let storing = Promise.resolve();
  if (!resp) {
    from = "network";
    resp = await fetch(abs);
    if (!resp.ok) {
      const e = new Error(`${abs}: HTTP ${resp.status} ${resp.statusText}`);
      setState("error", e.message);
      throw e;
    }
    if (cache) {
      // both branches of the tee are read at once, so neither buffers the whole file
      storing = cache.put(abs, resp.clone()).then(
        () => true,
        (e) => console.warn("not cached:", e),
      );
    }
  } else {
    storing = Promise.resolve(true);
  }
  const size = Number(resp.headers.get("content-length") || 0);
  await streamIn(name, resp.body, size, from);
  if (await storing) {
    localStorage.setItem(LAST, JSON.stringify({ kind: "url", url: abs }));
    document.body.dataset.stored = "yes";
  }
  showCached();
}

async function loadLast() {
  const last = JSON.parse(localStorage.getItem(LAST) || "null");
  if (!last) return false;
  if (last.kind === "url") {
    const cache = "caches" in window ? await caches.open(CACHE).catch(() => null) : null;
    if (cache && (await cache.match(last.url))) {
      await loadUrl(last.url);
      return true;
    }
  } else if (last.kind === "file") {
    const root = await opfsRoot();
    const h = root && (await root.getFileHandle(last.name).catch(() => null));
    if (h) {
      const file = await h.getFile();
      await streamIn(file.name, file.stream(), file.size, "browser storage");
      document.body.dataset.stored = "yes";
      return true;
    }
  }
  return false;
}

async function showCached() {
  const last = JSON.parse(localStorage.getItem(LAST) || "null");
  const el = $("cached");
  el.textContent = "";
  if (!last) return;
  const forget = document.createElement("button");
  forget.textContent = "forget the stored model";
  forget.onclick = async () => {
    localStorage.removeItem(LAST);
    if ("caches" in window) await caches.delete(CACHE);
    const root = await opfsRoot();
    if (root) for await (const name of root.keys()) await root.removeEntry(name).catch(() => {});
    showCached();
  };
  el.append(forget);
}

function wireInputs() {
  $("file").addEventListener("change", (e) => {
    const f = e.target.files[0];
    if (f) loadFile(f).catch(() => {});
  });
  $("url-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const u = $("url").value.trim();
    if (u) loadUrl(u).catch(() => {});
  });
  const drop = $("drop");
  window.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.hidden = false;
  });
  drop.addEventListener("dragleave", () => (drop.hidden = true));
  window.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.hidden = true;
    const f = e.dataTransfer.files[0];
    if (f) loadFile(f).catch(() => {});
  });
}

async function main() {
  setState("starting", "checking WebGPU…");
  const gpu = await probeWebGpu();
  if (gpu.error) {
    noWebGpu(gpu.error);
    return;
  }
  $("gpu").textContent = gpu.text;
  setState("starting", "loading the engine (wasm)…");
  await init();
  await wasm.start("headroom");
  wireInputs();
  if (navigator.storage && navigator.storage.persist) navigator.storage.persist().catch(() => {});
  setState("idle", "open a GGUF file, drop one here, or give a URL");
  showCached();
  const asked = new URLSearchParams(location.search).get("model");
  if (asked) await loadUrl(asked).catch(() => {});
  else await loadLast().catch(() => {});
}

const ready = main().catch((e) => {
  setState("error", `${e.message || e}`);
  throw e;
});

window.headroom = {
  ready,
  loadUrl,
  async generate(prompt, maxTokens = 16, chat = false) {
    return JSON.parse(await wasm.generate(prompt, maxTokens, chat));
  },
};
