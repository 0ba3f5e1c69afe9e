// The browsers the page tests drive, behind one small interface, so each test is written once:
//   chromium   Debian's Chromium through Playwright (playwright-core), WebGPU on SwiftShader; it
//              cannot present a WebGPU canvas headless, so WebGPU frames arrive by readback there.
//   firefox    Debian's Firefox ESR through WebDriver (selenium-webdriver + geckodriver; Playwright
//              can only drive its own patched Firefox), WebGPU on its fallback adapter, which
//              presents WebGPU canvases: the direct GPU-to-canvas path runs for real here.
//   webkit     WebKitGTK's MiniBrowser through WebKitWebDriver, on a private Xvfb display (its
//              --headless mode hangs here); no WebGPU in this build, so the CPU engine only.
// launch(name, { webgpu }) gives { name, open(query, { noGpu }), close() }; a page gives
// eval(fn, arg), waitFor(fn, ms), text(sel), visible(sel), click(sel), screenshot(file),
// errors() (uncaught page errors) and close(); in Chromium also screenshotOf(sel, file) and
// resize(width, height) (the viewport).
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { chromium } from 'playwright-core';
import { Builder, Capabilities } from 'selenium-webdriver';
import firefox from 'selenium-webdriver/firefox.js';
import remote from 'selenium-webdriver/remote/index.js';

const CHROMIUM = process.env.CHROMIUM || '/usr/lib/chromium/chromium';
const FIREFOX = process.env.FIREFOX || '/usr/bin/firefox-esr';
const GECKODRIVER = process.env.GECKODRIVER || 'geckodriver';
const MINIBROWSER = process.env.MINIBROWSER || '/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function poll(evalFn, fn, ms, arg) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await evalFn(fn, arg);
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${fn}`);
    await sleep(250);
  }
}

async function launchChromium(base) {
  const context = await chromium.launchPersistentContext(mkdtempSync(path.join(tmpdir(), 'ddim-chromium-')), {
    executablePath: CHROMIUM,
    ignoreDefaultArgs: true,
    args: ['--headless=new', '--no-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic', '--remote-debugging-pipe',
           'about:blank'],
    viewport: { width: 1000, height: 800 },
  });
  return {
    name: 'chromium',
    async open(query, { noGpu = false } = {}) {
      const page = await context.newPage();
      const errors = [];
      page.on('pageerror', (e) => errors.push(e.message));
      page.on('console', (m) => { if (m.type() === 'error') console.log(`[chromium console] ${m.text()}`); });
      if (noGpu) await page.addInitScript(() => { delete Navigator.prototype.gpu; });
      await page.goto(`${base}/${query}`);
      const evalFn = (fn, arg) => page.evaluate(fn, arg);
      return {
        eval: evalFn,
        waitFor: (fn, ms, arg) => poll(evalFn, fn, ms, arg),
        text: (sel) => page.locator(sel).textContent(),
        visible: (sel) => page.locator(sel).isVisible(),
        click: (sel) => page.click(sel),
        screenshot: (file) => page.screenshot({ path: file }),
        screenshotOf: (sel, file) => page.locator(sel).screenshot({ path: file }),
        resize: (width, height) => page.setViewportSize({ width, height }),
        errors: async () => errors,
        close: () => page.close(),
      };
    },
    close: () => context.close(),
  };
}

// A WebDriver session in which a page is a navigation of its one window. The page records its
// own uncaught errors in window.__pageErrors (WebDriver has no event for them).
async function webDriverBrowser(name, driver, base, cleanup = async () => {}) {
  await driver.manage().setTimeouts({ script: 120_000 });
  const evalFn = (fn, arg) => driver.executeScript(`return (${fn})(arguments[0]);`, arg);
  return {
    name,
    async open(query, { noGpu = false } = {}) {
      if (noGpu) throw new Error(`noGpu is not available in ${name}`);
      await driver.get(`${base}/${query}`);
      return {
        eval: evalFn,
        waitFor: (fn, ms, arg) => poll(evalFn, fn, ms, arg),
        text: (sel) => evalFn((s) => document.querySelector(s).textContent, sel),
        visible: (sel) => evalFn((s) => { const e = document.querySelector(s); return !e.hidden && e.getClientRects().length > 0; }, sel),
        click: (sel) => evalFn((s) => document.querySelector(s).click(), sel),
        screenshot: async (file) => writeFileSync(file, Buffer.from(await driver.takeScreenshot(), 'base64')),
        errors: () => evalFn(() => window.__pageErrors || []),
        close: () => driver.get('about:blank'),
      };
    },
    close: async () => { await driver.quit().catch(() => {}); await cleanup(); },
  };
}

// `webgpu: false` leaves Firefox's WebGPU blocklist on: navigator.gpu exists, requestAdapter()
// gives null, as for most Firefox users today.
async function launchFirefox(base, { webgpu = true } = {}) {
  const options = new firefox.Options().setBinary(FIREFOX).addArguments('-headless').windowSize({ width: 1000, height: 800 });
  options.setPreference('dom.webgpu.enabled', true);
  if (webgpu) options.setPreference('gfx.webgpu.ignore-blocklist', true);
  const driver = await new Builder().forBrowser('firefox').setFirefoxOptions(options)
    .setFirefoxService(new firefox.ServiceBuilder(GECKODRIVER)).build();
  return webDriverBrowser('firefox', driver, base);
}

async function launchWebkit(base) {
  const display = `:${100 + Math.floor(Math.random() * 400)}`;
  const xvfb = spawn('Xvfb', [display, '-screen', '0', '1280x1024x24', '-nolisten', 'tcp'], { stdio: 'ignore' });
  await sleep(1000);
  const service = new remote.DriverService.Builder('WebKitWebDriver').setLoopback(true)
    .setEnvironment({ ...process.env, DISPLAY: display }).build();
  const caps = new Capabilities({ browserName: 'MiniBrowser', 'webkitgtk:browserOptions': { binary: MINIBROWSER, args: ['--automation'] } });
  const driver = await new Builder().withCapabilities(caps).usingServer(await service.start()).build();
  await driver.manage().window().setRect({ width: 1000, height: 800 }).catch(() => {});
  return webDriverBrowser('webkit', driver, base, async () => { await service.kill(); xvfb.kill(); });
}

export function launch(name, base, options) {
  if (name === 'chromium') return launchChromium(base);
  if (name === 'firefox') return launchFirefox(base, options);
  if (name === 'webkit') return launchWebkit(base);
  throw new Error(`unknown browser ${name}: chromium, firefox or webkit`);
}
