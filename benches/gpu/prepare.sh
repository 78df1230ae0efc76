#!/usr/bin/env bash
# Prepares the device run (benches/gpu/run.sh) here, where the registries are reachable: builds the
# engine benchmarks with burn's wgpu backend, strips them into .gpu/, fetches the Vulkan loader debs
# into .gl/ and the diffusers wheel into .whl/ (all three ignored by git through .git/info/exclude).
# Then call the device tool: run(command="bash benches/gpu/run.sh", carry=[".gpu", ".gl", ".whl"], timeout_s=600).
set -euo pipefail
source "$(dirname "$0")/../../scripts/env.sh"
cd "$ROOT"
for d in .gpu .gl .whl; do grep -qx "/$d/" .git/info/exclude 2>/dev/null || echo "/$d/" >> .git/info/exclude; done
mkdir -p .gpu .gl .whl
# The same feature set as the workspace build (stylus-cli turns on stylus-diffusion/wgpu).
out=$(cargo bench --profile dev --workspace --no-run --bench unet_step --bench lora_apply --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["kind"] == ["bench"] and m.get("executable"):
        print(m["target"]["name"], m["executable"])')
while read -r name exe; do
  # stripped and xz-compressed: the carried tree must stay under the device tool's 64 MiB
  case "$name" in unet_step|lora_apply) strip -o ".gpu/$name" "$exe" && xz -T2 -6 -f ".gpu/$name"; echo "bench $name -> .gpu/$name.xz ($(stat -c %s ".gpu/$name.xz") B)";; esac
done <<< "$out"
if [ ! -f .gl/.done ]; then
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  mkdir -p /tmp/amd64/partial
  apt-get $o update -qq && (cd .gl && apt-get $o download libvulkan1 >/dev/null) && touch .gl/.done
fi
if [ ! -f .whl/.done ]; then
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    diffusers==0.42.1 importlib_metadata zipp && touch .whl/.done
fi
du -sh .gpu .gl .whl
