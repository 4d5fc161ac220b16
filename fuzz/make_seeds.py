#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/seeds/<target>/.

Seeds come from the real files, cut down to fuzzing size:
- gguf: the default model's (SmolLM2-135M-Instruct Q4_1) metadata with its vocabulary cut
  to its first tokens and the merges among them, as a tokenizer-only file, as a whole tiny
  llama model (F32, Q8_0, Q4_1 tensors) and a tiny qwen2 one (biases, a SentencePiece
  vocabulary with scores), plus the real file's first 4 KiB;
- tokenizer_json: a BPE tokenizer.json made from the same cut vocabulary, and small
  hand-written Unigram, WordPiece, WordLevel and SentencePiece-style ones;
- safetensors: tiny safetensors files (F32, F16, BF16, I8), HF config.json files of llama,
  mistral and qwen2 shapes, a shard index;
- chat_template: the model's template, well-known template shapes, hostile ones;
- openai_request: request bodies of both endpoints, good and bad.

Usage: python3 fuzz/make_seeds.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]
(default: the path scripts/fetch-model.sh prints). Deterministic; needs only the stdlib.
"""
import json
import os
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "seeds")


def out(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- GGUF reading/writing
T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64 = range(13)
SCALAR = {T_U8: "<B", T_I8: "<b", T_U16: "<H", T_I16: "<h", T_U32: "<I", T_I32: "<i",
          T_F32: "<f", T_BOOL: "<?", T_U64: "<Q", T_I64: "<q", T_F64: "<d"}


def read_metadata(path):
    with open(path, "rb") as f:
        buf = f.read(8 << 20)
    pos = 24
    _, _, kv_count = struct.unpack_from("<IQQ", buf, 4)

    def string():
        nonlocal pos
        (n,) = struct.unpack_from("<Q", buf, pos)
        pos += 8
        s = buf[pos:pos + n].decode("utf-8", "replace")
        pos += n
        return s

    def value(t):
        nonlocal pos
        if t in SCALAR:
            (v,) = struct.unpack_from(SCALAR[t], buf, pos)
            pos += struct.calcsize(SCALAR[t])
            return v
        if t == T_STR:
            return string()
        et, n = struct.unpack_from("<IQ", buf, pos)
        pos += 12
        return (et, [value(et) for _ in range(n)])

    meta = []
    for _ in range(kv_count):
        k = string()
        (t,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        meta.append((k, t, value(t)))
    return meta, buf[:4096]


def put_str(b, s):
    s = s.encode()
    b += struct.pack("<Q", len(s)) + s


def put_value(b, t, v):
    if t in SCALAR:
        b += struct.pack(SCALAR[t], v)
    elif t == T_STR:
        put_str(b, v)
    else:
        et, items = v
        b += struct.pack("<IQ", et, len(items))
        for it in items:
            put_value(b, et, it)


def gguf(meta, tensors=(), align=32):
    """meta: [(key, type, value)]; tensors: [(name, dims innermost first, ggml type, bytes)]"""
    b = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(meta)))
    for k, t, v in meta:
        put_str(b, k)
        b += struct.pack("<I", t)
        put_value(b, t, v)
    off = 0
    offsets = []
    for name, dims, ty, data in tensors:
        put_str(b, name)
        b += struct.pack("<I", len(dims))
        for d in dims:
            b += struct.pack("<Q", d)
        b += struct.pack("<IQ", ty, off)
        offsets.append(off)
        off = -(-(off + len(data)) // align) * align
    start = -(-len(b) // align) * align
    b += bytes(start - len(b))
    for (_, _, _, data), o in zip(tensors, offsets):
        b += bytes(start + o - len(b))
        b += data
    return bytes(b)


def half(x):
    return struct.pack("<e", x)


def f32s(xs):
    return b"".join(struct.pack("<f", x) for x in xs)


def q8_0(xs):
    """ggml Q8_0: per 32 values an f16 scale and 32 int8."""
    out = b""
    for i in range(0, len(xs), 32):
        blk = xs[i:i + 32]
        amax = max(abs(x) for x in blk) or 1.0
        d = amax / 127
        out += half(d) + bytes((round(x / d) & 0xFF) for x in blk)
    return out


def q4_1(xs):
    """ggml Q4_1: per 32 values f16 scale and min, then 16 bytes of nibbles."""
    out = b""
    for i in range(0, len(xs), 32):
        blk = xs[i:i + 32]
        lo, hi = min(blk), max(blk)
        d = (hi - lo) / 15 or 1.0
        q = [min(15, max(0, round((x - lo) / d))) for x in blk]
        out += half(d) + half(lo) + bytes(q[j] | (q[j + 16] << 4) for j in range(16))
    return out


F32, Q4_1, Q8_0 = 0, 3, 8


def cut_vocab(meta, n_tokens):
    """The model's first n tokens, their types, and the merges among them."""
    m = {k: v for k, _, v in meta}
    tokens = m["tokenizer.ggml.tokens"][1][:n_tokens]
    types = m["tokenizer.ggml.token_type"][1][:n_tokens]
    have = set(tokens)
    merges = []
    for mg in m["tokenizer.ggml.merges"][1]:
        left, _, right = mg.partition(" ")
        if left in have and right in have and left + right in have:
            merges.append(mg)
    return tokens, types, merges


