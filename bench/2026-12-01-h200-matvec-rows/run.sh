#!/usr/bin/env bash
# H200 runs of bench/2026-12-01-h200-matvec-rows (decode matvecs taking 1, 2 or 4 weight
# rows per subgroup, x loaded once for them), two back-to-back device calls on one machine:
#   bash run.sh tune   carry .gl .bin/headroom.xz .bin/m.00 peer: starts llama.cpp's CUDA
#                      build (detached), `bench matmul` of one token row and a few
#                      (Q4_0 blocks with the unpacked and the packed dot, f16), and the 7B
#                      shape's synthetic decode step per setting
#   bash run.sh peer   carry .gl .bin/m.01: llama.cpp beside headroom on the same files:
#                      SmolLM2-135M Q4_1, a random 7B-shape F16 GGUF (GQA-8) and its Q4_0
# .bin/headroom.xz is the stripped release binary (objcopy --strip-debug, xz -T2 -3);
# peer/ is ../shared/tools/peer/fetch-llamacpp.sh's output; m.00 and m.01 the default
# model's halves (`split -b 40000000 -d`).
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
W=/tmp/w
R=$W/res
mkdir -p "$R"
REPO=$PWD
# LABEL ENV... -- ARGS...: one process of `bench ...ARGS` with ENV
run() {
    local label=$1; shift
    local env=()
    while [ "$1" != -- ]; do env+=("$1"); shift; done; shift
    (cd "$W" && env "${env[@]}" timeout 200 ./headroom "$@" --json "res/$label.json" \
        > "res/$label.txt" 2>&1)
}
case "$1" in
tune)
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv > "$R/gpu.txt"
    mkdir -p "$W/llama"
    tar xJf peer/llama-src.tar.xz -C "$W/llama"
    cp -r peer "$W/peer"
    setsid nohup bash -c "cd $W/llama/llama.cpp && cmake -B build -DGGML_CUDA=ON \
        -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release > $W/build.log 2>&1 \
        && cmake --build build -j 12 --target llama-bench llama-quantize >> $W/build.log 2>&1; \
        touch $W/build.done" > /dev/null 2>&1 < /dev/null &
    xz -dc .bin/headroom.xz > "$W/headroom"; chmod +x "$W/headroom"
    cp .bin/m.00 "$W/"
    for rows in 1 2 4; do
        run matmul_q4_0_rows$rows HEADROOM_MATVEC_ROWS=$rows -- bench matmul --tokens 1,2,4,8 \
            --quant q4_0 --runs 20
        [ $rows != 2 ] && run matmul_q4_0_packed_rows$rows HEADROOM_MATVEC_ROWS=$rows \
            HEADROOM_Q8_PACKED_DOT=1 -- bench matmul --tokens 1,2,4,8 --quant q4_0 --runs 20
        run matmul_f16_rows$rows HEADROOM_MATVEC_ROWS=$rows -- bench matmul --tokens 1,2,4,8 --runs 20
    done
    for f in "$R"/matmul_*.txt; do echo "== $(basename $f .txt)"; grep "decode matvec" "$f" \
        | awk '{print $2, "T", $9, $11, "us", $15, "GB/s"}' | tr '\n' ';'; echo; done
    for rows in 1 2 4; do
        run step_q4_0_rows$rows HEADROOM_MATVEC_ROWS=$rows -- bench decode-step \
            --synthetic llama2-7b --kv-heads 8 --batch 1 --runs 20 --context 128 --quant q4_0
        run step_f16_rows$rows HEADROOM_MATVEC_ROWS=$rows -- bench decode-step \
            --synthetic llama2-7b --kv-heads 8 --batch 1 --runs 20 --context 128
    done
    run step_q4_0_rows4_unfused HEADROOM_MATVEC_ROWS=4 HEADROOM_FUSED_PROLOGUE=0 -- bench \
        decode-step --synthetic llama2-7b --kv-heads 8 --batch 1 --runs 20 --context 128 --quant q4_0
    for f in "$R"/step_*.txt; do echo "$(basename $f .txt): $(grep -E '^ +8 +1 ' "$f")"; done
    tail -2 "$W/build.log"
    ;;
peer)
    cat "$W/m.00" .bin/m.01 > "$W/smollm2.gguf"
    sha256sum "$W/smollm2.gguf" > "$R/sha256.txt"
    (cd "$W" && python3 peer/make_random_gguf.py smollm2.gguf 7b-gqa8-f16.gguf --shape llama2-7b \
        --kv-heads 8 > res/make_gguf.txt 2>&1; touch gguf.done) &
    for rows in 1 2 4; do
        run smollm2_rows$rows HEADROOM_MATVEC_ROWS=$rows -- bench generate --model smollm2.gguf \
            --prompt-tokens 128 --gen-tokens 256 --runs 5
        echo "smollm2 rows $rows: $(grep -E '^decode' "$R/smollm2_rows$rows.txt")"
    done
    for i in $(seq 1 90); do [ -e "$W/build.done" ] && break; sleep 5; done
    wait
    B="$W/llama/llama.cpp/build/bin"
    "$B/llama-quantize" "$W/7b-gqa8-f16.gguf" "$W/7b-gqa8-q4_0.gguf" Q4_0 16 > "$R/quantize.txt" 2>&1
    "$B/llama-bench" -m "$W/smollm2.gguf" -ngl 99 -fa 1 -p 512 -n 128 -r 3 > "$R/llama_smollm2.txt" 2>&1
    for m in q4_0 f16; do
        "$B/llama-bench" -m "$W/7b-gqa8-$m.gguf" -ngl 99 -fa 1 -p 512 -n 128 -r 3 > "$R/llama_7b_$m.txt" 2>&1
    done
    grep -hE "^\|" "$R"/llama_*.txt
    for m in q4_0 f16; do
        for rows in 1 4 2; do
            run 7b_${m}_rows$rows HEADROOM_MATVEC_ROWS=$rows -- bench generate \
                --model 7b-gqa8-$m.gguf --prompt-tokens 128 --gen-tokens 128 --runs 3
            echo "7b $m rows $rows: $(grep -E '^decode' "$R/7b_${m}_rows$rows.txt")"
        done
    done
    run smollm2_rows1_again HEADROOM_MATVEC_ROWS=1 -- bench generate --model smollm2.gguf \
        --prompt-tokens 128 --gen-tokens 256 --runs 5
    echo "smollm2 rows 1 again: $(grep -E '^decode' "$R/smollm2_rows1_again.txt")"
    ;;
esac
