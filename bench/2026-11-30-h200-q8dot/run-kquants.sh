#!/usr/bin/env bash
# K-quant blocks kept on the GPU (f32 x path): the 7B-shaped decode step, batch 1 and 16,
# for Q4_K, Q5_K and Q6_K beside Q4_0.   bash run-kquants.sh   (carry .gl and the binary)
set -euo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export HEADROOM_NO_Q8_DOT=1   # x in f32 for Q4_0 too (the K-quants always are)
W=/tmp/w
mkdir -p "$W"
xz -dc .bin/headroom-q8.xz > "$W/headroom"; chmod +x "$W/headroom"
cd "$W"
for q in q4_0 q4_k q5_k q6_k; do
    ./headroom bench decode-step --synthetic llama2-7b --kv-heads 8 --batch 1,16 --context 4096 \
        --quant "$q" --json "kquant_step_$q.json" > "kquant_step_$q.txt" 2>&1
    echo "$q:"; grep -E "^ +8 |built|skipped" "kquant_step_$q.txt"
done
tar czf "$OUT/kquant.tgz" kquant_step_*