def vocab_meta(tokens, types, merges, meta):
    keep = ["tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.bos_token_id",
            "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
            "tokenizer.ggml.padding_token_id", "tokenizer.ggml.add_space_prefix",
            "tokenizer.ggml.add_bos_token", "tokenizer.chat_template"]
    out = [(k, t, v) for k, t, v in meta if k in keep]
    out += [("tokenizer.ggml.tokens", T_ARR, (T_STR, tokens)),
            ("tokenizer.ggml.token_type", T_ARR, (T_I32, types)),
            ("tokenizer.ggml.merges", T_ARR, (T_STR, merges))]
    return out


def arch_meta(arch, hidden, heads, kv, ff, layers, ctx):
    return [("general.architecture", T_STR, arch),
            (f"{arch}.block_count", T_U32, layers),
            (f"{arch}.context_length", T_U32, ctx),
            (f"{arch}.embedding_length", T_U32, hidden),
            (f"{arch}.feed_forward_length", T_U32, ff),
            (f"{arch}.attention.head_count", T_U32, heads),
            (f"{arch}.attention.head_count_kv", T_U32, kv),
            (f"{arch}.rope.freq_base", T_F32, 10000.0),
            (f"{arch}.attention.layer_norm_rms_epsilon", T_F32, 1e-5)]


def model_tensors(vocab, hidden, heads, kv, ff, layers, bias, types):
    hd = hidden // heads
    seq = [0.01 * ((i * 37) % 101 - 50) for i in range(1 << 16)]

    def t(name, dims, ty):
        n = 1
        for d in dims:
            n *= d
        xs = seq[:n]
        data = {F32: f32s, Q8_0: q8_0, Q4_1: q4_1}[ty](xs)
        return (name, dims, ty, data)

    mat, emb = types
    ts = [t("token_embd.weight", [hidden, vocab], emb), t("output_norm.weight", [hidden], F32)]
    for i in range(layers):
        p = f"blk.{i}."
        ts += [t(p + "attn_norm.weight", [hidden], F32),
               t(p + "attn_q.weight", [hidden, heads * hd], mat),
               t(p + "attn_k.weight", [hidden, kv * hd], mat),
               t(p + "attn_v.weight", [hidden, kv * hd], mat),
               t(p + "attn_output.weight", [heads * hd, hidden], mat),
               t(p + "ffn_norm.weight", [hidden], F32),
               t(p + "ffn_gate.weight", [hidden, ff], mat),
               t(p + "ffn_up.weight", [hidden, ff], mat),
               t(p + "ffn_down.weight", [ff, hidden], mat)]
        if bias:
            ts += [t(p + "attn_q.bias", [heads * hd], F32), t(p + "attn_k.bias", [kv * hd], F32),
                   t(p + "attn_v.bias", [kv * hd], F32)]
    return ts


