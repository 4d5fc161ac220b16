#!/usr/bin/env bash
# Quantized weights kept as blocks (issue 14, first step) on the H200, one device session.
# Part 1 (no model file): a Llama-2-7B-shaped decode step (GQA, 8 KV heads, N = 4096,
# batch 1 and 16) with random f16 weights and with random Q4_0, Q4_1, Q8_0 blocks.
# Part 2: SmolLM2-135M-Instruct (Q4_1 GGUF) end to end, f16 and native weights,
# interleaved f16 native native f16. The model arrives in two halves (64 MiB per call).
#   bash run.sh step   |   bash run.sh generate
set -euo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
W=/tmp/w
mkdir -p "$W"
case "$1" in
step)
    xz -dc .bin/headroom-native.xz > "$W/headroom"
    chmod +x "$W/headroom"
    cp .bin/m.00 "$W/"
    cd "$W"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > gpu.txt
    for q in f16 q4_0 q4_1 q8_0; do
        quant=()
        [ "$q" = f16 ] || quant=(--quant "$q")
        ./headroom bench decode-step --synthetic llama2-7b --kv-heads 8 --batch 1,16 \
            --context 4096 "${quant[@]}" --json "step_$q.json" > "step_$q.txt" 2>&1
        grep -E "random|^ +8 " "step_$q.txt"
    done
    tar czf "$OUT/part1.tgz" gpu.txt step_*
    ;;
generate)
    cd "$W"
    cat m.00 "$OLDPWD/.bin/m.01" > smollm2.gguf
    sha256sum smollm2.gguf | tee sha256.txt
    i=0
    for w in f16 native native f16; do
        i=$((i + 1))
        ./headroom bench generate --model smollm2.gguf --weights "$w" --prompt-tokens 128 \
            --gen-tokens 256 --runs 5 --json "generate_${i}_$w.json" > "generate_${i}_$w.txt" 2>&1
        grep -E "on the GPU|median" "generate_${i}_$w.txt"
    done
    tar czf "$OUT/part2.tgz" sha256.txt generate_*
    ;;
esac
