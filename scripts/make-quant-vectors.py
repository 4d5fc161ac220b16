#!/usr/bin/env python3
"""Writes the test vectors that src/model/quant.rs and src/model/gguf_model.rs check against.

It uses python's `gguf` package (llama.cpp's gguf-py, `pip install gguf numpy`) as the
independent implementation:

1. tests/data/quant/{TYPE}.q.bin + {TYPE}.f32.bin + manifest.json: two random blocks
   of every type headroom dequantizes (random bytes, so every bit position is used, with
   the f16 scale fields overwritten by sane values), and what
   `gguf.quants.dequantize` makes of them.

2. tests/data/smollm2_attn_qk.json (only if the SmolLM2 GGUF is present): a few
   dequantized values of blk.0.attn_q.weight / attn_k.weight after undoing llama.cpp's
   q/k row permutation, done here with numpy reshapes (the inverse of the converter's
   `reshape(n_head, 2, head_dim // 2, n_in).swapaxes(1, 2)`), to cross-check the Rust
   index arithmetic. Rows are HF rows (rotate-half order).

3. tests/data/smollm2_logits.json (only if the SmolLM2 GGUF is present): logits of a
   plain numpy float64 forward pass (HF modeling_llama semantics: rotate-half RoPE on the
   un-permuted q/k, GQA, SiLU MLP, tied lm_head) over the tokens of "The capital of
   France is", for checking src/model/cpu_reference.rs on the real model.

Run from the repository root:  python3 scripts/make-quant-vectors.py
(the model is looked for where scripts/fetch-model.sh puts it). Every file written records
its provenance: the command, the date, the versions, and the model's sha256.
"""

import datetime
import hashlib
import json
import os
import platform
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "quant")
# where scripts/fetch-model.sh puts the model (and headroom's default_model_path looks)
MODEL = os.environ.get("HEADROOM_MODEL") or os.path.join(
    os.environ.get("HEADROOM_MODEL_DIR")
    or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                    "headroom", "models"),
    "SmolLM2-135M-Instruct.Q4_1.gguf")

# byte offsets of the f16 scale fields inside one block
F16_FIELDS = {
    T.Q4_0: [0],
    T.Q4_1: [0, 2],
    T.Q5_0: [0],
    T.Q5_1: [0, 2],
    T.Q8_0: [0],
    T.Q4_K: [0, 2],
    T.Q5_K: [0, 2],
    T.Q6_K: [208],
}


def quant_vectors(rng):
    os.makedirs(OUT, exist_ok=True)
    manifest = []
    # plain float types: from random floats
    for ty, n in [(T.F32, 16), (T.F16, 16), (T.BF16, 16)]:
        x = (rng.standard_normal(n) * 3).astype(np.float32)
        q = np.ascontiguousarray(quantize(x, ty)).view(np.uint8)
        write(ty, n, q, rng, manifest)
    # block types: two random blocks each
    for ty, fields in F16_FIELDS.items():
        block, size = gguf.GGML_QUANT_SIZES[ty]
        q = rng.integers(0, 256, size=(2, size), dtype=np.uint8)
        for b in range(2):
            for off in fields:
                sign = -1.0 if rng.random() < 0.3 else 1.0
                v = np.float16(sign * rng.uniform(0.001, 0.1))
                q[b, off:off + 2] = np.frombuffer(v.tobytes(), dtype=np.uint8)
        write(ty, 2 * block, q.reshape(-1), rng, manifest)
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump({"generator": "scripts/make-quant-vectors.py", "gguf_py": gguf_version(),
                   "provenance": provenance(), "types": manifest}, f, indent=1)
        f.write("\n")


def write(ty, n, q, rng, manifest):
    y = dequantize(q, ty).astype(np.float32).reshape(-1)
    assert y.size == n, (ty, y.size, n)
    q.astype(np.uint8).tofile(os.path.join(OUT, f"{ty.name}.q.bin"))
    y.astype("<f4").tofile(os.path.join(OUT, f"{ty.name}.f32.bin"))
    manifest.append({"type": ty.name, "id": int(ty), "n_elements": n})


