#!/usr/bin/env bash
# H200 runs of bench/2026-12-01-h200-gemm-loads. Chained calls on one machine:
#   bash run.sh x   carry .gl .bin/headroom.xz .bin/kernels.xz: the staged GEMM's forms
#                   (HEADROOM_EXP_STAGED: unpack = the tiles' f16 through f32 and back,
#                   half = loaded as f16, ahead = loaded as f16 two K steps ahead) under
#                   the kernel tests and one matmul alone, with naga's index clamping on
#                   and off (HEADROOM_EXP_BOUNDS=0); a 7B prefill chunk profiled by kernel
# Then the final binary, llama.cpp beside it:
#   bash run.sh a   carry .gl peer .bin/headroom.xz .bin/kernels.xz: starts llama.cpp's
#                   CUDA build (detached); all kernel tests; one matmul alone (f16: the
#                   few-rows form against without it, index clamping on and off; Q4_0);
#                   whole decode steps with index clamping on and off
#   bash run.sh rebuild carry .gl peer .bin/headroom.xz (the later binary): on a fresh
#                   machine after `a`, llama.cpp's build started again
#   bash run.sh b   carry .gl .bin/m.00: the default model's first half
#   (c and d ran; then a later binary, carry .gl .bin/headroom.xz .bin/kernels.xz:)
#   bash run.sh rt  the few-rows form with up to 4 tiles of rows a workgroup (gate/up):
#                   its kernel tests, one matmul alone, a decode step of 16 sequences
#   bash run.sh rtstep  carry .gl: that step with and without the few-rows form
#   bash run.sh pf  carry .gl .bin/headroom.xz .bin/kernels.xz .bin/attention.xz (a later
#                   binary): prefill attention over query tiles, its tests, a prefill
#                   chunk with and without it; the few-rows form's chunk orders
#   bash run.sh c   carry .gl .bin/m.01 .bin/headroom.xz (a later binary): random 7B-shape GGUFs (F16, Q4_0; GQA-8),
#                   `bench generate` (prefill 512 and 2 048, decode) with index clamping
#                   off (the default) and on, SmolLM2; `bench serve` at 1 and 16 sequences,
#                   F16 with and without the few-rows form, Q4_0
#   bash run.sh d   carry .gl: llama-bench and llama-batched-bench on the same files
#   bash run.sh serve16, then step16  carry .gl: what c left, and the step of 16 sequences
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
# LABEL ENV... -- ARGS...: one process of `headroom ARGS` with ENV
run() {
    local label=$1; shift
    local env=()
    while [ "$1" != -- ]; do env+=("$1"); shift; done; shift
    (cd "$W" && env "${env[@]}" timeout 170 ./headroom "$@" --json "res/$label.json" \
        > "res/$label.txt" 2>&1)
}
HERE=$PWD/bench/2026-12-01-h200-gemm-loads
# llama.cpp's CUDA build, detached so that it survives the call
build_llama() {
    mkdir -p "$W/llama"
    tar xJf peer/llama-src.tar.xz -C "$W/llama"
    cp -r peer "$W/peer"
    setsid nohup bash -c "cd $W/llama/llama.cpp && cmake -B build -DGGML_CUDA=ON \
        -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release > $W/build.log 2>&1 \
        && cmake --build build -j 12 --target llama-bench llama-batched-bench >> $W/build.log 2>&1; \
        touch $W/build.done" > /dev/null 2>&1 < /dev/null &
}
unpack() {
    xz -dc .bin/headroom.xz > "$W/headroom"; chmod +x "$W/headroom"
    xz -dc .bin/kernels.xz > "$W/kernels"; chmod +x "$W/kernels"
}
case "$1" in
x)
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv > "$R/gpu.txt"
    unpack
    for form in unpack half ahead; do
        (cd "$W" && HEADROOM_EXP_STAGED=$form timeout 100 ./kernels matmul \
            > "res/tests_kernels_$form.txt" 2>&1)
        echo "tests $form: $(grep 'test result' "$R/tests_kernels_$form.txt")"
    done
    for b in 1 0; do
        for form in unpack half ahead; do
            run matmul_f16_${form}_b$b HEADROOM_EXP_STAGED=$form HEADROOM_EXP_BOUNDS=$b -- \
                bench matmul --kernels coop --tokens 512,2048
        done
    done
    for f in "$R"/matmul_*.txt; do echo "== $(basename $f .txt)"; grep -E 'TFLOP' "$f" \
        | awk '{print $1, $2, $8, $10, $12}' | tr '\n' ';'; echo; done
    run prefill_f16_512 -- bench decode-step --synthetic llama2-7b --kv-heads 8 --batch 1 \
        --tokens 512 --context 512 --runs 5 --profile
    run prefill_f16_2048 -- bench decode-step --synthetic llama2-7b --kv-heads 8 --batch 1 \
        --tokens 2048 --context 2048 --runs 5 --profile
    grep -hE "profile|^ +8 " "$R"/prefill_*.txt
    ;;
