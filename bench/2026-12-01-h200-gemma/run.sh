#!/usr/bin/env bash
# H200 runs of bench/2026-12-01-h200-gemma: gemma's kernels tested on the GPU, and decode /
# prefill of Gemma-2-9B-, Gemma-3-12B- and Phi-3.5-mini-shaped random Q4_0 GGUFs written by
# headroom's own writer (`headroom bench write-model`, SmolLM2's tokenizer) in headroom and
# in llama.cpp's CUDA build, same files, one machine, two back-to-back calls:
#   bash run.sh a   carry .gl peer .bin/headroom.xz .bin/kernels.xz .bin/attention.xz
#                   .bin/forward.xz .bin/vocab.gguf: starts llama.cpp's build (detached),
#                   runs the three test binaries, writes the files, `bench generate` on each
#                   (prompt 512, 128 generated, 3 runs), twice
#   bash run.sh b   carry .gl: llama-bench on the same files once the build is done
# .bin/*.xz are stripped (objcopy --strip-debug) and xz'd release binaries of the commit
# named in README.md; .bin/vocab.gguf holds only SmolLM2's tokenizer metadata.
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
W=/tmp/w
R=$W/res
mkdir -p "$R"
SHAPES="gemma2-9b gemma3-12b phi3-mini"
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
    for b in headroom kernels attention forward; do
        xz -dc .bin/$b.xz > "$W/$b"; chmod +x "$W/$b"
    done
    for t in kernels attention forward; do
        (cd "$W" && ./$t > res/tests_$t.txt 2>&1; echo "exit $?" >> res/tests_$t.txt)
    done
    grep -hE "^test result|^exit" "$R"/tests_*.txt
    for s in $SHAPES; do
        "$W/headroom" bench write-model --shape $s --vocab .bin/vocab.gguf --out "$W/$s.gguf" \
            > "$R/write_$s.txt" 2>&1
        cat "$R/write_$s.txt"
    done
    for i in 1 2; do
        for s in $SHAPES; do
            (cd "$W" && timeout 200 ./headroom bench generate --model $s.gguf --prompt-tokens 512 \
                --gen-tokens 128 --runs 3 --json res/gen_${s}_$i.json > res/gen_${s}_$i.txt 2>&1)
            echo "$s $i: $(grep -E '^(decode|prefill)' "$R/gen_${s}_$i.txt" | tr '\n' ' ')"
        done
    done
    sha256sum "$W"/*.gguf > "$R/sha256.txt"
    tail -1 "$W/build.log"
    ;;
b)
    for i in $(seq 1 100); do [ -e "$W/build.done" ] && break; sleep 5; done
    B="$W/llama/llama.cpp/build/bin"
    for s in $SHAPES; do
        "$B/llama-bench" -m "$W/$s.gguf" -ngl 99 -fa 1 -p 512 -n 128 -r 3 > "$R/llama_$s.txt" 2>&1
    done
    grep -hE "^\|" "$R"/llama_*.txt
    tail -3 "$W/build.log"
    ;;
esac
