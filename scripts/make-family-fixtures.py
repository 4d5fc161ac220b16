#!/usr/bin/env python3
"""Make headroom's per-family reference fixtures: tiny random models of several model
families, built with Hugging Face transformers' own config + model classes, converted to
GGUF with llama.cpp's own converter, with transformers' outputs recorded as the reference.

    python3 -m venv .venv-fam
    .venv-fam/bin/pip install -r scripts/requirements-family-fixtures.txt   (see its header for torch)
    # llama.cpp's converter (convert_hf_to_gguf.py + conversion/ + gguf-py/ + models/templates/)
    # ships inside the llama-cpp-python sdist; fetch and unpack it anywhere outside the repo:
    pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d /tmp/llsrc
    #   (or fetch llama_cpp_python-0.3.36.tar.gz, sha256 832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e,
    #    from PyPI's files host directly: pip download builds cmake from source for the metadata step)
    tar -C /tmp/llsrc -xzf /tmp/llsrc/llama_cpp_python-0.3.36.tar.gz
    .venv-fam/bin/python scripts/make-family-fixtures.py \\
        --llama-src /tmp/llsrc/llama_cpp_python-0.3.36/vendor/llama.cpp  [--families llama3,phi3]

Writes fixtures/families/<family>/ for llama3, mistral, qwen3, gemma2, gemma3, phi3:
  config.json, model.safetensors, generation_config.json   (save_pretrained, f32)
  tokenizer.json, tokenizer_config.json (+ tokenizer.model for SentencePiece families)
  model.gguf                 convert_hf_to_gguf.py --outtype f32 of that directory
  reference.json             provenance, config summary, GGUF summary, per-prompt ids/greedy/margins
  <prompt>.logits.f32        little-endian f32 [n_prompt_tokens, vocab]: transformers' logits at
                             every prompt position (after final soft-capping where the family has it)

Everything is deterministic: tokenizers are trained here on fixed text (BPE with the `tokenizers`
package using the family's real pre-tokenizer regex; SentencePiece BPE with the `sentencepiece`
package, num_threads=1), weights come from fixed seeds, and the seed is chosen by a fixed search
(first seed whose greedy top1-top2 margins are all >= MIN_MARGIN). Running twice gives identical
files except the provenance date in reference.json (and the converter does not date the GGUF).

BPE pre-tokenizer fingerprint: convert_hf_to_gguf.py names the pre-tokenizer of a BPE vocabulary by
hashing the token ids of a test string; a freshly trained 512-token vocabulary has no known hash,
so the converter is run in a subprocess (this script's `_convert` mode) with
TextModel.get_vocab_base_pre monkeypatched to return the llama.cpp name of the pre-tokenizer regex
the vocabulary was trained with ("llama-bpe", "qwen2", "tekken"). Nothing else is patched.

The Rust tests read only these files; they never run Python.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT_DEFAULT = REPO / "fixtures" / "families"
N_GEN = 16
MIN_MARGIN = 0.05
MIN_DISTINCT = 6         # ... and at least this many distinct tokens in each greedy continuation
SEED_TRIES = 200
TOK_VOCAB = 512          # trained vocabulary size (before added special tokens)
PERTURB_NORMS = 0.1      # std of the noise added to every 1-D (norm) weight, so norm bugs show

FAMILIES = ["llama3", "mistral", "qwen3", "gemma2", "gemma3", "phi3"]

# ---------------------------------------------------------------------------------------
# fixed text: tokenizer training corpus and prompts

CORPUS = """\
The history of computing is usually told as a story of machines, but it is just as much a story of people who needed to count, to measure and to predict.
Long before electricity, merchants kept their accounts on counting boards and the abacus, and astronomers filled notebooks with tables of planetary positions.
Navigators depended on printed tables of logarithms whose errors could send a ship onto the rocks.
In the seventeenth century, Wilhelm Schickard, Blaise Pascal and Gottfried Leibniz built mechanical calculators with gears and carries.
They were clever, fragile and expensive, and few people ever used them for real work.
Charles Babbage proposed a Difference Engine to compute and print mathematical tables without human error.
He later designed a far more ambitious Analytical Engine, which separated the store, where numbers were kept, from the mill, where they were combined.
Ada Lovelace explained how it could be instructed to compute Bernoulli numbers and suggested that such a machine might one day manipulate symbols of any kind.
Herman Hollerith used punched cards and electrical sorting machines to tabulate the census of 1890 in a fraction of the time the previous one had taken.
The Second World War turned computation into an urgent need, and ENIAC contained about 18000 vacuum tubes.
The transistor, invented in 1947, replaced the hot and unreliable vacuum tube, and the integrated circuit put many transistors on a single chip of silicon.
Languages such as FORTRAN, COBOL, Lisp and later C made programs portable and readable.
Once upon a time there was a little robot who lived in a quiet town by the sea.
Every morning the robot walked to the harbour, counted the boats, and wrote the numbers in a small blue notebook.
"Why do you count the boats?" asked a girl one day. "Because numbers tell stories," said the robot, "if you listen to them."
Hello! How are you today? I am fine, thank you. What is the weather like? It is sunny and warm.
Can you help me write a short poem about the moon? Of course, here is one for you.
Digits: 0 1 2 3 4 5 6 7 8 9 10 42 100 256 1024 3.14 2.71 2026.
Punctuation and symbols: ( ) [ ] { } < > = + - * / % & | ! ? ; : , . ' " @ # $ ^ ~ ` _ \\
Today, graphics processors designed for games perform the enormous number of multiplications needed by neural networks.
The question that began with counting boards remains the same: how can a machine be made to do, quickly and reliably, the calculations that people need?
"""

SHORT_TEXT = "Once upon a time"
LONG_SENTENCES = [
    "The history of computing is usually told as a story of machines,",
    "but it is just as much a story of people who needed to count, to measure and to predict.",
    "Long before electricity, merchants kept their accounts on counting boards and the abacus,",
    "and astronomers filled notebooks with tables of planetary positions.",
    "Navigators depended on printed tables of logarithms whose errors could send a ship onto the rocks.",
    "Every morning the robot walked to the harbour and counted the boats.",
]
LONG_MIN_TOKENS = 44     # > 2x every sliding window (8) and > phi3's original_max_position_embeddings (32)
LONG_MAX_TOKENS = 64

CHAT_MESSAGES = [
    {"role": "user", "content": "Hello! How are you today?"},
    {"role": "assistant", "content": "I am fine, thank you."},
    {"role": "user", "content": "Can you write a short poem about the moon?"},
]

# ---------------------------------------------------------------------------------------
# tokenizers

# BPE pre-tokenizer regexes as they appear in the real models' tokenizer.json, with the llama.cpp
# pre-tokenizer name that implements them (src/llama-vocab.cpp).
REGEX_LLAMA3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
REGEX_QWEN2 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
REGEX_TEKKEN = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"


def corpus_lines() -> list[str]:
    return [l for l in CORPUS.split("\n") if l.strip()]


def build_bpe_tokenizer(d: Path, *, regex: str, nfc: bool, specials: list[str], bos: str | None,
                        eos: str, pad: str | None, unk: str | None, template: str, extra_cfg: dict):
    """Byte-level BPE trained on CORPUS with the family's real pre-tokenizer; special tokens
    appended after the trained vocabulary (ids TOK_VOCAB..)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    if nfc:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(vocab_size=TOK_VOCAB, min_frequency=1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(corpus_lines(), trainer=trainer)
    assert tok.get_vocab_size() == TOK_VOCAB, tok.get_vocab_size()
    tok.add_special_tokens(specials)
    if bos is not None:
        bos_id = tok.token_to_id(bos)
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
            processors.TemplateProcessing(single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
                                          special_tokens=[(bos, bos_id)]),
        ])
    else:
        tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    kw = dict(tokenizer_object=tok, eos_token=eos)
    if bos is not None:
        kw["bos_token"] = bos
    if pad is not None:
        kw["pad_token"] = pad
    if unk is not None:
        kw["unk_token"] = unk
    hf = PreTrainedTokenizerFast(**kw)
    return finish_tokenizer(hf, d, template, extra_cfg)


