#!/usr/bin/env bash
# H200 runs of bench/2026-11-30-h200-coop-wide (the f16 matrix-unit GEMM with 64 token rows
# per subgroup from 256 rows on), two back-to-back device calls:
#   bash run.sh kernels   carry .gl .bin/headroom.xz .bin/t .bin/m.00 peer: GEMM alone with
#                         32 and with 64 rows per subgroup forced (HEADROOM_COOP_WIDE=0|1)
#                         and by shape, then the kernel tests (both widths forced)
#   bash run.sh model     carry .gl .bin/m.01: the default model's end-to-end tests, then a
#                         random 7B-shape F16 GGUF (GQA-8): prefill of 512 and 2 048 tokens
#                         by shape, with 32 rows per subgroup forced (the previous commit's
#                         kernel for every T), and with the cache-blocked kernel
# then, with the width chosen by workgroups and prefill chunks of 512 rows by default
# (files *_v2*):
#   bash run.sh kernels-v2   carry as kernels
#   bash run.sh model-v2     carry .gl .bin/m.01: the end-to-end tests, then the 7B shape's
#                            prefill of 512 and 2 048 tokens in chunks of 512 (the new
#                            default) and of 256 (the previous one), both widths by shape, and
#                            32 rows per subgroup forced
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
case "$1" in
kernels)
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv > "$R/gpu.txt"
    xz -dc .bin/headroom.xz > "$W/headroom"; chmod +x "$W/headroom"
    for t in .bin/t/*.xz; do b=$(basename "$t" .xz); xz -dc "$t" > "$W/$b"; chmod +x "$W/$b"; done
    cp .bin/m.00 "$W/"
    cp -r peer "$W/peer"
    for wide in 0 1 auto; do
        e=(); [ $wide != auto ] && e=(HEADROOM_COOP_WIDE=$wide)
        (cd "$W" && env "${e[@]}" ./headroom bench matmul --tokens 64,128,256,512,1024 \
            --json res/matmul_f16_wide_$wide.json > res/matmul_f16_wide_$wide.txt 2>&1)
        echo "wide=$wide"; grep -E "^(coop|auto)" "$R/matmul_f16_wide_$wide.txt" | head -40
    done
    (cd "$REPO" && timeout 300 "$W/kernels" --test-threads 1 > "$R/tests_kernels.txt" 2>&1)
    tail -3 "$R/tests_kernels.txt"
    ;;
model)
    cat "$W/m.00" .bin/m.01 > "$W/smollm2.gguf"
    mkdir -p ~/.cache/headroom/models && cp "$W/smollm2.gguf" ~/.cache/headroom/models/SmolLM2-135M-Instruct.Q4_1.gguf
    (cd "$W" && python3 peer/make_random_gguf.py smollm2.gguf 7b-gqa8-f16.gguf --shape llama2-7b \
        --kv-heads 8 > res/make_gguf.txt 2>&1; touch gguf.done) &
    (cd "$REPO" && timeout 300 "$W/e2e_smollm2" --test-threads 1 > "$R/tests_e2e_smollm2.txt" 2>&1)
    tail -3 "$R/tests_e2e_smollm2.txt"
    wait
    for p in 512 2048; do
        for k in auto narrow blocked auto; do
            e=(); [ $k = narrow ] && e=(HEADROOM_COOP_WIDE=0); [ $k = blocked ] && e=(HEADROOM_GEMM=blocked)
            [ $k = blocked ] && [ $p = 2048 ] && continue
            (cd "$W" && env "${e[@]}" timeout 200 ./headroom bench generate --model 7b-gqa8-f16.gguf \
                --prompt-tokens $p --gen-tokens 8 --runs 3 --json res/7b_f16_${p}_$k.json \
                > res/7b_f16_${p}_$k.txt 2>&1)
            echo "7b_f16_${p}_$k: $(grep -E '^(prefill|decode|ttft)' "$W/res/7b_f16_${p}_$k.txt" | tr '\n' ' ')"
        done
    done
    ;;
kernels-v2)
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv > "$R/gpu_v2.txt"
    xz -dc .bin/headroom.xz > "$W/headroom"; chmod +x "$W/headroom"
    for t in .bin/t/*.xz; do b=$(basename "$t" .xz); xz -dc "$t" > "$W/$b"; chmod +x "$W/$b"; done
    cp .bin/m.00 "$W/"
    cp -r peer "$W/peer"
    (cd "$W" && ./headroom bench matmul --tokens 64,128,256,512,1024 \
        --json res/matmul_f16_v2.json > res/matmul_f16_v2.txt 2>&1)
    grep -E "^auto" "$R/matmul_f16_v2.txt"
    (cd "$REPO" && timeout 300 "$W/kernels" --test-threads 1 > "$R/tests_kernels_v2.txt" 2>&1)
    tail -3 "$R/tests_kernels_v2.txt"
    ;;
model-v2)
    cat "$W/m.00" .bin/m.01 > "$W/smollm2.gguf"
    mkdir -p ~/.cache/headroom/models && cp "$W/smollm2.gguf" ~/.cache/headroom/models/SmolLM2-135M-Instruct.Q4_1.gguf
    (cd "$W" && python3 peer/make_random_gguf.py smollm2.gguf 7b-gqa8-f16.gguf --shape llama2-7b \
        --kv-heads 8 > res/make_gguf_v2.txt 2>&1; touch gguf.done) &
    (cd "$REPO" && timeout 300 "$W/e2e_smollm2" --test-threads 1 > "$R/tests_e2e_smollm2_v2.txt" 2>&1)
    tail -3 "$R/tests_e2e_smollm2_v2.txt"
    wait
    for p in 512 2048; do
        for k in c512 c256 narrow c512; do
            a=(); e=()
            [ $k = c256 ] && a=(--max-chunk 256)
            [ $k = narrow ] && e=(HEADROOM_COOP_WIDE=0)
            (cd "$W" && env "${e[@]}" timeout 200 ./headroom bench generate --model 7b-gqa8-f16.gguf \
                --prompt-tokens $p --gen-tokens 8 --runs 3 "${a[@]}" --json res/7b_f16_${p}_${k}_v2.json \
                > res/7b_f16_${p}_${k}_v2.txt 2>&1)
            echo "7b_f16_${p}_${k}_v2: $(grep -E '^decode' "$W/res/7b_f16_${p}_${k}_v2.txt")"
        done
    done
    ;;
esac
# and last, with workgroup memory no longer zero-filled by the pipelines (tests only):
#   bash run.sh tests-v3    carry .gl .bin/t .bin/m.00
#   bash run.sh e2e-v3      carry .gl .bin/m.01
case "$1" in
tests-v3)
    for t in .bin/t/*.xz; do b=$(basename "$t" .xz); xz -dc "$t" > "$W/$b"; chmod +x "$W/$b"; done
    cp .bin/m.00 "$W/"
    (cd "$REPO" && timeout 300 "$W/kernels" --test-threads 1 > "$R/tests_kernels_v3.txt" 2>&1)
    tail -3 "$R/tests_kernels_v3.txt"
    ;;
e2e-v3)
    cat "$W/m.00" .bin/m.01 > "$W/smollm2.gguf"
    mkdir -p ~/.cache/headroom/models && cp "$W/smollm2.gguf" ~/.cache/headroom/models/SmolLM2-135M-Instruct.Q4_1.gguf
    (cd "$REPO" && timeout 300 "$W/e2e_smollm2" --test-threads 1 > "$R/tests_e2e_smollm2_v3.txt" 2>&1)
    tail -3 "$R/tests_e2e_smollm2_v3.txt"
    ;;
esac