a)
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv > "$R/gpu_a.txt"
    build_llama
    unpack
    (cd "$W" && timeout 200 ./kernels > res/tests_kernels_final.txt 2>&1)
    echo "tests final: $(grep 'test result' "$R/tests_kernels_final.txt")"
    for few in 1 0; do
        run final_matmul_f16_few$few HEADROOM_COOP_FEW=$few -- bench matmul \
            --kernels matvec,coop,auto --tokens 9,16,32,64,128
    done
    for c in 0 1; do
        run final_matmul_f16_clamp$c HEADROOM_INDEX_CLAMPING=$c -- bench matmul \
            --kernels coop --tokens 512,2048
    done
    run final_matmul_q4_0 -- bench matmul --quant q4_0 --kernels auto --tokens 16,64,512,2048
    for f in "$R"/final_matmul_*.txt; do echo "== $(basename $f .txt)"; grep -E 'TFLOP' "$f" \
        | awk '{print $1, $2, $8, $9}' | tr '\n' ';'; echo; done
    for i in 1 2; do
        for c in 1 0; do
            run step_q4_0_clamp${c}_$i HEADROOM_INDEX_CLAMPING=$c -- bench decode-step \
                --synthetic llama2-7b --kv-heads 8 --batch 1 --runs 50 --context 128,2048 --quant q4_0
            run step_f16_clamp${c}_$i HEADROOM_INDEX_CLAMPING=$c -- bench decode-step \
                --synthetic llama2-7b --kv-heads 8 --batch 1 --runs 50 --context 128,2048
            run step_smollm2_clamp${c}_$i HEADROOM_INDEX_CLAMPING=$c -- bench decode-step \
                --synthetic smollm2-135m --kv-heads 3 --batch 1 --runs 50 --context 128,2048 --quant q4_1
        done
    done
    for f in "$R"/step_*.txt; do echo "== $(basename $f .txt)"; grep -E "^ +(8|3) +1 " "$f"; done
    ;;
rt)
    # the few-rows form with more than one tile of rows per workgroup for wide matrices
    unpack
    (cd "$W" && timeout 100 ./kernels matmul > res/tests_kernels_rt.txt 2>&1)
    echo "tests rt: $(grep 'test result' "$R/tests_kernels_rt.txt")"
    run rt_matmul_f16 -- bench matmul --kernels coop,auto --tokens 9,16,32,64,128
    grep -E 'TFLOP' "$R/rt_matmul_f16.txt" | awk '{print $1, $2, $8, $9}' | tr '\n' ';'
    run rt_step16_f16 -- bench decode-step --synthetic llama2-7b --kv-heads 8 --batch 16 \
        --context 576 --runs 10 --profile
    grep -E "profile|^ +8 " "$R/rt_step16_f16.txt"
    ;;
serve16)
    # after c (timed out in its serve runs) and d: the rest of them, at 16 sequences
    for v in f16_few0 q4_0; do
        few=1; [ $v = f16_few0 ] && few=0
        run serve16_7b_$v HEADROOM_COOP_FEW=$few -- bench serve --model 7b-gqa8-${v%_few0}.gguf \
            --concurrency 16 --prompt-tokens 512 --gen-tokens 64 --ttft-requests 0 --kv-memory 12G
    done
    ;;
step16)
    # a decode step of 16 sequences at context 576, profiled by kernel family
    run step16_f16 -- bench decode-step --synthetic llama2-7b --kv-heads 8 --batch 16 \
        --context 576 --runs 10 --profile
    run step16_q4_0 -- bench decode-step --synthetic llama2-7b --kv-heads 8 --batch 16 \
        --context 576 --runs 10 --profile --quant q4_0
    ;;
rtstep)
    # after rt, the same machine: the step of 16 sequences with and without the few-rows form
    for i in 1 2; do
        for few in 1 0; do
            run rt_step16_f16_few${few}_$i HEADROOM_COOP_FEW=$few -- bench decode-step \
                --synthetic llama2-7b --kv-heads 8 --batch 16 --context 576 --runs 10
        done
    done
    ;;
