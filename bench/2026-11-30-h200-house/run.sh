#!/usr/bin/env bash
# The house refactor (issue 13) on the H200: the same benchmarks with the binary of the
# commit before it (old, 659b189) and after it (new), interleaved old new new old in one
# device session. Part 1 (no model file): decode attention alone and a 7B-shape decode
# step. Part 2: SmolLM2 end to end (the model file arrives in two halves, see README).
#   bash run.sh attention   |   bash run.sh generate
set -euo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
W=/tmp/w
mkdir -p "$W"
case "$1" in
attention)
    for b in old new; do xz -dc ".bin/headroom-$b.xz" > "$W/headroom-$b"; chmod +x "$W/headroom-$b"; done
    cp .bin/m.00 "$W/"
    cd "$W"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > gpu.txt
    i=0
    for b in old new new old; do
        i=$((i + 1))
        ./headroom-$b bench attention --variants mha,gqa8,mqa --batches 16 --contexts 4096,16384 \
            --head-dims 128 --json "attention_${i}_$b.json" > "attention_${i}_$b.txt" 2>&1
        ./headroom-$b bench decode-step --synthetic llama2-7b --kv-heads 8 --batch 1,16 \
            --context 4096 --json "decode_step_${i}_$b.json" > "decode_step_${i}_$b.txt" 2>&1
        tail -n 12 "attention_${i}_$b.txt" "decode_step_${i}_$b.txt"
    done
    tar czf "$OUT/part1.tgz" gpu.txt attention_* decode_step_*
    ;;
generate)
    cd "$W"
    cat m.00 "$OLDPWD/.bin/m.01" > smollm2.gguf
    sha256sum smollm2.gguf | tee sha256.txt
    i=0
    for b in old new new old; do
        i=$((i + 1))
        ./headroom-$b bench generate --model smollm2.gguf --prompt-tokens 128 --gen-tokens 256 \
            --runs 5 --json "generate128_${i}_$b.json" > "generate128_${i}_$b.txt" 2>&1
        ./headroom-$b bench generate --model smollm2.gguf --prompt-tokens 2048 --gen-tokens 256 \
            --runs 3 --json "generate2k_${i}_$b.json" > "generate2k_${i}_$b.txt" 2>&1
        tail -n 3 "generate128_${i}_$b.txt" "generate2k_${i}_$b.txt"
    done
    tar czf "$OUT/part2.tgz" sha256.txt generate*
    ;;
esac
