#!/usr/bin/env bash
# The kernel tests and the end-to-end greedy check again, on wgpu's GL backend (OpenGL ES
# through EGL; in CI Mesa's llvmpipe, no display needed): the second backend that runs
# here besides Vulkan, so that the engine's paths for an adapter without subgroups,
# shader-f16 or the Vulkan limits run on a backend other than Vulkan.
#
#   scripts/test-gl.sh          # after `cargo test --release` (reuses its test binaries)
#
# Needs Debian's libegl1, libegl-mesa0 and libgl1-mesa-dri (.ci/run installs them).
# One test thread: wgpu's GL backend serialises every call on one context lock and panics
# ("Could not lock adapter context. This is most-likely a deadlock.") when a thread waits
# for it more than 6 s, which Mesa's first compile of a large kernel can exceed.
# (Cold, Mesa's shader cache empty as in CI: kernels 83 s, attention 144 s, e2e 157 s.)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export HEADROOM_ADAPTER=gl
run() {
    echo "--- GL: cargo test --release --test $1 -- ${*:2}"
    cargo test --release --test "$1" -- --test-threads=1 "${@:2}"
}

# every kernel against its CPU reference, in every context the suite builds (all portable
# ones here: GL has no subgroups)
run kernels
# decode attention for every group size, split-K and the merge, and MLA's absorbed form
run attention
# the default model, Q4_1 blocks as stored, against llama.cpp's fixtures: all six prompts
# (the only matmul and attention kernels GL selects are the portable ones)
run e2e_smollm2 --exact greedy_continuations_match_llama_cpp_native_weights
