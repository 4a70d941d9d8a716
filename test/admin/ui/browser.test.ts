// The web UI in headless Chromium against the real admin server over the fake control plane:
// quick, deterministic checks of what an operator's actions do (the whole product, with real
// replicas, is test/e2e/ui.test.ts).
import t, { type Test } from 'tap';
import type { Route } from 'playwright-core';
import { join } from 'node:path';
import { createUi } from '../../../admin/ui/serve.ts';
import { computedStyle, launchBrowser, type Browser } from '../../helpers/browser.ts';
import { waitFor } from '../../helpers/poll.ts';
import { REF, ROOT, TOKEN, startApi, type Api } from '../harness.ts';

const EXAMPLE = join(ROOT, 'examples', 'node-sentiment');

/** An admin server with the UI, deployment web with `versions` ready versions, and a signed-in page. */
async function signedIn(t: Test, versions = 1): Promise<{ api: Api; b: Browser; names: string[]; go: (hash: string) => Promise<unknown> }> {
  const api = await startApi(t, { server: { ui: createUi() } });
  await api.fake.createDeployment(REF, { name: REF.deployment, target: 'local', auth: 'none' }, 'admin');
  const names: string[] = [];
  for (let i = 0; i < versions; i++) names.push((await api.fake.createVersion(REF, { source: { path: EXAMPLE } }, 'admin')).name);
  await api.fake.settled();
  const b = await launchBrowser();
  t.teardown(() => b.close());
  await b.page.goto(`${api.url}/#/signin`);
  await b.page.evaluate((token) => sessionStorage.setItem('portico.token', token), TOKEN);
  return { api, b, names, go: (hash) => b.page.goto(`${api.url}/${hash}`) };
}

t.test('scaling: a count that is not 0 to 100 is refused with a message, never sent', async (t) => {
  const { api, b, names, go } = await signedIn(t);
  const { page } = b;
  await go('#/p/acme/mnist/d/web');
  const card = page.locator(`[data-version="${names[0]}"]`);
  const count = card.locator('[data-scale=sentiment]');
  const scale = card.locator('.scale button');
  for (const typed of ['', '150', '1.5', '-1']) {
    await count.fill(typed);
    await scale.click();
    await page.locator('#flash.flash-error', { hasText: 'Replicas of sentiment: a whole number from 0 to 100' }).waitFor();
    await page.locator('#flash .close').click();
  }
  t.notOk(api.fake.calls.some((c) => c.op === 'patchVersion'), 'nothing sent');
  t.equal((await api.fake.getVersion({ ...REF, version: names[0]! })).endpoints[0]!.replicaCount, 1, 'still 1 replica');

  await count.fill('3');
  await scale.click();
  await page.locator('#flash.flash-ok', { hasText: '3 replica(s) wanted' }).waitFor();
  t.equal((await api.fake.getVersion({ ...REF, version: names[0]! })).endpoints[0]!.replicaCount, 3);
  t.same(b.problems, []);
});

t.test('versions list: the refresh while a version settles keeps the replica box being typed in', async (t) => {
  const { api, b, names, go } = await signedIn(t, 2);
  const { page } = b;
  api.fake.setStatus({ ...REF, version: names[1]! }, 'building');
  await go('#/p/acme/mnist/d/web');
  const count = page.locator(`[data-version="${names[0]}"] [data-scale=sentiment]`);
  await count.fill('4');
  const refreshes = () => api.fake.calls.filter((c) => c.op === 'listVersions').length;
  const seen = refreshes();
  await waitFor(() => refreshes() >= seen + 2, { what: 'two refreshes' });
  t.ok(await count.evaluate((el) => el === (globalThis as unknown as { document: { activeElement: unknown } }).document.activeElement), 'still focused');
  await page.keyboard.type('2');
  t.equal(await count.inputValue(), '42', 'typing carries on where it was');

  // The card whose version changed is drawn again, and the one being typed in gets the focus back.
  const typedIn = await count.elementHandle();
  api.fake.setStatus({ ...REF, version: names[0]! }, 'ready', 'a reason shown on the card');
  await page.locator(`[data-version="${names[0]}"] .form-error`, { hasText: 'a reason shown on the card' }).waitFor();
  t.notOk(await typedIn?.evaluate((el) => (el as unknown as { isConnected: boolean }).isConnected), 'drawn again');
  t.ok(await count.evaluate((el) => el === (globalThis as unknown as { document: { activeElement: unknown } }).document.activeElement), 'focused again');
  t.equal(await count.inputValue(), '42');

  api.fake.setStatus({ ...REF, version: names[0]! }, 'starting');
  await go(`#/p/acme/mnist/d/web/v/${names[0]}`);
  const own = page.locator('#tab-body [data-scale=sentiment]');
  await own.fill('5');
  const card = await own.elementHandle();
  await waitFor(() => card?.evaluate((el) => !(el as unknown as { isConnected: boolean }).isConnected), { what: 'the version page drawn again' });
  t.ok(await own.evaluate((el) => el === (globalThis as unknown as { document: { activeElement: unknown } }).document.activeElement), 'the version page keeps it too');
  t.same(b.problems, []);
});

