#!/usr/bin/env python3
"""Writes tests/data/llama3_rope.json: llama-3 RoPE inverse frequencies as Hugging Face
`transformers` computes them (`ROPE_INIT_FUNCTIONS["llama3"]`), for the configs headroom's
tests use, with the versions that made them. headroom's own `llama3_rope_inv_freq` is
checked against these numbers, so a bug shared by its GPU path and its CPU reference
(which both call it) cannot hide.

Needs torch and transformers (the H200 machine has both):
    python3 scripts/make-rope-fixture.py tests/data/llama3_rope.json
"""
import datetime
import json
import platform
import sys

import torch
import transformers
from transformers import LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

CASES = [
    # Llama-3.1-8B's config.json
    dict(name="llama-3.1-8b", head_dim=128, heads=32, rope_theta=500000.0, factor=8.0,
         low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8192),
    # tests/forward_synthetic.rs's llama-3 model: every frequency band in 12 values
    dict(name="synthetic-d24", head_dim=24, heads=4, rope_theta=500000.0, factor=8.0,
         low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=32),
]


def config(c):
    scaling = {
        "rope_type": "llama3",
        "factor": c["factor"],
        "low_freq_factor": c["low_freq_factor"],
        "high_freq_factor": c["high_freq_factor"],
        "original_max_position_embeddings": c["original_max_position_embeddings"],
    }
    common = dict(hidden_size=c["head_dim"] * c["heads"], num_attention_heads=c["heads"],
                  head_dim=c["head_dim"], max_position_embeddings=131072)
    try:  # transformers 5: one rope_parameters dict
        return LlamaConfig(rope_parameters=dict(scaling, rope_theta=c["rope_theta"]), **common)
    except TypeError:  # transformers 4
        return LlamaConfig(rope_theta=c["rope_theta"], rope_scaling=scaling, **common)


def main(out):
    cases = []
    for c in CASES:
        inv_freq, attention_factor = ROPE_INIT_FUNCTIONS["llama3"](config(c), torch.device("cpu"))
        cases.append(dict(c, inv_freq=[float(x) for x in inv_freq.to(torch.float32)],
                          attention_factor=float(attention_factor)))
    doc = {
        "provenance": {
            "command": "python3 scripts/make-rope-fixture.py tests/data/llama3_rope.json",
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
            "python": platform.python_version(),
            "function": "transformers.modeling_rope_utils.ROPE_INIT_FUNCTIONS['llama3'] (float32)",
        },
        "cases": cases,
    }
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
    print(json.dumps(doc["provenance"]))


if __name__ == "__main__":
    main(sys.argv[1])
