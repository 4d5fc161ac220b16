#!/usr/bin/env bash
# H200 runs of bench/2026-12-01-h200-families: the new families' kernels tested on the GPU,
# and decode/prefill of a Mistral-7B-shaped and a Qwen3-8B-shaped random Q4_0 GGUF
# (make_random_family_gguf.py) in headroom and in llama.cpp's CUDA build, same files, one
# machine, two back-to-back calls:
#   bash run.sh a   carry .gl peer .bin/headroom.xz .bin/attention.xz .bin/forward.xz
#                   .bin/vocab.gguf: starts llama.cpp's build (detached), runs the attention
#                   and forward-pass test binaries, writes the two GGUFs, `bench generate`
#                   on each (prompt 512, 128 generated, 3 runs)
#   bash run.sh b   carry .gl: llama-bench on the same two files once the build is done
# Later, a fresh machine: the q/k head norms moved into RoPE's kernel, against the binary
# above, alternating processes on one machine:
#   bash run.sh c   carry .gl peer .bin/headroom.xz .bin/headroom-0e193f3.xz .bin/kernels.xz
#                   .bin/forward.xz .bin/vocab.gguf
# Then Phi-3 (commit 29d04cf), and Qwen3 again, beside llama.cpp on a fresh machine:
#   bash run.sh d   carry .gl peer .bin/headroom.xz .bin/vocab.gguf: starts llama.cpp's
#                   build, writes the Phi-3.5-mini and Qwen3-8B shaped files, `bench
#                   generate` on each
#   bash run.sh e   carry .gl: llama-bench on both (llama.cpp refused the Phi-3 file: its
#                   name said phi3, for which llama.cpp looks up Phi-3's special tokens)
# The Phi-3 file renamed, a fresh machine again:
#   bash run.sh d2  carry .gl peer .bin/headroom.xz .bin/vocab.gguf: the build, the file,
#                   `bench generate` on it twice
#   bash run.sh e2  carry .gl: llama-bench on it
# .bin/headroom.xz and the test binaries are stripped (objcopy --strip-debug) and xz'd;
# .bin/vocab.gguf holds only SmolLM2's tokenizer metadata (the files' vocabulary).
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
W=/tmp/w
R=$W/res
mkdir -p "$R"
HERE=$PWD/bench/2026-12-01-h200-families
FAMILIES="mistral-7b qwen3-8b"
case "$1" in
a)
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv > "$R/gpu.txt"
    mkdir -p "$W/llama"
    tar xJf peer/llama-src.tar.xz -C "$W/llama"
    setsid nohup bash -c "cd $W/llama/llama.cpp && cmake -B build -DGGML_CUDA=ON \
        -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release > $W/build.log 2>&1 \
        && cmake --build build -j 14 --target llama-bench >> $W/build.log 2>&1; \
        touch $W/build.done" > /dev/null 2>&1 < /dev/null &
    for b in headroom attention forward; do
        xz -dc .bin/$b.xz > "$W/$b"; chmod +x "$W/$b"
    done
    (cd "$W" && ./attention > res/tests_attention.txt 2>&1; echo "exit $?" >> res/tests_attention.txt)
    (cd "$W" && ./forward > res/tests_forward.txt 2>&1; echo "exit $?" >> res/tests_forward.txt)
    grep -hE "^test result|^exit" "$R"/tests_*.txt
    for f in $FAMILIES; do
        python3 "$HERE/make_random_family_gguf.py" .bin/vocab.gguf "$W/$f.gguf" --family $f \
            > "$R/make_$f.txt" 2>&1
    done
    for f in $FAMILIES; do
        (cd "$W" && timeout 240 ./headroom bench generate --model $f.gguf --prompt-tokens 512 \
            --gen-tokens 128 --runs 3 --json res/gen_$f.json > res/gen_$f.txt 2>&1)
        echo "$f: $(grep -E '^decode' "$R/gen_$f.txt")"
    done
    sha256sum "$W"/*.gguf > "$R/sha256.txt"
    tail -1 "$W/build.log"
    ;;
b)
    for i in $(seq 1 100); do [ -e "$W/build.done" ] && break; sleep 5; done
    B="$W/llama/llama.cpp/build/bin"
    for f in $FAMILIES; do
        "$B/llama-bench" -m "$W/$f.gguf" -ngl 99 -fa 1 -p 512 -n 128 -r 3 > "$R/llama_$f.txt" 2>&1
    done
    grep -hE "^\|" "$R"/llama_*.txt
    tail -3 "$W/build.log"
    ;;
c)
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv > "$R/gpu_c.txt"
    for b in headroom headroom-0e193f3 kernels forward; do
        xz -dc .bin/$b.xz > "$W/$b"; chmod +x "$W/$b"
    done
    (cd "$W" && ./kernels > res/c_tests_kernels.txt 2>&1; echo "exit $?" >> res/c_tests_kernels.txt)
    (cd "$W" && ./forward > res/c_tests_forward.txt 2>&1; echo "exit $?" >> res/c_tests_forward.txt)
    grep -hE "^test result|^exit" "$R"/c_tests_*.txt
    python3 "$HERE/make_random_family_gguf.py" .bin/vocab.gguf "$W/qwen3-8b.gguf" --family qwen3-8b \
        > "$R/c_make_qwen3-8b.txt" 2>&1
    for i in 1 2; do
        for b in headroom-0e193f3 headroom; do
            (cd "$W" && timeout 200 ./$b bench generate --model qwen3-8b.gguf --prompt-tokens 512 \
                --gen-tokens 128 --runs 3 --json res/c_gen_${b}_$i.json > res/c_gen_${b}_$i.txt 2>&1)
            echo "$b $i: $(grep -E '^decode' "$R/c_gen_${b}_$i.txt")"
        done
    done
    sha256sum "$W"/*.gguf > "$R/c_sha256.txt"
    ;;
d)
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv > "$R/gpu_d.txt"
    mkdir -p "$W/llama"
    tar xJf peer/llama-src.tar.xz -C "$W/llama"
    setsid nohup bash -c "cd $W/llama/llama.cpp && cmake -B build -DGGML_CUDA=ON \
        -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release > $W/build.log 2>&1 \
        && cmake --build build -j 14 --target llama-bench >> $W/build.log 2>&1; \
        touch $W/build.done" > /dev/null 2>&1 < /dev/null &
    xz -dc .bin/headroom.xz > "$W/headroom"; chmod +x "$W/headroom"
    for f in phi3-mini qwen3-8b; do
        python3 "$HERE/make_random_family_gguf.py" .bin/vocab.gguf "$W/$f.gguf" --family $f \
            > "$R/d_make_$f.txt" 2>&1
    done
    for i in 1 2; do
        for f in phi3-mini qwen3-8b; do
            (cd "$W" && timeout 200 ./headroom bench generate --model $f.gguf --prompt-tokens 512 \
                --gen-tokens 128 --runs 3 --json res/d_gen_${f}_$i.json > res/d_gen_${f}_$i.txt 2>&1)
            echo "$f $i: $(grep -E '^decode' "$R/d_gen_${f}_$i.txt")"
        done
    done
    sha256sum "$W"/*.gguf > "$R/d_sha256.txt"
    tail -1 "$W/build.log"
    ;;
e)
    for i in $(seq 1 100); do [ -e "$W/build.done" ] && break; sleep 5; done
    B="$W/llama/llama.cpp/build/bin"
    for f in phi3-mini qwen3-8b; do
        "$B/llama-bench" -m "$W/$f.gguf" -ngl 99 -fa 1 -p 512 -n 128 -r 3 > "$R/e_llama_$f.txt" 2>&1
    done
    grep -hE "^\|" "$R"/e_llama_*.txt
    tail -3 "$W/build.log"
    ;;
d2)
    mkdir -p "$W/llama"
    tar xJf peer/llama-src.tar.xz -C "$W/llama"
    setsid nohup bash -c "cd $W/llama/llama.cpp && cmake -B build -DGGML_CUDA=ON \
        -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release > $W/build.log 2>&1 \
        && cmake --build build -j 14 --target llama-bench >> $W/build.log 2>&1; \
        touch $W/build.done" > /dev/null 2>&1 < /dev/null &
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv > "$R/gpu_d2.txt"
    xz -dc .bin/headroom.xz > "$W/headroom"; chmod +x "$W/headroom"
    python3 "$HERE/make_random_family_gguf.py" .bin/vocab.gguf "$W/phi3-mini.gguf" \
        --family phi3-mini > "$R/d2_make_phi3-mini.txt" 2>&1
    for i in 1 2; do
        (cd "$W" && timeout 200 ./headroom bench generate --model phi3-mini.gguf --prompt-tokens 512 \
            --gen-tokens 128 --runs 3 --json res/d2_gen_phi3-mini_$i.json > res/d2_gen_phi3-mini_$i.txt 2>&1)
        echo "phi3-mini $i: $(grep -E '^decode' "$R/d2_gen_phi3-mini_$i.txt")"
    done
    sha256sum "$W"/*.gguf > "$R/d2_sha256.txt"
    tail -1 "$W/build.log"
    ;;
e2)
    for i in $(seq 1 100); do [ -e "$W/build.done" ] && break; sleep 5; done
    "$W/llama/llama.cpp/build/bin/llama-bench" -m "$W/phi3-mini.gguf" -ngl 99 -fa 1 -p 512 -n 128 \
        -r 3 > "$R/e2_llama_phi3-mini.txt" 2>&1
    grep -hE "^\|" "$R"/e2_llama_*.txt
    tail -3 "$W/build.log"
    ;;
esac
cd "$W" && tar czf "$OUT/res.tgz" res
