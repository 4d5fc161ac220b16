#!/usr/bin/env bash
# H200 runs of bench/2026-12-01-h200-speculate: speculative decoding by prompt lookup
# against plain decoding on the serving engine, SmolLM2-135M-Instruct (Q4_1, the default
# model), one greedy request at a time (`headroom bench speculate`). Two chained calls:
#   bash run.sh a   carry .gl .bin/headroom.xz .bin/m.00: unpacks the binary and the
#                   model's first half into /tmp/w
#   bash run.sh b   carry .gl .bin/m.01: joins the model, runs the bench with 2, 4 and 8
#                   draft tokens, three processes each way
# .bin/headroom.xz is the stripped release binary (objcopy --strip-debug, xz -T2 -3); m.00
# and m.01 the default model's halves (`split -b 40000000 -d`).
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
W=/tmp/w
R=$W/res
mkdir -p "$R"
case "$1" in
a)
    xz -dc .bin/headroom.xz > "$W/headroom"; chmod +x "$W/headroom"
    cp .bin/m.00 "$W/"
    nvidia-smi > "$R/smi.txt" 2>&1
    ls -la "$W"
    ;;
b)
    cat "$W/m.00" .bin/m.01 > "$W/smollm2.gguf"
    sha256sum "$W/smollm2.gguf" | tee "$R/model.sha256"
    cd "$W"
    for draft in 4 8 2 4 8 2; do
        i=$((${i:-0} + 1))
        timeout 240 ./headroom bench speculate --model smollm2.gguf --gen-tokens 256 \
            --repeats 5 --draft-tokens $draft --json "res/spec_${i}_d${draft}.json" \
            > "res/spec_${i}_d${draft}.txt" 2>&1
        echo "== run $i, draft $draft"; tail -3 "res/spec_${i}_d${draft}.txt"
    done
    tar -C "$W" -cf "$OUT/res.tar" res
    ;;
esac
