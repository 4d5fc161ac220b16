#!/usr/bin/env bash
# H200 runs of bench/2026-12-01-h200-speculate: speculative decoding by prompt lookup
# against plain decoding on the serving engine, SmolLM2-135M-Instruct (Q4_1, the default
# model), one greedy request at a time (`headroom bench speculate`). Two chained calls:
#   bash run.sh a   carry .gl .bin/headroom.xz .bin/m.00: unpacks the binary and the
#                   model's first half into /tmp/w
#   bash run.sh b   carry .gl .bin/m.01: joins the model, runs the bench with 2, 4 and 8
#                   draft tokens, two processes each
# and later, with a binary that has speculation in `generate` too (a, then):
#   bash run.sh gen carry .gl .bin/m.01: `headroom generate --chat` on the same two
#                   prompts, --draft-tokens 0 and 4 alternately, three processes each
# and with a binary whose sampled requests speculate too (a, then):
#   bash run.sh sampled carry .gl .bin/m.01: `bench speculate --temperature 0.7`, three
#                   processes with seeds 1, 2, 3
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
sampled)
    cat "$W/m.00" .bin/m.01 > "$W/smollm2.gguf"
    cd "$W"
    for seed in 1 2 3; do
        timeout 240 ./headroom bench speculate --model smollm2.gguf --gen-tokens 256 \
            --repeats 5 --draft-tokens 4 --temperature 0.7 --seed $seed \
            --json "res/sampled_s$seed.json" > "res/sampled_s$seed.txt" 2>&1
        echo "== seed $seed"; tail -3 "res/sampled_s$seed.txt"
    done
    tar -C "$W" -cf "$OUT/res.tar" res
    ;;
gen)
    cat "$W/m.00" .bin/m.01 > "$W/smollm2.gguf"
    cd "$W"
    copy="Repeat the following passage word for word, and nothing else.

The lighthouse stood on a rock a mile from the shore. Every evening the keeper climbed its one hundred and twelve steps, trimmed the wick, wound the clock that turned the lens, and wrote the weather in a book: the wind, the sea, the ships that passed and the time they passed. In winter the spray froze on the windows and he scraped it away with a knife. In summer the gulls nested on the gallery and he let them be. He kept the book for forty years, and when he left, the last page said only: calm sea, light wind from the west, no ships."
    chat="Write a short story about a lighthouse keeper who finds a message in a bottle. Describe the sea, the weather and what the message says."
    for i in 1 2 3; do
        for d in 0 4; do
            for w in copy chat; do
                timeout 120 ./headroom generate --model smollm2.gguf --chat --max-tokens 256 \
                    --draft-tokens $d --json --prompt "${!w}" > "res/gen_${w}_d${d}_$i.json" 2> "res/gen_${w}_d${d}_$i.err"
                python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1], len(d['generated_ids']), round(d['decode_tokens_per_s'],1), d['drafted_tokens'], d['accepted_tokens'])" "res/gen_${w}_d${d}_$i.json"
            done
        done
    done
    tar -C "$W" -cf "$OUT/res.tar" res
    ;;
esac
