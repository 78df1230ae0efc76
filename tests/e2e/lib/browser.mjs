// Launches Debian's chromium headless through playwright-core with the flags this offline machine
// needs (no background networking, no sandbox as root). WebGPU (SwiftShader) is enabled for the
// engine tests; the caller closes the browser.
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

export function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--enable-unsafe-webgpu'],
  });
}