pf)
    # prefill attention over query tiles against per-query decode attention, and the
    # few-rows form's chunk order (HEADROOM_EXP_FEW: u4i = 4 chunks a trip, every 8th
    # chunk a subgroup, the default; u8i 8 a trip; u4c, u8c each subgroup a run of chunks)
    unpack
    xz -dc .bin/attention.xz > "$W/attention"; chmod +x "$W/attention"
    (cd "$W" && timeout 150 ./attention > res/tests_attention_pf.txt 2>&1)
    echo "attention: $(grep 'test result' "$R/tests_attention_pf.txt")"
    for v in u4i u8i u4c u8c; do
        (cd "$W" && HEADROOM_EXP_FEW=$v timeout 100 ./kernels matmul > res/tests_kernels_$v.txt 2>&1)
        echo "kernels $v: $(grep 'test result' "$R/tests_kernels_$v.txt")"
        run pf_matmul_f16_$v HEADROOM_EXP_FEW=$v -- bench matmul --kernels auto --tokens 9,16,32,64,128
        grep -E 'TFLOP' "$R/pf_matmul_f16_$v.txt" | awk '{print $2, $8, $9}' | tr '\n' ';'; echo
    done
    for t in 512 2048; do
        for pa in 1 0; do
            run pf_prefill_${t}_pa$pa HEADROOM_PREFILL_ATTENTION=$pa -- bench decode-step \
                --synthetic llama2-7b --kv-heads 8 --batch 1 --tokens $t --context $t --runs 5 --profile
            echo "prefill $t pa$pa: $(grep -E '^ +8 ' "$R/pf_prefill_${t}_pa$pa.txt")"
            grep attention "$R/pf_prefill_${t}_pa$pa.txt"
        done
    done
    ;;
rebuild)
    # a fresh machine after `a`: llama.cpp's build started again, the later binary
    build_llama
    xz -dc .bin/headroom.xz > "$W/headroom"; chmod +x "$W/headroom"
    ;;
b)
    cp .bin/m.00 "$W/"
    ;;
c)
    # the binary again where carried (the final code's choice of the few-rows form)
    if [ -e .bin/headroom.xz ]; then xz -dc .bin/headroom.xz > "$W/headroom"; chmod +x "$W/headroom"; fi
    cat "$W/m.00" .bin/m.01 > "$W/smollm2.gguf"
    sha256sum "$W/smollm2.gguf" > "$R/sha256.txt"
    (cd "$W" && python3 "$HERE/../2026-12-01-h200-packed-dot/make_random_q4_0_gguf.py" smollm2.gguf \
        7b-gqa8-q4_0.gguf --kv-heads 8 > res/make_q4_0.txt 2>&1 && python3 peer/make_random_gguf.py \
        smollm2.gguf 7b-gqa8-f16.gguf --shape llama2-7b --kv-heads 8 > res/make_f16.txt 2>&1)
    for m in f16 q4_0; do
        for p in 512 2048; do
            for c in 0 1; do
                run gen_7b_${m}_p${p}_clamp$c HEADROOM_INDEX_CLAMPING=$c -- bench generate \
                    --model 7b-gqa8-$m.gguf --prompt-tokens $p --gen-tokens 32 --runs 3
            done
        done
    done
    for c in 0 1; do
        run gen_smollm2_clamp$c HEADROOM_INDEX_CLAMPING=$c -- bench generate --model smollm2.gguf \
            --prompt-tokens 512 --gen-tokens 256 --runs 3
    done
    for f in "$R"/gen_*.txt; do echo "$(basename $f .txt): $(grep -E '^decode' "$f")"; done
    for few in 1 0; do
        run serve_7b_f16_few$few HEADROOM_COOP_FEW=$few -- bench serve --model 7b-gqa8-f16.gguf \
            --concurrency 1,16 --prompt-tokens 512 --gen-tokens 64 --ttft-requests 0 --kv-memory 12G
    done
    run serve_7b_q4_0 -- bench serve --model 7b-gqa8-q4_0.gguf --concurrency 1,16 \
        --prompt-tokens 512 --gen-tokens 64 --ttft-requests 0 --kv-memory 12G
    for f in "$R"/serve_*.txt; do echo "== $(basename $f .txt)"; head -4 "$f" | tail -2; done
    tail -1 "$W/build.log"
    ;;
d)
    for i in $(seq 1 100); do [ -e "$W/build.done" ] && break; sleep 5; done
    B="$W/llama/llama.cpp/build/bin"
    "$B/llama-bench" -m "$W/smollm2.gguf" -ngl 99 -fa 1 -p 512 -n 128 -r 3 > "$R/llama_smollm2.txt" 2>&1
    for m in q4_0 f16; do
        "$B/llama-bench" -m "$W/7b-gqa8-$m.gguf" -ngl 99 -fa 1 -p 512,2048 -n 128 -r 3 > "$R/llama_7b_$m.txt" 2>&1
        "$B/llama-batched-bench" -m "$W/7b-gqa8-$m.gguf" -ngl 99 -fa on -npp 512 -ntg 64 -npl 1,16 \
            -c 20000 > "$R/llama_batched_7b_$m.txt" 2>&1
    done
    grep -hE "^\|" "$R"/llama_*.txt
    tail -3 "$W/build.log"
    ;;
esac
cd "$W" && tar czf "$OUT/res.tgz" res
