#!/usr/bin/env bash
# The prepared device script (issues #5 item 9 and #6 item 7), run on a lent H100/H200 by the device
# tool with carry [.gpu, .gl, .whl] (benches/gpu/prepare.sh makes them): burn-wgpu on Vulkan against
# PyTorch on the same GPU, in one call. Writes $OUT/*.json; on a machine without NVIDIA it runs the same
# steps on whatever Vulkan driver is there (lavapipe here), smaller, to check the script itself.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
small=""
if command -v nvidia-smi >/dev/null; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
  latent=64; reps=5
else
  echo "no NVIDIA GPU: checking the script on the local Vulkan driver with small sizes" | tee "$OUT/gpu.txt"
  latent=8; reps=1; small=1
fi
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
mkdir -p /tmp/gpu-bin && for b in unet_step lora_apply; do xz -dc ".gpu/$b.xz" > "/tmp/gpu-bin/$b" && chmod +x "/tmp/gpu-bin/$b"; done
timeout 240 /tmp/gpu-bin/unet_step --device wgpu --latent "$latent" --batch 2 --reps "$reps" 2>"$OUT/unet_wgpu.log" | sed -n 's/^BENCH_JSON //p' > "$OUT/unet_wgpu.json"
if [ -z "$small" ]; then
  timeout 200 /tmp/gpu-bin/lora_apply --device wgpu --ranks 32,128 --reps 3 2>"$OUT/lora_wgpu.log" | sed -n 's/^BENCH_JSON //p' > "$OUT/lora_wgpu.json"
fi
timeout 120 python3 benches/gpu/torch_ref.py --latent "$latent" ${small:+--cpu} > "$OUT/torch.json" 2>"$OUT/torch.log"
tail -n 3 "$OUT"/*.log; cat "$OUT"/*.json
