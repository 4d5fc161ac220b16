#!/usr/bin/env bash
# H200 runs of bench/2026-12-01-h200-batched: quantized weights at 9-64 token rows through
# the integer-dot matvec looping over the rows 8 at a time, and many sequences decoding
# together beside llama.cpp's batched bench on the same files. Chained calls:
#   bash run.sh a   carry .gl peer .bin/headroom.xz .bin/kernels.xz: starts llama.cpp's
#                   CUDA build (detached); all kernel tests; one matmul alone (Q4_0, Q4_1)
#   bash run.sh b   carry .gl .bin/m.00: the default model's first half
#   bash run.sh c   carry .gl .bin/m.01 peer: random 7B-shape GGUFs (F16, Q4_0; GQA-8),
#                   `bench serve` at 1, 16 and 64 sequences, with and without the loop
#   bash run.sh d   carry .gl: llama-batched-bench on the same files
#   bash run.sh native carry .gl: (the same machine, after d) `bench serve` of the Q4_0
#                   file with its weights as stored, with the loop and with the matrix
#                   units forced (`c` had loaded every file as f16: bench serve's default)
# and then, on a fresh machine with the final kernel test binary (carry .gl
# .bin/kernels.xz): the kernel tests twice (tests_kernels_final_{1,2}.txt).
# .bin/headroom.xz and .bin/kernels.xz are the stripped release binary and the kernel test
# binary (objcopy --strip-debug, xz -T2 -3); m.00 and m.01 the default model's halves
# (`split -b 49181216 -d`).
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
W=/tmp/w
R=$W/res
mkdir -p "$R"
HERE=$PWD/bench/2026-12-01-h200-batched
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
    setsid nohup bash -c "cd $W/llama/llama.cpp && cmake -B build -DGGML_CUDA=ON \
        -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release > $W/build.log 2>&1 \
        && cmake --build build -j 12 --target llama-bench llama-batched-bench >> $W/build.log 2>&1; \
        touch $W/build.done" > /dev/null 2>&1 < /dev/null &
    xz -dc .bin/headroom.xz > "$W/headroom"; chmod +x "$W/headroom"
    xz -dc .bin/kernels.xz > "$W/kernels"; chmod +x "$W/kernels"
    (cd "$W" && timeout 150 ./kernels > res/tests_kernels.txt 2>&1)
    echo "tests: $(grep 'test result' "$R/tests_kernels.txt")"
    run matmul_q4_0 -- bench matmul --quant q4_0 --kernels matvec,coop,auto \
        --tokens 9,16,32,64,128,256
    run matmul_smollm2_q4_1 -- bench matmul --synthetic smollm2-135m --kv-heads 3 --quant q4_1 \
        --kernels matvec,coop,auto --tokens 9,16,32,64,128,256
    run matmul_f16 -- bench matmul --kernels matvec,coop,auto --tokens 9,16,32,64,128
    for f in "$R"/matmul_*.txt; do echo "== $(basename $f .txt)"; grep -E 'TFLOP' "$f" \
        | awk '{print $1, $2, $9, $11}' | tr '\n' ';'; echo; done
    ;;
b)
    cp .bin/m.00 "$W/"
    ;;
c)
    cat "$W/m.00" .bin/m.01 > "$W/smollm2.gguf"
    sha256sum "$W/smollm2.gguf" > "$R/sha256.txt"
    (cd "$W" && python3 "$HERE/../2026-12-01-h200-packed-dot/make_random_q4_0_gguf.py" smollm2.gguf \
        7b-gqa8-q4_0.gguf --kv-heads 8 > res/make_q4_0.txt 2>&1 && python3 peer/make_random_gguf.py \
        smollm2.gguf 7b-gqa8-f16.gguf --shape llama2-7b --kv-heads 8 > res/make_f16.txt 2>&1)
    for m in q4_0 f16; do
        run serve_7b_$m -- bench serve --model 7b-gqa8-$m.gguf --concurrency 1,16,64 \
            --prompt-tokens 512 --gen-tokens 64 --ttft-requests 0 --kv-memory 12G
    done
    run serve_7b_q4_0_noloop HEADROOM_GEMM=coop -- bench serve --model 7b-gqa8-q4_0.gguf \
        --concurrency 16,64 --prompt-tokens 512 --gen-tokens 64 --ttft-requests 0 --kv-memory 12G
    run serve_smollm2 -- bench serve --model smollm2.gguf --concurrency 1,16,64 \
        --prompt-tokens 512 --gen-tokens 64 --ttft-requests 0 --kv-memory 12G
    for f in "$R"/serve_*.txt; do echo "== $(basename $f .txt)"; tail -12 "$f"; done
    ;;
d)
    for i in $(seq 1 100); do [ -e "$W/build.done" ] && break; sleep 5; done
    B="$W/llama/llama.cpp/build/bin"
    for m in 7b-gqa8-q4_0 7b-gqa8-f16 smollm2; do
        "$B/llama-batched-bench" -m "$W/$m.gguf" -ngl 99 -fa on -npp 512 -ntg 64 -npl 1,16,64 \
            -c 40000 > "$R/llama_batched_$m.txt" 2>&1
    done
    grep -hE "^\|" "$R"/llama_batched_*.txt
    tail -3 "$W/build.log"
    ;;
native)
    for v in loop noloop; do
        e=(); [ $v = noloop ] && e=(HEADROOM_GEMM=coop)
        run serve_native_q4_0_$v "${e[@]}" -- bench serve --model 7b-gqa8-q4_0.gguf \
            --native-weights --concurrency 1,16 --prompt-tokens 512 --gen-tokens 64 \
            --ttft-requests 0 --kv-memory 12G
        echo "== $v"; head -5 "$R/serve_native_q4_0_$v.txt"
    done
    ;;
esac
cd "$W" && tar czf "$OUT/res.tgz" res
