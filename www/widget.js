// Stylus widget: one script tag and one element on any page —
//   <script type="module" src="https://STYLUS/widget.js"></script>
//   <stylus-generate worker="https://STYLUS" model="https://…/manifest.json" images="2"></stylus-generate>
// A custom element with its own shadow DOM: a prompt box, composition through the worker (offline
// WebAssembly fallback), generation on the visitor's GPU through the engine Web Worker served next to
// this script (CORS), progress, and an image grid. DOM events (bubbling, composed): `compose`
// {result, via}, `progress` {kind: 'download' | 'step', ...}, `preview` {index, width, height, rgb,
// step, steps} (latent-resolution previews while denoising), `image` {index, width, height, rgb,
// adapters, prompt}, `error` {code, message}. Attributes and events are typed in stylus.d.ts.
import { createComposer } from './compose.js';
import { Engine, checkWebGPU, generateAll, toCanvas, describeDownload } from './engine.js';

const BASE = new URL('./', import.meta.url);
const composer = createComposer(BASE);

const STYLE = `
:host { display: block; font: 14px/1.4 system-ui, sans-serif; color: #1d1d1f; border: 1px solid #ddd; border-radius: 10px; padding: .75rem; max-width: 40rem; }
form { display: flex; gap: .5rem; }
input { flex: 1; font: inherit; padding: .35rem; }
button { font: inherit; padding: .35rem 1rem; cursor: pointer; }
.status { color: #555; min-height: 1.4em; margin: .4rem 0; }
.status.error { color: #b00020; }
progress { width: 100%; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(8rem, 1fr)); gap: .5rem; }
figure { margin: 0; }
canvas { width: 100%; image-rendering: pixelated; border-radius: 6px; background: #f3f3f3; }
figcaption { font-size: .8em; color: #555; }
.credit { font-size: .75em; color: #888; margin-top: .4rem; }
.credit a { color: inherit; }
`;

export class StylusGenerate extends HTMLElement {
  static observedAttributes = ['prompt'];

  constructor() {
    super();
    const root = this.attachShadow({ mode: 'open' });
    root.innerHTML = `<style>${STYLE}</style>
      <form part="form"><input part="prompt" name="prompt" aria-label="Prompt" placeholder="Describe an image"><button part="button" type="submit">Generate</button></form>
      <p class="status" part="status" role="status"></p>
      <progress part="progress" max="1" value="0" hidden></progress>
      <div class="grid" part="grid"></div>
      <p class="credit">Adapters chosen by <a href="${BASE.href}" target="_blank" rel="noopener">Stylus</a> from <a href="https://civitai.com" target="_blank" rel="noopener">Civitai</a>; drawn on your GPU.</p>`;
    this.$ = (s) => root.querySelector(s);
    this.$('form').addEventListener('submit', (e) => { e.preventDefault(); this.generate(); });
    this.engine = null;
    this.busy = false;
  }

  attributeChangedCallback(name, _old, value) {
    if (name === 'prompt' && value != null) this.$('input').value = value;
  }

  async connectedCallback() {
    if (this.getAttribute('prompt')) this.$('input').value = this.getAttribute('prompt');
    this.gpu ??= checkWebGPU();
    const gpu = await this.gpu;
    if (!gpu.ok) this.status(gpu.reason, true);
  }

  disconnectedCallback() {
    this.engine?.terminate();
    this.engine = null;
  }

  num(name, def) {
    const v = this.getAttribute(name);
    return v == null || v === '' || !Number.isFinite(Number(v)) ? def : Number(v);
  }

  status(text, error = false) {
    this.$('.status').textContent = text;
    this.$('.status').className = error ? 'status error' : 'status';
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail, bubbles: true, composed: true }));
  }

  fail(e) {
    const code = e.code || 'error';
    this.status(`Error (${code}): ${e.message}`, true);
    this.emit('error', { code, message: e.message });
  }

  /** Composes and generates for `prompt` (default: the box's text). Resolves to the images. */
  async generate(prompt = this.$('input').value) {
    if (this.busy) return null;
    if (!prompt.trim()) return this.fail(Object.assign(new Error('type a prompt first'), { code: 'prompt_empty' }));
    const worker = new URL(this.getAttribute('worker') || BASE.href, BASE).href;
    const model = this.getAttribute('model');
    const size = this.num('size', 512);
    const settings = {
      modelUrl: model ? new URL(model, document.baseURI).href : '', tokenizerUrl: this.getAttribute('tokenizer') || '',
      steps: this.num('steps', 25), cfg: this.num('cfg', 5), seed: this.num('seed', 0), width: this.num('width', size),
      height: this.num('height', size), scheduler: this.getAttribute('scheduler') || 'dpmpp_2m_karras',
      negative: this.getAttribute('negative') || '', loraBase: worker,
    };
    this.busy = true;
    this.$('button').disabled = true;
    this.$('.grid').replaceChildren();
    const bar = this.$('progress');
    try {
      this.status('Composing…');
      const request = { prompt, num_images: this.num('images', 1), seed: settings.seed };
      const { result, via } = await composer.compose(request, { workerUrl: worker, mode: this.getAttribute('mode') || 'auto' });
      this.emit('compose', { result, via });
      const gpu = await (this.gpu ??= checkWebGPU());
      if (!gpu.ok) throw Object.assign(new Error(gpu.reason), { code: 'webgpu_missing' });
      if (!settings.modelUrl) throw Object.assign(new Error('the element has no model="…" attribute (a converted model\'s manifest.json)'), { code: 'no_model' });
      this.engine ??= new Engine(BASE);
      bar.hidden = false;
      const figures = [];
      const { images } = await generateAll(this.engine, result, settings, new Map(), {
        onStatus: (t) => this.status(t),
        onDownload: (d) => {
          bar.max = d.total || 1; bar.value = d.loaded;
          this.status(`Downloading ${d.what}: ${describeDownload(d)}`);
          this.emit('progress', { kind: 'download', ...d });
        },
        onStep: (s, i, n) => {
          bar.max = 1; bar.value = (i + (s.stage === 'denoising' ? s.done / s.total : s.stage === 'decoding' ? 1 : 0)) / n;
          this.emit('progress', { kind: 'step', ...s, image: i, images: n });
        },
        onPreview: (img, i, s) => {
          this.emit('preview', { index: i, width: img.width, height: img.height, rgb: img.rgb, step: s.done, steps: s.total });
        },
        onImage: (img, i, planned) => {
          const fig = document.createElement('figure');
          const cap = document.createElement('figcaption');
          cap.textContent = planned.active.map((a) => `${a.name} × ${a.weight.toFixed(2)}`).join(', ') || 'no adapter';
          fig.append(toCanvas(img), cap);
          figures.push(fig);
          this.$('.grid').append(fig);
          this.emit('image', { index: i, width: img.width, height: img.height, rgb: img.rgb, adapters: planned.active, prompt: planned.prompt });
        },
      });
      bar.hidden = true;
      this.status(`${images.length} image${images.length === 1 ? '' : 's'} (composed via ${via === 'worker' ? 'the worker' : 'WebAssembly'}).`);
      return images;
    } catch (e) {
      bar.hidden = true;
      this.fail(e);
      return null;
    } finally {
      this.busy = false;
      this.$('button').disabled = false;
    }
  }
}

if (!customElements.get('stylus-generate')) customElements.define('stylus-generate', StylusGenerate);
