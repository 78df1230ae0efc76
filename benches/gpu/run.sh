#!/usr/bin/env bash
# The prepared device script (issues #5 item 9 and #6 item 7), run on a lent H100/H200 by the device
# tool with carry [.gpu, .gl, .whl] (benches/gpu/prepare.sh makes them): burn on Vulkan against PyTorch
# on the same GPU, in one call, in priority order, each step under its own timeout so that one slow
# or failing variant cannot take the others down. Two builds of the same benches:
#   wgsl — the workspace build, what the browser runs (WGSL shaders, no autotune, no fusion);
#   fast — feature `gpu-bench` (SPIR-V on Vulkan: cooperative matrices, i.e. tensor cores; no autotune).
# Writes $OUT/results.jsonl (one BENCH_JSON object per line, tagged with `run`), $OUT/torch.json,
# $OUT/log.txt, $OUT/gpu.txt. Without NVIDIA it runs the same steps on the local Vulkan driver
# (lavapipe here) with small sizes, to check the script itself (the wgsl build: lavapipe crashes compiling
# the fast build's SPIR-V). `run.sh wgsl` / `run.sh fast` measure
# one build per device call (PyTorch is measured again in each). PLAN=auto runs the second device
# call's plan (the per-shape matmul routine) instead of the first's sweep; PLAN=next the plan prepared
# for the next device call (defaults in f32/f16 with the fused attention, the attention kernels, the
# GEMM routines with split-k, steps with the tiled GEMM and split-k, the explicit attention, the fused
# kernel's rows per unit, the explicit attention's chunk budget, the Gemm output limit, the k
# condition of gpu::set_gemm_min_k_ratio); PLAN=tc the tensor-core plan (fast build: the cmma matmul
# routines and the tensor-core flash attention in f16, each step checked against the unit routines).
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
res="$OUT/results.jsonl"; log="$OUT/log.txt"; : > "$res"; : > "$log"
small=""
if command -v nvidia-smi >/dev/null; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  { ls /usr/local/nvidia/share/vulkan/icd.d/ 2>&1; ldconfig -p | grep -E "libvulkan|GLX_nvidia|GLdispatch"; } >> "$log" 2>&1
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
  latent=64; reps=5; scale=1
else
  echo "no NVIDIA GPU: checking the script on the local Vulkan driver with small sizes" | tee "$OUT/gpu.txt"
  latent=8; reps=1; small=1; scale=4
fi
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
part=${1:-all}  # wgsl | fast | all: which build(s) this call measures (PyTorch runs in every call)
builds=(wgsl fast); [ "$part" = all ] || builds=("$part")
lora_also=${LORA_ALSO:-}  # another build whose LoRA benchmark runs first (e.g. LORA_ALSO=wgsl run.sh fast)
for k in "${builds[@]}" $lora_also; do
  mkdir -p "/tmp/gpu-bin/$k"
  for b in unet_step lora_apply; do xz -dc ".gpu/$k/$b.xz" > "/tmp/gpu-bin/$k/$b" && chmod +x "/tmp/gpu-bin/$k/$b"; done
