// Fixtures the browser-app tests build at run time with the native CLI: the tiny SD1.5 model
// converted into shards (with its tokenizer beside the manifest), and a small index whose adapters
// are the committed tiny-model LoRAs, downloadable from the test's own static server.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const FX = path.join(ROOT, 'tests/fixtures');
export const STYLUS = path.join(process.env.CARGO_TARGET_DIR || path.join(os.homedir(), '.cache/stylus/target'), 'debug/stylus');
export const ENGINE = path.join(ROOT, 'www/engine');

export function tmpDir(tag) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `stylus-${tag}-`));
}

export function requireBuilt() {
  if (!fs.existsSync(STYLUS)) throw new Error(`native CLI missing at ${STYLUS} (cargo build --workspace)`);
  if (!fs.existsSync(path.join(ENGINE, 'stylus_web_bg.wasm.parts.json'))) {
    throw new Error('www/engine is missing: python3 scripts/build_wasm.py web-engine (it runs scripts/split_wasm.py)');
  }
  if (!fs.existsSync(path.join(ROOT, 'www/pkg/stylus_web.js'))) throw new Error('www/pkg is missing: python3 scripts/build_wasm.py web');
}

export const sha256 = (file) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

/** The tiny fixture converted to f16 shards of `shardMb` MiB in DIR (+ tokenizer.json); → manifest. */
export function tinyModel(dir, { shardMb = 1, web = false } = {}) {
  // web: converted as for a deployment (`--gzip --no-vae-encoder`: gzip copies travel, no VAE encoder).
  execFileSync(STYLUS, ['convert', '--model', path.join(FX, 'tiny_sd/ldm/tiny_sd15_fp16.safetensors'), '--config', 'tiny',
    '--dtype', 'f16', '--shard-mb', String(shardMb), '--out', dir, '--quiet', ...(web ? ['--gzip', '--no-vae-encoder'] : [])]);
  fs.copyFileSync(path.join(FX, 'tokenizer/tokenizer.json'), path.join(dir, 'tokenizer.json'));
  return JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
}

const card = (id, name, category, tags, file, base, over = {}) => ({
  id, name, category, weight: 0.8, tags, trigger_words: [], base_model: 'SD 1.5', nsfw: false, file_name: file,
  download_url: `${base}/${file}`, sha256: sha256(path.join(FX, 'lora', file)).toUpperCase(),
  size_bytes: fs.statSync(path.join(FX, 'lora', file)).size, model_page: `https://civitai.com/models/${id}`,
  stats: { downloads: 1000, favorites: 10, rating: 4.5, rating_count: 10 }, n_example_prompts: 3, ...over,
});

/**
 * An index in DIR (index.stylusix + index.stylusix.json, what the app loads from index/) with three
 * tiny-model LoRAs served at `loraBase` ("watercolor", "fox", "forest") and one whose catalog sha256
 * does not match its file ("moon").
 */
export function testIndex(dir, loraBase) {
  fs.mkdirSync(dir, { recursive: true });
  const cards = [
    card(101, 'Watercolor Wash', 'style', ['watercolor', 'painting'], 'kohya_lora.safetensors', loraBase),
    card(102, 'Red Fox', 'object', ['fox', 'animal'], 'kohya_locon.safetensors', loraBase),
    card(103, 'Autumn Forest', 'background', ['forest', 'autumn'], 'peft_lora.safetensors', loraBase),
    card(104, 'Moon Glow', 'concept', ['moon', 'night'], 'loha.safetensors', loraBase, { sha256: 'AB'.repeat(32) }),
  ];
  const jsonl = path.join(dir, 'cards.jsonl');
  fs.writeFileSync(jsonl, cards.map((c) => JSON.stringify(c)).join('\n') + '\n');
  execFileSync(STYLUS, ['index', 'build', '--catalog', jsonl, '--out', path.join(dir, 'index.stylusix')], { stdio: 'pipe' });
  return cards;
}
