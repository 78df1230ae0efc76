// The WebGPU limits check the engine worker runs before downloading a converted model (www/limits.js):
// the full-size SD1.5 parameter table (from the `stylus` CLI, so the shapes are the engine's own)
// needs buffers of 152 MB for its token embedding — refused on an adapter with WebGPU's default
// 128 MiB binding, accepted on a desktop-class one — and the tiny fixture fits anywhere.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { largestTensor, limitsProblem } from '../../www/limits.js';
import { tmpDir, tinyModel, requireBuilt } from './lib/fixtures.mjs';

const DEFAULTS = { maxStorageBufferBindingSize: 128 * 2 ** 20, maxBufferSize: 256 * 2 ** 20 }; // WebGPU's defaults
const DESKTOP = { maxStorageBufferBindingSize: 2 ** 31 - 1, maxBufferSize: 2 ** 31 - 1 };

test('SD1.5 needs more than the default binding; the tiny model fits; the message names the tensor and the limit', () => {
  // The full-size shapes, as the converter would list them (one tensor per SD1.5 parameter).
  const sd15 = { tensors: [
    { path: 'text_model.embeddings.token_embedding.weight', shape: [49408, 768] },
    { path: 'down_blocks.0.resnets.0.conv1.weight', shape: [320, 320, 3, 3] },
    { path: 'mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj.weight', shape: [10240, 1280] },
  ] };
  assert.deepEqual(largestTensor(sd15), { path: 'text_model.embeddings.token_embedding.weight', bytes: 49408 * 768 * 4 });
  const msg = limitsProblem(sd15, DEFAULTS);
  assert.match(msg, /at most 128 MiB \(maxStorageBufferBindingSize\); the model's largest tensor \(text_model\.embeddings\.token_embedding\.weight\) needs 145 MiB as f32/);
  assert.equal(limitsProblem(sd15, DESKTOP), null);
  assert.match(limitsProblem(sd15, { ...DESKTOP, maxBufferSize: 100 * 2 ** 20 }), /maxBufferSize/);
  assert.equal(limitsProblem(sd15, undefined), null, 'no adapter information: no refusal (init reports a missing GPU)');
  assert.equal(limitsProblem({ tensors: [] }, DEFAULTS), null);
  assert.match(msg, /or f16 where the GPU has shader-f16/, 'f32: the message points at f16');
  // f16: 2 bytes per value, so SD1.5's 76 MB token table fits the default binding
  assert.equal(largestTensor(sd15, 2).bytes, 49408 * 768 * 2);
  assert.equal(limitsProblem(sd15, DEFAULTS, 2), null);
  assert.match(limitsProblem(sd15, { ...DEFAULTS, maxStorageBufferBindingSize: 64 * 2 ** 20 }, 2), /needs 72 MiB as f16\. /);
});

test('a converted tiny model passes under the default limits', () => {
  requireBuilt();
  const dir = tmpDir('limits');
  const m = tinyModel(dir);
  assert.ok(m.tensors.length > 100);
  assert.equal(limitsProblem(m, DEFAULTS), null);
  assert.ok(largestTensor(m).bytes < 2 * 2 ** 20);
  fs.rmSync(path.join(dir), { recursive: true, force: true });
});
