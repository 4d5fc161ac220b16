#!/usr/bin/env bash
# The server soak (tests/soak.rs) for 10 minutes at 64 concurrent clients on an H200, three
# back-to-back device calls on one machine:
#   bash run.sh unpack  carry .gl .bin/soak.xz .bin/m.00: the stripped soak test binary
#                       (objcopy --strip-debug, xz -T2 -3) and the default model's first half
#   bash run.sh start   carry .gl .bin/m.01: joins the model, starts the soak detached and
#                       waits out the call
#   bash run.sh collect carry .gl: waits for the soak's end and returns its log
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
W=/tmp/w
mkdir -p "$W"
case "$1" in
unpack)
    xz -dc .bin/soak.xz > "$W/soak"; chmod +x "$W/soak"
    cp .bin/m.00 "$W/"
    nvidia-smi --query-gpu=name,driver_version --format=csv > "$W/gpu.txt"
    ;;
start)
    cat "$W/m.00" .bin/m.01 > "$W/smollm2.gguf"
    sha256sum "$W/smollm2.gguf" > "$W/sha256.txt"
    date -u +%FT%TZ > "$W/started.txt"
    (cd "$W" && setsid nohup env HEADROOM_MODEL="$W/smollm2.gguf" HEADROOM_SOAK_SECS=600 \
        HEADROOM_SOAK_CLIENTS=64 ./soak --nocapture > soak.log 2>&1 < /dev/null &)
    sleep 560
    tail -3 "$W/soak.log"
    ;;
collect)
    for i in $(seq 1 30); do grep -q "test result" "$W/soak.log" && break; sleep 5; done
    date -u +%FT%TZ > "$W/ended.txt"
    cd "$W" && tar czf "$OUT/soak.tgz" soak.log gpu.txt sha256.txt started.txt ended.txt
    tail -5 soak.log
    ;;
esac