def gguf_seeds(model_path):
    meta, head = read_metadata(model_path)
    out("gguf", "smollm2_first_4k.gguf", head)
    chat_template = dict((k, v) for k, _, v in meta)["tokenizer.chat_template"]
    out("chat_template", "smollm2.jinja", chat_template)

    cut = cut_vocab(meta, 200)
    vm = vocab_meta(*cut, meta)
    general = [(k, t, v) for k, t, v in meta if k.startswith("general.")]
    out("gguf", "smollm2_vocab_only.gguf", gguf(general + vm))

    # whole tiny llamas (kept under 8 KiB, the target's -max_len): 1 layer, Q8_0 matrices
    # and Q4_1 embeddings at hidden 32 (a block's width), or all F32 at hidden 8
    tokens, types, merges = cut_vocab(meta, 24)
    vm = vocab_meta(tokens, types, merges, meta)
    am = arch_meta("llama", 32, 4, 1, 32, 1, 256)
    ts = model_tensors(len(tokens), 32, 4, 1, 32, 1, False, (Q8_0, Q4_1))
    out("gguf", "tiny_llama_q8.gguf", gguf(am + vm, ts))
    am = arch_meta("llama", 8, 2, 1, 8, 1, 256)
    ts = model_tensors(len(tokens), 8, 2, 1, 8, 1, False, (F32, F32))
    out("gguf", "tiny_llama_f32.gguf",
        gguf(am + vm + [("general.alignment", T_U32, 64)], ts, align=64))

    # tiny qwen2 with biases and a SentencePiece ("llama") vocabulary with scores
    spm = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(0x41, 0x45)]
    spm += ["▁", "a", "b", "c", "▁a", "ab", "▁ab", "bc", "▁abc", "<|im_start|>", "<|im_end|>"]
    spm_types = [2, 3, 3] + [6] * 4 + [1] * 9 + [3, 3]
    scores = [0.0, 0.0, 0.0] + [0.0] * 4 + [-float(i) for i in range(9)] + [0.0, 0.0]
    vm = [("tokenizer.ggml.model", T_STR, "llama"),
          ("tokenizer.ggml.tokens", T_ARR, (T_STR, spm)),
          ("tokenizer.ggml.scores", T_ARR, (T_F32, scores)),
          ("tokenizer.ggml.token_type", T_ARR, (T_I32, spm_types)),
          ("tokenizer.ggml.bos_token_id", T_U32, 1),
          ("tokenizer.ggml.eos_token_id", T_U32, 2),
          ("tokenizer.ggml.add_bos_token", T_BOOL, True),
          ("tokenizer.chat_template", T_STR, chat_template)]
    am = arch_meta("qwen2", 32, 4, 1, 32, 1, 128)
    ts = model_tensors(len(spm), 32, 4, 1, 32, 1, True, (Q8_0, Q8_0))
    out("gguf", "tiny_qwen2_spm.gguf", gguf(am + vm, ts))

    # every metadata value type, nested arrays
    every = [("u8", T_U8, 7), ("i8", T_I8, -7), ("u16", T_U16, 700), ("i16", T_I16, -700),
             ("u32", T_U32, 70000), ("i32", T_I32, -70000), ("f32", T_F32, 0.5),
             ("bool", T_BOOL, True), ("str", T_STR, "é"), ("u64", T_U64, 1 << 40),
             ("i64", T_I64, -(1 << 40)), ("f64", T_F64, 0.25),
             ("arr", T_ARR, (T_ARR, [(T_U8, [1, 2]), (T_STR, ["x"])]))]
    out("gguf", "every_type.gguf", gguf(every, [("t", [32], Q4_1, q4_1([0.5] * 32))]))
    return cut + (chat_template,)


# ---------------------------------------------------------------- tokenizer.json
def added(i, text, special=True):
    return {"id": i, "content": text, "single_word": False, "lstrip": False,
            "rstrip": False, "normalized": False, "special": special}


def bpe_tokenizer_json(tokens, types, merges):
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [added(i, t) for i, (t, ty) in enumerate(zip(tokens, types)) if ty == 3],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
             "use_regex": True}]},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<|im_start|>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                                    {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<|im_start|>": {"id": "<|im_start|>",
                                                               "ids": [1],
                                                               "tokens": ["<|im_start|>"]}}},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {t: i for i, t in enumerate(tokens)}, "merges": merges},
    }


