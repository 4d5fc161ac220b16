#!/usr/bin/env bash
# H200 runs of bench/2026-11-30-h200-fused, in three back-to-back device calls:
#   bash run.sh start    carry .gl .bin/headroom.xz .bin/m.00 peer: starts llama.cpp's CUDA
#                        build (detached), then the 7B-shaped synthetic steps
#   bash run.sh smollm2  carry .gl .bin/m.01: the SmolLM2 file, the random 7B GGUF, the
#                        build's end, SmolLM2 in headroom and llama.cpp
#   bash run.sh big      carry .gl: the 7B GGUFs (F16 and Q4_0) in both engines
# then, on a fresh machine with the binary that fuses only under FUSE_MAX_REREAD_BYTES:
#   bash run.sh rule-7b       carry .gl .bin/headroom.xz .bin/m.00
#   bash run.sh rule-smollm2  carry .gl .bin/m.01
# and one head per attention workgroup (HEADROOM_ATTN_MAX_GROUP=1) against the default 4
# at longer contexts:
#   bash run.sh group-7b       carry .gl .bin/headroom.xz .bin/m.00
#   bash run.sh group-smollm2  carry .gl .bin/m.01
# then with the binary that picks the attention variant per step (variant_for):
#   bash run.sh variant-7b       carry .gl .bin/headroom.xz .bin/m.00
#   bash run.sh variant-smollm2  carry .gl .bin/m.01
# and the host time of a decode step (commit af76df9):
#   bash run.sh host-start     carry .gl .bin/headroom.xz .bin/m.00
#   bash run.sh host-smollm2   carry .gl .bin/m.01
# and the merge storing attention's outputs as 8-bit blocks: commit 34cca55 (files merge_*),
# then commit 0bcf7a4 (files merge2_*: the same stages with PREFIX=merge2):
#   bash run.sh merge-start     carry .gl .bin/headroom.xz .bin/m.00
#   bash run.sh merge-smollm2   carry .gl .bin/m.01
# peer/ is ../shared/tools/peer/fetch-llamacpp.sh's output; .bin/headroom.xz the stripped
# release binary (objcopy --strip-debug, xz -T2 -3).
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
W=/tmp/w
mkdir -p "$W"
REPO=$PWD
step() {   # LABEL ENV... -- ARGS...
    local label=$1; shift
    local env=()
    while [ "$1" != -- ]; do env+=("$1"); shift; done; shift
    (cd "$W" && env "${env[@]}" timeout 150 ./headroom bench decode-step --synthetic llama2-7b \
        --kv-heads 8 --batch 1 --runs 20 "$@" --json "res/$label.json" > "res/$label.txt" 2>&1)
    echo "$label: $(grep -E '^ +8 ' "$W/res/$label.txt")"
}
gen() {   # LABEL MODEL ENV... -- ARGS...
    local label=$1 model=$2; shift 2
    local env=()
    while [ "$1" != -- ]; do env+=("$1"); shift; done; shift
    (cd "$W" && env "${env[@]}" timeout 200 ./headroom bench generate --model "$model" "$@" \
        --json "res/$label.json" > "res/$label.txt" 2>&1)
    echo "$label: $(grep -E '^decode' "$W/res/$label.txt")"
}
case "$1" in
start)
    mkdir -p "$W/res" "$W/llama"
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv > "$W/res/gpu.txt"
    tar xJf peer/llama-src.tar.xz -C "$W/llama"
    cp -r peer "$W/peer"
    setsid nohup bash -c "cd $W/llama/llama.cpp && cmake -B build -DGGML_CUDA=ON \
        -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release > $W/build.log 2>&1 \
        && cmake --build build -j 14 --target llama-bench llama-quantize >> $W/build.log 2>&1; \
        touch $W/build.done" > /dev/null 2>&1 < /dev/null &
    xz -dc .bin/headroom.xz > "$W/headroom"; chmod +x "$W/headroom"
    cp .bin/m.00 "$W/"
    # 7B shape, GQA-8, Q4_0 blocks: RMSNorm and SiLU·mul inside the matmuls or on their own
    step q4_0_fused_1 -- --context 128 --quant q4_0 --profile
    step q4_0_unfused_1 HEADROOM_FUSED_PROLOGUE=0 -- --context 128 --quant q4_0 --profile
    step q4_0_fused_rows32 HEADROOM_FUSED_ROWS=32 -- --context 128 --quant q4_0
    step f16_1 -- --context 128
    step q4_0_fused_2 -- --context 128 --quant q4_0
    step q4_0_unfused_2 HEADROOM_FUSED_PROLOGUE=0 -- --context 128 --quant q4_0
    step q4_0_fused_4096 -- --context 4096 --quant q4_0 --profile
    cat "$W/build.log" | tail -3
    ;;
