#!/usr/bin/env bash
# H200 runs of bench/2026-12-01-h200-prefill: forms of the matrix-unit GEMM on f16 weights
# (fragments prefetched a K step ahead; 128 x 128 tiles staged through two stages of
# workgroup memory), and quantized weights dequantized to f16 rows before it. Chained
# calls on one machine:
#   bash run.sh a   carry .gl peer .bin/headroom.xz .bin/kernels.xz: starts llama.cpp's
#                   CUDA build (detached); the matmul kernel tests under each form; one
#                   matmul alone over the 7B shapes, each form, f16 and Q4_0
#   bash run.sh lb  carry the same (a later binary): naga's loop bounding off against on,
#                   the forms' matmuls, whole decode steps
# Then the final binary, llama.cpp beside it, in chained calls:
#   bash run.sh new carry .gl peer .bin/headroom.xz .bin/kernels.xz: starts llama.cpp's
#                   build; all kernel tests; one matmul alone, f16 and Q4_0
#   bash run.sh b   carry .gl .bin/m.00: the default model's first half
#   bash run.sh c   carry .gl .bin/m.01: random 7B-shape GGUFs (F16, Q4_0; GQA-8),
#                   `bench generate` (prefill of 512 and 2 048 tokens, decode) with the
#                   defaults and with the previous kernels (env), and SmolLM2
#   bash run.sh d   carry .gl: llama-bench on the same files
# .bin/headroom.xz and .bin/kernels.xz are the stripped release binary and the kernel
# test binary (objcopy --strip-debug, xz -T2 -3); m.00 and m.01 the default model's halves
# (`split -b 49181216 -d`).
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
W=/tmp/w
R=$W/res
mkdir -p "$R"
HERE=$PWD/bench/2026-12-01-h200-prefill
# LABEL ENV... -- ARGS...: one process of `headroom ARGS` with ENV
run() {
    local label=$1; shift
    local env=()
    while [ "$1" != -- ]; do env+=("$1"); shift; done; shift
    (cd "$W" && env "${env[@]}" timeout 170 ./headroom "$@" --json "res/$label.json" \
        > "res/$label.txt" 2>&1)
}
# llama.cpp's CUDA build, detached so that it survives the call
build_llama() {
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv > "$R/gpu.txt"
    mkdir -p "$W/llama"
    tar xJf peer/llama-src.tar.xz -C "$W/llama"
    cp -r peer "$W/peer"
    setsid nohup bash -c "cd $W/llama/llama.cpp && cmake -B build -DGGML_CUDA=ON \
        -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release > $W/build.log 2>&1 \
        && cmake --build build -j 12 --target llama-bench llama-batched-bench >> $W/build.log 2>&1; \
        touch $W/build.done" > /dev/null 2>&1 < /dev/null &
}
case "$1" in
a)
    build_llama
    xz -dc .bin/headroom.xz > "$W/headroom"; chmod +x "$W/headroom"
    xz -dc .bin/kernels.xz > "$W/kernels"; chmod +x "$W/kernels"
    for form in direct prefetch staged staged16; do
        (cd "$W" && HEADROOM_COOP_F16=$form timeout 150 ./kernels matmul quantized \
            > "res/tests_kernels_$form.txt" 2>&1)
        echo "tests $form: $(grep 'test result' "$R/tests_kernels_$form.txt")"
    done
    for form in direct prefetch staged staged16; do
        run matmul_f16_wide_$form HEADROOM_COOP_F16=$form HEADROOM_COOP_WIDE=1 -- bench matmul \
            --kernels coop --tokens 128,512,2048
    done
    for form in direct prefetch; do
        run matmul_f16_narrow_$form HEADROOM_COOP_F16=$form HEADROOM_COOP_WIDE=0 -- bench matmul \
            --kernels coop --tokens 64,128,256
    done
    run matmul_q4_0_staging HEADROOM_COOP_DEQUANT=0 -- bench matmul --quant q4_0 \
        --kernels coop,auto --tokens 16,64,128,512
    for form in direct staged; do
        run matmul_q4_0_dequant_$form HEADROOM_COOP_F16=$form -- bench matmul --quant q4_0 \
            --kernels coop,auto --tokens 16,64,128,512,2048
    done
    for f in "$R"/matmul_*.txt; do echo "== $(basename $f .txt)"; grep -E 'TFLOP' "$f" \
        | awk '{print $1, $2, $8, $10, $12}' | tr '\n' ';'; echo; done
    ;;
b)
    cp .bin/m.00 "$W/"
    ;;
