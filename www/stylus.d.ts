// TypeScript types of the Stylus web app's JavaScript: the engine Web Worker's message protocol
// (engine-worker.js), the download store (store.js), the compose response, and the
// <stylus-generate> widget (widget.js) with its DOM events. The wasm classes have their own
// wasm-bindgen types (pkg/stylus_web.d.ts, engine/stylus_web.d.ts).

// ---------------------------------------------------------------- compose (POST /v1/compose)
export type Category = 'style' | 'character' | 'clothing' | 'background' | 'concept' | 'pose' | 'object' | 'other';
export type MaskMode = 'one_hot_loras' | 'one_hot_concepts' | 'all';

export interface ComposeRequest {
  prompt: string;
  negative_prompt?: string;
  num_images?: number;
  seed?: number;
  options?: { mask_mode?: MaskMode; [option: string]: unknown };
}

export interface ComposedAdapter {
  id: number;
  name: string;
  category: Category;
  score: number;
  /** Recommended weight. */
  weight: number;
  download_url: string;
  /** Upper-case hex, as Civitai publishes it. */
  sha256: string;
  size_bytes: number;
  model_page: string;
  /** Prompt words that matched. */
  why: string[];
}

export interface ComposedImage {
  /** Adapter id (as a string key) → in this image's mask. */
  mask: Record<string, boolean>;
  active: { id: number; name: string; weight: number }[];
  prompt: string;
  negative_prompt: string;
  /** The A1111 prompt with `<lora:NAME:W>` tags. */
  a1111: string;
}

export interface ComposeResponse {
  topics: { name: string; span: [number, number]; adapters: ComposedAdapter[] }[];
  images: ComposedImage[];
  [extra: string]: unknown;
}

// ---------------------------------------------------------------- engine Web Worker protocol
export type Scheduler = 'dpmpp_2m_karras' | 'euler_a' | 'ddim';

export interface GenerateRequest {
  prompt: string;
  negative?: string;
  steps?: number;
  cfg?: number;
  seed?: number;
  /** Multiples of 8. */
  width?: number;
  height?: number;
  scheduler?: Scheduler;
  /** Images in one pass; with setAdapters, the number of weight rows. */
  batch?: number;
  clipSkip?: number;
  /** A live preview every this many steps and after the last (0 or absent: none; the page uses 5). */
  previewEvery?: number;
}

type Bytes = Uint8Array | ArrayBuffer;

export type EngineRequest =
  | { type: 'init'; pkg: string; wasmParts?: string; precision?: 'f32' | 'f16' | 'auto' }
  /** warmUp: compile this request's kernels on a zero-weight stand-in while the model downloads from the network. */
  | { type: 'loadModel'; manifest: string; tokenizer: string | Bytes; retries?: number; warmUp?: GenerateRequest }
  | { type: 'loadModel'; checkpoint: string | Bytes; tokenizer: string | Bytes; config?: 'sd15' | 'tiny'; sha256?: string; retries?: number; warmUp?: GenerateRequest }
  | { type: 'addLora'; url?: string; bytes?: Bytes; sha256?: string; size?: number; name?: string }
  | { type: 'setAdapters'; weights: number[][] }
  | { type: 'warmUp'; request: GenerateRequest }
  | { type: 'generate'; request: GenerateRequest }
  | { type: 'cancel' }
  | { type: 'stats' };

/** What the page posts: a request and its id (answers and progress carry the same id). */
export type EngineMessage = EngineRequest & { id: number };

export interface EngineResults {
  init: { reused?: boolean; precision?: 'f32' | 'f16' };
  /** warmed: the stand-in warm-up ran to its end (a generation of that request then compiles nothing but the kernels of per-image adapters). */
  loadModel: { config: string; dtype?: string; bytes?: number; warmed: boolean };
  addLora: number;
  setAdapters: undefined;
  warmUp: undefined;
  generate: EngineImage[];
  cancel: undefined;
  stats: { wasmMemoryBytes: number; loras: number };
}

export interface EngineImage {
  width: number;
  height: number;
  /** width × height × 3 bytes, row-major RGB. */
  rgb: Uint8Array;
}

export interface StepProgress {
  /** 'warming': `warmUp`, done of 3 networks (text encoder, UNet, VAE decoder) run once. */
  stage: 'warming' | 'prompt' | 'denoising' | 'decoding';
  done: number;
  total: number;
}

/** A live preview (`previewEvery`): the step's x₀ prediction mapped to RGB at latent resolution
 * (1/8 of the image's width and height), one per image of the batch. */
export interface PreviewProgress {
  stage: 'preview';
  /** Steps done. */
  done: number;
  total: number;
  images: EngineImage[];
}

/** Error codes of the engine (the text before ": " in `error`), store codes included. */
export type EngineErrorCode =
  | 'webgpu_missing' | 'webgpu_init' | 'webgpu_f16' | 'webgpu_limits' | 'bad_config' | 'bad_model' | 'bad_lora' | 'bad_request' | 'bad_adapters'
  | 'no_model' | 'busy' | 'cancelled' | 'generation_failed' | 'not_ready' | 'bad_message' | StoreErrorCode;

/** What the worker posts back. */
export type EngineReply<T extends EngineRequest['type'] = EngineRequest['type']> =
  | { id: number; ok: true; result: EngineResults[T] }
  | { id: number; ok: false; error: string }
  | { id: number; progress: StepProgress | PreviewProgress }
  | { id: number; download: DownloadProgress };