smollm2)
    cat "$W/m.00" .bin/m.01 > "$W/smollm2.gguf"
    sha256sum "$W/smollm2.gguf" > "$W/res/sha256.txt"
    (cd "$W" && python3 peer/make_random_gguf.py smollm2.gguf 7b-gqa8-f16.gguf --shape llama2-7b \
        --kv-heads 8 > res/make_gguf.txt 2>&1; touch gguf.done) &
    for i in $(seq 1 90); do [ -e "$W/build.done" ] && break; sleep 5; done
    tail -2 "$W/build.log"; ls "$W/llama/llama.cpp/build/bin/" || true
    wait
    for i in 1 2; do
        gen smollm2_fused_$i smollm2.gguf -- --prompt-tokens 128 --gen-tokens 256 --runs 5
        gen smollm2_unfused_$i smollm2.gguf HEADROOM_FUSED_PROLOGUE=0 -- --prompt-tokens 128 --gen-tokens 256 --runs 5
        gen smollm2_f16_$i smollm2.gguf -- --weights f16 --prompt-tokens 128 --gen-tokens 256 --runs 5
    done
    B="$W/llama/llama.cpp/build/bin"
    "$B/llama-bench" -m "$W/smollm2.gguf" -ngl 99 -fa 1 -p 512 -n 128 -r 3 > "$W/res/llama_smollm2.txt" 2>&1
    cat "$W/res/llama_smollm2.txt" | grep -E "^\|"
    ;;
big)
    B="$W/llama/llama.cpp/build/bin"
    "$B/llama-quantize" "$W/7b-gqa8-f16.gguf" "$W/7b-gqa8-q4_0.gguf" Q4_0 16 > "$W/res/quantize.txt" 2>&1
    for m in q4_0 f16; do
        "$B/llama-bench" -m "$W/7b-gqa8-$m.gguf" -ngl 99 -fa 1 -p 512 -n 128 -r 3 > "$W/res/llama_7b_$m.txt" 2>&1
        grep -E "^\|" "$W/res/llama_7b_$m.txt"
    done
    gen 7b_q4_0_fused 7b-gqa8-q4_0.gguf -- --prompt-tokens 128 --gen-tokens 128 --runs 3
    gen 7b_q4_0_unfused 7b-gqa8-q4_0.gguf HEADROOM_FUSED_PROLOGUE=0 -- --prompt-tokens 128 --gen-tokens 128 --runs 3
    gen 7b_f16 7b-gqa8-f16.gguf -- --prompt-tokens 128 --gen-tokens 128 --runs 3
    ;;
rule-7b)
    mkdir -p "$W/res"
    xz -dc .bin/headroom.xz > "$W/headroom"; chmod +x "$W/headroom"
    cp .bin/m.00 "$W/"
    step rule_q4_0_1 -- --context 128 --quant q4_0 --profile
    step rule_q4_0_group1 HEADROOM_ATTN_MAX_GROUP=1 -- --context 128 --quant q4_0 --profile
    step rule_q4_0_2 -- --context 128 --quant q4_0
    step rule_q4_0_4096 -- --context 4096 --quant q4_0
    ;;