done
# bench LABEL TIMEOUT_S BUILD BINARY ARGS…: runs one benchmark, appends its BENCH_JSON lines tagged with LABEL.
bench() {
  local label=$1 to=$(( $2 * scale )) build=$3 bin=$4; shift 4
  local t0=$SECONDS
  echo "== $label: $build/$bin $*" >> "$log"
  timeout "$to" "/tmp/gpu-bin/$build/$bin" "$@" 2>> "$log" | sed -n 's/^BENCH_JSON //p' \
    | python3 -c 'import json,sys
for l in sys.stdin: print(json.dumps(dict(json.loads(l), run=sys.argv[1], build=sys.argv[2])))' "$label" "$build" >> "$res"
  echo "== $label: exit ${PIPESTATUS[0]} after $((SECONDS - t0)) s" | tee -a "$log"
}
unet=(--device wgpu --latent "$latent" --batch 2 --reps "$reps")
t0=$SECONDS
timeout $((100 * scale)) python3 benches/gpu/torch_ref.py --latent "$latent" ${small:+--cpu} > "$OUT/torch.json" 2>> "$log"
echo "== torch: exit $? after $((SECONDS - t0)) s" | tee -a "$log"
[ -n "$lora_also" ] && [ -z "$small" ] && bench "lora-$lora_also" 60 "$lora_also" lora_apply --device wgpu --ranks 32,128 --reps 3
for k in "${builds[@]}"; do
  # the fast build's first calls autotune every kernel shape: longer limits
  slow=$([ "$k" = fast ] && echo 2 || echo 1)
  if [ "${PLAN:-sweep}" = next ]; then
    # prepared for the next lent device: the engine's defaults (f32 and f16; attention: the fused
    # kernel of gpu/rows.rs, checked against the explicit attention; im2col in one launch), the
    # attention alone (explicit vs fused), the UNet's GEMM shapes with burn's routine, cubek's Gemm
    # and the engine's tiled kernel (gpu/tiled.rs), each with and without split-k where the shape
    # splits, then steps with the tiled kernel (f32 checked, f16), split-k (checked; 1024 tiles;
    # with the tiled kernel), the previous default (explicit attention: the baseline), the fused
    # kernel's rows per unit (1, default 2 at d = 40, 4), split-k in f16, the explicit attention
    # with bigger chunks (native adapters grant 2 GiB bindings), a larger output limit for cubek's
    # Gemm routine and the k condition
    bench "unet-$k-default" 60 "$k" unet_step "${unet[@]}" --check
    bench "unet-$k-default-f16" 60 "$k" unet_step "${unet[@]}" --dtype f16 --check
    bench "unet-$k-attn-ops" 60 "$k" unet_step "${unet[@]}" --ops-only --ops-shapes attention --ops-attn explicit,fused
    bench "unet-$k-gemm-ops" 120 "$k" unet_step "${unet[@]}" --ops-only --ops-matmul backend,gemm,tiled --ops-attn fused --split-k 512
    bench "unet-$k-tiled" 60 "$k" unet_step "${unet[@]}" --matmul tiled --check
    bench "unet-$k-split512" 60 "$k" unet_step "${unet[@]}" --split-k 512 --check
    bench "unet-$k-tiled-f16" 60 "$k" unet_step "${unet[@]}" --matmul tiled --dtype f16
    bench "unet-$k-explicit" 60 "$k" unet_step "${unet[@]}" --attn explicit
    bench "unet-$k-split1024" 60 "$k" unet_step "${unet[@]}" --split-k 1024
    bench "unet-$k-tiled-split512" 60 "$k" unet_step "${unet[@]}" --matmul tiled --split-k 512
    for r in 1 4; do
      bench "unet-$k-attn-ops-rows$r" 60 "$k" unet_step "${unet[@]}" --ops-only --ops-shapes attention --ops-attn fused --fused-rows $r
    done
    bench "unet-$k-fused-rows4" 60 "$k" unet_step "${unet[@]}" --fused-rows 4
    bench "unet-$k-split512-f16" 60 "$k" unet_step "${unet[@]}" --split-k 512 --dtype f16
    bench "unet-$k-explicit-attn1024" 60 "$k" unet_step "${unet[@]}" --attn explicit --attn-budget 1024
    bench "unet-$k-small2M" 60 "$k" unet_step "${unet[@]}" --small-output 2097152
    bench "unet-$k-kratio2" 60 "$k" unet_step "${unet[@]}" --gemm-min-k-ratio 2
    continue
  fi
  if [ "${PLAN:-sweep}" = tc ]; then
    # the fast build only on a GPU (the wgsl build has no tensor cores: every cmma routine falls
    # back); both in small mode, where the wgsl build checks the script on lavapipe
    [ "$k" = fast ] || [ -n "$small" ] || continue
    # tensor cores (SPIR-V cooperative matrices, f16 operands), in priority order: burn's own cmma
    # routine for every GEMM (explicit attention: cubek's unit flash kernel compiled for 4 s per shape
    # on this GPU, and its steps timed out); the per-size rule; the per-op table (each routine on the
    # UNet's GEMM shapes, each attention kernel, with errors and first-call times); the tensor-core
    # flash attention in a step; the other cmma routines; f32; the LoRA timing in f16. Every step is
    # checked against the unit routines (`check_rel_err`). (lavapipe cannot compile this build's SPIR-V.)
    tcm=${TC_MATMULS:-simple-cmma double-cmma specialized-cmma ordered-cmma}
    bench "tc-$k-f16-simple-cmma" 60 "$k" unet_step "${unet[@]}" --dtype f16 --matmul simple-cmma --attn explicit --check
    bench "tc-$k-f16-auto" 60 "$k" unet_step "${unet[@]}" --dtype f16 --attn explicit --check
    bench "tc-$k-f16-auto-fused" 60 "$k" unet_step "${unet[@]}" --dtype f16 --check
    bench "tc-$k-f16-ops" 150 "$k" unet_step "${unet[@]}" --dtype f16 --ops-only --ops-matmul "backend,simple-max,gemm,${tcm// /,}"
    bench "tc-$k-f16-simple-cmma-flash" 60 "$k" unet_step "${unet[@]}" --dtype f16 --matmul simple-cmma --attn flash --check
    for m in $tcm; do
      [ "$m" = simple-cmma ] || bench "tc-$k-f16-$m" 60 "$k" unet_step "${unet[@]}" --dtype f16 --matmul "$m" --attn explicit --check
    done
    bench "tc-$k-f32" 60 "$k" unet_step "${unet[@]}" --attn explicit --check
    bench "tc-$k-lora-f16" 60 "$k" lora_apply --device wgpu --ranks 32 --reps 3 --dtype f16
    continue
  fi
  if [ "${PLAN:-sweep}" = auto ]; then
    # the low-resolution GEMM shapes with burn's routine and cubek's Gemm (then the default step:
    # the baseline), the per-shape routine choice at two output limits, and in f16
    bench "unet-$k-low" 90 "$k" unet_step "${unet[@]}" --ops --ops-shapes low --ops-matmul backend,gemm
    bench "unet-$k-auto" 60 "$k" unet_step "${unet[@]}" --matmul auto
    bench "unet-$k-auto-1M" 60 "$k" unet_step "${unet[@]}" --matmul auto --small-output 1048576
    bench "unet-$k-auto-f16" 60 "$k" unet_step "${unet[@]}" --matmul auto --dtype f16
    continue
  fi
  # the engine's defaults (with the per-op table: each cubek matmul routine on the UNet's GEMM shapes),
  # then flash attention with each matmul routine, then f16; the LoRA timing (already measured) last
  bench "unet-$k" $((120 * slow)) "$k" unet_step "${unet[@]}" --ops
  bench "unet-$k-flash" 60 "$k" unet_step "${unet[@]}" --attn flash
  for m in ${MATMULS:-double-max simple-min double-min gemm}; do
    bench "unet-$k-flash-$m" 60 "$k" unet_step "${unet[@]}" --attn flash --matmul "$m"
  done
  bench "unet-$k-f16-flash" 60 "$k" unet_step "${unet[@]}" --dtype f16 --attn flash ${F16_MATMUL:+--matmul $F16_MATMUL}
  [ -n "$small" ] || bench "lora-$k" $((60 * slow)) "$k" lora_apply --device wgpu --ranks 32,128 --reps 3
done
echo "== total $SECONDS s" | tee -a "$log"
cat "$OUT"/torch.json "$res" 2>/dev/null
