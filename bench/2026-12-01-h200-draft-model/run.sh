#!/usr/bin/env bash
# H200 runs of bench/2026-12-01-h200-draft-model: speculative decoding with a draft model
# (`--draft-model`) in headroom and in llama.cpp (llama-speculative-simple), the same files
# and prompt, greedy, 4 drafted tokens a step at most, one machine, four back-to-back calls
# (a call carries at most 64 MiB, the default model is 98 MB):
#   bash run.sh a   carry .gl peer .bin/headroom.xz .bin/vocab.gguf: starts llama.cpp's
#                   build (llama-bench, llama-speculative-simple; detached)
#   bash run.sh m0  carry .bin/m.00: keeps the first half of the default model
#   bash run.sh b   carry .bin/m.01: the default model (SmolLM2-135M Q4_1) whole, an F16
#                   copy of it (to_f16.py), a Llama-2-7B-shaped random Q4_0 file with its
#                   tokenizer (`bench write-model`); headroom generate, each target plain
#                   and with SmolLM2 Q4_1 drafting, twice
#   bash run.sh c   carry .gl: llama-bench tg128 on the targets, llama-speculative-simple on
#                   the same pairs and prompt
# Then the draft model's catch-up and drafts in one chain (commit in README.md), a fresh
# machine, headroom only (llama.cpp's numbers above stand: same files and prompt):
#   bash run.sh d0  carry .gl .bin/headroom.xz .bin/vocab.gguf .bin/p.aa
#   bash run.sh d1  carry peer .bin/p.ab
#   bash run.sh d2  carry .bin/p.ac: the files again, `generate` as in b, and `bench
#                   generate` (a warm-up run, then 3) plain and drafted
# The pairs: SmolLM2 F16 drafted by SmolLM2 Q4_1 (the same model: drafts mostly stand, but a
# 135M target gains nothing from a draft that costs as much a token as itself), and a
# random 7B drafted by SmolLM2 (drafts never stand: speculation must turn itself off).
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
W=/tmp/w
R=$W/res
mkdir -p "$R"
HERE=$PWD/bench/2026-12-01-h200-draft-model
PROMPT="The history of computing is a story of people who needed to count, to measure and to predict. Merchants kept tallies on clay, and astronomers"
case "$1" in
a)
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv > "$R/gpu.txt"
    mkdir -p "$W/llama"
    tar xJf peer/llama-src.tar.xz -C "$W/llama"
    setsid nohup bash -c "cd $W/llama/llama.cpp && cmake -B build -DGGML_CUDA=ON \
        -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON \
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release > $W/build.log 2>&1 \
        && cmake --build build -j 14 --target llama-bench llama-speculative-simple >> $W/build.log 2>&1; \
        touch $W/build.done" > /dev/null 2>&1 < /dev/null &
    xz -dc .bin/headroom.xz > "$W/headroom"; chmod +x "$W/headroom"
    cp .bin/vocab.gguf "$W/"
    cp -r peer/llama.cpp/gguf-py "$W/gguf-py"
    cp "$HERE/to_f16.py" "$W/"
    ls -la "$W"
    ;;
m0)
    cp .bin/m.00 "$W/"
    ls -la "$W/m.00"
    ;;
