#!/usr/bin/env bash
# (HEADROOM_Q8_DOT=1 switched the integer-dot path on while it was opt-in; it is the
# default since; HEADROOM_NO_Q8_DOT=1 keeps x in f32.)
# Integer-dot decode matvec for quantized weights, and 16-byte f16 weight loads (issue 14),
# on the H200 in one device session.
# Part 1 (no model file): a Llama-2-7B-shaped decode step (GQA, 8 KV heads, N = 4096,
# batch 1 and 16), f16 and Q4_0/Q4_1/Q8_0 blocks (x in f32, the default), and Q4_0 and
# Q8_0 with HEADROOM_Q8_DOT=1 (x as 8-bit blocks, integer dot products), Q4_0 in three
# processes.
# Part 2: SmolLM2-135M-Instruct (Q4_1 GGUF) end to end, f16 and native weights,
# interleaved. The model arrives in two halves (64 MiB per call).
#   bash run.sh step   |   bash run.sh generate
set -euo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
W=/tmp/w
mkdir -p "$W"
case "$1" in
step)
    xz -dc .bin/headroom-q8.xz > "$W/headroom"
    chmod +x "$W/headroom"
    cp .bin/m.00 "$W/"
    cd "$W"
    packed=0
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > gpu.txt
    for q in f16 q4_0 q4_1 q8_0 q4_0-q8dot q4_0-q8dot q4_0-q8dot q8_0-q8dot; do
        args=(--quant "${q%-*}")
        [ "$q" = f16 ] && args=()
        env=(HEADROOM_NO_Q8_DOT=1)   # x in f32 unless the variant says q8dot
        [ "${q#*-}" = q8dot ] && env=(HEADROOM_Q8_DOT=1) && q="$q-$((++packed))"
        env "${env[@]}" ./headroom bench decode-step --synthetic llama2-7b --kv-heads 8 \
            --batch 1,16 --context 4096 "${args[@]}" --json "step_$q.json" > "step_$q.txt" 2>&1
        echo "$q"; grep -E "^ +8 " "step_$q.txt"
    done
    tar czf "$OUT/part1.tgz" gpu.txt step_*
    ;;
generate)
    cd "$W"
    cat m.00 "$OLDPWD/.bin/m.01" > smollm2.gguf
    sha256sum smollm2.gguf | tee sha256.txt
    i=0
    for w in f16 native native-q8dot native f16 native-q8dot; do
        i=$((i + 1))
        env=(HEADROOM_NO_Q8_DOT=1)   # x in f32 unless the variant says q8dot
        [ "$w" = native-q8dot ] && env=(HEADROOM_Q8_DOT=1)
        env "${env[@]}" ./headroom bench generate --model smollm2.gguf --weights "${w%-*}" --prompt-tokens 128 \
            --gen-tokens 256 --runs 5 --json "generate_${i}_$w.json" > "generate_${i}_$w.txt" 2>&1
        grep -E "on the GPU|median" "generate_${i}_$w.txt"
    done
    tar czf "$OUT/part2.tgz" sha256.txt generate_*
    ;;
esac
