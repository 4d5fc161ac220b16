#!/usr/bin/env bash
# H200 runs of bench/2026-11-30-h200-gemm (the matmul of many token rows on the matrix
# units), in back-to-back device calls:
#   bash run.sh kernels   carry .gl .bin/headroom.xz .bin/t .bin/m.00 peer/llama.cpp
#                         peer/make_random_gguf.py: GEMM alone per kernel (bench matmul),
#                         and the kernel tests on the H200 (coop tier)
#   bash run.sh smollm2   carry .gl .bin/m.01: the default model's end-to-end tests against
#                         llama.cpp's fixtures, its prefill per GEMM kernel, then a random
#                         7B-shape F16 GGUF (GQA-8) and its prefill of 512 tokens per kernel
# (the first runs of the day used only the kernels and smollm2 stages' first halves)
# then, with the looping decode matvec for up to 64 rows and the matrix units reading f16
# weights as stored (files *_v2*):
#   bash run.sh kernels-v2   carry .gl .bin/headroom.xz .bin/t .bin/m.00 peer/llama.cpp
#                            peer/make_random_gguf.py
#   bash run.sh smollm2-v2   carry .gl .bin/m.01
# then with the choice by shape re-read from the _v2 tables (files *_v3*), one call:
#   bash run.sh v3      carry .gl .bin/headroom.xz .bin/t .bin/m.00 peer/llama.cpp
#                       peer/make_random_gguf.py
#   bash run.sh v3-7b   carry .gl .bin/m.01
# and, in between, whether asking for cooperative matrices changes decode:
#   bash run.sh prep           carry .gl .bin/headroom.xz .bin/t .bin/m.00
#   bash run.sh decode-check   carry .gl .bin/m.01
# .bin/headroom.xz is the stripped release binary (objcopy --strip-debug, xz -T2 -3);
# .bin/t/*.xz the test binaries of `cargo test --release --no-run` likewise.
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
W=/tmp/w
R=$W/res
mkdir -p "$R"
REPO=$PWD
gen() {   # LABEL ENV... -- ARGS...
    local label=$1; shift
    local env=()
    while [ "$1" != -- ]; do env+=("$1"); shift; done; shift
    (cd "$W" && env "${env[@]}" timeout 200 ./headroom bench generate --model smollm2.gguf "$@" \
        --json "res/$label.json" > "res/$label.txt" 2>&1)
    echo "$label: $(grep -E '^decode' "$R/$label.txt")"
}
unpack() {
    xz -dc .bin/headroom.xz > "$W/headroom"; chmod +x "$W/headroom"
    for t in .bin/t/*.xz; do b=$(basename "$t" .xz); xz -dc "$t" > "$W/$b"; chmod +x "$W/$b"; done
    cp .bin/m.00 "$W/"
    if [ -d peer ]; then cp -r peer "$W/peer"; fi
}
case "$1" in
prep)   # as kernels, without its runs (a fresh machine before smollm2)
    unpack
    ;;
kernels)
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv > "$R/gpu.txt"
    unpack
    (cd "$W" && ./headroom bench matmul --tokens 16,64,256,512 --json res/matmul_f16.json > res/matmul_f16.txt 2>&1)
    (cd "$W" && ./headroom bench matmul --quant q4_0 --tokens 16,64,256,512 --json res/matmul_q4_0.json > res/matmul_q4_0.txt 2>&1)
    grep -E "gate_up|kernel" "$R/matmul_f16.txt" "$R/matmul_q4_0.txt"
    (cd "$REPO" && timeout 300 "$W/kernels" --test-threads 1 > "$R/tests_kernels.txt" 2>&1)
    tail -5 "$R/tests_kernels.txt"
    ;;
smollm2)
    cat "$W/m.00" .bin/m.01 > "$W/smollm2.gguf"
    mkdir -p ~/.cache/headroom/models && cp "$W/smollm2.gguf" ~/.cache/headroom/models/SmolLM2-135M-Instruct.Q4_1.gguf
    (cd "$REPO" && timeout 300 "$W/e2e_smollm2" --test-threads 1 > "$R/tests_e2e_smollm2.txt" 2>&1)
    tail -3 "$R/tests_e2e_smollm2.txt"
    (cd "$W" && python3 peer/make_random_gguf.py smollm2.gguf 7b-gqa8-f16.gguf --shape llama2-7b \
        --kv-heads 8 > res/make_gguf.txt 2>&1; touch gguf.done) &
    for i in 1 2; do
        gen smollm2_auto_$i -- --prompt-tokens 512 --gen-tokens 16 --runs 5
        gen smollm2_coop_$i HEADROOM_GEMM=coop -- --prompt-tokens 512 --gen-tokens 16 --runs 5
        gen smollm2_tiled_$i HEADROOM_GEMM=tiled -- --prompt-tokens 512 --gen-tokens 16 --runs 5
        gen smollm2_blocked_$i HEADROOM_GEMM=blocked -- --prompt-tokens 512 --gen-tokens 16 --runs 5
    done
    wait
    for k in auto coop tiled blocked; do
        e=(); [ $k != auto ] && e=(HEADROOM_GEMM=$k)
        (cd "$W" && env "${e[@]}" timeout 200 ./headroom bench generate --model 7b-gqa8-f16.gguf \
            --prompt-tokens 512 --gen-tokens 8 --runs 2 --json res/7b_f16_$k.json > res/7b_f16_$k.txt 2>&1)
        echo "7b_f16_$k: $(grep -E '^decode' "$R/7b_f16_$k.txt")"
    done
    ;;
kernels-v2)
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv > "$R/gpu_v2.txt"
    unpack
    for q in f16 q4_0; do
        a=(); [ $q = q4_0 ] && a=(--quant q4_0)
        (cd "$W" && ./headroom bench matmul "${a[@]}" --tokens 16,32,64,128,256,512 \
            --json res/matmul_${q}_v2.json > res/matmul_${q}_v2.txt 2>&1)
    done
    grep -E "^auto" "$R/matmul_f16_v2.txt"
    (cd "$REPO" && timeout 300 "$W/kernels" --test-threads 1 > "$R/tests_kernels_v2.txt" 2>&1)
    tail -3 "$R/tests_kernels_v2.txt"
    ;;
smollm2-v2)
    cat "$W/m.00" .bin/m.01 > "$W/smollm2.gguf"
    mkdir -p ~/.cache/headroom/models && cp "$W/smollm2.gguf" ~/.cache/headroom/models/SmolLM2-135M-Instruct.Q4_1.gguf
    (cd "$W" && python3 peer/make_random_gguf.py smollm2.gguf 7b-gqa8-f16.gguf --shape llama2-7b \
        --kv-heads 8 > res/make_gguf_v2.txt 2>&1; touch gguf.done) &
    (cd "$REPO" && timeout 300 "$W/e2e_smollm2" --test-threads 1 > "$R/tests_e2e_smollm2_v2.txt" 2>&1)
    tail -3 "$R/tests_e2e_smollm2_v2.txt"
    for i in 1 2; do
        gen smollm2_auto_v2_$i -- --prompt-tokens 512 --gen-tokens 16 --runs 5
        gen smollm2_blocked_v2_$i HEADROOM_GEMM=blocked -- --prompt-tokens 512 --gen-tokens 16 --runs 5
    done
    # many sequences decoding together (T = batch rows per matmul): 7B shape, GQA-8, F16
    for k in auto blocked; do
        e=(); [ $k != auto ] && e=(HEADROOM_GEMM=$k)
        (cd "$W" && env "${e[@]}" timeout 150 ./headroom bench decode-step --synthetic llama2-7b \
            --kv-heads 8 --batch 16,64 --context 512 --runs 10 --json res/batch_${k}_v2.json \
            > res/batch_${k}_v2.txt 2>&1)
        echo "batch_$k: $(grep -E '^ +8 ' "$R/batch_${k}_v2.txt" | tr -s ' ' | tr '\n' ';')"
    done
    wait
    for k in auto coop blocked; do
        e=(); [ $k != auto ] && e=(HEADROOM_GEMM=$k)
        (cd "$W" && env "${e[@]}" timeout 200 ./headroom bench generate --model 7b-gqa8-f16.gguf \
            --prompt-tokens 512 --gen-tokens 8 --runs 2 --json res/7b_f16_${k}_v2.json > res/7b_f16_${k}_v2.txt 2>&1)
        echo "7b_f16_${k}_v2: $(grep -E '^decode' "$R/7b_f16_${k}_v2.txt")"
    done
    ;;
v3)
    unpack
    (cd "$W" && ./headroom bench matmul --tokens 16,32,64,128,256,512 \
        --json res/matmul_f16_v3.json > res/matmul_f16_v3.txt 2>&1)
    grep -E "^auto" "$R/matmul_f16_v3.txt"
    (cd "$REPO" && timeout 300 "$W/kernels" --test-threads 1 > "$R/tests_kernels_v3.txt" 2>&1)
    tail -3 "$R/tests_kernels_v3.txt"
    for k in auto blocked; do
        e=(); [ $k != auto ] && e=(HEADROOM_GEMM=$k)
        (cd "$W" && env "${e[@]}" timeout 150 ./headroom bench decode-step --synthetic llama2-7b \
            --kv-heads 8 --batch 16,64 --context 512 --runs 10 --json res/batch_${k}_v3.json \
            > res/batch_${k}_v3.txt 2>&1)
        echo "batch_$k: $(grep -E '^ +8 ' "$R/batch_${k}_v3.txt" | tr -s ' ' | tr '\n' ';')"
    done
    ;;
v3-7b)
    cat "$W/m.00" .bin/m.01 > "$W/smollm2.gguf"
    (cd "$W" && python3 peer/make_random_gguf.py smollm2.gguf 7b-gqa8-f16.gguf --shape llama2-7b \
        --kv-heads 8 > res/make_gguf_v3.txt 2>&1)
    for k in auto blocked; do
        e=(); [ $k != auto ] && e=(HEADROOM_GEMM=$k)
        (cd "$W" && env "${e[@]}" timeout 200 ./headroom bench generate --model 7b-gqa8-f16.gguf \
            --prompt-tokens 512 --gen-tokens 8 --runs 2 --json res/7b_f16_${k}_v3.json > res/7b_f16_${k}_v3.txt 2>&1)
        echo "7b_f16_${k}_v3: $(grep -E '^decode' "$R/7b_f16_${k}_v3.txt")"
    done
    ;;
decode-check)
    cat "$W/m.00" .bin/m.01 > "$W/smollm2.gguf"
    for i in 1 2 3; do
        gen decode_coopmat_$i -- --prompt-tokens 128 --gen-tokens 256 --runs 5
        gen decode_no_coopmat_$i HEADROOM_NO_COOPMAT=1 -- --prompt-tokens 128 --gen-tokens 256 --runs 5
    done
    ;;
esac