b)
    cp .bin/p.ac "$W/"; cat "$W"/p.aa "$W"/p.ab "$W"/p.ac > "$W/smollm2-q4_1.gguf"
    (cd "$W" && PYTHONPATH=gguf-py python3 to_f16.py smollm2-q4_1.gguf smollm2-f16.gguf) > "$R/to_f16.txt" 2>&1
    tail -1 "$R/to_f16.txt"
    "$W/headroom" bench write-model --shape llama2-7b --vocab "$W/vocab.gguf" --out "$W/l7b.gguf" \
        > "$R/write_l7b.txt" 2>&1
    cat "$R/write_l7b.txt"
    for i in 1 2; do
        for t in smollm2-f16 l7b; do
            (cd "$W" && ./headroom generate --model $t.gguf --prompt "$PROMPT" --max-tokens 128 \
                --draft-tokens 0 --json > res/gen_${t}_plain_$i.json 2> res/gen_${t}_plain_$i.err)
            (cd "$W" && ./headroom generate --model $t.gguf --prompt "$PROMPT" --max-tokens 128 \
                --draft-model smollm2-q4_1.gguf --draft-tokens 4 --json \
                > res/gen_${t}_draft_$i.json 2> res/gen_${t}_draft_$i.err)
            for m in plain draft; do
                echo "$t $m $i: $(python3 -c "import json,sys; d=json.load(open('$R/gen_${t}_${m}_$i.json')); print(round(d['decode_tokens_per_s'],1), d['drafted_tokens'], d['accepted_tokens'], len(d['generated_ids']))" 2>&1)"
            done
        done
    done
    sha256sum "$W"/*.gguf > "$R/sha256.txt"
    tail -1 "$W/build.log"
    ;;
c)
    for i in $(seq 1 100); do [ -e "$W/build.done" ] && break; sleep 5; done
    B="$W/llama/llama.cpp/build/bin"
    for t in smollm2-f16 l7b; do
        "$B/llama-bench" -m "$W/$t.gguf" -ngl 99 -fa 1 -p 0 -n 128 -r 3 > "$R/llama_bench_$t.txt" 2>&1
        for i in 1 2; do
            "$B/llama-speculative-simple" -m "$W/$t.gguf" -md "$W/smollm2-q4_1.gguf" -p "$PROMPT" \
                -n 128 --temp 0 --top-k 1 --seed 42 -ngl 99 -ngld 99 -fa on \
                --spec-type draft-simple --spec-draft-n-max 4 > "$R/llama_spec_${t}_$i.txt" 2>&1
            echo "$t $i: $(grep -hE 'decoded|accept ' "$R/llama_spec_${t}_$i.txt" | tr '\n' ' ')"
        done
    done
    grep -hE "^\| .*tg128" "$R"/llama_bench_*.txt
    tail -3 "$W/build.log"
    ;;
d0)
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv > "$R/gpu_d.txt"
    xz -dc .bin/headroom.xz > "$W/headroom"; chmod +x "$W/headroom"
    cp .bin/vocab.gguf .bin/p.aa "$W/"
    cp "$HERE/to_f16.py" "$W/"
    ;;
d1)
    cp .bin/p.ab "$W/"
    cp -r peer/llama.cpp/gguf-py "$W/gguf-py"
    ;;
d2)
    cp .bin/p.ac "$W/"; cat "$W"/p.aa "$W"/p.ab "$W"/p.ac > "$W/smollm2-q4_1.gguf"
    (cd "$W" && PYTHONPATH=gguf-py python3 to_f16.py smollm2-q4_1.gguf smollm2-f16.gguf) > "$R/d_to_f16.txt" 2>&1
    "$W/headroom" bench write-model --shape llama2-7b --vocab "$W/vocab.gguf" --out "$W/l7b.gguf" \
        > "$R/d_write_l7b.txt" 2>&1
    sha256sum "$W"/*.gguf > "$R/d_sha256.txt"
    for i in 1 2; do
        for t in smollm2-f16 l7b; do
            (cd "$W" && ./headroom generate --model $t.gguf --prompt "$PROMPT" --max-tokens 128 \
                --draft-tokens 0 --json > res/d_gen_${t}_plain_$i.json 2> res/d_gen_${t}_plain_$i.err)
            (cd "$W" && ./headroom generate --model $t.gguf --prompt "$PROMPT" --max-tokens 128 \
                --draft-model smollm2-q4_1.gguf --draft-tokens 4 --json \
                > res/d_gen_${t}_draft_$i.json 2> res/d_gen_${t}_draft_$i.err)
            for m in plain draft; do
                echo "$t $m $i: $(python3 -c "import json,sys; d=json.load(open('$R/d_gen_${t}_${m}_$i.json')); print(round(d['decode_tokens_per_s'],1), d['drafted_tokens'], d['accepted_tokens'], len(d['generated_ids']))" 2>&1)"
            done
        done
    done
    for t in smollm2-f16 l7b; do
        (cd "$W" && ./headroom bench generate --model $t.gguf --prompt-tokens 64 --gen-tokens 128 \
            --runs 3 --json res/d_bench_${t}_plain.json > /dev/null 2>&1)
        (cd "$W" && ./headroom bench generate --model $t.gguf --prompt-tokens 64 --gen-tokens 128 \
            --runs 3 --draft-model smollm2-q4_1.gguf --draft-tokens 4 \
            --json res/d_bench_${t}_draft.json > /dev/null 2>&1)
        for m in plain draft; do
            echo "bench $t $m: $(python3 -c "import json; d=json.load(open('$R/d_bench_${t}_$m.json')); print(round(d['median_decode_tokens_per_s'],1), d['drafted_tokens'], d['accepted_tokens'])")"
        done
    done
    ;;
esac