t.test('long names (100 characters) wrap instead of pushing the page wider than the window', async (t) => {
  const { api, b, names, go } = await signedIn(t);
  const { page } = b;
  const long = `d${'e'.repeat(99)}`;
  await api.fake.createDeployment(REF, { name: long, target: 'local', auth: 'none' }, 'admin');
  await api.fake.createVersion({ ...REF, deployment: long }, { name: `v${'1'.repeat(99)}`, source: { path: EXAMPLE } }, 'admin');
  await api.fake.setAlias(REF, `a${'l'.repeat(99)}`, { version: names[0]! }, {}, 'admin');
  await api.fake.settled();
  const wider = () => page.evaluate(() => {
    const g = globalThis as unknown as { document: { documentElement: { scrollWidth: number } }; innerWidth: number };
    return g.document.documentElement.scrollWidth - g.innerWidth;
  });
  for (const [hash, ready] of [
    ['#/p/acme/mnist', '#deployments'],
    [`#/p/acme/mnist/d/${long}`, '[data-version]'],
    [`#/p/acme/mnist/d/${long}/v/v${'1'.repeat(99)}`, '#build-log'],
    ['#/p/acme/mnist/d/web/aliases', '#history'],
    ['#/p/acme/mnist/d/web', '[data-version]'],
  ] as const) {
    await go(hash);
    await page.locator(ready).first().waitFor();
    t.equal(await wider(), 0, `${hash.slice(0, 40)}…: no horizontal scrolling`);
  }
  t.same(b.problems, []);
});