// ---------------------------------------------------------------- download store (store.js)
export type StoreErrorCode = 'download_failed' | 'download_interrupted' | 'hash_mismatch' | 'quota_exceeded' | 'bad_manifest' | 'storage_failed' | 'bad_encoding';

export interface DownloadProgress {
  /** 'engine', 'model', 'tokenizer', 'lora NAME', … */
  what: string;
  url: string;
  loaded: number;
  /** 0 when unknown. */
  total: number;
  /** Bytes per second in this call. */
  rate: number;
  /** Seconds left, null when unknown. */
  eta: number | null;
  /** Served from the store, no download. */
  cached: boolean;
  /** Bytes of a stored partial this download resumed from. */
  resumedFrom: number;
  /** loadModel of a converted model: "i/n". */
  shard?: string;
  /** fetchParts: which part, of how many. */
  part?: number;
  parts?: number;
}

export interface FetchOptions {
  /** Hex, any case; the bytes are refused (and not stored) when they differ. */
  sha256?: string | null;
  /** Expected size, for the quota check before downloading. */
  size?: number;
  what?: string;
  onProgress?: (p: DownloadProgress) => void;
  /** Further tries after an interruption, each resuming with a Range request (default 3). */
  retries?: number;
  type?: string | null;
  signal?: AbortSignal;
}

export interface PartsManifest {
  file: string;
  size: number;
  sha256: string;
  part_limit: number;
  /** 'gzip': the parts are of the gzip stream of the file (its size and sha256 here). */
  encoding?: 'gzip';
  encoded_size?: number;
  encoded_sha256?: string;
  parts: { file: string; size: number; sha256: string }[];
}

/** A gzip copy of a file (`stylus convert --gzip`): name next to the manifest, size, sha256 of the .gz. */
export interface GzipFile { file: string; bytes: number; sha256: string }

export declare class StoreError extends Error {
  code: StoreErrorCode;
  /** quota_exceeded: bytes needed. */
  need?: number;
  loaded?: number;
  total?: number;
  expected?: string;
  got?: string;
  status?: number;
}

/** The exports of store.js (`import * as store from './store.js'`). */
export interface StoreModule {
  CACHE_NAME: string;
  StoreError: typeof StoreError;
  configure(o?: { backend?: 'cache' | 'idb' }): 'cache' | 'idb';
  sha256Hex(bytes: BufferSource): Promise<string>;
  cached(url: string): Promise<Uint8Array | null>;
  remove(url: string): Promise<void>;
  partialBytes(url: string): Promise<number>;
  estimate(): Promise<StorageEstimate | null | undefined>;
  requestPersistence(): Promise<boolean | null>;
  fetchVerified(url: string, options?: FetchOptions): Promise<Uint8Array>;
  fetchJson<T = unknown>(url: string, options?: { what?: string }): Promise<T>;
  gunzip(bytes: BufferSource): Promise<Uint8Array>;
  fetchGzipVerified(url: string, options: FetchOptions & { gzip: GzipFile }): Promise<Uint8Array>;
  fetchParts(manifestUrl: string, options?: { what?: string; onProgress?: (p: DownloadProgress) => void; retries?: number }): Promise<Uint8Array>;
}

// ---------------------------------------------------------------- the <stylus-generate> widget
export interface StylusGenerateAttributes {
  /** Base URL of the Stylus worker (its /v1/compose); default: where widget.js was loaded from. */
  worker?: string;
  /** A converted model's manifest.json (or a single .safetensors). Required to generate. */
  model: string;
  /** Default: tokenizer.json next to the model. */
  tokenizer?: string;
  prompt?: string;
  negative?: string;
  images?: number;
  steps?: number;
  cfg?: number;
  seed?: number;
  /** Width = height (default 512); `width` / `height` override. */
  size?: number;
  width?: number;
  height?: number;
  scheduler?: Scheduler;
  /** 'auto' (default), 'worker' or 'offline'. */
  mode?: 'auto' | 'worker' | 'offline';
}

export interface StylusComposeDetail { result: ComposeResponse; via: 'worker' | 'offline' | 'offline-fallback' }
export type StylusProgressDetail = ({ kind: 'download' } & DownloadProgress) | ({ kind: 'step'; image: number; images: number } & StepProgress);
export interface StylusImageDetail extends EngineImage {
  index: number;
  adapters: { id: number; name: string; weight: number }[];
  prompt: string;
}
export interface StylusPreviewDetail extends EngineImage {
  index: number;
  step: number;
  steps: number;
}
export interface StylusErrorDetail { code: EngineErrorCode | 'prompt_empty' | 'no_model' | 'worker_failed' | string; message: string }

export interface StylusGenerateEventMap {
  compose: CustomEvent<StylusComposeDetail>;
  progress: CustomEvent<StylusProgressDetail>;
  image: CustomEvent<StylusImageDetail>;
  preview: CustomEvent<StylusPreviewDetail>;
  error: CustomEvent<StylusErrorDetail>;
}

export interface StylusGenerateElement extends HTMLElement {
  /** Composes and generates for `prompt` (default: the box's text); null after an error. */
  generate(prompt?: string): Promise<EngineImage[] | null>;
  addEventListener<K extends keyof StylusGenerateEventMap>(type: K, listener: (this: StylusGenerateElement, ev: StylusGenerateEventMap[K]) => unknown, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject, options?: boolean | AddEventListenerOptions): void;
}

declare global {
  interface HTMLElementTagNameMap {
    'stylus-generate': StylusGenerateElement;
  }
}
