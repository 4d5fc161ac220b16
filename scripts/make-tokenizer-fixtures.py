#!/usr/bin/env python3
"""Reference token ids and chat renderings for headroom's tokenizer tests.

    pip install transformers tokenizers gguf jinja2         (no torch needed)
    python3 scripts/make-tokenizer-fixtures.py [--gguf PATH] [--llama-python .venv/bin/python]

Writes tests/data/tokenizer/smollm2.json (read by tests/tokenizer_smollm2.rs with the
GGUF) and tests/data/tokenizer/spm_synthetic.json (read by tests/tokenizer_spm.rs). The
Rust tests never run Python.

References, per string (ids without BOS/EOS, special tokens in the text parsed as such):
  llama_cpp      llama.cpp itself: llama_cpp.Llama(model, vocab_only=True)
                 .tokenize(text.encode(), add_bos=False, special=True). The reference that
                 headroom must match. Taken from this interpreter if llama_cpp imports, else
                 from the interpreter given by --llama-python (a venv with
                 llama-cpp-python), else left out.
  hf_gguf        transformers' own GGUF tokenizer conversion (convert_gguf_tokenizer, the
                 code behind AutoTokenizer.from_pretrained(dir, gguf_file=...)), fed the
                 metadata read with the gguf package (transformers' GGUF reader needs torch).
                 For pre="smollm" it keeps GPT-2's pre-tokenizer and does not split digits.
  hf_hub_pretok  the same tokenizer with the pre-tokenizer of SmolLM2's published
                 tokenizer.json: Sequence[Digits(individual_digits=True),
                 ByteLevel(add_prefix_space=False, use_regex=True)].
Chat: the GGUF's template rendered by transformers' render_jinja_template (jinja2,
trim_blocks + lstrip_blocks), and the llama.cpp ids of each rendered prompt.

bpe_synthetic.json: a byte-level ("gpt2") vocabulary of the 256 byte symbols, one control
token and a merge for every pair of the ASCII symbols used (seeded random ranks), so that the
ids show where each pre-tokenizer cut the text; llama.cpp's ids for seeded random strings
under several tokenizer.ggml.pre values. Needs llama.cpp.

spm_synthetic.json: a tiny SentencePiece ("llama") vocabulary (the same as in
tests/tokenizer_spm.rs), written to a temporary GGUF with gguf.GGUFWriter, and llama.cpp's
ids for hand-picked and seeded random strings, with add_space_prefix unset and false, with
and without BOS. Needs llama.cpp.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_GGUF = Path.home() / ".cache/headroom/models/SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = REPO / "tests/data/tokenizer/smollm2.json"

STRINGS = [
    "Hello world",
    "Hello, world! How are you today?",
    " leading space",
    "  two leading spaces",
    "trailing spaces   ",
    "multiple   internal    spaces",
    "tabs\tand\nnewlines\r\nmixed",
    "\n\n\nthree newlines first",
    "12345 3.14159 1,000,000 and 2024-07-26",
    "Mixed123numbers456and7890letters",
    "x=0; for i in range(10): x += i**2",
    "def foo(x):\n    return x * 2  # comment\n",
    'fn main() {\n\tprintln!("{}", 42);\n}\n',
    "I'm sure they'll say it's fine, don't you think? We've seen it. I'D SAY",
    "Café naïve résumé façade Ångström",
    "ﬁ ligature and e\u0301 combining acute",
    "你好，世界！这是一个测试。",
    "日本語のテキストとカタカナ",
    "한국어 텍스트입니다",
    "Россия и Україна",
    "مرحبا بالعالم",
    "Emoji: 😀👍🏽🇺🇸 and ❤️ 🎉",
    "\u00a0non-breaking\u2009thin space\u200bzero-width",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more text",
    "<|im_start|><|im_end|><|im_start|>",
    "not special: <|im_start |> <im_start> <|unknown|>",
    "<repo_name>headroom<file_sep>src/main.rs",
    "URL: https://example.com/path?q=1&r=2#frag",
    "email@example.com, @handle #hashtag $100 50% ~tilde",
    "It's John's; THEY'RE 'quoted' we'll I've",
    "   \n  indented\n\t\ttabs\n \n",
    "Arabic-Indic digits ١٢٣ and superscript x² ½ Ⅻ",
    "a\u3000b ideographic space\r\n\r\n",
    "😀😀😀 <|im_end|> x",
    "a" * 64,
    " ",
    "",
    "The quick brown fox jumps over the lazy dog. " * 3,
]

CONVERSATIONS = [
    ([{"role": "user", "content": "Hello!"}], True),
    (
        [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "4"},
            {"role": "user", "content": "And 3+3? 😀"},
        ],
        True,
    ),
    ([{"role": "user", "content": "hi"}], False),
]

LLAMA_SNIPPET = r"""
import json, sys, llama_cpp
out = []
for job in json.load(sys.stdin):
    llm = llama_cpp.Llama(model_path=job["model"], vocab_only=True, verbose=False)
    out.append([llm.tokenize(t.encode("utf-8"), add_bos=job["add_bos"], special=True) for t in job["texts"]])
