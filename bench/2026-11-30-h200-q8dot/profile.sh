#!/usr/bin/env bash
# Run during the session with an intermediate build in which the integer-dot path was the
# default for quantized weights and used dot4I8Packed ("q4_0" below), HEADROOM_NO_Q8_DOT=1
# kept x in f32 ("f32x") and EXP_POLY=1 unpacked the lanes ("poly"). With this commit the
# same variants are: HEADROOM_Q8_PACKED_DOT=1, HEADROOM_NO_Q8_DOT=1, and no variable
# (HEADROOM_Q8_DOT=1 below is what switched the path on while it was opt-in; it is the
# default now and the variable is ignored); the script below is rewritten to use them.
set -e
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
xz -dc .bin/headroom-q8.xz > /tmp/hr; chmod +x /tmp/hr
for q in f16 q4_0 q4_0-f32x q8_0; do
  args=(--quant "${q%-f32x}"); [ "$q" = f16 ] && args=()
  env=(HEADROOM_Q8_DOT=1 HEADROOM_Q8_PACKED_DOT=1); [ "$q" = q4_0-f32x ] && env=(HEADROOM_NO_Q8_DOT=1)
  echo "== $q"
  env "${env[@]}" /tmp/hr bench decode-step --synthetic llama2-7b --kv-heads 8 --batch 1 --context 4096 --runs 5 --probe-gib 0.25 "${args[@]}" --profile 2>&1 | grep -E "profile|^ +8 "
done
