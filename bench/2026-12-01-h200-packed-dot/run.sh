#!/usr/bin/env bash
# H200 runs of bench/2026-12-01-h200-packed-dot: what the synthetic decode step's slow mode
# is, and whether the packed integer dot holds up over whole 7B Q4_0 generations.
#   bash run.sh step   carry .gl .bin/headroom.xz .bin/m.00 peer/llama.cpp: GPU clocks
#                      logged every 50 ms (nvidia-smi) around synthetic decode steps
#   bash run.sh tune   carry .gl .bin/headroom.xz: (a later binary, packed dot the
#                      default) rows per subgroup for the packed dot, matvecs alone and
#                      whole synthetic steps with each kernel family's time
#   bash run.sh attn   carry .gl .bin/headroom.xz: (a later binary with the attention's
#                      tuning knobs) decode attention's loads in flight and split
#                      granularity, whole synthetic steps at contexts 128, 512 and 2048
#   bash run.sh gen    carry .gl .bin/m.01: a random 7B-shape Q4_0 GGUF
#                      (make_random_q4_0_gguf.py), `bench generate` with and without the
#                      packed dot, alternating processes, clocks logged throughout
# Then the final binary (packed dot, attention loads and pipelined chains by default) with
# llama.cpp beside it, three back-to-back calls on one machine:
#   bash run.sh final-a  carry .gl .bin/headroom.xz .bin/m.00 peer: starts llama.cpp's
#                        CUDA build (detached); synthetic 7B steps with kernel times
#   bash run.sh final-b  carry .gl .bin/m.01: the 7B-shape files (Q4_0 and F16, GQA-8),
#                        `bench generate` on them and on SmolLM2, chains pipelined or not
#   bash run.sh final-c  carry .gl: llama-bench on the same three files
# .bin/headroom.xz is the stripped release binary (objcopy --strip-debug, xz -T2 -3); m.00
# and m.01 the default model's halves (`split -b 40000000 -d`).
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
W=/tmp/w
R=$W/res
mkdir -p "$R"
HERE=$PWD/bench/2026-12-01-h200-packed-dot
# LABEL ENV... -- ARGS...: one process of `headroom ARGS` with ENV, clocks logged beside it
run() {
    local label=$1; shift
    local env=()
    while [ "$1" != -- ]; do env+=("$1"); shift; done; shift
    nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,utilization.gpu,clocks_event_reasons.active \
        --format=csv,nounits -lms 50 > "$R/$label.clocks.csv" 2>&1 &
    local smi=$!
    (cd "$W" && env "${env[@]}" timeout 150 ./headroom "$@" --json "res/$label.json" \
        > "res/$label.txt" 2>&1)
    kill $smi
}
case "$1" in
step)
    nvidia-smi > "$R/smi.txt" 2>&1
    nvidia-smi -q -d PERFORMANCE,CLOCK,POWER > "$R/smi_q.txt" 2>&1
    xz -dc .bin/headroom.xz > "$W/headroom"; chmod +x "$W/headroom"
    cp .bin/m.00 "$W/"; cp -r peer "$W/peer"
    for i in 1 2; do
        run step_unpacked_$i -- bench decode-step --synthetic llama2-7b --kv-heads 8 --batch 1 \
            --runs 200 --context 128 --quant q4_0
        run step_packed_$i HEADROOM_Q8_PACKED_DOT=1 -- bench decode-step --synthetic llama2-7b \
            --kv-heads 8 --batch 1 --runs 200 --context 128 --quant q4_0
    done
    for f in "$R"/step_*.txt; do echo "$(basename $f .txt): $(grep -E '^ +8 +1 ' "$f")"; done
    ;;
tune)
    xz -dc .bin/headroom.xz > "$W/headroom"; chmod +x "$W/headroom"
    for rows in 1 2 4; do
        run tune_matmul_q4_0_rows$rows HEADROOM_MATVEC_ROWS=$rows -- bench matmul \
            --tokens 1,2,4 --quant q4_0 --runs 20
        run tune_matmul_smollm2_q4_1_rows$rows HEADROOM_MATVEC_ROWS=$rows -- bench matmul \
            --synthetic smollm2-135m --kv-heads 3 --tokens 1 --quant q4_1 --runs 20
    done
    for f in "$R"/tune_matmul_*.txt; do echo "== $(basename $f .txt)"; grep "decode matvec" "$f" \
        | awk '{print $2, "T", $9, $11, "us", $15, "GB/s"}' | tr '\n' ';'; echo; done
    for rows in default 1 2 4; do
        env=(); [ $rows != default ] && env=(HEADROOM_MATVEC_ROWS=$rows)
        run tune_step_q4_0_rows$rows "${env[@]}" -- bench decode-step --synthetic llama2-7b \
            --kv-heads 8 --batch 1 --runs 50 --context 128 --quant q4_0 --profile
    done
    run tune_step_smollm2 -- bench decode-step --synthetic smollm2-135m --kv-heads 3 --batch 1 \
        --runs 50 --context 128 --quant q4_1 --profile
    run tune_step_f16 -- bench decode-step --synthetic llama2-7b --kv-heads 8 --batch 1 \
        --runs 50 --context 128 --profile
    for f in "$R"/tune_step_*.txt; do echo "== $(basename $f .txt)"; grep -E "^ +(8|3) +1 |profile" "$f"; done
    ;;
