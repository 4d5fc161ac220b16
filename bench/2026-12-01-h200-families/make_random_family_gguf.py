"""Write a random-weight GGUF of a model family's real 7-8B shape, matrices as Q4_0 blocks,
without llama.cpp: the files both headroom and llama.cpp load for the family speed rows.

    python make_random_family_gguf.py SRC.gguf OUT.gguf --family mistral-7b|qwen3-8b|phi3-mini

Random scales and nibbles are as good as quantized weights for a speed benchmark. The
tokenizer metadata is copied from a real GGUF (SmolLM2's, vocabulary 49 152), so the
embedding and output matrices have 49 152 rows, not the family's (Mistral 32 768,
Qwen3 151 936): both engines read the same file. Norms are f32 ones.

Shapes (from the families' config.json):
  mistral-7b  Mistral-7B-v0.3: llama arch, hidden 4096, 32 layers, 32 heads / 8 KV heads
              of 128, FFN 14336, rope base 1e6 (llama.cpp's converter keeps no window)
  qwen3-8b    Qwen3-8B: qwen3 arch, hidden 4096, 36 layers, 32 heads / 8 KV heads of 128,
              FFN 12288, q/k norms, rope base 1e6
  phi3-mini   Phi-3.5-mini: phi3 arch, hidden 3072, 32 layers, 32 heads (MHA) of 96, FFN
              8192, q/k/v and gate/up fused as llama.cpp stores them, LongRoPE factors
              (random in 1..1.5 short, 1..30 long) with original context 4096

Needs numpy and llama.cpp's gguf-py (`peer/llama.cpp/gguf-py`, or GGUF_PY=path).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.environ.get("GGUF_PY", os.path.join(os.getcwd(), "peer", "llama.cpp", "gguf-py")))
import gguf  # noqa: E402

BLOCK = 32  # weights per Q4_0 block: an f16 scale and 16 bytes of nibbles
FAMILIES = {
    # arch, hidden, layers, heads, kv heads, head dim, ffn, rope base, eps, q/k norms
    "mistral-7b": ("llama", 4096, 32, 32, 8, 128, 14336, 1e6, 1e-5, False),
    "qwen3-8b": ("qwen3", 4096, 36, 32, 8, 128, 12288, 1e6, 1e-6, True),
    "phi3-mini": ("phi3", 3072, 32, 32, 32, 96, 8192, 1e4, 1e-5, False),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--family", choices=sorted(FAMILIES), required=True)
    a = ap.parse_args()
    arch, hidden, layers, heads, kv_heads, head_dim, ffn, base, eps, qk_norm = FAMILIES[a.family]

    r = gguf.GGUFReader(a.src)
    w = gguf.GGUFWriter(a.out, arch)
    adders = {
        gguf.GGUFValueType.ARRAY: w.add_array,
        gguf.GGUFValueType.STRING: w.add_string,
        gguf.GGUFValueType.UINT32: w.add_uint32,
        gguf.GGUFValueType.INT32: w.add_int32,
        gguf.GGUFValueType.BOOL: w.add_bool,
    }
    for name, field in r.fields.items():
        if name.startswith("tokenizer.") and field.types[0] in adders:
            adders[field.types[0]](name, field.contents())
    vocab = len(r.fields["tokenizer.ggml.tokens"].contents())
    # llama.cpp sets token attributes by model name, and for a name with "phi3" in it looks
    # up Phi-3's own special tokens, which SmolLM2's vocabulary lacks: keep it out
    w.add_name(f"random-{a.family}-q4_0".replace("phi3", "p3"))
    fused = arch == "phi3"
    w.add_context_length(131072 if fused else 32768)
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(base)
    w.add_layer_norm_rms_eps(eps)
    w.add_vocab_size(vocab)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0)
    if fused:
        w.add_uint32("phi3.rope.scaling.original_context_length", 4096)
        w.add_float32("phi3.rope.scaling.attn_factor", 1.19)
        w.add_uint32("phi3.attention.sliding_window", 0)

    rng = np.random.default_rng(1)
    # one pool of random blocks reused for every matrix: scales around 0.003 (weights of
    # about 0.01, as a trained 7B's), nibbles uniform
    pool_blocks = 1 << 22
    pool = np.empty((pool_blocks, 18), dtype=np.uint8)
    scales = (rng.uniform(0.002, 0.004, pool_blocks)).astype(np.float16)
    pool[:, :2] = scales.view(np.uint8).reshape(-1, 2)
    pool[:, 2:] = rng.integers(0, 256, (pool_blocks, 16), dtype=np.uint8)

    def mat(rows, cols):
        blocks = rows * cols // BLOCK
        reps = -(-blocks // pool_blocks)
        flat = np.tile(pool, (reps, 1))[:blocks] if reps > 1 else pool[:blocks]
        return np.ascontiguousarray(flat.reshape(rows, cols // BLOCK * 18))

    def add_q4_0(name, rows, cols):
        w.add_tensor(name, mat(rows, cols), raw_dtype=gguf.GGMLQuantizationType.Q4_0)

    ones = np.ones(hidden, dtype=np.float32)
    if fused:
        w.add_tensor("rope_factors_short.weight", rng.uniform(1.0, 1.5, head_dim // 2).astype(np.float32))
        w.add_tensor("rope_factors_long.weight", rng.uniform(1.0, 30.0, head_dim // 2).astype(np.float32))
    add_q4_0("token_embd.weight", vocab, hidden)
    for i in range(layers):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", ones)
        if fused:
            add_q4_0(p + "attn_qkv.weight", (heads + 2 * kv_heads) * head_dim, hidden)
        else:
            add_q4_0(p + "attn_q.weight", heads * head_dim, hidden)
            add_q4_0(p + "attn_k.weight", kv_heads * head_dim, hidden)
            add_q4_0(p + "attn_v.weight", kv_heads * head_dim, hidden)
        if qk_norm:
            w.add_tensor(p + "attn_q_norm.weight", np.ones(head_dim, dtype=np.float32))
            w.add_tensor(p + "attn_k_norm.weight", np.ones(head_dim, dtype=np.float32))
        add_q4_0(p + "attn_output.weight", hidden, heads * head_dim)
        w.add_tensor(p + "ffn_norm.weight", ones)
        if fused:
            add_q4_0(p + "ffn_up.weight", 2 * ffn, hidden)  # gate and up, fused
        else:
            add_q4_0(p + "ffn_gate.weight", ffn, hidden)
            add_q4_0(p + "ffn_up.weight", ffn, hidden)
        add_q4_0(p + "ffn_down.weight", hidden, ffn)
    w.add_tensor("output_norm.weight", ones)
    add_q4_0("output.weight", vocab, hidden)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=False)
    w.close()
    print("wrote", a.out)


if __name__ == "__main__":
    main()