t.test('test console: every method the API sends can be chosen', async (t) => {
  const { b, go } = await signedIn(t);
  const { page } = b;
  await go('#/p/acme/mnist/d/web/console');
  await page.locator('#console-send').waitFor();
  t.same(await page.locator('#console-method option').allTextContents(), ['POST', 'GET', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS']);
  await page.selectOption('#console-method', 'DELETE');
  await page.check('[data-kind=none]');
  await page.click('#console-send');
  await page.locator('#response-body', { hasText: '"method": "DELETE"' }).waitFor();
  t.same(b.problems, []);
});

t.test('a refresh that fails (controller restarting) is said and tried again, not left stale', async (t) => {
  const { api, b, names, go } = await signedIn(t, 2);
  const { page } = b;
  const building = { ...REF, version: names[1]! };
  api.fake.setStatus(building, 'building');

  await go('#/p/acme/mnist/d/web');
  await page.locator(`[data-version="${names[1]}"] .version-head [data-status=building]`).waitFor();
  api.fake.failNext('listVersions', new Error('store unreachable'));
  await page.locator('#versions-state', { hasText: 'Refresh failed' }).waitFor();
  api.fake.setStatus(building, 'ready');
  await page.locator(`[data-version="${names[1]}"] .version-head [data-status=ready]`).waitFor();
  t.equal(await page.locator('#versions-state').textContent(), '', 'the notice goes once a refresh works');

  api.fake.setStatus(building, 'building');
  await go(`#/p/acme/mnist/d/web/v/${names[1]}`);
  await page.locator('.version-head [data-status=building]').waitFor();
  api.fake.failNext('getVersion', new Error('store unreachable'));
  await page.locator('#version-state', { hasText: 'Refresh failed' }).waitFor();
  api.fake.setStatus(building, 'ready');
  await page.locator('.version-head [data-status=ready]').waitFor();
  t.equal(await page.locator('#version-state').textContent(), '');
});

t.test('changing authentication updates the tab below (users notice), not only the select', async (t) => {
  const { api, b, go } = await signedIn(t);
  const { page } = b;
  await go('#/p/acme/mnist/d/web/users');
  const notice = page.locator('#tab-body .notice', { hasText: 'This deployment is public' });
  await notice.waitFor();
  await page.selectOption('#deployment-auth', 'basic');
  await page.locator('dialog [data-confirm]').click();
  await page.locator('#flash', { hasText: 'Authentication: basic.' }).waitFor();
  t.equal((await api.fake.getDeployment(REF)).auth, 'basic');
  await notice.waitFor({ state: 'detached' });
  t.equal(await page.locator('#deployment-auth').inputValue(), 'basic');
  t.same(b.problems, []);
});

t.test('logs: an emptied "Last lines" box means the default 200 lines, not none', async (t) => {
  const { api, b, names, go } = await signedIn(t);
  const { page } = b;
  for (let i = 0; i < 3; i++) api.fake.appendLog({ ...REF, version: names[0]! }, 'sentiment', `line ${i}`);
  await go(`#/p/acme/mnist/d/web/v/${names[0]}/logs`);
  await page.locator('#log-lines .line').nth(2).waitFor();
  await page.uncheck('#log-follow');
  await page.locator('#log-state', { hasText: '3 line(s)' }).waitFor();
  await page.fill('#log-tail', '');
  await page.locator('#log-tail').dispatchEvent('change');
  await waitFor(() => api.fake.calls.filter((c) => c.op === 'endpointLogs').length === 3, { what: 'the logs read again' });
  t.equal((api.fake.calls.at(-1)!.args[2] as { tail?: number }).tail, 200);
  await page.locator('#log-state', { hasText: '3 line(s)' }).waitFor();
  t.equal(await page.locator('#log-lines .line').count(), 3);
});

t.test('an action while the admin API cannot be reached says so in words', async (t) => {
  const { b, names, go } = await signedIn(t);
  const { page } = b;
  await go('#/p/acme/mnist/d/web');
  await page.locator(`[data-version="${names[0]}"]`).waitFor();
  await b.context.setOffline(true);
  t.teardown(() => b.context.setOffline(false));
  await page.locator('.toolbar button', { hasText: 'Refresh' }).click();
  await page.locator('#flash.flash-error', { hasText: 'UNREACHABLE: The admin API cannot be reached' }).waitFor();
});

t.test('versions list: a refresh draws again only the versions that changed', async (t) => {
  const { api, b, names, go } = await signedIn(t, 3);
  const { page } = b;
  api.fake.setStatus({ ...REF, version: names[2]! }, 'building');
  await go('#/p/acme/mnist/d/web');
  const card = (name: string) => page.locator(`[data-version="${name}"]`);
  const handles = await Promise.all(names.map((n) => card(n).elementHandle()));
  api.fake.setStatus({ ...REF, version: names[2]! }, 'starting');
  await card(names[2]!).locator('.version-head [data-status=starting]').waitFor();
  const connected = await Promise.all(handles.map((h) => h?.evaluate((el) => (el as unknown as { isConnected: boolean }).isConnected)));
  t.same(connected, [true, true, false], 'unchanged cards kept, the changed one replaced');
  t.same(await page.locator('[data-version]').evaluateAll((els) => els.map((el) => el.getAttribute('data-version'))), [...names].reverse(), 'order kept');
  t.same(b.problems, []);
});

t.test('logs: 20,000 lines (tail 20000) show their last 2,000 without freezing the page', async (t) => {
  const { api, b, names, go } = await signedIn(t);
  const { page } = b;
  const ref = { ...REF, version: names[0]! };
  for (let i = 0; i < 20_000; i++) api.fake.appendLog(ref, 'sentiment', `line ${i} ${'x'.repeat(80)}`);
  await go(`#/p/acme/mnist/d/web/v/${names[0]}/logs`);
  await page.locator('#log-lines .line', { hasText: 'line 19999 ' }).waitFor();
  for (const follow of [false, true]) {
    await page.setChecked('#log-follow', follow);
    await page.fill('#log-tail', '20000');
    await page.locator('#log-tail').dispatchEvent('change');
    // Line by line, each append measured the box again: 75 s (120 s following) for these lines.
    await page.locator('#log-lines .line', { hasText: 'line 19999 ' }).waitFor({ timeout: 15_000 });
    if (!follow) await page.locator('#log-state', { hasText: '20000 line(s)' }).waitFor();
    t.equal(await page.locator('#log-lines .line').count(), 2000, 'the last 2,000 kept');
    t.match(await page.locator('#log-lines .line').first().textContent(), /line 18000 /);
    t.ok(await page.locator('#log-lines').evaluate((el) => {
      const box = el as unknown as { scrollTop: number; clientHeight: number; scrollHeight: number };
      return box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
    }), 'scrolled to the newest line');
  }
  t.same(b.problems, []);
});

t.test('logs: a followed stream that ends (controller restarting) is followed again, without repeating lines', async (t) => {
  const { api, b, names, go } = await signedIn(t);
  const { page } = b;
  const ref = { ...REF, version: names[0]! };
  const at = Date.now();
  api.fake.appendLog(ref, 'sentiment', 'same', { at });
  api.fake.appendLog(ref, 'sentiment', 'same', { at });
  await go(`#/p/acme/mnist/d/web/v/${names[0]}/logs`);
  await page.locator('#log-lines .line').nth(1).waitFor();
  await waitFor(() => api.fake.followers === 1, { what: 'the stream followed' });
  api.fake.endFollows();
  await page.locator('#log-state', { hasText: 'reconnecting' }).waitFor();
  api.fake.appendLog(ref, 'sentiment', 'after', { at: at + 1 });
  await page.locator('#log-lines .line', { hasText: 'after' }).waitFor();
  await page.locator('#log-state', { hasText: 'following' }).waitFor();
  t.same(await page.locator('#log-lines .text').allTextContents(), ['same', 'same', 'after'], 'each line once');
  t.match(api.fake.calls.filter((c) => c.op === 'endpointLogs').at(-1)!.args[2], { since: at, follow: true }, 'from the last line shown');
  api.fake.appendLog(ref, 'sentiment', 'live', { at: at + 2 });
  await page.locator('#log-lines .line', { hasText: 'live' }).waitFor();
  t.same(b.problems, []);
});

t.test('an alias pointed at a version that is not ready: the operator is asked, and it is sent with force only on yes', async (t) => {
  const { api, b, names, go } = await signedIn(t, 2);
  const { page } = b;
  const [ready, starting] = names as [string, string];
  await api.fake.setAlias(REF, 'production', { version: ready }, {}, 'admin');
  api.fake.setStatus({ ...REF, version: starting }, 'starting');
  await go('#/p/acme/mnist/d/web/aliases');
  const flipTo = async () => {
    await page.selectOption('[data-flip-select=production]', starting);
    await page.click('[data-flip=production]');
    await page.click('dialog[open] button[value=ok]'); // the flip's own confirmation
    await page.locator('dialog[open]', { hasText: 'not ready' }).waitFor();
  };
  await flipTo();
  t.match(await page.locator('dialog[open]').innerText(), new RegExp(`version ${starting} is starting\\.[\\s\\S]*503 NO_READY_REPLICA`), 'says why and what clients will get');
  t.notMatch(await page.locator('dialog[open]').innerText(), /"force"/, 'not the API\'s hint to send force');
  await page.click('dialog[open] button[value=cancel]');
  await page.locator('dialog').waitFor({ state: 'detached' });
  t.same((await api.fake.listAliases(REF)).map((a) => ('version' in a ? a.version : null)), [ready], 'no: nothing changed');
  t.same(api.fake.calls.filter((c) => c.op === 'setAlias').map((c) => (c.args[3] as { force?: boolean }).force === true), [false, false], 'no forced PUT was sent');

  await flipTo();
  await page.click('dialog[open] button[value=ok]');
  await page.locator('#flash.flash-ok', { hasText: `production: ${ready} → ${starting}.` }).waitFor();
  t.same((await api.fake.listAliases(REF)).map((a) => ('version' in a ? a.version : null)), [starting], 'yes: it points at the version');
  t.same(api.fake.calls.filter((c) => c.op === 'setAlias').at(-1)?.args[3], { force: true }, 'sent with force');
  t.same(b.problems, []);
});

t.test('environment: line breaks of values survive the editor (a multi-line variable, a PEM key pasted as a secret)', async (t) => {
  const { api, b, go } = await signedIn(t);
  const { page } = b;
  const project = { owner: REF.owner, project: REF.project };
  await api.fake.putEnvironment(project, { CONFIG: { value: 'a: 1\nb: 2\n' }, MODEL: { value: 'small' } }, 'admin');
  await go('#/p/acme/mnist/environment');
  const config = page.locator('[data-env-value="CONFIG"]');
  await config.waitFor();
  t.equal(await config.inputValue(), 'a: 1\nb: 2\n', 'a multi-line value is shown whole');

  await page.locator('[data-env-value="MODEL"]').fill('large');
  await page.click('#env-add');
  await page.locator('[data-env-name=""]').fill('TLS_KEY');
  const key = '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----\n';
  await page.locator('[data-env-value=""]').fill(key);
  await page.locator('[data-env-secret=""]').check();
  t.equal(await computedStyle(page.locator('[data-env-value=""]'), '-webkit-text-security'), 'disc', 'the secret is masked while typed');
  const put = page.waitForRequest((r) => r.method() === 'PUT' && r.url().endsWith('/environment'));
  await page.click('#env-save');
  t.same((await put).postDataJSON().variables, {
    CONFIG: { value: 'a: 1\nb: 2\n', secret: false },
    MODEL: { value: 'large', secret: false },
    TLS_KEY: { value: key, secret: true },
  }, 'saved with every line break, the untouched variable unchanged');
  await page.locator('#flash.flash-ok', { hasText: 'Environment saved' }).waitFor();
  t.equal(api.fake.storedEnvironment(project).TLS_KEY?.value, key, 'the key is stored whole');
  t.same(b.problems, []);
});

t.test('metrics: the keys load a few at a time, not one after another, and show in their order', async (t) => {
  const { api, b, names, go } = await signedIn(t);
  const { page } = b;
  const ref = { ...REF, version: names[0]! };
  const keys = Array.from({ length: 8 }, (_, i) => `key${i}`);
  api.fake.appendMetric(ref, 'sentiment', Object.fromEntries(keys.map((k, i) => [k, i])));
  // Every request of a key (series, histogram) is held until the test lets it through.
  const held = new Map<string, Route[]>();
  let most = 0;
  await page.route((url) => url.pathname.endsWith('/metrics') && url.searchParams.has('key'), (route) => {
    const key = new URL(route.request().url()).searchParams.get('key')!;
    held.set(key, [...(held.get(key) ?? []), route]);
    most = Math.max(most, held.size);
  });
  await go(`#/p/acme/mnist/d/web/v/${names[0]}/metrics`);
  for (let left = keys.length; left > 0; left--) {
    const first = await waitFor(() => held.size === Math.min(3, left) && [...held.values()].every((r) => r.length === 2) && [...held.keys()][0], { what: `the requests of ${Math.min(3, left)} keys at once` });
    const routes = held.get(first)!;
    held.delete(first);
    await Promise.all(routes.map((r) => r.continue()));
  }
  await page.locator('[data-metric]').nth(keys.length - 1).waitFor();
  t.equal(most, 3, 'at most 3 keys at a time');
  t.same(await page.locator('[data-metric]').evaluateAll((els) => els.map((el) => el.getAttribute('data-metric'))), keys);
  await page.locator('#metrics-state', { hasText: '8 key(s)' }).waitFor();
  t.same(b.problems, []);
});

t.test('logs: the replica list follows a scale of the endpoint while the tab is open, keeping the choice', async (t) => {
  const { api, b, names, go } = await signedIn(t);
  const { page } = b;
  const ref = { ...REF, version: names[0]! };
  await go(`#/p/acme/mnist/d/web/v/${names[0]}/logs`);
  const options = () => page.locator('#log-replica option').evaluateAll((els) => els.map((el) => (el as unknown as { value: string }).value));
  await waitFor(async () => (await options()).length === 2, { what: 'the one replica' });
  t.same(await options(), ['', 'sentiment-0']);
  await page.selectOption('#log-replica', 'sentiment-0');
  await api.fake.patchVersion(ref, { endpoints: { sentiment: { replicas: 3 } } }, 'admin');
  await waitFor(async () => (await options()).length === 4, { what: 'the replicas after the scale up', timeoutMs: 15_000 });
  t.same(await options(), ['', 'sentiment-0', 'sentiment-1', 'sentiment-2']);
  t.equal(await page.locator('#log-replica').inputValue(), 'sentiment-0', 'the chosen replica stays chosen');
  const streams = api.fake.calls.filter((c) => c.op === 'endpointLogs').length;

  // Scaled down, a chosen replica that is gone stays in the list (its lines can still be read).
  await page.selectOption('#log-replica', 'sentiment-2');
  await api.fake.patchVersion(ref, { endpoints: { sentiment: { replicas: 1 } } }, 'admin');
  await waitFor(async () => (await options()).length === 3, { what: 'the replicas after the scale down', timeoutMs: 15_000 });
  t.same(await options(), ['', 'sentiment-0', 'sentiment-2']);
  t.equal(await page.locator('#log-replica option:checked').textContent(), 'sentiment-2 (gone)');
  t.equal(api.fake.calls.filter((c) => c.op === 'endpointLogs').length, streams + 1, 'the list refreshing does not restart the stream');
  t.same(b.problems, []);
});