attn)
    xz -dc .bin/headroom.xz > "$W/headroom"; chmod +x "$W/headroom"
    knobs=(default "KC=16" "VR=8" "KC=16 VR=8" "AL=32" "AL=32 KC=16 VR=8" "AL=16 KC=16 VR=8" "AL=32 KC=8 VR=8")
    for k in "${knobs[@]}"; do
        env=(); label=$(echo "$k" | tr -d ' =')
        for kv in $k; do
            case $kv in
            KC=*) env+=(HEADROOM_ATTN_KEY_CHUNKS=${kv#KC=}) ;;
            VR=*) env+=(HEADROOM_ATTN_VALUE_ROWS=${kv#VR=}) ;;
            AL=*) env+=(HEADROOM_ATTN_SPLIT_ALIGN=${kv#AL=}) ;;
            esac
        done
        run attn_7b_$label "${env[@]}" -- bench decode-step --synthetic llama2-7b --kv-heads 8 \
            --batch 1 --runs 50 --context 128,512,2048 --quant q4_0
        run attn_smollm2_$label "${env[@]}" -- bench decode-step --synthetic smollm2-135m \
            --kv-heads 3 --batch 1 --runs 50 --context 128,512,2048 --quant q4_1
    done
    for f in "$R"/attn_*.txt; do echo "== $(basename $f .txt)"; grep -E "^ +(8|3) +1 " "$f" | awk '{print $3, $4}' | tr '\n' ';'; echo; done
    ;;
final-a)
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv > "$R/gpu.txt"
    mkdir -p "$W/llama"
    tar xJf peer/llama-src.tar.xz -C "$W/llama"
    cp -r peer "$W/peer"
    setsid nohup bash -c "cd $W/llama/llama.cpp && cmake -B build -DGGML_CUDA=ON \
        -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release > $W/build.log 2>&1 \
        && cmake --build build -j 14 --target llama-bench >> $W/build.log 2>&1; \
        touch $W/build.done" > /dev/null 2>&1 < /dev/null &
    xz -dc .bin/headroom.xz > "$W/headroom"; chmod +x "$W/headroom"
    cp .bin/m.00 "$W/"
    run final_step_q4_0 -- bench decode-step --synthetic llama2-7b --kv-heads 8 --batch 1 \
        --runs 50 --context 128,512,2048 --quant q4_0 --profile
    run final_step_f16 -- bench decode-step --synthetic llama2-7b --kv-heads 8 --batch 1 \
        --runs 50 --context 128,512,2048 --profile
    for f in "$R"/final_step_*.txt; do echo "== $(basename $f .txt)"; grep -E "^ +8 +1 " "$f"; done
    ;;
final-b)
    cat "$W/m.00" .bin/m.01 > "$W/smollm2.gguf"
    sha256sum "$W/smollm2.gguf" > "$R/sha256.txt"
    (cd "$W" && python3 "$HERE/make_random_q4_0_gguf.py" smollm2.gguf 7b-gqa8-q4_0.gguf \
        --kv-heads 8 > res/make_q4_0.txt 2>&1 && python3 peer/make_random_gguf.py smollm2.gguf \
        7b-gqa8-f16.gguf --shape llama2-7b --kv-heads 8 > res/make_f16.txt 2>&1)
    for p in 1 0; do
        run final_smollm2_pipelined$p HEADROOM_PIPELINED_CHAINS=$p -- bench generate \
            --model smollm2.gguf --prompt-tokens 128 --gen-tokens 256 --runs 5
    done
    for m in q4_0 f16; do
        for p in 1 0; do
            run final_7b_${m}_pipelined$p HEADROOM_PIPELINED_CHAINS=$p -- bench generate \
                --model 7b-gqa8-$m.gguf --prompt-tokens 128 --gen-tokens 128 --runs 3
        done
    done
    for f in "$R"/final_*pipelined*.txt; do echo "$(basename $f .txt): $(grep -E '^decode' "$f")"; done
    ls -la "$W"/*.gguf; tail -1 "$W/build.log"
    ;;
final-c)
    for i in $(seq 1 100); do [ -e "$W/build.done" ] && break; sleep 5; done
    B="$W/llama/llama.cpp/build/bin"
    "$B/llama-bench" -m "$W/smollm2.gguf" -ngl 99 -fa 1 -p 512 -n 128 -r 3 > "$R/llama_smollm2.txt" 2>&1
    for m in q4_0 f16; do
        "$B/llama-bench" -m "$W/7b-gqa8-$m.gguf" -ngl 99 -fa 1 -p 512 -n 128 -r 3 > "$R/llama_7b_$m.txt" 2>&1
    done
    grep -hE "^\|" "$R"/llama_*.txt
    tail -3 "$W/build.log"
    ;;
gen)
    cat "$W/m.00" .bin/m.01 > "$W/smollm2.gguf"
    (cd "$W" && python3 "$HERE/make_random_q4_0_gguf.py" smollm2.gguf 7b-q4_0.gguf --kv-heads 8 \
        > res/make_gguf.txt 2>&1)
    for i in 1 2 3; do
        run gen_unpacked_$i -- bench generate --model 7b-q4_0.gguf --prompt-tokens 128 \
            --gen-tokens 128 --runs 3
        run gen_packed_$i HEADROOM_Q8_PACKED_DOT=1 -- bench generate --model 7b-q4_0.gguf \
            --prompt-tokens 128 --gen-tokens 128 --runs 3
    done
    for f in "$R"/gen_*.txt; do echo "$(basename $f .txt): $(grep -E '^decode' "$f")"; done
    ;;
esac
cd "$W" && tar czf "$OUT/res.tgz" res