json.dump({"version": llama_cpp.__version__, "ids": out}, sys.stdout)
"""


def llama_cpp_ids(jobs: list[dict], python: str | None):
    """(version, [ids per job]) from llama.cpp, or None when it is not available.
    A job is {"model": path, "texts": [...], "add_bos": bool}."""
    req = json.dumps(jobs)
    try:
        import llama_cpp  # noqa: F401

        python = sys.executable
    except ImportError:
        if python is None:
            return None
    res = subprocess.run(
        [python, "-c", LLAMA_SNIPPET], input=req, capture_output=True, text=True, check=True
    )
    got = json.loads(res.stdout)
    return got["version"], got["ids"]


def read_gguf_tokenizer(path: Path):
    """(architecture, tokenizer_dict, chat_template) with transformers' key names."""
    import gguf
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_TOKENIZER_MAPPING

    reader = gguf.GGUFReader(str(path))
    meta = {name: field.contents() for name, field in reader.fields.items()}
    tok = {
        name: meta[f"tokenizer.{key}"]
        for key, name in GGUF_TOKENIZER_MAPPING["tokenizer"].items()
        if f"tokenizer.{key}" in meta
    }
    return meta["general.architecture"], tok, meta.get("tokenizer.chat_template"), meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", type=Path, default=DEFAULT_GGUF)
    ap.add_argument("--llama-python", default=None, help="python with llama_cpp, if not this one")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    import jinja2
    import tokenizers
    import transformers
    from tokenizers import pre_tokenizers
    from transformers.integrations.gguf.gguf_tokenizer_mapping import convert_gguf_tokenizer
    from transformers.utils.chat_template_utils import render_jinja_template

    arch, tok_dict, template, meta = read_gguf_tokenizer(args.gguf)
    hf_gguf, _ = convert_gguf_tokenizer(arch, tok_dict)
    hub = tokenizers.Tokenizer.from_str(hf_gguf.to_str())
    hub.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )

    tokens = tok_dict["tokens"]
    bos = tokens[meta["tokenizer.ggml.bos_token_id"]]
    eos = tokens[meta["tokenizer.ggml.eos_token_id"]]
    chats = []
    for messages, gen in CONVERSATIONS:
        rendered, _ = render_jinja_template(
            conversations=[messages],
            chat_template=template,
            add_generation_prompt=gen,
            bos_token=bos,
            eos_token=eos,
        )
        chats.append({"messages": messages, "add_generation_prompt": gen, "rendered": rendered[0]})

    texts = STRINGS + [c["rendered"] for c in chats]
    llama = llama_cpp_ids([{"model": str(args.gguf), "texts": texts, "add_bos": False}], args.llama_python)
    if llama:
        llama = (llama[0], llama[1][0])

    cases = []
    for i, s in enumerate(STRINGS):
        case = {
            "text": s,
            "hf_gguf": hf_gguf.encode(s, add_special_tokens=False).ids,
            "hf_hub_pretok": hub.encode(s, add_special_tokens=False).ids,
        }
        if llama:
            case["llama_cpp"] = llama[1][i]
        cases.append(case)
    for j, c in enumerate(chats):
        if llama:
            c["llama_cpp"] = llama[1][len(STRINGS) + j]

    sha = hashlib.sha256(args.gguf.read_bytes()).hexdigest()
    fixture = {
        "provenance": {
            "command": "python3 scripts/make-tokenizer-fixtures.py "
            + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "packages": {
                "transformers": transformers.__version__,
                "tokenizers": tokenizers.__version__,
                "jinja2": jinja2.__version__,
                "llama_cpp_python": llama[0] if llama else None,
            },
            "model_file": args.gguf.name,
            "model_sha256": sha,
            "references": {
                "llama_cpp": "llama_cpp.Llama(model, vocab_only=True).tokenize(text.encode(), add_bos=False, special=True)",
                "hf_gguf": "transformers convert_gguf_tokenizer(...).encode(text, add_special_tokens=False)",
                "hf_hub_pretok": "hf_gguf with pre_tokenizer Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False, use_regex=True)] as in SmolLM2's tokenizer.json",
                "chat.rendered": "transformers.utils.chat_template_utils.render_jinja_template (jinja2, trim_blocks, lstrip_blocks)",
            },
        },
        "vocab_size": len(tokens),
        "bos_token": bos,
        "eos_token": eos,
        "chat_template": template,
        "cases": cases,
        "chats": chats,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(fixture, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")

    def differ(a, b):
        return [c["text"] for c in cases if a in c and b in c and c[a] != c[b]]

    print(f"wrote {args.out} ({len(cases)} strings, {len(chats)} chats)")
    write_spm_fixture(args.out.parent / "spm_synthetic.json", args.llama_python)
    write_bpe_fixture(args.out.parent / "bpe_synthetic.json", args.llama_python)
    print("llama.cpp:", llama[0] if llama else "not available")
    print("hf_gguf != hf_hub_pretok on:", differ("hf_gguf", "hf_hub_pretok"))
    if llama:
        print("llama_cpp != hf_hub_pretok on:", differ("llama_cpp", "hf_hub_pretok"))
        print("llama_cpp != hf_gguf on:", differ("llama_cpp", "hf_gguf"))


# The synthetic SentencePiece vocabulary of tests/tokenizer_spm.rs: <unk> <s> </s>, the 256
# byte tokens, then these (text, score); "<user>" is user-defined.
SPM_PIECES = [
    ("▁", -1.0), ("h", -2.0), ("e", -2.1), ("l", -2.2), ("o", -2.3), ("w", -2.4), ("r", -2.5),
    ("d", -2.6), ("a", -2.7), ("b", -2.8), ("\n", -2.9), ("ll", -3.0), ("he", -3.5),
    ("hell", -4.0), ("hello", -4.5), ("▁hello", -5.0), ("▁w", -5.5), ("or", -5.6),
    ("▁wor", -6.0), ("ld", -6.1), ("▁world", -6.5), ("ab", -7.0), ("ba", -7.2), ("aba", -7.5),
    ("▁▁", -8.0), ("lo", -8.5), ("<user>", 0.0),
]
SPM_STRINGS = [
    "hello world", "hello  world", " hello", "  hello ", "hello\nworld", "ababa abab baba",
    "café 世界 😀", "<s>hello</s> world<user>hello", "<s><s>", "hel lo", "", " ", "\n",
    "world<user> <user>", "<unk>x",
]
SPM_ALPHABET = ["h", "e", "l", "o", "w", "r", "d", "a", "b", " ", " ", "\n", "é", "世", "😀",
                "<s>", "</s>", "<user>", "hello", "world", "<", "s", ">"]


def write_spm_fixture(out: Path, llama_python: str | None) -> None:
    import random
    import tempfile

    import gguf

    tokens, scores, types = ["<unk>", "<s>", "</s>"], [0.0] * 3, [2, 3, 3]
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        scores.append(0.0)
        types.append(6)
    for text, score in SPM_PIECES:
        tokens.append(text)
        scores.append(score)
        types.append(4 if text == "<user>" else 1)
    rng = random.Random(1234)
    texts = SPM_STRINGS + [
        "".join(rng.choice(SPM_ALPHABET) for _ in range(rng.randrange(12))) for _ in range(300)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        jobs, variants = [], []
        for space_prefix in (None, False):
            path = Path(tmp) / f"spm-{space_prefix}.gguf"
            w = gguf.GGUFWriter(str(path), "llama")
            # llama.cpp reads these hyperparameters even with vocab_only.
            w.add_block_count(1)
            w.add_context_length(64)
            w.add_embedding_length(8)
            w.add_feed_forward_length(8)
            w.add_head_count(1)
            w.add_layer_norm_rms_eps(1e-5)
            w.add_tokenizer_model("llama")
            w.add_token_list(tokens)
            w.add_token_scores(scores)
            w.add_token_types(types)
            w.add_bos_token_id(1)
            w.add_eos_token_id(2)
            w.add_unk_token_id(0)
            if space_prefix is not None:
                w.add_add_space_prefix(space_prefix)
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_tensors_to_file()
            w.close()
            for add_bos in (False, True):
                jobs.append({"model": str(path), "texts": texts, "add_bos": add_bos})
                variants.append({"add_space_prefix": space_prefix, "add_bos": add_bos})
        llama = llama_cpp_ids(jobs, llama_python)
    if llama is None:
        print(f"llama.cpp not available: {out} not written")
        return
    for v, ids in zip(variants, llama[1]):
        v["ids"] = ids
    fixture = {
        "provenance": {
            "command": "python3 scripts/make-tokenizer-fixtures.py "
            + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "llama_cpp_python": llama[0],
            "reference": "llama_cpp.Llama(gguf, vocab_only=True).tokenize(text.encode(), add_bos=add_bos, special=True)",
        },
        "tokens": tokens,
        "scores": scores,
        "token_types": types,
        "texts": texts,
        "variants": variants,
    }
    out.write_text(json.dumps(fixture, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out} ({len(texts)} strings x {len(variants)} variants)")


BPE_PRES = ["default", "gpt-2", "smollm", "llama-bpe", "dbrx", "qwen2", "falcon", "bloom"]
BPE_ALPHABET = ["a", "b", "Z", "xy", " ", "  ", "\n", "\t", "1", "23", "456", "'s", "'T", "'ll",
                "'x", "!", ".", "..", "?", "(", ")", "-", "—", "…", "é", "世", "😀", "٣", "²",
                "<|endoftext|>", "\r\n", "$", "+", "<", "=", ">", "^", "~", "|", "`", " \n ", ","]


def write_bpe_fixture(out: Path, llama_python: str | None) -> None:
    import random
    import tempfile

    import gguf
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    b2u = bytes_to_unicode()
    tokens = [b2u[b] for b in range(256)]
    # Every ASCII byte of the alphabet, plus the letters and digits the texts do not use.
    ascii_bytes = sorted({b for piece in BPE_ALPHABET for b in piece.encode() if b < 128} | set(b"cdeHlo0789"))
    common = [b2u[b] for b in ascii_bytes]
    rng = random.Random(99)
    pairs = [(x, y) for x in common for y in common]
    rng.shuffle(pairs)
    merges = [f"{x} {y}" for x, y in pairs]
    tokens += [x + y for x, y in pairs]
    tokens.append("<|endoftext|>")
    types = [1] * (len(tokens) - 1) + [3]
    texts = [
        "Hello, world! It's 12345 o'clock; THEY'LL go.\n\n  indented\tx",
        "a<|endoftext|>b 12 3.5 ...   \r\n\r\n end  ",
        "$100+<=>^~|`x` — wait… ok",
    ] + ["".join(rng.choice(BPE_ALPHABET) for _ in range(rng.randrange(16))) for _ in range(300)]
    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        for pre in BPE_PRES:
            path = Path(tmp) / f"bpe-{pre}.gguf"
            w = gguf.GGUFWriter(str(path), "llama")
            w.add_block_count(1)
            w.add_context_length(64)
            w.add_embedding_length(8)
            w.add_feed_forward_length(8)
            w.add_head_count(1)
            w.add_layer_norm_rms_eps(1e-5)
            w.add_tokenizer_model("gpt2")
            w.add_tokenizer_pre(pre)
            w.add_token_list(tokens)
            w.add_token_types(types)
            w.add_token_merges(merges)
            w.add_bos_token_id(len(tokens) - 1)
            w.add_eos_token_id(len(tokens) - 1)
            w.add_add_bos_token(False)
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_tensors_to_file()
            w.close()
            jobs.append({"model": str(path), "texts": texts, "add_bos": False})
        llama = llama_cpp_ids(jobs, llama_python)
    if llama is None:
        print(f"llama.cpp not available: {out} not written")
        return
    fixture = {
        "provenance": {
            "command": "python3 scripts/make-tokenizer-fixtures.py "
            + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "llama_cpp_python": llama[0],
            "reference": "llama_cpp.Llama(gguf, vocab_only=True).tokenize(text.encode(), add_bos=False, special=True)",
        },
        "tokens": tokens,
        "token_types": types,
        "merges": merges,
        "texts": texts,
        "pres": [{"pre": pre, "ids": ids} for pre, ids in zip(BPE_PRES, llama[1])],
    }
    out.write_text(json.dumps(fixture, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out} ({len(texts)} strings x {len(BPE_PRES)} pre-tokenizers)")


if __name__ == "__main__":
    main()
