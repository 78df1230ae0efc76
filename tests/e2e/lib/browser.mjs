// Launches Debian's chromium headless through playwright-core with the flags this offline machine
// needs (no background networking, no sandbox as root). WebGPU (SwiftShader) is enabled for the
// engine tests; the caller closes the browser. `launchPersistent` gives a non-incognito profile
// (what installability checks need).
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const ARGS = ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--enable-unsafe-webgpu'];

export function launch() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
}

export function launchPersistent(userDataDir) {
  return chromium.launchPersistentContext(userDataDir, { executablePath: CHROMIUM, headless: true, args: ARGS });
}
