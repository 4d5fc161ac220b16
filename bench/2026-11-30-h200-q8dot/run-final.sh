#!/usr/bin/env bash
# (HEADROOM_Q8_DOT=1 switched the integer-dot path on while it was opt-in; it is the
# default since; HEADROOM_NO_Q8_DOT=1 keeps x in f32.)
# The integer-dot path as the default for quantized weights, with the logits kept in f32:
# the 7B-shaped Q4_0 step in four processes beside x in f32 and f16, then SmolLM2 end to
# end (native is the default weights setting now; HEADROOM_NO_Q8_DOT=1 gives the f32 path).
#   bash run-final.sh step   (carry .gl, the binary, m.00)  |  bash run-final.sh generate  (carry m.01)
set -euo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
W=/tmp/w
mkdir -p "$W"
case "$1" in
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
            --context 4096 --runs 20 "${args[@]}" --json "final_step_${i}_$v.json" > "final_step_${i}_$v.txt" 2>&1
        echo "$i $v: $(grep -E '^ +8 ' "final_step_${i}_$v.txt")"
    done
    tar czf "$OUT/part1.tgz" final_step_*
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
            --prompt-tokens 128 --gen-tokens 256 --runs 5 --json "final_generate_${i}_$w.json" \
            > "final_generate_${i}_$w.txt" 2>&1
        echo "$i $w: $(grep -E "^decode" "final_generate_${i}_$w.txt")"
    done
    tar czf "$OUT/part2.tgz" final_generate_*
    ;;
esac
