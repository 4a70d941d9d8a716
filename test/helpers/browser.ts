import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Locator, type Page } from 'playwright-core';
import { ROOT } from './portico.ts';

/** Debian's Chromium (never a browser downloaded by Playwright). */
export const CHROMIUM = '/usr/bin/chromium';

/** Where UI tests save their screenshots (git-ignored). */
export const ARTIFACTS = join(ROOT, 'test', 'artifacts', 'ui');

/** A headless Chromium with one page, and what the page reported. */
export interface Browser {
  readonly context: BrowserContext;
  readonly page: Page;
  /** Uncaught exceptions, console errors (CSP violations among them) seen so far. */
  readonly problems: string[];
  /** Saves a full-page screenshot as `test/artifacts/ui/<name>.png` and returns its path. */
  screenshot(name: string): Promise<string>;
  close(): Promise<void>;
}

/**
 * Launches headless Chromium (Debian's `chromium`, a fresh user-data-dir, no network side
 * traffic) with one page of a laptop's size. Console errors, page errors and CSP violations are
 * collected in `problems` so a test can assert there were none.
 */
export async function launchBrowser(opts: { width?: number; height?: number } = {}): Promise<Browser> {
  const userDataDir = await mkdtemp(join(tmpdir(), 'portico-chromium-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
      viewport: { width: opts.width ?? 1366, height: opts.height ?? 860 },
      permissions: ['clipboard-read', 'clipboard-write'],
      timeout: 30_000,
    });
  } catch (err) {
    await rm(userDataDir, { recursive: true, force: true });
    throw err;
  }
  context.setDefaultTimeout(15_000);
  const page = context.pages()[0] ?? (await context.newPage());
  const problems: string[] = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    // A refused request (401, 404) is logged by Chromium as "Failed to load resource": tests
    // assert on statuses themselves, so only other errors (CSP violations...) count here.
    if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) problems.push(`console error: ${msg.text()}`);
  });
  await mkdir(ARTIFACTS, { recursive: true });
  return {
    context,
    page,
    problems,
    async screenshot(name) {
      const file = join(ARTIFACTS, `${name}.png`);
      await page.screenshot({ path: file, fullPage: true });
      return file;
    },
    async close() {
      await context.close().catch(() => {});
      await rm(userDataDir, { recursive: true, force: true });
    },
  };
}

/** The computed value of CSS property `name` on the element `locator` finds (in the page). */
export function computedStyle(locator: Locator, name: string): Promise<string> {
  type Styles = { getComputedStyle(el: unknown): { getPropertyValue(name: string): string } };
  return locator.evaluate((el, n) => (globalThis as unknown as Styles).getComputedStyle(el).getPropertyValue(n), name);
}
