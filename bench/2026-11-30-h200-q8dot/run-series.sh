#!/usr/bin/env bash
# One series of runs, its files named LABEL_*: the 7B-shaped Q4_0 step in four processes on
# the integer-dot path beside x in f32 and f16, then SmolLM2 end to end. Run at three
# commits of the session: LABEL fused (one shared x-block buffer, RMSNorm writing blocks),
# silu (SiLU·mul writing them too), final (the integer-dot path on by default, logits in
# f32). (HEADROOM_Q8_DOT=1 is what switched the path on before it became the default.)
#   bash run-series.sh LABEL step       (carry .gl, the binary, .bin/m.00)
#   bash run-series.sh LABEL generate   (carry .gl, .bin/m.01)
set -euo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
W=/tmp/w
mkdir -p "$W"
LABEL="$1"
case "$2" in
step)
    xz -dc .bin/headroom-q8.xz > "$W/headroom"; chmod +x "$W/headroom"
    cp .bin/m.00 "$W/"
    cd "$W"
    i=0
    for v in q8dot f32x q8dot f16 q8dot q8dot; do
        i=$((i + 1))
        env=(HEADROOM_NO_Q8_DOT=1); args=(--quant q4_0)   # x in f32 unless q8dot
        [ "$v" = q8dot ] && env=(HEADROOM_Q8_DOT=1)
        [ "$v" = f16 ] && args=()
        env "${env[@]}" ./headroom bench decode-step --synthetic llama2-7b --kv-heads 8 --batch 1 \
            --context 4096 --runs 20 "${args[@]}" --json "${LABEL}_step_${i}_$v.json" > "${LABEL}_step_${i}_$v.txt" 2>&1
        echo "$i $v: $(grep -E '^ +8 ' "${LABEL}_step_${i}_$v.txt")"
    done
    tar czf "$OUT/part1.tgz" ${LABEL}_step_*
    ;;
generate)
    cd "$W"
    cat m.00 "$OLDPWD/.bin/m.01" > smollm2.gguf
    i=0
    for w in f16 native native-q8dot native-q8dot native f16; do
        i=$((i + 1))
        env=(HEADROOM_NO_Q8_DOT=1)   # x in f32 unless the variant says q8dot
        [ "$w" = native-q8dot ] && env=(HEADROOM_Q8_DOT=1)
        env "${env[@]}" ./headroom bench generate --model smollm2.gguf --weights "${w%-*}" \
            --prompt-tokens 128 --gen-tokens 256 --runs 5 --json "${LABEL}_generate_${i}_$w.json" \
            > "${LABEL}_generate_${i}_$w.txt" 2>&1
        echo "$i $w: $(grep -E "^decode" "${LABEL}_generate_${i}_$w.txt")"
    done
    tar czf "$OUT/part2.tgz" ${LABEL}_generate_*
    ;;
esac
