// The web UI in headless Chromium against a real `portico start` with the node-sentiment
// example deployed through the API: sign-in, deployments and versions, an alias flipped through
// the confirmation dialog and rolled back in one click (checked through the API), the test
// console, live logs, metric charts (plotted values against the known vh_metadata sequence),
// users, environment secrets, the audit log, and a refused token sending the operator back to
// sign-in. Screenshots of each page go to test/artifacts/ui/.
import t from 'tap';
import { join } from 'node:path';
import { request } from 'undici';
import { computedStyle, launchBrowser, type Browser } from '../helpers/browser.ts';
import { waitFor } from '../helpers/poll.ts';
import { ROOT, removeDataDir, startPortico, type PorticoProcess } from '../helpers/portico.ts';

const EXAMPLE = join(ROOT, 'examples', 'node-sentiment');
const DEP = '/projects/acme/mnist/deployments/web';

/** Texts sent to the compared version and the `score` each makes the example print (weights.json). */
const SCORED: readonly [string, number][] = [
  ['excellent', 3],
  ['bad', -1],
  ['good great', 3],
  ['terrible', -3],
  ['hello', 0],
  ['love happy', 4],
];

/** A 1x1 PNG. */
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==', 'base64');

async function deploy(p: PorticoProcess): Promise<string> {
  const created = await p.api('POST', `${DEP}/versions`, { source: { path: EXAMPLE } });
  if (created.status !== 202) throw new Error(`POST versions: ${created.status} ${JSON.stringify(created.body)}`);
  return created.body.name as string;
}

async function ready(p: PorticoProcess, version: string): Promise<void> {
  await waitFor(async () => {
    const r = await p.api('GET', `${DEP}/versions/${version}`);
    if (r.body.status === 'failed') throw new Error(`version ${version} failed: ${r.body.reason}`);
    return r.body.status === 'ready';
  }, { timeoutMs: 30_000, what: `version ${version} ready` });
}

/** What the metrics page handed to uPlot for chart `id` (`series:<key>`, `histogram:<key>`). */
interface Plotted {
  mode: string;
  versions: string[];
  data: (number | null)[][];
  labels?: string[];
}

function plotted(page: Browser['page'], id: string): Promise<Plotted | undefined> {
  return page.evaluate((id) => (globalThis as unknown as { __porticoCharts?: Record<string, Plotted> }).__porticoCharts?.[id], id);
}

async function aliasTarget(p: PorticoProcess, alias: string): Promise<unknown> {
  const r = await p.api('GET', `${DEP}/aliases`);
  return (r.body.items as { name: string; version?: string }[]).find((a) => a.name === alias)?.version;
}

