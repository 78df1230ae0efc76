// Whether this GPU's WebGPU limits can hold a converted model (`stylus convert` manifest) before a
// byte of it is downloaded. The engine keeps every weight as one storage buffer in its precision (f32
// by default, f16 where the page asks for it; q8/f16 shards are decoded to that when they load), so
// the largest tensor must fit both `maxStorageBufferBindingSize` and `maxBufferSize`; SD1.5's largest
// is CLIP's token embedding, 49408 × 768 × 4 B = 152 MB in f32, above WebGPU's default 128 MiB
// binding, which many mobile GPUs keep (76 MB in f16 fits). Used by engine-worker.js; no DOM.

const MiB = (n) => `${(n / 2 ** 20).toFixed(0)} MiB`;

/**
 * The bytes of the manifest's largest tensor once loaded (4 per value in f32, 2 in f16: the
 * engine's precision): {path, bytes}, or null for an empty manifest.
 */
export function largestTensor(manifest, bytesPerValue = 4) {
  let best = null;
  for (const t of manifest?.tensors || []) {
    const bytes = bytesPerValue * (t.shape || []).reduce((a, d) => a * d, 1);
    if (!best || bytes > best.bytes) best = { path: t.path, bytes };
  }
  return best;
}

/** A sentence saying why `limits` (a GPUSupportedLimits) cannot hold the model, or null if they can. */
export function limitsProblem(manifest, limits, bytesPerValue = 4) {
  const big = largestTensor(manifest, bytesPerValue);
  if (!big || !limits) return null;
  for (const name of ['maxStorageBufferBindingSize', 'maxBufferSize']) {
    const have = Number(limits[name]);
    if (Number.isFinite(have) && have < big.bytes) {
      return `this GPU allows WebGPU buffers of at most ${MiB(have)} (${name}); the model's largest tensor (${big.path}) needs ${MiB(big.bytes)} as ${bytesPerValue === 2 ? 'f16' : 'f32'}. Use a device whose browser reports a larger limit (desktop GPUs report 2 GiB or more)${bytesPerValue === 4 ? ', or f16 where the GPU has shader-f16' : ''}`;
    }
  }
  return null;
}
