#!/usr/bin/env bash
# H200 runs of bench/2026-12-01-h200-few-staged. Chained calls on one machine:
#   bash run.sh a   carry .gl peer .bin/headroom.xz .bin/kernels.xz .bin/vocab.gguf: starts
#                   llama.cpp's CUDA build (detached) and the random 7B-shape GGUFs (F16 by
#                   peer/make_random_gguf.py, Q4_0 by `headroom bench write-model`); the
#                   matmul kernel tests; one matmul alone at 9-128 token rows, the staged
#                   few-rows form against the form before it (f16: fragments straight from
#                   memory; Q4_0: the integer-dot matvec looping over the rows); a decode
#                   step of 16 and of 64 sequences with each
#   bash run.sh b   (not run) carry .gl: `bench serve` on the files, then llama-batched-bench
#   bash run.sh c   carry .gl peer .bin/headroom.xz .bin/vocab.gguf (see below)
#   bash run.sh d   the same carry, a later binary (see below)
#   bash run.sh e   carry .gl .bin/headroom.xz (the binary of d)
# .bin/headroom.xz and .bin/kernels.xz are the stripped release binary and the kernel test
# binary (objcopy --strip-debug, xz -T2 -3); .bin/vocab.gguf SmolLM2's tokenizer metadata.
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
W=/tmp/w
R=$W/res
mkdir -p "$R"
# LABEL ENV... -- ARGS...: one process of `headroom ARGS` with ENV
run() {
    local label=$1; shift
    local env=()
    while [ "$1" != -- ]; do env+=("$1"); shift; done; shift
    (cd "$W" && env "${env[@]}" timeout 170 ./headroom "$@" --json "res/$label.json" \
        > "res/$label.txt" 2>&1)
}
case "$1" in
a)
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv > "$R/gpu.txt"
    mkdir -p "$W/llama"
    tar xJf peer/llama-src.tar.xz -C "$W/llama"
    cp -r peer "$W/peer"
    cp .bin/vocab.gguf "$W/"
    setsid nohup bash -c "cd $W/llama/llama.cpp && cmake -B build -DGGML_CUDA=ON \
        -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release > $W/build.log 2>&1 \
        && cmake --build build -j 12 --target llama-bench llama-batched-bench >> $W/build.log 2>&1; \
        touch $W/build.done" > /dev/null 2>&1 < /dev/null &
    xz -dc .bin/headroom.xz > "$W/headroom"; chmod +x "$W/headroom"
    xz -dc .bin/kernels.xz > "$W/kernels"; chmod +x "$W/kernels"
    setsid nohup bash -c "cd $W && python3 peer/make_random_gguf.py vocab.gguf 7b-f16.gguf \
        --shape llama2-7b --kv-heads 8 > res/make_f16.txt 2>&1; ./headroom bench write-model \
        --shape llama2-7b --quant q4_0 --vocab vocab.gguf --out 7b-q4_0.gguf > res/make_q4_0.txt 2>&1; \
        touch $W/models.done" > /dev/null 2>&1 < /dev/null &
    (cd "$W" && timeout 150 ./kernels matmul > res/tests_kernels.txt 2>&1)
    echo "tests: $(grep 'test result' "$R/tests_kernels.txt")"
    grep -E "panicked|FAILED|failed" "$R/tests_kernels.txt" | head -5
    for s in 1 0; do
        run matmul_f16_staged$s HEADROOM_COOP_FEW_STAGED=$s -- bench matmul --kernels auto \
            --tokens 9,16,32,64,128
        run matmul_q4_0_few$s HEADROOM_COOP_FEW=$s -- bench matmul --quant q4_0 --kernels auto \
            --tokens 9,16,32,64,128
    done
    run matmul_f16_split8 HEADROOM_FEW_SPLIT=8 -- bench matmul --kernels auto --tokens 16,64
    run matmul_q4_0_split8 HEADROOM_FEW_SPLIT=8 -- bench matmul --quant q4_0 --kernels auto --tokens 16,64
    for f in "$R"/matmul_*.txt; do echo "== $(basename $f .txt)"; grep -E 'TFLOP' "$f" \
        | awk '{print $2, $8, $9}' | tr '\n' ';'; echo; done
    for b in 16 64; do
        for s in 1 0; do
            run step${b}_f16_staged$s HEADROOM_COOP_FEW_STAGED=$s -- bench decode-step \
                --synthetic llama2-7b --kv-heads 8 --batch $b --context 576 --runs 10
            run step${b}_q4_0_few$s HEADROOM_COOP_FEW=$s -- bench decode-step \
                --synthetic llama2-7b --kv-heads 8 --batch $b --context 576 --runs 10 --quant q4_0
        done
    done
    for f in "$R"/step*.txt; do echo "$(basename $f .txt): $(grep -E '^ +8 ' "$f")"; done
    ls -la "$W"/*.gguf; cat "$R"/make_*.txt | tail -3
    ;;
b)
    for i in $(seq 1 60); do [ -e "$W/models.done" ] && break; sleep 5; done
    for m in f16 q4_0; do
        run serve_7b_$m -- bench serve --model 7b-$m.gguf --concurrency 1,16,64 \
            --prompt-tokens 512 --gen-tokens 64 --ttft-requests 0 --kv-memory 16G
        echo "== serve $m"; grep -iE "tok/s|concurrency" "$R/serve_7b_$m.txt" | head -8
    done
    for i in $(seq 1 100); do [ -e "$W/build.done" ] && break; sleep 5; done
    B="$W/llama/llama.cpp/build/bin"
    for m in q4_0 f16; do
        "$B/llama-batched-bench" -m "$W/7b-$m.gguf" -ngl 99 -fa on -npp 512 -ntg 64 -npl 1,16,64 \
            -c 40000 > "$R/llama_batched_7b_$m.txt" 2>&1
    done
    grep -hE "^\|" "$R"/llama_*.txt
    tail -3 "$W/build.log"
    ;;
c)
    # a fresh machine, a later binary (.bin/headroom.xz: the serving engine printing each
    # step's host phases on stderr, lines "TT"): `bench serve` at 1, 16 and 64 sequences,
    # where a step's time goes between the host and the GPU
    cp .bin/vocab.gguf "$W/"
    cp -r peer "$W/peer"
    xz -dc .bin/headroom.xz > "$W/headroom"; chmod +x "$W/headroom"
    (cd "$W" && ./headroom bench write-model --shape llama2-7b --quant q4_0 --vocab vocab.gguf \
        --out 7b-q4_0.gguf > res/make_q4_0.txt 2>&1)
    run serve_7b_q4_0 -- bench serve --model 7b-q4_0.gguf --concurrency 1,16,64 \
        --prompt-tokens 512 --gen-tokens 64 --ttft-requests 0 --kv-memory 16G
    head -6 "$R/serve_7b_q4_0.txt" | grep -v "^TT"
    (cd "$W" && python3 peer/make_random_gguf.py vocab.gguf 7b-f16.gguf --shape llama2-7b \
        --kv-heads 8 > res/make_f16.txt 2>&1)
    run serve_7b_f16 -- bench serve --model 7b-f16.gguf --concurrency 1,16,64 \
        --prompt-tokens 512 --gen-tokens 64 --ttft-requests 0 --kv-memory 16G
    grep -vE "^TT" "$R/serve_7b_f16.txt" | head -6
    run step_q4_0 -- bench decode-step --synthetic llama2-7b --kv-heads 8 --batch 1,16,64 \
        --context 576 --runs 10 --quant q4_0
    run step_f16 -- bench decode-step --synthetic llama2-7b --kv-heads 8 --batch 1,16,64 \
        --context 576 --runs 10
    grep -E '^ +8 ' "$R"/step_*.txt
    ;;
d)
    # a later binary: a reported step submitted in growing runs of kernels, each as soon
    # as it is recorded (HEADROOM_EARLY_SUBMITS=1, the default) against one submission
    # (=0), alternating processes; GQA-8 files (F16 as in c, Q4_0 by the packed-dot
    # bench's writer)
    xz -dc .bin/headroom.xz > "$W/headroom"; chmod +x "$W/headroom"
    cp .bin/vocab.gguf "$W/"
    cp -r peer "$W/peer"
    Q4=$PWD/bench/2026-12-01-h200-packed-dot/make_random_q4_0_gguf.py
    [ -e "$W/7b-f16.gguf" ] || (cd "$W" && python3 peer/make_random_gguf.py vocab.gguf 7b-f16.gguf \
        --shape llama2-7b --kv-heads 8 > res/make_f16.txt 2>&1)
    (cd "$W" && python3 "$Q4" vocab.gguf \
        7b-gqa8-q4_0.gguf --kv-heads 8 > res/make_gqa8_q4_0.txt 2>&1)
    for i in 1 2; do
        for e in 1 0; do
            for m in gqa8-q4_0 f16; do
                run early${e}_${m}_$i HEADROOM_EARLY_SUBMITS=$e -- bench serve --model 7b-$m.gguf \
                    --concurrency 1,16 --prompt-tokens 512 --gen-tokens 64 --ttft-requests 0 \
                    --kv-memory 16G
                echo "early$e $m $i: $(grep -E '^ +(1|16) ' "$R/early${e}_${m}_$i.txt" | tr -s ' ' | tr '\n' ';')"
            done
        done
    done
    ;;
e)
    # decode attention's split of short contexts at one sequence: the default (splits of
    # whole 128-key tiles, at least 16 x group keys) against finer ones
    # (HEADROOM_ATTN_MIN_CHUNK / HEADROOM_ATTN_SPLIT_ALIGN), whole decode steps, alternating
    xz -dc .bin/headroom.xz > "$W/headroom"; chmod +x "$W/headroom"
    for i in 1; do
        for c in d:d 32:32 16:16; do
            env=(); [ "$c" != d:d ] && env=(HEADROOM_ATTN_MIN_CHUNK=${c%:*} HEADROOM_ATTN_SPLIT_ALIGN=${c#*:})
            l=split_${c/:/_}_$i
            run ${l}_q4_0 "${env[@]}" -- bench decode-step --synthetic llama2-7b --kv-heads 8 \
                --batch 1 --context 128,512,2048,4096 --runs 30 --quant q4_0
            run ${l}_f16 "${env[@]}" -- bench decode-step --synthetic llama2-7b --kv-heads 8 \
                --batch 1 --context 128,512,2048,4096 --runs 30
            echo "$l: $(grep -hE '^ +8 ' "$R/${l}_q4_0.txt" "$R/${l}_f16.txt" | awk '{print $3":"$4}' | tr '\n' ' ')"
        done
    done
    ;;
esac
cd "$W" && tar czf "$OUT/res.tgz" res
