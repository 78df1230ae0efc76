#!/usr/bin/env bash
# The product's run command: sets up (idempotent), then composes LoRA adapters for a prompt over the
# embedded demo index with the native CLI; with --serve it also builds the edge worker and serves the
# same compose API with `wrangler dev` (workerd) on 127.0.0.1 until Ctrl-C.
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
  python3 scripts/build_wasm.py web worker
  echo
  echo "worker: http://127.0.0.1:$port  (try: curl -s -X POST http://127.0.0.1:$port/v1/compose -d '{\"prompt\":\"neon city at night\",\"num_images\":2}')"
  cd worker && exec wrangler dev --ip 127.0.0.1 --port "$port"
fi
