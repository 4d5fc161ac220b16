#!/usr/bin/env bash
# Builds the browser site into OUT (default: target/site): the crate for wasm32 (release),
# wasm-bindgen's JS glue, and the page. Serve OUT with any static file server, e.g.
#   python3 -m http.server -d target/site 8080   and open http://127.0.0.1:8080
#
#   web/build.sh [OUT]          build
#   web/build.sh --deps         install what the build needs, then exit
#
# The wasm32 standard library comes from rustup's target where it is installed; otherwise
# from Debian's rustc-web (built from source with -Zbuild-std; see README "Browser").
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# the wasm-bindgen CLI must be the exact version of the crate in Cargo.lock
BINDGEN_VERSION="$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print}' Cargo.lock)"

have_rustup_wasm() {
    command -v rustup >/dev/null 2>&1 &&
        rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown
}

have_debian_wasm() {
    [ -x /usr/bin/rustc ] && [ -x /usr/bin/cargo ] &&
        [ -d /usr/lib/rustlib/src/rust/library ] && [ -e /usr/bin/rust-lld ] &&
        [ -e "$(readlink -f /usr/bin/rust-lld)" ]
}

have_bindgen() {
    command -v wasm-bindgen >/dev/null 2>&1 &&
        [ "$(wasm-bindgen --version | awk '{print $2}')" = "$BINDGEN_VERSION" ]
}

install_deps() {
    if ! have_rustup_wasm && ! have_debian_wasm; then
        if command -v rustup >/dev/null 2>&1 && rustup target add wasm32-unknown-unknown 2>/dev/null; then
            :
        else
            echo "installing Debian's rustc-web (wasm32 std sources) and lld-22"
            apt-get install -y --no-install-recommends rustc-web cargo-web rust-web-src \
                rust-web-llvm lld-22
        fi
    fi
    if ! have_bindgen; then
        echo "installing wasm-bindgen-cli $BINDGEN_VERSION"
        cargo install wasm-bindgen-cli --version "$BINDGEN_VERSION"
    fi
}

if [ "${1:-}" = "--deps" ]; then
    install_deps
    exit 0
fi

OUT="${1:-$ROOT/target/site}"
TARGET_DIR="$ROOT/target/web"

if have_rustup_wasm; then
    CARGO=(cargo)
    BUILD_STD=()
elif have_debian_wasm; then
    # Debian's compiler and std sources must match exactly: use its cargo and rustc
    export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
    CARGO=(/usr/bin/cargo)
    BUILD_STD=(-Zbuild-std=std,panic_abort)
else
    echo "error: no wasm32 toolchain: run 'web/build.sh --deps' (rustup target add" \
        "wasm32-unknown-unknown, or Debian's rustc-web rust-web-src lld-22)" >&2
    exit 1
fi
if ! have_bindgen; then
    echo "error: wasm-bindgen $BINDGEN_VERSION not found: run 'web/build.sh --deps'" \
        "(cargo install wasm-bindgen-cli --version $BINDGEN_VERSION)" >&2
    exit 1
fi

echo "building the wasm ($("${CARGO[@]}" --version))" >&2
"${CARGO[@]}" rustc --lib --release --locked --target wasm32-unknown-unknown \
    --target-dir "$TARGET_DIR" --crate-type cdylib "${BUILD_STD[@]}"

rm -rf "$OUT"
mkdir -p "$OUT"
wasm-bindgen --target web --no-typescript --out-dir "$OUT" --out-name headroom \
    "$TARGET_DIR/wasm32-unknown-unknown/release/headroom.wasm"
cp web/index.html web/loader.js web/style.css "$OUT/"
echo "site: $OUT ($(du -sh "$OUT" | cut -f1))" >&2