lb)
    # a later binary: naga's loop bounding off (HEADROOM_LOOP_BOUNDING=0) against on
    build_llama
    xz -dc .bin/headroom.xz > "$W/headroom"; chmod +x "$W/headroom"
    xz -dc .bin/kernels.xz > "$W/kernels"; chmod +x "$W/kernels"
    (cd "$W" && HEADROOM_LOOP_BOUNDING=0 timeout 150 ./kernels > res/tests_kernels_lb0.txt 2>&1)
    echo "tests lb0: $(grep 'test result' "$R/tests_kernels_lb0.txt")"
    for lb in 1 0; do
        for form in direct prefetch staged16; do
            run lb${lb}_matmul_f16_$form HEADROOM_LOOP_BOUNDING=$lb HEADROOM_COOP_F16=$form \
                HEADROOM_COOP_WIDE=1 -- bench matmul --kernels coop --tokens 512,2048
        done
        run lb${lb}_matmul_q4_0 HEADROOM_LOOP_BOUNDING=$lb -- bench matmul --quant q4_0 \
            --kernels auto --tokens 1,2,4,512
    done
    for i in 1 2; do
        for lb in 1 0; do
            run lb${lb}_step_q4_0_$i HEADROOM_LOOP_BOUNDING=$lb -- bench decode-step \
                --synthetic llama2-7b --kv-heads 8 --batch 1 --runs 50 --context 128,2048 --quant q4_0
            run lb${lb}_step_f16_$i HEADROOM_LOOP_BOUNDING=$lb -- bench decode-step \
                --synthetic llama2-7b --kv-heads 8 --batch 1 --runs 50 --context 128,2048
            run lb${lb}_step_smollm2_$i HEADROOM_LOOP_BOUNDING=$lb -- bench decode-step \
                --synthetic smollm2-135m --kv-heads 3 --batch 1 --runs 50 --context 128,2048 --quant q4_1
        done
    done
    for f in "$R"/lb*_step_*.txt; do echo "== $(basename $f .txt)"; grep -E "^ +(8|3) +1 " "$f"; done
    ;;
new)
    # the final binary: its defaults (loop bounding off, staged tiles, quantized weights
    # dequantized for the matrix units) checked by the kernel tests, one matmul alone
    build_llama
    xz -dc .bin/headroom.xz > "$W/headroom"; chmod +x "$W/headroom"
    xz -dc .bin/kernels.xz > "$W/kernels"; chmod +x "$W/kernels"
    (cd "$W" && timeout 150 ./kernels > res/tests_kernels_final.txt 2>&1)
    echo "tests final: $(grep 'test result' "$R/tests_kernels_final.txt")"
    run final_matmul_f16 -- bench matmul --kernels coop,auto --tokens 16,64,128,512,2048
    run final_matmul_q4_0 -- bench matmul --quant q4_0 --kernels coop,auto --tokens 16,64,128,512,2048
    ;;
c)
    cat "$W/m.00" .bin/m.01 > "$W/smollm2.gguf"
    sha256sum "$W/smollm2.gguf" > "$R/sha256.txt"
    (cd "$W" && python3 "$HERE/../2026-12-01-h200-packed-dot/make_random_q4_0_gguf.py" smollm2.gguf \
        7b-gqa8-q4_0.gguf --kv-heads 8 > res/make_q4_0.txt 2>&1 && python3 peer/make_random_gguf.py \
        smollm2.gguf 7b-gqa8-f16.gguf --shape llama2-7b --kv-heads 8 > res/make_f16.txt 2>&1)
    # the same binary as before this change: loop bounding on, fragments from memory,
    # quantized weights through the staging kernel
    old=(HEADROOM_LOOP_BOUNDING=1 HEADROOM_COOP_STAGED=0 HEADROOM_COOP_DEQUANT=0)
    for m in f16 q4_0; do
        for p in 512 2048; do
            run gen_7b_${m}_new_p$p -- bench generate --model 7b-gqa8-$m.gguf --prompt-tokens $p \
                --gen-tokens 32 --runs 3
            run gen_7b_${m}_old_p$p "${old[@]}" -- bench generate --model 7b-gqa8-$m.gguf \
                --prompt-tokens $p --gen-tokens 32 --runs 3
        done
    done
    for i in 1 2; do
        run gen_smollm2_new_$i -- bench generate --model smollm2.gguf --prompt-tokens 512 \
            --gen-tokens 256 --runs 3
        run gen_smollm2_old_$i "${old[@]}" -- bench generate --model smollm2.gguf \
            --prompt-tokens 512 --gen-tokens 256 --runs 3
    done
    for f in "$R"/gen_*.txt; do echo "$(basename $f .txt): $(grep -E '^decode' "$f")"; done
    ls -la "$W"/*.gguf; tail -1 "$W/build.log"
    ;;
d)
    for i in $(seq 1 100); do [ -e "$W/build.done" ] && break; sleep 5; done
    B="$W/llama/llama.cpp/build/bin"
    "$B/llama-bench" -m "$W/smollm2.gguf" -ngl 99 -fa 1 -p 512 -n 128 -r 3 > "$R/llama_smollm2.txt" 2>&1
    for m in q4_0 f16; do
        "$B/llama-bench" -m "$W/7b-gqa8-$m.gguf" -ngl 99 -fa 1 -p 512,2048 -n 128 -r 3 > "$R/llama_7b_$m.txt" 2>&1
    done
    grep -hE "^\|" "$R"/llama_*.txt
    tail -3 "$W/build.log"
    ;;
esac
cd "$W" && tar czf "$OUT/res.tgz" res
