#!/usr/bin/env bash
# The product's run command: sets up (idempotent), then composes LoRA adapters for a prompt over the
# embedded demo index with the native CLI; with --serve it also builds the web app, the WebGPU engine and
# the edge worker and serves the page and the compose API together with `wrangler dev` (workerd) on
# 127.0.0.1 until Ctrl-C, printing the page's URL.
#   ./scripts/run.sh ["PROMPT"] [--images N] [--seed S] [--serve] [--port P]
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
prompt="a watercolor painting of a fox in a forest, autumn leaves"
images=4 seed=0 serve=0 port=8787
while [ $# -gt 0 ]; do
  case "$1" in
    --images) images="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --serve) serve=1; shift ;;
    --port) port="$2"; shift 2 ;;
    -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) prompt="$1"; shift ;;
  esac
done
bash scripts/setup.sh >/dev/null
cargo build -q -p stylus-cli
"$CARGO_TARGET_DIR/debug/stylus" compose --images "$images" --seed "$seed" "$prompt"
if [ "$serve" = 1 ]; then
  # the page + compose wasm, the worker (stages www/ into its assets), the WebGPU engine (as parts)
  python3 scripts/build_wasm.py web worker web-engine
  # The page's default model: the tiny test fixture, converted into shards (64×64, noise-like images;
  # set Model URL in the page's Settings to a converted SD1.5 for real ones).
  "$CARGO_TARGET_DIR/debug/stylus" convert --model tests/fixtures/tiny_sd/ldm/tiny_sd15_fp16.safetensors --config tiny \
    --dtype f16 --out worker/assets/models/tiny --quiet
  cp tests/fixtures/tokenizer/tokenizer.json worker/assets/models/tiny/
  echo
  echo "Stylus: open http://127.0.0.1:$port/  (the page; widget: http://127.0.0.1:$port/widget.js)"
  echo "API:    curl -s -X POST http://127.0.0.1:$port/v1/compose -d '{\"prompt\":\"neon city at night\",\"num_images\":2}'"
  cd worker && exec wrangler dev --ip 127.0.0.1 --port "$port"
fi
