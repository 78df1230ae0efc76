#!/usr/bin/env bash
# Prepares the device run (benches/gpu/run.sh) here, where the registries are reachable: builds the
# engine benchmarks with burn's wgpu backend, strips them into .gpu/, fetches the Vulkan loader debs
# into .gl/ and the diffusers wheel into .whl/ (all three ignored by git through .git/info/exclude).
# Then call the device tool: run(command="bash benches/gpu/run.sh", carry=[".gpu", ".gl", ".whl"], timeout_s=600).
set -euo pipefail
source "$(dirname "$0")/../../scripts/env.sh"
cd "$ROOT"
for d in .gpu .gl .whl; do grep -qx "/$d/" .git/info/exclude 2>/dev/null || echo "/$d/" >> .git/info/exclude; done
mkdir -p .gl .whl
rm -f .gpu/*/*.xz
mkdir -p .gpu/wgsl .gpu/fast
# bench_exes TARGET_DIR CARGO_ARGS…: "name path" of the built unet_step / lora_apply executables.
bench_exes() {
  local dir=$1; shift
  CARGO_TARGET_DIR=$dir cargo bench --profile dev "$@" --no-run --bench unet_step --bench lora_apply --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["kind"] == ["bench"] and m.get("executable"):
        print(m["target"]["name"], m["executable"])'
}
# pack KIND < "name path" lines: stripped and xz-compressed (the carried tree must stay under 64 MiB).
pack() {
  while read -r name exe; do
    case "$name" in unet_step|lora_apply) strip -o ".gpu/$1/$name" "$exe" && xz -T2 -9 -f ".gpu/$1/$name"; echo "bench $name -> .gpu/$1/$name.xz ($(stat -c %s ".gpu/$1/$name.xz") B)";; esac
  done
}
# wgsl: the workspace feature set (stylus-cli turns on stylus-diffusion/wgpu), the shared target dir, so
# nothing is rebuilt: what the browser runs (WGSL, no autotune, no fusion).
# `prepare.sh fast` skips it (then call run.sh fast only).
[ "${1:-all}" = fast ] || bench_exes "$CARGO_TARGET_DIR" --workspace | pack wgsl
# fast: SPIR-V on Vulkan, cooperative matrices (feature `gpu-bench`), in its own target dir so the
# workspace's feature set and CI's cache stay untouched (a cold build takes ~30 min on 2 cores).
# `prepare.sh wgsl` skips it (then call run.sh wgsl only).
[ "${1:-all}" = wgsl ] || bench_exes "$HOME/.cache/stylus/target-gpu" -p stylus-diffusion --features gpu-bench | pack fast
{ [ "${1:-all}" = fast ] || [ -s .gpu/wgsl/unet_step.xz ]; } && { [ "${1:-all}" = wgsl ] || [ -s .gpu/fast/unet_step.xz ]; } || { echo "prepare.sh: a bench build failed (rerun the cargo command without --message-format to see why)" >&2; exit 1; }
if [ ! -f .gl/.done ]; then
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  mkdir -p /tmp/amd64/partial
  apt-get $o update -qq && (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null) && touch .gl/.done
fi
if [ ! -f .whl/.done ]; then
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    diffusers==0.42.1 importlib_metadata && touch .whl/.done
fi
du -sh .gpu .gl .whl
