"""Write a random-weight Llama-shaped GGUF whose matrices are Q4_0 blocks, without llama.cpp.

Random scales and random nibbles are as good as quantized weights for a speed benchmark, and
writing them takes seconds where building llama-quantize takes minutes. The tokenizer
metadata is copied from a real GGUF (SmolLM2's); the norms are f32 ones.

    python make_random_q4_0_gguf.py SRC.gguf OUT.gguf [--kv-heads 8]

Needs numpy and llama.cpp's gguf-py (`peer/llama.cpp/gguf-py`, or GGUF_PY=path).
"""
import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("GGUF_PY", os.path.join(os.getcwd(), "peer", "llama.cpp", "gguf-py")))
import gguf  # noqa: E402

# n_embd, n_layer, n_head, n_ff, ctx: Llama-2-7B
N_EMBD, N_LAYER, N_HEAD, N_FF, CTX = 4096, 32, 32, 11008, 4096
BLOCK = 32  # weights per Q4_0 block: an f16 scale and 16 bytes of nibbles


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--kv-heads", type=int, default=N_HEAD)
    a = ap.parse_args()
    head_dim = N_EMBD // N_HEAD

    r = gguf.GGUFReader(a.src)
    w = gguf.GGUFWriter(a.out, "llama")
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
    w.add_name(f"random-llama2-7b-kv{a.kv_heads}-q4_0")
    w.add_context_length(CTX)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(a.kv_heads)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(vocab)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0)

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

    ones = np.ones(N_EMBD, dtype=np.float32)
    add_q4_0("token_embd.weight", vocab, N_EMBD)
    for i in range(N_LAYER):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", ones)
        add_q4_0(p + "attn_q.weight", N_EMBD, N_EMBD)
        add_q4_0(p + "attn_k.weight", a.kv_heads * head_dim, N_EMBD)
        add_q4_0(p + "attn_v.weight", a.kv_heads * head_dim, N_EMBD)
        add_q4_0(p + "attn_output.weight", N_EMBD, N_EMBD)
        w.add_tensor(p + "ffn_norm.weight", ones)
        add_q4_0(p + "ffn_gate.weight", N_FF, N_EMBD)
        add_q4_0(p + "ffn_up.weight", N_FF, N_EMBD)
        add_q4_0(p + "ffn_down.weight", N_EMBD, N_FF)
    w.add_tensor("output_norm.weight", ones)
    add_q4_0("output.weight", vocab, N_EMBD)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=False)
    w.close()
    print("wrote", a.out)


if __name__ == "__main__":
    main()