def train_spm(*, add_dummy_prefix: bool, pieces: dict, user_defined: list[str]) -> bytes:
    import sentencepiece as spm
    w = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus_lines()), model_writer=w, vocab_size=TOK_VOCAB, model_type="bpe",
        byte_fallback=True, split_digits=True, add_dummy_prefix=add_dummy_prefix,
        remove_extra_whitespaces=False, normalization_rule_name="identity", character_coverage=1.0,
        user_defined_symbols=user_defined, num_threads=1, shuffle_input_sentence=False,
        minloglevel=2, **pieces)
    return w.getvalue()


def build_spm_tokenizer(d: Path, *, spm_bytes: bytes, tokenizer_class: str, cfg: dict, added: list[str],
                        template: str, extra_cfg: dict):
    """SentencePiece model -> tokenizer.model, and transformers' own conversion of it (the family's
    tokenizer class) -> tokenizer.json. `added` are extra special tokens appended after the SPM vocab."""
    import tempfile
    from transformers import AutoTokenizer
    tmp = Path(tempfile.mkdtemp())
    (tmp / "tokenizer.model").write_bytes(spm_bytes)
    (tmp / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": tokenizer_class, **cfg}))
    hf = AutoTokenizer.from_pretrained(str(tmp))
    if added:
        hf.add_special_tokens({"additional_special_tokens": added})
    (d / "tokenizer.model").write_bytes(spm_bytes)
    out = finish_tokenizer(hf, d, template, extra_cfg)
    shutil.rmtree(tmp)
    return out


def finish_tokenizer(hf, d: Path, template: str, extra_cfg: dict):
    """save_pretrained, then put the chat template into tokenizer_config.json (transformers 5
    writes it to chat_template.jinja instead) and drop machine-specific fields."""
    from transformers import AutoTokenizer
    hf.chat_template = template
    hf.save_pretrained(str(d))
    cfg_path = d / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    for k in ("vocab_file", "is_local", "local_files_only", "name_or_path"):
        cfg.pop(k, None)
    cfg.update(extra_cfg)
    # transformers 5 keeps added tokens only in tokenizer.json; real (4.x-written) tokenizer_config.json
    # files also list them, and llama.cpp's SentencePiece vocab reader (_create_vocab_sentencepiece)
    # takes CONTROL/USER_DEFINED token types from there only.
    cfg["added_tokens_decoder"] = {
        str(i): {"content": t.content, "lstrip": t.lstrip, "normalized": t.normalized, "rstrip": t.rstrip,
                 "single_word": t.single_word, "special": t.special}
        for i, t in sorted(hf.added_tokens_decoder.items())}
    cfg["chat_template"] = template
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
    ct = d / "chat_template.jinja"
    if ct.exists():
        ct.unlink()
    tok = AutoTokenizer.from_pretrained(str(d))
    assert tok.chat_template == template
    return tok


# ---------------------------------------------------------------------------------------
# families

def fam_llama3(src: Path):
    return dict(
        cls="LlamaForCausalLM", cfg_cls="LlamaConfig",
        cfg=dict(vocab_size=None, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
                 rms_norm_eps=1e-5, tie_word_embeddings=True, initializer_range=0.5,
                 rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
                                  "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                  "original_max_position_embeddings": 64}),
        tokenizer=lambda d: build_bpe_tokenizer(
            d, regex=REGEX_LLAMA3, nfc=False,
            specials=["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>", "<|python_tag|>"],
            bos="<|begin_of_text|>", eos="<|eot_id|>", pad=None, unk=None,
            template=read_template(src, "meta-llama-Llama-3.1-8B-Instruct.jinja"), extra_cfg={}),
        template="meta-llama-Llama-3.1-8B-Instruct.jinja", pre="llama-bpe",
        features=["GQA 4 query heads / 2 kv heads", "tie_word_embeddings=true (no lm_head tensor)",
                  "rope_type llama3 (factor 8, low_freq_factor 1, high_freq_factor 4, original_max_position_embeddings 64: with head_dim 16 the 8 frequencies get factors 1, smooth, smooth, 8, 8, 8, 8, 8)",
                  "BPE tokenizer, llama3 pre-tokenizer regex, BOS added by the post-processor"],
        ablations={"rope_default": lambda c: set_rope(c, {"rope_type": "default", "rope_theta": 10000.0})},
    )


def fam_mistral(src: Path):
    return dict(
        cls="MistralForCausalLM", cfg_cls="MistralConfig",
        cfg=dict(vocab_size=None, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
                 rms_norm_eps=1e-5, tie_word_embeddings=False, initializer_range=0.5, sliding_window=8,
                 rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
        tokenizer=lambda d: build_bpe_tokenizer(
            d, regex=REGEX_TEKKEN, nfc=False,
            specials=["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
                      "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CALLS]"],
            bos="<s>", eos="</s>", pad=None, unk="<unk>",
            template=read_template(src, "mistralai-Mistral-Nemo-Instruct-2407.jinja"), extra_cfg={}),
        template="mistralai-Mistral-Nemo-Instruct-2407.jinja", pre="tekken",
        features=["GQA 4/2", "sliding_window=8 on every layer (transformers masks keys with q_pos - k_pos >= 8, i.e. each query sees itself + 7 previous)",
                  "untied lm_head", "rope_theta 1e6",
                  "BPE tokenizer with the tekken (Mistral Nemo) pre-tokenizer regex, BOS <s>"],
        ablations={"no_window": lambda c: setattr(c, "sliding_window", None)},
    )


def fam_qwen3(src: Path):
    return dict(
        cls="Qwen3ForCausalLM", cfg_cls="Qwen3Config",
        cfg=dict(vocab_size=None, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=512,
                 rms_norm_eps=1e-6, tie_word_embeddings=False, initializer_range=0.5,
                 rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
        tokenizer=lambda d: build_bpe_tokenizer(
            d, regex=REGEX_QWEN2, nfc=True,
            specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>",
                      "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"],
            bos=None, eos="<|im_end|>", pad="<|endoftext|>", unk=None,
            template=read_template(src, "Qwen-Qwen3-0.6B.jinja"), extra_cfg={}),
        template="Qwen-Qwen3-0.6B.jinja", pre="qwen2",
        features=["GQA 4/2", "head_dim 32 != hidden/heads (16): q_proj 64->128, k/v_proj 64->64, o_proj 128->64",
                  "q_norm / k_norm (RMSNorm over head_dim, per head, before RoPE)", "untied lm_head", "rope_theta 1e6",
                  "BPE tokenizer with the qwen2 pre-tokenizer regex and NFC normalizer, no BOS"],
        ablations={},
    )


# Gemma scales the embeddings by sqrt(hidden) and ties them to the output, so a random Gemma keeps
# predicting its input token. Shifting the post-sublayer norms (and the final norm) up makes the
# attention/MLP outputs dominate the residual stream, which gives varied, well-separated greedy
# output. The offsets are added to the stored HF weights (which Gemma uses as 1 + w).
GEMMA_NORM_OFFSETS = {"post_attention_layernorm": 6.0, "post_feedforward_layernorm": 6.0, "model.norm.": 2.0}


def fam_gemma2(src: Path):
    spm_bytes = train_spm(add_dummy_prefix=False,
                          pieces=dict(pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>",
                                      eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>"),
                          user_defined=["<mask>", "<start_of_turn>", "<end_of_turn>"])
    return dict(
        cls="Gemma2ForCausalLM", cfg_cls="Gemma2Config",
        cfg=dict(vocab_size=None, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=512,
                 rms_norm_eps=1e-6, initializer_range=0.15, sliding_window=8,
                 query_pre_attn_scalar=16, attn_logit_softcapping=2.0, final_logit_softcapping=15.0,
                 pad_token_id=0, eos_token_id=1, bos_token_id=2,
                 rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        tokenizer=lambda d: build_spm_tokenizer(
            d, spm_bytes=spm_bytes, tokenizer_class="GemmaTokenizer",
            cfg=dict(bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>", mask_token="<mask>",
                     add_bos_token=True, add_eos_token=False),
            added=["<start_of_turn>", "<end_of_turn>"],
            template=read_template(src, "google-gemma-2-2b-it.jinja"), extra_cfg={}),
        template="google-gemma-2-2b-it.jinja", pre=None, norm_offsets=GEMMA_NORM_OFFSETS,
        features=["GQA 4/2, head_dim 32 (hidden 64)", "attn_logit_softcapping 2.0 and final_logit_softcapping 15.0 (both bite: see feature_checks)",
                  "sliding_window 8 on layer 0 (layer_types: sliding, full)",
                  "query_pre_attn_scalar 16 (= hidden/heads) != head_dim 32: scores scaled by 16**-0.5",
                  "embeddings scaled by sqrt(hidden)=8 (in the model's dtype)", "RMSNorm computes x*(1+w)",
                  "4 norms per layer (input, post_attention, pre_feedforward, post_feedforward)",
                  "gelu_pytorch_tanh gated MLP", "tied embeddings",
                  "SentencePiece BPE tokenizer (byte fallback, no dummy prefix), BOS <bos>"],
        ablations={"no_softcaps": lambda c: (setattr(c, "attn_logit_softcapping", None), setattr(c, "final_logit_softcapping", None)),
                   "no_window": lambda c: setattr(c, "sliding_window", 10 ** 6)},
    )


def fam_gemma3(src: Path):
    spm_bytes = train_spm(add_dummy_prefix=False,
                          pieces=dict(pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>",
                                      eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>"),
                          user_defined=["<mask>", "<start_of_turn>", "<end_of_turn>"])
    return dict(
        cls="Gemma3ForCausalLM", cfg_cls="Gemma3TextConfig",
        cfg=dict(vocab_size=None, hidden_size=64, intermediate_size=96, num_hidden_layers=6,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
                 rms_norm_eps=1e-6, initializer_range=0.15, sliding_window=8, query_pre_attn_scalar=16,
                 layer_types=["sliding_attention"] * 5 + ["full_attention"],
                 pad_token_id=0, eos_token_id=1, bos_token_id=2,
                 rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                                  "full_attention": {"rope_type": "default", "rope_theta": 1000000.0}}),
        tokenizer=lambda d: build_spm_tokenizer(
            d, spm_bytes=spm_bytes, tokenizer_class="GemmaTokenizer",
            cfg=dict(bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>", mask_token="<mask>",
                     add_bos_token=True, add_eos_token=False),
            added=["<start_of_turn>", "<end_of_turn>"],
            template=read_template(src, "google-gemma-2-2b-it.jinja"), extra_cfg={}),
        template="google-gemma-2-2b-it.jinja (llama.cpp ships no Gemma 3 template; Gemma 3 uses the same <start_of_turn>/<end_of_turn> turn format)",
        pre=None, norm_offsets=GEMMA_NORM_OFFSETS,
        features=["GQA 4/2, head_dim 16", "6 layers: 5 sliding (window 8) + 1 global (layer 5), exactly llama.cpp's hard-coded Gemma 3 pattern (every 6th layer global)",
                  "rope_theta 1e6 on global layers, rope_local_base_freq 1e4 on sliding layers",
                  "q_norm / k_norm (Gemma RMSNorm x*(1+w) over head_dim, before RoPE)",
                  "query_pre_attn_scalar 16 = head_dim", "no soft-capping (Gemma 3 has none)",
                  "embeddings scaled by sqrt(hidden)=8", "4 norms per layer", "tied embeddings",
                  "SentencePiece BPE tokenizer (byte fallback, no dummy prefix), BOS <bos>"],
        ablations={"no_window": lambda c: setattr(c, "sliding_window", 10 ** 6),
                   "same_rope_base": lambda c: set_rope(c, {"sliding_attention": {"rope_type": "default", "rope_theta": 1000000.0},
                                                            "full_attention": {"rope_type": "default", "rope_theta": 1000000.0}})},
    )


PHI3_SHORT_FACTOR = [1.0, 1.02, 1.05, 1.1, 1.2, 1.35, 1.5, 1.7]
PHI3_LONG_FACTOR = [1.0, 1.5, 2.5, 4.0, 6.0, 9.0, 12.0, 16.0]


def fam_phi3(src: Path):
    spm_bytes = train_spm(add_dummy_prefix=True,
                          pieces=dict(unk_id=0, bos_id=1, eos_id=2, pad_id=-1),
                          user_defined=[])
    return dict(
        cls="Phi3ForCausalLM", cfg_cls="Phi3Config",
        cfg=dict(vocab_size=None, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                 original_max_position_embeddings=32, rms_norm_eps=1e-5, tie_word_embeddings=False,
                 initializer_range=0.5, sliding_window=None, bos_token_id=1, eos_token_id=None, pad_token_id=None,
                 rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0, "partial_rotary_factor": 1.0,
                                  "short_factor": PHI3_SHORT_FACTOR, "long_factor": PHI3_LONG_FACTOR,
                                  "original_max_position_embeddings": 32}),
        tokenizer=lambda d: build_spm_tokenizer(
            d, spm_bytes=spm_bytes, tokenizer_class="LlamaTokenizer",
            cfg=dict(bos_token="<s>", eos_token="<|endoftext|>", unk_token="<unk>", pad_token="<|endoftext|>",
                     add_bos_token=False, add_eos_token=False, legacy=False),
            added=["<|endoftext|>", "<|assistant|>", "<|system|>", "<|end|>", "<|user|>"],
            template=read_template(src, "microsoft-Phi-3.5-mini-instruct.jinja"), extra_cfg={}),
        template="microsoft-Phi-3.5-mini-instruct.jinja", pre=None,
        features=["fused self_attn.qkv_proj [q(4*16); k(2*16); v(2*16)] x 64 and mlp.gate_up_proj [gate(128); up(128)] x 64",
                  "GQA 4/2", "rope_type longrope: short_factor/long_factor (8 each), original_max_position_embeddings 32, max_position_embeddings 128",
                  "untied lm_head", "SentencePiece BPE tokenizer (Llama style: dummy prefix, byte fallback), no BOS added (as Phi-3.5)"],
        ablations={},
    )


FAMILY_SPECS = {"llama3": fam_llama3, "mistral": fam_mistral, "qwen3": fam_qwen3,
                "gemma2": fam_gemma2, "gemma3": fam_gemma3, "phi3": fam_phi3}


def set_rope(c, params):
    c.rope_parameters = params


def read_template(src: Path, name: str) -> str:
    return (src / "models" / "templates" / name).read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------
# model building and reference outputs

def build_model(spec, vocab_size: int, seed: int, ablate=None):
    import torch
    import transformers
    cfg_cls = getattr(transformers, spec["cfg_cls"])
    cfg = cfg_cls(**{**spec["cfg"], "vocab_size": vocab_size})
    cfg._attn_implementation = "eager"
    if ablate is not None:
        ablate(cfg)
    torch.manual_seed(seed)
    model = getattr(transformers, spec["cls"])(cfg)
    model = model.to(torch.float32).eval()
    g = torch.Generator().manual_seed(seed + 1_000_003)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if p.ndim == 1:
                p.add_(torch.randn(p.shape, generator=g) * PERTURB_NORMS)
                for key, off in spec.get("norm_offsets", {}).items():
                    if key in name:
                        p.add_(off)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = None
    model.generation_config.bos_token_id = None
    return model


def run_prompt(model, ids: list[int]):
    import torch
    x = torch.tensor([ids])
    with torch.no_grad():
        logits = model(x).logits[0].float().numpy()
        out = model.generate(x, do_sample=False, max_new_tokens=N_GEN, min_new_tokens=N_GEN,
                             output_logits=True, return_dict_in_generate=True,
                             eos_token_id=None, pad_token_id=0)
    greedy = out.sequences[0, len(ids):].tolist()
    margins = []
    for step, lg in enumerate(out.logits):
        v = torch.sort(lg[0].float(), descending=True).values
        margins.append(float(v[0] - v[1]))
        assert int(lg[0].argmax()) == greedy[step]
    # consistency: a full forward over prompt + generated (no cache) gives the same argmaxes
    with torch.no_grad():
        full = model(torch.tensor([ids + greedy])).logits[0]
    nocache = full[len(ids) - 1:-1].argmax(-1).tolist()
    return logits, greedy, margins, nocache


def check_ablation(spec, vocab, seed, prompts, name, fn, sd):
    """max |logit difference| on the long prompt between the model and the same weights with
    one feature switched off."""
    import numpy as np
    import torch
    m2 = build_model(spec, vocab, seed, ablate=fn)
    m2.load_state_dict(sd)
    ids = prompts[-1]["ids"]
    with torch.no_grad():
        l2 = m2(torch.tensor([ids])).logits[0].float().numpy()
    diff = float(np.abs(l2 - prompts[-1]["logits"]).max())
    return diff, l2, m2


# ---------------------------------------------------------------------------------------
# conversion (runs in a subprocess: `make-family-fixtures.py _convert LLAMA_SRC PRE MODEL_DIR OUTFILE`)

def convert_main(argv: list[str]) -> None:
    src, pre, model_dir, outfile = argv
    sys.path.insert(0, src)
    sys.path.insert(1, str(Path(src) / "gguf-py"))
    os.chdir(src)
    import conversion.base as cb
    if pre != "-":
        def pinned(self, tokenizer, _pre=pre):
            from hashlib import sha256
            chk = sha256(str(tokenizer.encode(self_chktxt)).encode()).hexdigest()
            print(f"[make-family-fixtures] pre-tokenizer pinned to {_pre!r} (chkhsh of this vocabulary: {chk})")
            return _pre
        import inspect
        srcl = inspect.getsource(cb.TextModel.get_vocab_base_pre)
        self_chktxt = eval(srcl.split("chktxt = ", 1)[1].split("\n", 1)[0])
        cb.TextModel.get_vocab_base_pre = pinned
    import convert_hf_to_gguf
    sys.argv = ["convert_hf_to_gguf.py", model_dir, "--outfile", outfile, "--outtype", "f32"]
    convert_hf_to_gguf.main()


# ---------------------------------------------------------------------------------------
# GGUF inspection

def gguf_summary(src: Path, path: Path) -> dict:
    sys.path.insert(0, str(src / "gguf-py"))
    import gguf
    r = gguf.GGUFReader(str(path))
    kv = {}
    for f in r.fields.values():
        if f.name.startswith("GGUF."):
            continue
        if f.name in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type", "tokenizer.ggml.merges"):
            kv[f.name] = f"<array of {len(f.data)}>"
            continue
        if f.name == "tokenizer.chat_template":
            kv[f.name] = f"<{len(f.contents())} chars, = tokenizer_config.json chat_template>"
            continue
        try:
            v = f.contents()
        except Exception:  # noqa: BLE001
            v = "<unreadable>"
        if isinstance(v, float):
            v = float(f"{v:.9g}")
        if isinstance(v, list):
            v = [float(f"{x:.9g}") if isinstance(x, float) else x for x in v]
        kv[f.name] = v
    tensors = [{"name": t.name, "ggml_shape": [int(x) for x in t.shape], "type": t.tensor_type.name}
               for t in r.tensors]
    return {"kv": kv, "tensors": tensors}


def gguf_tensors(src: Path, path: Path) -> dict:
    sys.path.insert(0, str(src / "gguf-py"))
    import gguf
    import numpy as np
    r = gguf.GGUFReader(str(path))
    return {t.name: np.array(t.data).reshape([int(x) for x in reversed(t.shape)]) for t in r.tensors}


def llama_permute(w, n_head):
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


def verify_gguf(fam: str, spec, src: Path, d: Path, model) -> dict:
    """Check every GGUF tensor against the HF weights under the transform the README documents,
    and that the expected metadata keys are present. Returns the per-tensor mapping."""
    import numpy as np
    from safetensors.numpy import load_file
    hf = load_file(str(d / "model.safetensors"))
    gt = gguf_tensors(src, d / "model.gguf")
    summ = gguf_summary(src, d / "model.gguf")
    kv = summ["kv"]
    arch = kv["general.architecture"]
    cfg = model.config
    n_head, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    mapping = {}

    def hf_for(gname):
        parts = gname.split(".")
        if parts[0] == "token_embd":
            return "model.embed_tokens.weight", None
        if parts[0] == "output_norm":
            return "model.norm.weight", None
        if parts[0] == "output":
            return "lm_head.weight", None
        if parts[0] == "blk":
            i, rest = parts[1], ".".join(parts[2:-1])
            m = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
                 "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "attn_qkv": "self_attn.qkv_proj",
                 "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
                 "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
                 "post_attention_norm": "post_attention_layernorm", "post_ffw_norm": "post_feedforward_layernorm"}
            if rest == "ffn_norm":
                hn = "pre_feedforward_layernorm" if arch.startswith("gemma") else "post_attention_layernorm"
            elif rest == "ffn_up" and arch == "phi3":
                hn = "mlp.gate_up_proj"
            else:
                hn = m[rest]
            return f"model.layers.{i}.{hn}.weight", rest
        return None, None

    for gname, arr in gt.items():
        hname, kind = hf_for(gname)
        if hname is None:
            mapping[gname] = "(generated by the converter, no HF tensor): " + json.dumps(
                [float(f"{x:.9g}") for x in arr.astype(np.float64).ravel().tolist()])
            continue
        w = hf[hname]
        note = "identical"
        if arch == "llama" and kind in ("attn_q", "attn_k"):
            w = llama_permute(w, n_head if kind == "attn_q" else n_kv)
            note = "rows permuted (LlamaModel.permute, n_head=%d)" % (n_head if kind == "attn_q" else n_kv)
        if arch.startswith("gemma") and gname.endswith("norm.weight"):
            w = w + 1.0
            note = "HF weight + 1.0"
        assert arr.shape == w.shape, (gname, arr.shape, w.shape)
        assert np.array_equal(arr.astype(np.float32), w.astype(np.float32)), gname
        mapping[gname] = f"{hname}: {note}"
    if "lm_head.weight" not in hf:
        assert "output.weight" not in gt
    return {"arch": arch, "tensor_map": mapping, **summ}


# ---------------------------------------------------------------------------------------

def prompt_texts(tok):
    long_text = ""
    for s in LONG_SENTENCES:
        long_text = (long_text + " " + s).strip()
        if len(tok(long_text).input_ids) >= LONG_MIN_TOKENS:
            break
    n = len(tok(long_text).input_ids)
    assert LONG_MIN_TOKENS <= n <= LONG_MAX_TOKENS, n
    return [("short", SHORT_TEXT), ("long", long_text)]


def version_of(mod: str) -> str:
    try:
        return __import__(mod).__version__
    except Exception:  # noqa: BLE001
        return "?"


def make_family(fam: str, src: Path, out_root: Path, provenance: dict) -> dict:
    import numpy as np
    import torch
    spec = FAMILY_SPECS[fam](src)
    d = out_root / fam
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    tok = spec["tokenizer"](d)
    vocab = len(tok)
    # config.json's special token ids follow the tokenizer (they do not touch the weights or the RNG)
    spec["cfg"].update(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    prompts = [{"name": n, "text": t, "ids": tok(t).input_ids} for n, t in prompt_texts(tok)]

    # SentencePiece families: transformers' tokenization must equal sentencepiece's own
    if (d / "tokenizer.model").exists():
        import sentencepiece as spm
        sp = spm.SentencePieceProcessor(model_file=str(d / "tokenizer.model"))
        for p in prompts:
            ref = sp.encode(p["text"])
            if tok.bos_token_id is not None and p["ids"][:1] == [tok.bos_token_id]:
                ref = [tok.bos_token_id] + ref
            assert p["ids"] == ref, (fam, p["name"], p["ids"], ref)

    # seed search: first seed whose greedy margins are all >= MIN_MARGIN
    best = None
    for seed in range(SEED_TRIES):
        model = build_model(spec, vocab, seed)
        res = [run_prompt(model, p["ids"]) for p in prompts]
        mm = min(min(r[2]) for r in res)
        ok = all(r[1] == r[3] and len(set(r[1])) >= MIN_DISTINCT for r in res)
        if ok and (best is None or mm > best[0]):
            best = (mm, seed)
        if ok and mm >= MIN_MARGIN:
            break
    mm, seed = best
    model = build_model(spec, vocab, seed)
    for p in prompts:
        logits, greedy, margins, nocache = run_prompt(model, p["ids"])
        p.update(logits=logits, greedy=greedy, margins=[round(m, 6) for m in margins],
                 min_margin=round(min(margins), 6), greedy_matches_full_forward_argmax=(greedy == nocache))
    model.save_pretrained(str(d), safe_serialization=True)
    sd = {k: v.clone() for k, v in model.state_dict().items()}

    checks = {}
    for name, fn in spec["ablations"].items():
        diff, l2, m2 = check_ablation(spec, vocab, seed, prompts, name, fn, sd)
        checks[name] = {"max_abs_logit_diff_long_prompt": diff}
        assert diff > 1e-3, (fam, name, diff)
        if fam == "mistral" and name == "no_window":
            # what a GGUF-only loader (llama.cpp: arch llama, no sliding window) computes
            for p in prompts:
                lg, gr, mg, _ = run_prompt(m2, p["ids"])
                fn_ = f"{p['name']}.nowindow.logits.f32"
                lg.astype("<f4").tofile(d / fn_)
                p["no_window"] = {"logits_file": fn_, "greedy": gr, "margins": [round(m, 6) for m in mg]}

    phi3_info = None
    if fam == "phi3":
        phi3_info = phi3_rope_record(model, prompts)

    # chat
    chat_text = tok.apply_chat_template(CHAT_MESSAGES, tokenize=False, add_generation_prompt=True)
    chat_ids = tok(chat_text, add_special_tokens=False).input_ids
    alt = tok.apply_chat_template(CHAT_MESSAGES, tokenize=True, add_generation_prompt=True)
    if isinstance(alt, dict) or hasattr(alt, "keys"):
        alt = alt["input_ids"]
    assert list(alt) == chat_ids, (fam, alt, chat_ids)

    for p in prompts:
        fn_ = f"{p['name']}.logits.f32"
        p["logits"].astype("<f4").tofile(d / fn_)
        p["logits_file"] = fn_
        p["logits_shape"] = [len(p["ids"]), vocab]
        del p["logits"]

    # convert
    gguf_path = d / "model.gguf"
    cmd = [sys.executable, str(Path(__file__).resolve()), "_convert", str(src), spec["pre"] or "-", str(d), str(gguf_path)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stdout + r.stderr)
        raise SystemExit(f"converter failed for {fam}")
    pinned_line = [l for l in (r.stdout + r.stderr).splitlines() if "pre-tokenizer pinned" in l]
    gg = verify_gguf(fam, spec, src, d, model)

    cfg = json.loads((d / "config.json").read_text())
    ref = {
        "family": fam,
        "provenance": {**provenance, "seed": seed, "seed_rule": f"first seed in 0..{SEED_TRIES - 1} with every greedy margin >= {MIN_MARGIN} and >= {MIN_DISTINCT} distinct tokens per greedy continuation",
                       "norm_weight_offsets": spec.get("norm_offsets", {}),
                       "norm_weight_perturbation_std": PERTURB_NORMS,
                       "convert_command": f"python3 {src}/convert_hf_to_gguf.py fixtures/families/{fam} --outfile fixtures/families/{fam}/model.gguf --outtype f32"
                                          + (f"  (with TextModel.get_vocab_base_pre pinned to {spec['pre']!r}; {pinned_line[0].split('(', 1)[1].rstrip(')') if pinned_line else ''})" if spec["pre"] else ""),
                       "chat_template_source": f"llama.cpp models/templates/{spec['template']}"},
        "model_class": spec["cls"],
        "config_class": spec["cfg_cls"],
        "attn_implementation": "eager",
        "dtype": "float32",
        "features": spec["features"],
        "config": {k: cfg[k] for k in sorted(cfg) if k not in ("transformers_version",)},
        "vocab_size": vocab,
        "special_tokens": {k: {"text": getattr(tok, k), "id": getattr(tok, k + "_id")}
                           for k in ("bos_token", "eos_token", "pad_token", "unk_token") if getattr(tok, k, None) is not None},
        "feature_checks": checks,
        "min_margin": round(mm, 6),
        "n_gen": N_GEN,
        "prompts": prompts,
        "chat": {"messages": CHAT_MESSAGES, "text": chat_text, "ids": chat_ids,
                 "how": "tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True); ids = tokenizer(text, add_special_tokens=False) (== apply_chat_template(tokenize=True))"},
        "gguf": gg,
    }
    if phi3_info:
        ref["longrope"] = phi3_info
    (d / "reference.json").write_text(json.dumps(ref, indent=1, ensure_ascii=False) + "\n")
    return {"family": fam, "seed": seed, "min_margin": mm,
            "bytes": sum(f.stat().st_size for f in d.iterdir())}


def phi3_rope_record(model, prompts) -> dict:
    """Which LongRoPE factor set transformers used for each prompt, and its attention scaling."""
    import math
    import torch
    rot = model.model.rotary_emb
    cfg = model.config
    rp = cfg.rope_parameters
    orig = rp["original_max_position_embeddings"]
    dim = cfg.hidden_size // cfg.num_attention_heads
    base = rp["rope_theta"]
    exps = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim
    short = 1.0 / (torch.tensor(rp["short_factor"]) * base ** exps)
    long = 1.0 / (torch.tensor(rp["long_factor"]) * base ** exps)
    rec = {}
    for p in prompts:
        n = len(p["ids"])
        with torch.no_grad():
            rot(torch.zeros(1, n, cfg.hidden_size), torch.arange(n)[None])
        used = "long" if torch.allclose(rot.inv_freq, long) else ("short" if torch.allclose(rot.inv_freq, short) else "?")
        expect = "long" if n > orig else "short"
        assert used == expect, (used, expect)
        end = n + N_GEN
        gen_used = "long" if end - 1 + 1 > orig else "short"
        assert n > orig or end <= orig, "a prompt would switch factor sets mid-generation"
        p["longrope_factors"] = used
        rec[p["name"]] = {"n_prompt": n, "prefill_factors": used, "max_seq_len_during_generation": end - 1,
                          "generation_factors": gen_used}
    factor = cfg.max_position_embeddings / orig
    att = math.sqrt(1 + math.log(factor) / math.log(orig))
    assert abs(att - rot.attention_scaling) < 1e-6, (att, rot.attention_scaling)
    rec["attention_scaling"] = rot.attention_scaling
    rec["rule"] = (
        "transformers 5.x (modeling_rope_utils.dynamic_rope_update -> longrope_frequency_update): before every forward, "
        "seq_len = max(position_ids) + 1; if seq_len > original_max_position_embeddings the long_factor inv_freq is used "
        "for ALL positions of that forward, otherwise the short_factor one (inv_freq[i] = 1 / (factor[i] * theta^(2i/dim))). "
        "During cached generation this is re-decided per step, so keys already in the cache keep the rotation they were "
        "made with; these prompts never cross the boundary (short: prompt+16 <= 32, long: prompt > 32). "
        "attention_scaling = sqrt(1 + ln(max_position_embeddings / original_max_position_embeddings) / ln(original_max_position_embeddings)) "
        "(factor = 128/32 = 4 since rope_parameters has no 'factor'), applied to BOTH cos and sin for BOTH factor sets "
        "(i.e. q.k scores are multiplied by attention_scaling^2). llama.cpp instead picks long vs short once per context "
        "(n_ctx > n_ctx_orig -> long) and reads the same attention factor from phi3.rope.scaling.attn_factor.")
    return rec


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_convert":
        convert_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-src", required=True, type=Path,
                    help="llama.cpp source dir holding convert_hf_to_gguf.py, conversion/, gguf-py/, models/templates/")
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--out", type=Path, default=OUT_DEFAULT)
    args = ap.parse_args()
    src = args.llama_src.resolve()
    assert (src / "convert_hf_to_gguf.py").is_file(), src

    import torch
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    sys.path.insert(0, str(src / "gguf-py"))
    import gguf
    prov = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d"),
        "script": "scripts/make-family-fixtures.py",
        "command": "python3 scripts/make-family-fixtures.py --llama-src <llama-cpp-python-0.3.36 sdist>/vendor/llama.cpp",
        "python": platform.python_version(),
        "torch": version_of("torch"),
        "transformers": version_of("transformers"),
        "tokenizers": version_of("tokenizers"),
        "sentencepiece": version_of("sentencepiece"),
        "safetensors": version_of("safetensors"),
        "numpy": version_of("numpy"),
        "gguf_py": f"{gguf.__file__.split('/gguf-py/')[0].split('/')[-1]} gguf-py (pyproject version {gguf_py_version(src)})",
        "converter": "convert_hf_to_gguf.py from the llama-cpp-python==0.3.36 sdist (vendor/llama.cpp), sha256 of convert_hf_to_gguf.py "
                     + hashlib.sha256((src / "convert_hf_to_gguf.py").read_bytes()).hexdigest()[:16]
                     + ", conversion/ tree sha256 " + tree_hash(src / "conversion")[:16],
    }
    results = []
    for fam in args.families.split(","):
        print(f"== {fam}", flush=True)
        res = make_family(fam, src, args.out, prov)
        print(f"   seed {res['seed']}  min margin {res['min_margin']:.4f}  {res['bytes']} bytes", flush=True)
        results.append(res)
    for r in results:
        print(f"{r['family']:8s} seed={r['seed']:3d} min_margin={r['min_margin']:.4f} bytes={r['bytes']}")


def gguf_py_version(src: Path) -> str:
    for line in (src / "gguf-py" / "pyproject.toml").read_text().splitlines():
        if line.startswith("version"):
            return line.split("=", 1)[1].strip().strip('"')
    return "?"


def tree_hash(p: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p.rglob("*.py")):
        h.update(f.relative_to(p).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


if __name__ == "__main__":
    main()