t.test('web UI', async (t) => {
  const p = await startPortico();
  let b: Browser | undefined;
  t.teardown(async () => {
    await b?.close();
    await p.stop();
    await removeDataDir(p.dataDir);
  });

  t.equal((await p.api('POST', '/projects/acme/mnist/deployments', { name: 'web' })).status, 201);
  const v1 = await deploy(p);
  const v2 = await deploy(p);
  await Promise.all([ready(p, v1), ready(p, v2)]);
  t.equal((await p.api('PUT', `${DEP}/aliases/production`, { version: v1 })).status, 200);

  b = await launchBrowser();
  const { page } = b;
  const shot = (name: string) => b!.screenshot(name);
  const base = p.adminUrl;
  const hash = (h: string) => page.goto(`${base}/${h}`);
  const apiUrls: string[] = [];
  page.on('request', (r) => {
    if (r.url().includes('/api/')) apiUrls.push(r.url());
  });

  await t.test('the page is served with a strict policy and signing in checks the token', async (t) => {
    const res = await page.goto(`${base}/`);
    t.equal(res?.status(), 200);
    const headers = res?.headers() ?? {};
    t.match(headers['content-security-policy'], /default-src 'self'/);
    t.match(headers['content-security-policy'], /frame-ancestors 'none'/);
    t.notMatch(headers['content-security-policy'], /unsafe-inline|unsafe-eval/);
    t.equal(headers['x-content-type-options'], 'nosniff');

    await page.waitForURL(/#\/signin$/);
    t.notOk(await page.locator('#topnav').isVisible(), 'no navigation before signing in');
    await page.fill('#token', 'not-the-token');
    await page.click('form button[type=submit]');
    await page.locator('#signin-message', { hasText: 'That token was refused.' }).waitFor();
    t.equal(await page.evaluate(() => sessionStorage.getItem('portico.token')), null, 'a refused token is not kept');
    await shot('01-signin-refused');

    await page.fill('#token', p.token);
    await page.click('form button[type=submit]');
    await page.locator('#owner').waitFor();
    t.equal(await page.evaluate(() => sessionStorage.getItem('portico.token')), p.token, 'kept in sessionStorage');
    t.notOk(apiUrls.some((u) => u.includes(p.token)), 'the token never appears in a URL');
    await shot('02-projects');
  });

  await t.test('deployments of a project, versions of a deployment', async (t) => {
    await page.fill('#owner', 'acme');
    await page.fill('#project', 'mnist');
    await page.click('form button[type=submit]');
    const row = page.locator('#deployments tbody tr', { hasText: 'web' });
    await row.waitFor();
    t.match(await row.textContent(), /web\s*local\s*none/);
    await shot('03-deployments');

    await row.locator('a', { hasText: 'web' }).click();
    for (const v of [v1, v2]) {
      const card = page.locator(`[data-version="${v}"]`);
      await card.waitFor();
      t.equal(await card.locator('.version-head [data-status]').first().getAttribute('data-status'), 'ready', `${v} shown ready`);
      t.equal(await card.locator('[data-endpoint="sentiment"] .replicas [data-status]').first().getAttribute('data-status'), 'ready', `${v} replica ready`);
      t.equal(await card.locator('input.url').first().inputValue(), `${p.gatewayUrl}/acme/mnist/web/${v}/sentiment`, 'version URL');
    }
    const v1Urls = await page.locator(`[data-version="${v1}"] input.url`).evaluateAll((els) => els.map((e) => (e as unknown as { value: string }).value));
    t.ok(v1Urls.includes(`${p.gatewayUrl}/acme/mnist/web/production/sentiment`), 'alias URL on the version it points at');
    // Newest first.
    const order = await page.locator('[data-version]').evaluateAll((els) => els.map((e) => e.getAttribute('data-version')));
    t.same(order, [v2, v1]);
    await page.locator(`[data-version="${v1}"] [data-copy$="/production/sentiment"]`).click();
    t.equal(await page.evaluate(() => (globalThis as unknown as { navigator: { clipboard: { readText(): Promise<string> } } }).navigator.clipboard.readText()), `${p.gatewayUrl}/acme/mnist/web/production/sentiment`, 'Copy puts the alias URL on the clipboard');
    await shot('04-versions');

  });

  await t.test('flip an alias through the confirmation dialog, then roll back in one click', async (t) => {
    await hash('#/p/acme/mnist/d/web/aliases');
    await page.locator('[data-flip-select="production"]').selectOption(v2);

    // Cancelling changes nothing.
    await page.click('[data-flip="production"]');
    await page.locator('dialog[open]').waitFor();
    await page.click('dialog[open] button[value=cancel]');
    await page.locator('dialog').waitFor({ state: 'detached' });
    t.equal(await aliasTarget(p, 'production'), v1, 'cancel leaves the alias');

    await page.click('[data-flip="production"]');
    const dialog = page.locator('dialog[open]');
    await dialog.waitFor();
    t.equal(await dialog.locator('[data-from]').textContent(), v1, 'dialog names from');
    t.equal(await dialog.locator('[data-to]').textContent(), v2, 'dialog names to');
    t.match(await dialog.textContent(), new RegExp(`production from ${v1.replace('.', '\\.')} to ${v2.replace('.', '\\.')}`));
    await shot('05-alias-confirm');
    await dialog.locator('[data-confirm]').click();
    await waitFor(async () => (await aliasTarget(p, 'production')) === v2, { what: 'alias flipped in the API' });
    t.pass('GET aliases: production -> v2');

    const first = page.locator('#history tbody tr').first();
    await page.locator('[data-alias-target="production"]', { hasText: v2 }).waitFor();
    await first.waitFor();
    const cells = await first.locator('td').allTextContents();
    t.same(cells.slice(1), ['admin', v1, v2], 'history: newest change first (by, from, to)');
    t.equal(await page.locator('#history tbody tr').count(), 2);
    await shot('06-alias-flipped');

    const rollback = page.locator('#rollback');
    t.equal(await rollback.textContent(), `Roll back to ${v1}`);
    await rollback.click();
    await waitFor(async () => (await aliasTarget(p, 'production')) === v1, { what: 'alias rolled back in the API' });
    t.pass('GET aliases: production -> v1 again');
    await page.locator('[data-alias-target="production"]', { hasText: v1 }).waitFor();
    await page.locator('#history tbody tr').first().waitFor();
    t.same((await page.locator('#history tbody tr').first().locator('td').allTextContents()).slice(2), [v2, v1]);
    const history = await p.api('GET', `${DEP}/aliases/production/history`);
    t.same(history.body.items[0].to, { version: v1 });
    t.same(history.body.items[0].from, { version: v2 });
    await shot('07-alias-rolled-back');
  });

  await t.test('test console: POST JSON through the alias', async (t) => {
    await hash('#/p/acme/mnist/d/web/console');
    await page.locator('#console-target').selectOption('production');
    await page.locator('#console-endpoint').selectOption('sentiment');
    await page.locator('#console-method').selectOption('POST');
    await page.check('[data-kind="json"]');
    await page.fill('#console-body', '{"text":"good"}');
    await page.click('#console-send');
    await page.locator('#response-status', { hasText: '200' }).waitFor();
    const body = JSON.parse((await page.locator('#response-body').textContent()) ?? '');
    t.same(body, { score: 1, label: 'positive', words: 1, prefix: `/acme/mnist/web/${v1}/sentiment` }, 'the endpoint\'s answer, through production = v1');
    t.match(await page.locator('#response-body').textContent(), /\n {2}"score": 1,/, 'pretty-printed');
    const versionHeader = page.locator('#response-headers tr', { hasText: 'x-portico-version' });
    t.match(await versionHeader.textContent(), v1);
    t.match(await page.locator('#response-latency').textContent(), /^\d+(\.\d+)? ms$/);
    await shot('08-test-console');

    // A file payload: an image is previewed, sent as bodyBase64, and the endpoint's 400 shown.
    await page.check('[data-kind="file"]');
    t.notOk(await page.locator('#console-body').isVisible(), 'no text body with a file');
    await page.locator('#console-file').setInputFiles({ name: 'dot.png', mimeType: 'image/png', buffer: PNG });
    await page.locator('#console-preview img').waitFor();
    t.equal(await page.locator('#console-preview img').evaluate((img) => (img as unknown as { naturalWidth: number }).naturalWidth), 1, 'the image preview decoded');
    const sent = page.waitForRequest((r) => r.method() === 'POST' && r.url().endsWith('/test'));
    await page.click('#console-send');
    t.match((await sent).postDataJSON(), { target: 'production', endpoint: 'sentiment', method: 'POST', bodyBase64: PNG.toString('base64'), headers: { 'content-type': 'image/png' } });
    await page.locator('#response-status', { hasText: '400' }).waitFor();
    t.match(await page.locator('#response-body').textContent(), /body must be JSON/);
    t.notOk(await page.locator('#response-truncated').count(), 'a whole body is not marked truncated');

    // A body the API cut at 16 MiB (answered here: no example sends that much) is marked so.
    await page.route('**/deployments/web/test', (route) => route.fulfill({
      status: 200,
      contentType: 'application/json',
      body: JSON.stringify({ status: 200, headers: { 'content-type': 'application/json' }, bodyBase64: Buffer.from('{"items": [1, 2').toString('base64'), durationMs: 3, truncated: true }),
    }));
    await page.check('[data-kind="none"]');
    await page.click('#console-send');
    await page.locator('#response-truncated').waitFor();
    t.match(await page.locator('#console-result .notice').textContent(), /only its first 15 bytes came back/);
    t.equal(await page.locator('#response-body').textContent(), '{"items": [1, 2', 'the cut JSON is shown as it came');
    await page.unroute('**/deployments/web/test');
  });

  await t.test('replica logs are followed live and filtered', async (t) => {
    await hash(`#/p/acme/mnist/d/web/v/${v1}/logs`);
    await page.locator('#log-state', { hasText: 'following' }).waitFor();
    await page.locator('#log-lines .line', { hasText: 'listening' }).first().waitFor();
    // A request made now shows up while the page follows.
    const res = await request(`${p.gatewayUrl}/acme/mnist/web/${v1}/sentiment`, { method: 'POST', body: '{"text":"awful awful"}' });
    t.equal(res.statusCode, 200);
    await res.body.dump();
    await page.locator('#log-lines .line', { hasText: '"score":-6' }).waitFor();
    t.pass('a new vh_metadata line arrived while following');
    await shot('09-logs');

    const replicaId = await page.locator('#log-replica option').nth(1).getAttribute('value');
    t.ok(replicaId, 'replicas offered as a filter');
    const followed = page.waitForRequest((r) => r.url().includes(`replica=${replicaId}`) && r.url().includes('follow=true'));
    await page.locator('#log-replica').selectOption(replicaId!);
    await followed;
    await page.locator('#log-lines .line', { hasText: '"score":-6' }).waitFor();
    t.same(new Set(await page.locator('#log-lines .line').evaluateAll((els) => els.map((e) => e.getAttribute('data-replica')))), new Set([replicaId]), 'only that replica\'s lines');

    await page.fill('#log-contains', 'listening');
    await waitFor(async () => {
      const texts = await page.locator('#log-lines .line .text').allTextContents();
      return texts.length > 0 && texts.every((l) => l.includes('listening'));
    }, { what: 'only lines containing the filter' });
    t.pass('text filter applied');

    // Leaving the page stops following: the streaming request is aborted.
    const aborted = page.waitForEvent('requestfailed', (r) => r.url().includes('/logs?') && r.url().includes('follow=true'));
    await hash('#/p/acme/mnist/d/web');
    t.match((await aborted).url(), /replica=.*contains=listening/, 'the followed stream was cancelled on leaving');
  });

  await t.test('metric charts plot the vh_metadata values', async (t) => {
    for (const [text] of SCORED) {
      const res = await request(`${p.gatewayUrl}/acme/mnist/web/${v2}/sentiment`, { method: 'POST', body: JSON.stringify({ text }) });
      t.equal(res.statusCode, 200);
      await res.body.dump();
    }
    const expected = SCORED.map(([, score]) => score);
    await hash(`#/p/acme/mnist/d/web/v/${v2}/metrics`);
    await page.locator('#metrics-refresh:not([disabled])').waitFor();
    let ys: unknown;
    try {
      ys = await waitFor(async () => {
        const got = (await plotted(page, 'series:score'))?.data[1];
        if (Array.isArray(got) && got.length >= expected.length) return got;
        await page.click('#metrics-refresh');
        await page.locator('#metrics-refresh:not([disabled])').waitFor();
        return undefined;
      }, { timeoutMs: 15_000, intervalMs: 250, what: 'the score series chart' });
    } catch (err) {
      await shot('10-metrics');
      const shown = await page.locator('#metrics-charts').textContent();
      t.fail(`no score chart: ${(err as Error).message}; the page shows: ${shown}`);
      return;
    }
    t.same(ys, expected, 'plotted y-values are the scores, in order');
    const onPage = JSON.parse((await page.locator('[data-chart="series:score"]').getAttribute('data-points')) ?? '[]');
    t.same(onPage[1], expected, 'data-points attribute holds the same values');
    const hist = (await plotted(page, 'histogram:score'))?.data;
    t.equal((hist?.[1] ?? []).reduce<number>((a, c) => a + (c ?? 0), 0), expected.length, 'histogram counts every value');
    const labels = await plotted(page, 'histogram:label');
    t.equal(labels?.mode, 'categories', 'string key: categories as bars');
    const byLabel = Object.fromEntries((labels?.labels ?? []).map((l, i) => [l, labels?.data[1]?.[i]]));
    t.same(byLabel, { positive: 3, negative: 2, neutral: 1 }, 'label categories counted');
    await shot('10-metrics');

    await page.locator('#metrics-compare').selectOption(v1);
    const compared = await waitFor(async () => {
      const c = await plotted(page, 'series:score');
      return c && c.versions.length === 2 ? c : undefined;
    }, { what: 'the compared version overlaid' });
    t.same(compared.versions, [v2, v1]);
    t.same(compared.data[1]!.filter((y) => y !== null), expected, 'this version\'s values unchanged in the overlay');
    t.same(compared.data[2]!.filter((y) => y !== null), [1, -6], 'the compared version\'s values (console + logs requests)');
    await shot('11-metrics-compared');
  });

  await t.test('scale, stop and start a version; delete refused while an alias points at it', async (t) => {
    await hash('#/p/acme/mnist/d/web');
    const card = page.locator(`[data-version="${v2}"]`);
    await card.locator('[data-scale="sentiment"]').fill('2');
    await card.locator('[data-endpoint="sentiment"] button', { hasText: 'Scale' }).click();
    await waitFor(async () => (await p.api('GET', `${DEP}/versions/${v2}`)).body.endpoints[0].replicaCount === 2, { what: 'replicas wanted = 2' });
    t.pass('scaled to 2 through PATCH');

    await card.locator('button', { hasText: 'Stop' }).click();
    await page.locator('dialog[open] [data-confirm]').click();
    await waitFor(async () => (await p.api('GET', `${DEP}/versions/${v2}`)).body.enabled === false, { what: 'v2 stopped' });
    await card.locator('button', { hasText: 'Start' }).click();
    await waitFor(async () => (await p.api('GET', `${DEP}/versions/${v2}`)).body.enabled === true, { what: 'v2 started' });
    t.pass('stopped and started through PATCH');

    await page.locator(`[data-version="${v1}"] button`, { hasText: 'Delete' }).click();
    const dialog = page.locator('dialog[open]');
    t.match(await dialog.textContent(), /production/, 'the dialog names the alias in the way');
    await dialog.locator('[data-confirm]').click();
    await page.locator('#flash', { hasText: 'ALIAS_IN_USE' }).waitFor();
    t.equal((await p.api('GET', `${DEP}/versions/${v1}`)).status, 200, 'still there');
  });

  await t.test('create and delete a deployment', async (t) => {
    await hash('#/p/acme/mnist');
    await page.fill('#new-deployment-name', 'scratch');
    await page.locator('#new-deployment-target').selectOption('local');
    await page.locator('#new-deployment-auth').selectOption('basic');
    await page.click('form button[type=submit]');
    await page.waitForURL(/#\/p\/acme\/mnist\/d\/scratch$/);
    await page.locator('#no-versions').waitFor();
    const created = await p.api('GET', '/projects/acme/mnist/deployments/scratch');
    t.match(created.body, { name: 'scratch', target: 'local', auth: 'basic' });
    await page.click('button:has-text("Delete deployment")');
    await page.locator('dialog[open] [data-confirm]').click();
    await page.waitForURL(/#\/p\/acme\/mnist$/);
    t.equal((await p.api('GET', '/projects/acme/mnist/deployments/scratch')).status, 404);
  });

  await t.test('basic-auth users: add and delete', async (t) => {
    await hash('#/p/acme/mnist/d/web/users');
    await page.fill('#new-user-name', 'alice');
    await page.fill('#new-user-password', 'correct horse');
    await page.click('form button[type=submit]');
    await page.locator('[data-user="alice"]').waitFor();
    t.same((await p.api('GET', `${DEP}/users`)).body.items, [{ name: 'alice' }]);
    await shot('12-users');
    await page.click('[data-delete-user="alice"]');
    await page.locator('dialog[open] [data-confirm]').click();
    await page.locator('[data-user="alice"]').waitFor({ state: 'detached' });
    t.same((await p.api('GET', `${DEP}/users`)).body.items, []);
  });

  await t.test('environment: a secret is never shown and is sent back masked', async (t) => {
    t.equal((await p.api('PUT', '/projects/acme/mnist/environment', { variables: { MODEL: { value: 'small' }, API_KEY: { value: 's3cret-value', secret: true } } })).status, 200);
    // A version built now inherits the secret: its page names it as one, without the value.
    const inheriting = await p.api('POST', `${DEP}/versions`, { source: { path: EXAMPLE }, endpoints: { sentiment: { replicas: 0 } } });
    t.equal(inheriting.status, 202);
    await hash(`#/p/acme/mnist/d/web/v/${inheriting.body.name}`);
    const envCell = page.locator('dl.details dt:text-is("Environment") + dd');
    await envCell.waitFor();
    t.equal(await envCell.textContent(), 'API_KEY (secret), MODEL', 'secret names marked');
    t.notMatch(await page.content(), /s3cret/, 'no value in the page');
    await hash('#/p/acme/mnist/environment');
    const model = page.locator('[data-env-value="MODEL"]');
    await model.waitFor();
    t.equal(await model.inputValue(), 'small');
    t.equal(await page.locator('[data-env-value="API_KEY"]').inputValue(), '', 'the secret input is empty');
    t.equal(await computedStyle(page.locator('[data-env-value="API_KEY"]'), '-webkit-text-security'), 'disc', 'what is typed in it is masked');
    t.notMatch(await page.content(), /s3cret|\*{8}/, 'neither the secret nor its mask is in the page');

    await model.fill('large');
    const put = page.waitForRequest((r) => r.method() === 'PUT' && r.url().endsWith('/environment'));
    await page.click('#env-save');
    const sent = (await put).postDataJSON();
    t.same(sent, { variables: { API_KEY: { value: '********', secret: true }, MODEL: { value: 'large', secret: false } } }, 'the untouched secret goes back masked');
    await page.locator('#flash', { hasText: 'Environment saved' }).waitFor();
    const env = await p.api('GET', '/projects/acme/mnist/environment');
    t.same(env.body.variables, { API_KEY: { value: '********', secret: true }, MODEL: { value: 'large', secret: false } });
    await shot('13-environment');
  });

  await t.test('audit log', async (t) => {
    await hash('#/audit');
    await page.locator('#audit tbody tr[data-action="alias.set"]').first().waitFor();
    t.ok(await page.locator('#audit tbody tr[data-action="alias.set"]').count() >= 3, 'the flips are listed');
    t.match(await page.locator('#audit tbody tr').first().textContent(), /environment\.put/, 'newest first');
    await shot('14-audit');
  });

  await t.test('a refused token sends the operator back to sign-in', async (t) => {
    await page.evaluate(() => sessionStorage.setItem('portico.token', 'revoked-token'));
    await hash('#/p/acme/mnist');
    await page.waitForURL(/#\/signin$/);
    await page.locator('#signin-message', { hasText: 'refused' }).waitFor();
    t.equal(await page.evaluate(() => sessionStorage.getItem('portico.token')), null);
    await shot('15-signed-out');
    // Signing in again returns to the page asked for.
    await page.fill('#token', p.token);
    await page.click('form button[type=submit]');
    await page.locator('#deployments').waitFor();
    t.match(page.url(), /#\/p\/acme\/mnist$/);
  });

  t.same(b.problems, [], 'no page error, console error or CSP violation');
});