def tokenizer_seeds(tokens, types, merges, chat_template):
    j = json.dumps(bpe_tokenizer_json(tokens, types, merges), ensure_ascii=False)
    out("tokenizer_json", "smollm2_cut.json", j)
    config = json.dumps({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
                         "add_bos_token": False, "chat_template": chat_template})
    out("tokenizer_json", "smollm2_cut_with_config.json", config + "\0" + j)

    spm = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [added(0, "<unk>"), added(1, "<s>"), added(2, "</s>")],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"}, {"type": "Replace",
                                                   "pattern": {"String": " "}, "content": "▁"}]},
        "pre_tokenizer": None, "post_processor": None,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "<0x41>": 3, "▁": 4, "a": 5,
                            "b": 6, "▁a": 7, "ab": 8},
                  "merges": [["▁", "a"], ["a", "b"]]},
    }
    out("tokenizer_json", "spm_bpe.json",
        json.dumps({"add_bos_token": True, "bos_token": "<s>",
                    "eos_token": {"content": "</s>"}}) + "\0" + json.dumps(spm))
    unigram = {
        "version": "1.0", "added_tokens": [added(0, "<unk>")],
        "normalizer": {"type": "NFKC"},
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always",
                          "split": True},
        "post_processor": None,
        "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always",
                    "split": True},
        "model": {"type": "Unigram", "unk_id": 0, "byte_fallback": False,
                  "vocab": [["<unk>", 0.0], ["▁", -1.0], ["a", -2.0], ["b", -2.5],
                            ["▁ab", -1.5], ["l", -3.0], ["o", -3.0]]},
    }
    out("tokenizer_json", "unigram.json", json.dumps(unigram))
    wordpiece = {
        "version": "1.0", "added_tokens": [added(0, "[UNK]"), added(1, "[CLS]")],
        "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                       "strip_accents": None, "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "BertProcessing", "sep": ["[CLS]", 1], "cls": ["[CLS]", 1]},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100,
                  "vocab": {"[UNK]": 0, "[CLS]": 1, "hello": 2, "##lo": 3, "hel": 4, ",": 5}},
    }
    out("tokenizer_json", "wordpiece.json", json.dumps(wordpiece))
    wordlevel = {
        "version": "1.0", "added_tokens": [],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Removed",
                          "invert": False},
        "post_processor": None, "decoder": None,
        "model": {"type": "WordLevel", "vocab": {"<unk>": 0, "hello": 1, "world!": 2},
                  "unk_token": "<unk>"},
    }
    out("tokenizer_json", "wordlevel.json", json.dumps(wordlevel))