rule-smollm2)
    cat "$W/m.00" .bin/m.01 > "$W/smollm2.gguf"
    for i in 1 2; do
        gen rule_smollm2_$i smollm2.gguf -- --prompt-tokens 128 --gen-tokens 256 --runs 5
        gen rule_smollm2_unfused_$i smollm2.gguf HEADROOM_FUSED_PROLOGUE=0 -- --prompt-tokens 128 --gen-tokens 256 --runs 5
        gen rule_smollm2_group1_$i smollm2.gguf HEADROOM_ATTN_MAX_GROUP=1 -- --prompt-tokens 128 --gen-tokens 256 --runs 5
    done
    ;;
group-7b)
    mkdir -p "$W/res"
    xz -dc .bin/headroom.xz > "$W/headroom"; chmod +x "$W/headroom"
    cp .bin/m.00 "$W/"
    for n in 512 1024 4096; do
        step group4_q4_0_$n -- --context $n --quant q4_0
        step group1_q4_0_$n HEADROOM_ATTN_MAX_GROUP=1 -- --context $n --quant q4_0
    done
    ;;
group-smollm2)
    cat "$W/m.00" .bin/m.01 > "$W/smollm2.gguf"
    for p in 1024 3072; do
        gen group4_smollm2_$p smollm2.gguf -- --prompt-tokens $p --gen-tokens 256 --runs 3
        gen group1_smollm2_$p smollm2.gguf HEADROOM_ATTN_MAX_GROUP=1 -- --prompt-tokens $p --gen-tokens 256 --runs 3
    done
    ;;
variant-7b)
    mkdir -p "$W/res"
    xz -dc .bin/headroom.xz > "$W/headroom"; chmod +x "$W/headroom"
    cp .bin/m.00 "$W/"
    for n in 128 4096; do
        step variant_q4_0_$n -- --context $n --quant q4_0
        step variant_f16_$n -- --context $n
    done
    ;;
variant-smollm2)
    cat "$W/m.00" .bin/m.01 > "$W/smollm2.gguf"
    for i in 1 2; do
        gen variant_smollm2_$i smollm2.gguf -- --prompt-tokens 128 --gen-tokens 256 --runs 5
    done
    gen variant_smollm2_3072 smollm2.gguf -- --prompt-tokens 3072 --gen-tokens 256 --runs 3
    gen variant_smollm2_f16 smollm2.gguf -- --weights f16 --prompt-tokens 128 --gen-tokens 256 --runs 5
    ;;
host-start)
    mkdir -p "$W/res"
    xz -dc .bin/headroom.xz > "$W/headroom"; chmod +x "$W/headroom"
    cp .bin/m.00 "$W/"
    step host_q4_0_128 -- --context 128 --quant q4_0
    ;;
host-smollm2)
    cat "$W/m.00" .bin/m.01 > "$W/smollm2.gguf"
    for i in 1 2; do
        gen host_smollm2_$i smollm2.gguf -- --prompt-tokens 128 --gen-tokens 256 --runs 5
    done
    gen host_smollm2_f16 smollm2.gguf -- --weights f16 --prompt-tokens 128 --gen-tokens 256 --runs 5
    ;;
merge-start)
    mkdir -p "$W/res"
    xz -dc .bin/headroom.xz > "$W/headroom"; chmod +x "$W/headroom"
    cp .bin/m.00 "$W/"
    step ${PREFIX:-merge}_q4_0_128 -- --context 128 --quant q4_0
    step ${PREFIX:-merge}_q4_0_4096 -- --context 4096 --quant q4_0
    ;;
merge-smollm2)
    cat "$W/m.00" .bin/m.01 > "$W/smollm2.gguf"
    for i in 1 2; do
        gen ${PREFIX:-merge}_smollm2_$i smollm2.gguf -- --prompt-tokens 128 --gen-tokens 256 --runs 5
    done
    gen ${PREFIX:-merge}_smollm2_3072 smollm2.gguf -- --prompt-tokens 3072 --gen-tokens 256 --runs 3
    ;;
esac
cd "$W/res" && tar czf "$OUT/res-$1.tgz" .
