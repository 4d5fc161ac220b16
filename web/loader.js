// The page's loader: checks for WebGPU, starts the viewer (wasm), and streams model files
// into it: picked or dropped files (kept in the origin-private file system) and URLs (kept
// in the Cache API), so a reload loads from the browser's storage instead of fetching again.
//
// `window.headroom` is the page's API (the browser test uses it):
//   headroom.ready                      a promise: the viewer is running
//   headroom.loadUrl(url)               loads a GGUF from a URL (or the cache)
//   headroom.loadFiles([File])          a GGUF, or a Hugging Face model's files
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

// Streams every item ({name, size (0: unknown), stream}) into wasm memory, then uploads
// the model they make: one GGUF, or a Hugging Face model's files.
async function streamIn(items, from) {
  if (busy) throw new Error("a model is already loading");
  busy = true;
  delete document.body.dataset.stored;
  const label = items.length === 1 ? items[0].name : `${items.length} files`;
  try {
    wasm.clear_model_files();
    const total = items.reduce((n, it) => n + it.size, 0);
    let done = 0;
    for (const it of items) {
      setState("loading", `reading ${it.name} (${from})…`);
      const reader = it.stream.getReader();
      let pending = [];
      let got = 0;
      if (it.size > 0) wasm.begin_model(it.name, it.size);
      for (;;) {
        const { value, done: end } = await reader.read();
        if (end) break;
        if (it.size > 0) wasm.push_model_bytes(value);
        else pending.push(value);
        got += value.length;
        done += value.length;
        progress(done, total);
        $("status").textContent = `reading ${it.name} (${from}): ${mib(got)}${it.size ? " of " + mib(it.size) : ""}`;
      }
      if (it.size === 0) {
        wasm.begin_model(it.name, got);
        for (const c of pending) wasm.push_model_bytes(c);
        pending = null;
      }
    }
    progress(0, 0);
    setState("loading", `uploading ${label} to the GPU…`);
    const summary = await wasm.load_model();
    setState("ready", `${label} (${from}) · ${summary}`);
  } catch (e) {
    progress(0, 0);
    setState("error", `${label}: ${e.message || e}`);
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

const fileItems = (files) => files.map((f) => ({ name: f.name, size: f.size, stream: f.stream() }));

// Picked or dropped files (a GGUF, or a Hugging Face model's config.json, tokenizer.json
// and safetensors): loaded directly, and copied into the origin-private file system (only
// the latest model is kept) for the next visit.
async function loadFiles(files) {
  const names = files.map((f) => f.name);
  const keep = (async () => {
    const root = await opfsRoot();
    if (!root) return false;
    for await (const name of root.keys()) {
      if (!names.includes(name)) await root.removeEntry(name).catch(() => {});
    }
    for (const f of files) {
      const w = await (await root.getFileHandle(f.name, { create: true })).createWritable();
      await w.write(f);
      await w.close();
    }
    localStorage.setItem(LAST, JSON.stringify({ kind: "files", names }));
    return true;
  })().catch((e) => console.warn("not kept in browser storage:", e));
  await streamIn(fileItems(files), files.length === 1 ? "local file" : "local files");
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
  let storing = Promise.resolve(true);
  if (!resp) {
    from = "network";
    resp = await fetch(abs);
    if (!resp.ok) {
      const e = new Error(`${abs}: HTTP ${resp.status} ${resp.statusText}`);
      setState("error", e.message);
      throw e;
    }
    storing = cache
      ? // both branches of the tee are read at once, so neither buffers the whole file
        cache.put(abs, resp.clone()).then(
          () => true,
          (e) => console.warn("not cached:", e),
        )
      : Promise.resolve(false);
  }
  const size = Number(resp.headers.get("content-length") || 0);
  await streamIn([{ name, size, stream: resp.body }], from);
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
  } else if (last.kind === "files") {
    const root = await opfsRoot();
    if (!root) return false;
    const files = [];
    for (const name of last.names) {
      const h = await root.getFileHandle(name).catch(() => null);
      if (!h) return false;
      files.push(await h.getFile());
    }
    await streamIn(fileItems(files), "browser storage");
    document.body.dataset.stored = "yes";
    return true;
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
    const files = [...e.target.files];
    if (files.length) loadFiles(files).catch(() => {});
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
    const files = [...e.dataTransfer.files];
    if (files.length) loadFiles(files).catch(() => {});
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
  setState("idle", "open a GGUF file (or a Hugging Face model's config.json, tokenizer.json and safetensors), drop it here, or give a URL");
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
  loadFiles,
  async generate(prompt, maxTokens = 16, chat = false) {
    return JSON.parse(await wasm.generate(prompt, maxTokens, chat));
  },
};
