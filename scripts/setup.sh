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

echo "setup: done in $(( $(date +%s) - t0 )) s"
