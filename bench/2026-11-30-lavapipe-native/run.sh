#!/usr/bin/env bash
# SmolLM2-135M-Instruct on lavapipe (this project's 2-core CI-like machine, no GPU): f16
# weights, native blocks with the integer-dot decode path (the default), and native blocks
# with x kept in f32. Release build of the commit named in README.md.
#   bash bench/2026-11-30-lavapipe-native/run.sh
set -euo pipefail
D=$(dirname "$0")
M=${HEADROOM_MODEL:-$HOME/.cache/headroom/models/SmolLM2-135M-Instruct.Q4_1.gguf}
for w in f16 native native-f32x; do
    env=()
    [ "$w" = native-f32x ] && env=(HEADROOM_NO_Q8_DOT=1)
    env "${env[@]}" ./target/release/headroom bench generate --model "$M" --weights "${w%-*}" \
        --prompt-tokens 32 --gen-tokens 32 --runs 2 --json "$D/generate_$w.json" > "$D/generate_$w.txt" 2>&1
    echo "$w: $(grep -E '^decode' "$D/generate_$w.txt")"
done