def provenance(model=False):
    """What made a file: command, date, versions, and (for model-derived files) the model."""
    p = {
        "command": "python3 scripts/make-quant-vectors.py",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "gguf_py": gguf_version(),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    if model:
        h = hashlib.sha256()
        with open(MODEL, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        p["model"] = os.path.basename(MODEL)
        p["model_sha256"] = h.hexdigest()
    return p


def gguf_version():
    try:
        from importlib.metadata import version
        return version("gguf")
    except Exception:
        return "unknown"


def unpermute(w, n_head):
    """Inverse of llama.cpp's convert_hf_to_gguf `permute` on rows of w [n_head*hd, n_in]."""
    rows, n_in = w.shape
    return w.reshape(n_head, rows // n_head // 2, 2, n_in).swapaxes(1, 2).reshape(rows, n_in)


def smollm2_vectors():
    if not os.path.exists(MODEL):
        print(f"note: {MODEL} not found, skipping the SmolLM2 cross-check vectors")
        return
    r = gguf.GGUFReader(MODEL)
    n_head = int(r.fields["llama.attention.head_count"].parts[-1][0])
    n_kv = int(r.fields["llama.attention.head_count_kv"].parts[-1][0])
    out = {"generator": "scripts/make-quant-vectors.py", "model": os.path.basename(MODEL),
           "provenance": provenance(model=True)}
    rows = [0, 1, 2, 31, 32, 33, 63, 64, 100, 191]
    cols = [0, 1, 2, 3, 100, 575]
    for t in r.tensors:
        if t.name not in ("blk.0.attn_q.weight", "blk.0.attn_k.weight"):
            continue
        w = dequantize(t.data, t.tensor_type)  # numpy shape [out, in], GGUF row order
        heads = n_head if "attn_q" in t.name else n_kv
        hf = unpermute(np.asarray(w, dtype=np.float32), heads)
        out[t.name] = {
            "shape": list(hf.shape),
            "rows": rows,
            "cols": cols,
            "values": [[float(hf[i, j]) for j in cols] for i in rows],
            "gguf_row_order_values": [[float(w[i, j]) for j in cols] for i in rows],
        }
    path = os.path.join(ROOT, "tests", "data", "smollm2_attn_qk.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("wrote", path)


def field(r, key):
    return r.fields[key].parts[-1][0]


def smollm2_logits():
    if not os.path.exists(MODEL):
        return
    r = gguf.GGUFReader(MODEL)
    n_layer = int(field(r, "llama.block_count"))
    n_head = int(field(r, "llama.attention.head_count"))
    n_kv = int(field(r, "llama.attention.head_count_kv"))
    eps = float(field(r, "llama.attention.layer_norm_rms_epsilon"))
    theta = float(field(r, "llama.rope.freq_base"))
    f = r.fields["tokenizer.ggml.tokens"]
    vocab = {bytes(f.parts[i]).decode(): n for n, i in enumerate(f.data)}
    words = ["The", "\u0120capital", "\u0120of", "\u0120France", "\u0120is"]
    tokens = [vocab[w] for w in words]
    W = {}
    for t in r.tensors:
        w = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float64)
        if t.name.endswith("attn_q.weight"):
            w = unpermute(w, n_head)
        elif t.name.endswith("attn_k.weight"):
            w = unpermute(w, n_kv)
        W[t.name] = w
    hidden = W["token_embd.weight"].shape[1]
    hd = hidden // n_head
    inv_freq = 1.0 / (theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd))

    def rmsnorm(x, w):
        return x / np.sqrt(np.mean(x * x) + eps) * w

    def rope(x, pos):  # x [heads, hd], rotate-half
        ang = pos * inv_freq
        cos = np.concatenate([np.cos(ang), np.cos(ang)])
        sin = np.concatenate([np.sin(ang), np.sin(ang)])
        rot = np.concatenate([-x[:, hd // 2:], x[:, :hd // 2]], axis=1)
        return x * cos + rot * sin

    ks = [[] for _ in range(n_layer)]
    vs = [[] for _ in range(n_layer)]
    out = []
    for pos, tok in enumerate(tokens):
        x = W["token_embd.weight"][tok].copy()
        for l in range(n_layer):
            b = f"blk.{l}."
            xb = rmsnorm(x, W[b + "attn_norm.weight"])
            q = rope((W[b + "attn_q.weight"] @ xb).reshape(n_head, hd), pos)
            k = rope((W[b + "attn_k.weight"] @ xb).reshape(n_kv, hd), pos)
            v = (W[b + "attn_v.weight"] @ xb).reshape(n_kv, hd)
            ks[l].append(k)
            vs[l].append(v)
            K = np.stack(ks[l])  # [T, kv, hd]
            V = np.stack(vs[l])
            att = np.zeros((n_head, hd))
            for h in range(n_head):
                g = h // (n_head // n_kv)
                s = K[:, g, :] @ q[h] / np.sqrt(hd)
                p = np.exp(s - s.max())
                p /= p.sum()
                att[h] = p @ V[:, g, :]
            x = x + W[b + "attn_output.weight"] @ att.reshape(-1)
            xb = rmsnorm(x, W[b + "ffn_norm.weight"])
            gt = W[b + "ffn_gate.weight"] @ xb
            up = W[b + "ffn_up.weight"] @ xb
            x = x + W[b + "ffn_down.weight"] @ (gt / (1 + np.exp(-gt)) * up)
        x = rmsnorm(x, W["output_norm.weight"])
        logits = W["token_embd.weight"] @ x
        top = np.argsort(-logits)[:5]
        probe = [0, 1, 2, 100, 7042, 49151]
        out.append({"pos": pos, "token": int(tok),
                    "top5_ids": [int(i) for i in top],
                    "top5_logits": [float(logits[i]) for i in top],
                    "probe_ids": probe,
                    "probe_logits": [float(logits[i]) for i in probe]})
    path = os.path.join(ROOT, "tests", "data", "smollm2_logits.json")
    with open(path, "w") as fh:
        json.dump({"generator": "scripts/make-quant-vectors.py", "model": os.path.basename(MODEL),
                   "provenance": provenance(model=True),
                   "text": "The capital of France is", "tokens": tokens, "steps": out}, fh, indent=1)
        fh.write("\n")
    print("wrote", path, "next token after the text:", out[-1]["top5_ids"][0])


if __name__ == "__main__":
    quant_vectors(np.random.default_rng(20240601))
    smollm2_vectors()
    smollm2_logits()
    print("wrote", OUT)
    sys.exit(0)