# ---------------------------------------------------------------- safetensors, config.json
def safetensors(tensors, metadata=None):
    header = {}
    data = b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def safetensors_seeds():
    out("safetensors", "small.safetensors", safetensors([
        ("model.embed_tokens.weight", "F32", [4, 2], f32s([0.5] * 8)),
        ("model.norm.weight", "F16", [2], half(1.0) * 2),
        ("lm_head.weight", "BF16", [2, 2], b"\x80\x3f" * 4),
        ("q", "I8", [3], b"\x01\x02\x03")], {"format": "pt"}))
    out("safetensors", "empty.safetensors", safetensors([]))
    out("safetensors", "scalar.safetensors", safetensors([("s", "F64", [], b"\0" * 8)]))
    smollm2 = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
               "hidden_size": 576, "intermediate_size": 1536, "num_attention_heads": 9,
               "num_key_value_heads": 3, "num_hidden_layers": 30, "vocab_size": 49152,
               "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 100000,
               "tie_word_embeddings": True, "attention_bias": False, "torch_dtype": "bfloat16"}
    out("safetensors", "config_smollm2.json", json.dumps(smollm2, indent=2))
    llama3 = dict(smollm2, hidden_size=2048, num_attention_heads=32, num_key_value_heads=8,
                  head_dim=64, rope_theta=500000.0,
                  rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0,
                                "original_max_position_embeddings": 8192})
    out("safetensors", "config_llama3.json", json.dumps(llama3))
    qwen = dict(smollm2, model_type="qwen2", use_sliding_window=False, sliding_window=32768,
                rope_parameters={"rope_theta": 1000000.0, "rope_type": "default"})
    del qwen["rope_theta"]
    out("safetensors", "config_qwen2.json", json.dumps(qwen))
    out("safetensors", "config_mistral.json",
        json.dumps(dict(smollm2, model_type="mistral", sliding_window=None)))
    out("safetensors", "index.json", json.dumps({"metadata": {"total_size": 16}, "weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))


# ---------------------------------------------------------------- chat templates
TEMPLATES = {
    "chatml.jinja": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
    "llama3.jinja": "{{ bos_token }}{% for message in messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}",
    "llama2.jinja": "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}",
    "python_methods.jinja": "{% for m in messages %}{% if m.role.startswith('sys') %}[{{ m.content.strip().upper() }}]{% else %}{{ m.role.title() }}: {{ m.content.replace('a', 'b').split(' ')|join(',') }}{% endif %}{{ m|tojson(indent=2) }}{% endfor %}{{ strftime_now('%d %b %Y') }}{{ messages|length }}{{ '%s-%d'|format('x', 3) }}{{ {'k': [1, 2.5, none]}|tojson(sort_keys=true) }}",
    "macros.jinja": "{% macro render(m, depth=0) %}{% if depth < 3 %}{{ m.role }}{{ render(m, depth + 1) }}{% endif %}{% endmacro %}{% for m in messages %}{{ render(m) }}{% set ns = namespace(n=0) %}{% set ns.n = ns.n + 1 %}{{ ns.n }}{% if loop.last %}{% break %}{% endif %}{% endfor %}{{ range(5)|list|tojson }}{{ 'abc'[::-1] }}{{ messages[-1:] }}",
    "hostile_infinite_loop.jinja": "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
    "hostile_huge_output.jinja": "{% for a in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
    "hostile_recursion.jinja": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "hostile_big_repeat.jinja": "{{ 'x' * 100000000000 }}{{ range(10000000000) }}",
    # Not a seed: a string doubled in a loop ("{% set s = namespace(x='ab') %}{% for i in
    # range(40) %}{% set s.x = s.x + s.x %}{% endfor %}") grows without bound, and
    # minijinja has no limit on the size of a value (see README.md, "Known limits").
}


def chat_seeds():
    msgs = "system:Be brief.\x1euser:Hi there, é?\x1eassistant:Hello!\x1euser:<|im_end|>{{ x }}\x01"
    for name, t in TEMPLATES.items():
        out("chat_template", name, t + "\0" + msgs)


# ---------------------------------------------------------------- OpenAI requests
def openai_seeds():
    chat = b"\0"  # first byte even: /v1/chat/completions
    comp = b"\1"
    reqs = {
        "chat_basic.json": chat + json.dumps({"model": "m", "messages": [
            {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
            "max_tokens": 16, "temperature": 0.7, "top_p": 0.9, "top_k": 40, "seed": 42,
            "stop": ["\n\n", "END"], "stream": True,
            "stream_options": {"include_usage": True}}).encode(),
        "chat_parts.json": chat + json.dumps({"messages": [
            {"role": "user", "content": [{"type": "text", "text": "a"},
                                         {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": None}],
            "max_completion_tokens": 5, "n": 1, "logprobs": False}).encode(),
        "chat_bad.json": chat + b'{"messages": [{"role": "user", "content": 5}], "temperature": 3}',
        "completion_text.json": comp + json.dumps({"prompt": "Once upon a time",
                                                   "max_tokens": 8, "echo": False,
                                                   "stop": "."}).encode(),
        "completion_ids.json": comp + json.dumps({"prompt": [1, 2, 3, 49151],
                                                  "seed": -1}).encode(),
        "completion_nested.json": comp + json.dumps({"prompt": [[1, 2]], "top_p": 0}).encode(),
        "completion_list.json": comp + json.dumps({"prompt": ["one"], "max_tokens": 0}).encode(),
    }
    for name, body in reqs.items():
        out("openai_request", name, body)


def main():
    model = sys.argv[1] if len(sys.argv) > 1 else subprocess.run(
        ["bash", os.path.join(HERE, "..", "scripts", "fetch-model.sh")],
        check=True, capture_output=True, text=True).stdout.strip()
    tokens, types, merges, chat_template = gguf_seeds(model)
    tokenizer_seeds(tokens, types, merges, chat_template)
    safetensors_seeds()
    chat_seeds()
    openai_seeds()


if __name__ == "__main__":
    main()
