#!/usr/bin/env bash
# The project's test command (README): native tests of every crate, the wasm builds, and the
# end-to-end tests that drive them (node for the wasm tokenizer, wrangler dev for the worker).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
t0=$(date +%s)
bash scripts/setup.sh   # idempotent; a few seconds when everything is installed
echo "== test: cargo nextest (workspace, native; profile dev with optimised dependencies)"
cargo build --workspace --all-targets --locked
cargo nextest run --workspace --locked --no-fail-fast
echo "== test: the SD1.5 engine on burn's wgpu backend (Vulkan; lavapipe on a machine without a GPU)"
# (the workspace build already has stylus-diffusion's `wgpu` feature through stylus-cli; selecting with a
# filter instead of `-p` keeps cargo's feature set, so nothing is built a second time)
STYLUS_DEVICE=wgpu cargo nextest run --workspace --locked --no-fail-fast -E 'package(stylus-diffusion)'
echo "== test: the ANN's wasm32 simd128 kernels against their definitions (Node, wasm-bindgen-test-runner)"
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$CARGO_BIN/wasm-bindgen-test-runner" \
  cargo test --locked --target wasm32-unknown-unknown -p stylus-core --test wasm_kernels
echo "== test: wasm32 builds (wasm-pack.toml)"
python3 scripts/build_wasm.py
echo "== test: end-to-end on the wasm builds"
node --test tests/e2e/*.test.mjs
echo "test: all passed in $(( $(date +%s) - t0 )) s"
