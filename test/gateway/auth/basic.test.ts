import t from 'tap';
import { BasicAuthenticator, basicChallenge } from '../../../gateway/auth/basic.ts';
import { hashPassword, verifyPassword } from '../../../gateway/auth/password.ts';

const CHEAP = { N: 1024, r: 8, p: 1 };
const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;

/** An authenticator whose hash computations are counted (and real). */
function counting(opts: { now?: () => number; failureTtlMs?: number } = {}) {
  const calls: string[] = [];
  const auth = new BasicAuthenticator({
    ...opts,
    verify: (pw, hash) => {
      calls.push(pw);
      return verifyPassword(pw, hash);
    },
  });
  return { auth, calls };
}

t.test('right password passes; then the verified-credential cache answers without hashing', async (t) => {
  const users = { alice: await hashPassword('wonder', CHEAP) };
  const { auth, calls } = counting();
  t.equal(await auth.check('d:a/b/c', users, basic('alice', 'wonder')), true);
  t.equal(calls.length, 1);
  for (let i = 0; i < 100; i++) t.equal(auth.check('d:a/b/c', users, basic('alice', 'wonder')), true);
  t.equal(calls.length, 1, 'no hash after the first');
  t.same(auth.stats, { hashes: 1, cacheHits: 100, failureCacheHits: 0 });
});

t.test('wrong password and unknown user both cost one hash, then the failure cache answers', async (t) => {
  const users = { alice: await hashPassword('wonder', CHEAP) };
  const { auth, calls } = counting();
  t.equal(await auth.check('d:a/b/c', users, basic('alice', 'nope')), false);
  t.equal(await auth.check('d:a/b/c', users, basic('mallory', 'x')), false);
  t.same(calls, ['nope', 'x'], 'the unknown user is checked against the dummy hash too');
  for (let i = 0; i < 50; i++) {
    t.equal(auth.check('d:a/b/c', users, basic('alice', 'nope')), false);
    t.equal(auth.check('d:a/b/c', users, basic('mallory', 'x')), false);
  }
  t.equal(calls.length, 2, 'a flood of the same wrong credentials costs nothing more');
  t.equal(auth.stats.failureCacheHits, 100);
});

t.test('failures are remembered only briefly', async (t) => {
  let now = 1000;
  const users = { alice: await hashPassword('wonder', CHEAP) };
  const { auth, calls } = counting({ now: () => now, failureTtlMs: 500 });
  t.equal(await auth.check('d:x', users, basic('alice', 'nope')), false);
  t.equal(auth.check('d:x', users, basic('alice', 'nope')), false);
  now += 501;
  t.equal(await auth.check('d:x', users, basic('alice', 'nope')), false);
  t.equal(calls.length, 2);
});

t.test('a changed or removed password takes effect at once despite the cache', async (t) => {
  const users: Record<string, string> = { alice: await hashPassword('old', CHEAP) };
  const { auth, calls } = counting();
  t.equal(await auth.check('d:x', users, basic('alice', 'old')), true);
  t.equal(auth.check('d:x', users, basic('alice', 'old')), true);
  const changed = { alice: await hashPassword('new', CHEAP) };
  t.equal(await auth.check('d:x', changed, basic('alice', 'old')), false, 'old password refused after the change');
  t.equal(await auth.check('d:x', changed, basic('alice', 'new')), true);
  t.equal(await auth.check('d:x', {}, basic('alice', 'new')), false, 'removed user refused');
  t.equal(calls.length, 4);
});

t.test('a user created after a failed attempt is checked again', async (t) => {
  const { auth } = counting();
  t.equal(await auth.check('d:x', {}, basic('bob', 'pw')), false);
  const users = { bob: await hashPassword('pw', CHEAP) };
  t.equal(await auth.check('d:x', users, basic('bob', 'pw')), true);
});

t.test('the same credentials on another deployment are checked against that deployment', async (t) => {
  const hash = await hashPassword('pw', CHEAP);
  const { auth, calls } = counting();
  t.equal(await auth.check('d:one', { u: hash }, basic('u', 'pw')), true);
  t.equal(await auth.check('d:two', {}, basic('u', 'pw')), false);
  t.equal(calls.length, 2);
});

t.test('concurrent first requests share one hash', async (t) => {
  const users = { alice: await hashPassword('wonder', CHEAP) };
  const { auth, calls } = counting();
  const results = await Promise.all(Array.from({ length: 20 }, () => auth.check('d:x', users, basic('alice', 'wonder'))));
  t.same(results, Array(20).fill(true));
  t.equal(calls.length, 1);
});

t.test('a check started before a password change is not shared with requests after it', async (t) => {
  const old = { alice: await hashPassword('old', CHEAP) };
  const changed = { alice: await hashPassword('new', CHEAP) };
  const { auth, calls } = counting();
  // Request A (old password) is being checked against the old hash when the password changes;
  // request B, with the same old password, arrives after the change.
  const a = auth.check('d:x', old, basic('alice', 'old'));
  const b = auth.check('d:x', changed, basic('alice', 'old'));
  t.equal(await a, true, 'A was checked against the record it saw');
  t.equal(await b, false, 'B is checked against the new hash');
  t.equal(calls.length, 2, 'two hash computations, not one shared');
  // (From the failure cache or by another hash, depending on which of the two finished last.)
  t.equal(await auth.check('d:x', changed, basic('alice', 'old')), false, 'and the old password stays refused');
});

t.test('missing, malformed and oversized headers are refused without hashing', async (t) => {
  const { auth, calls } = counting();
  const users = { alice: await hashPassword('wonder', CHEAP) };
  for (const h of [undefined, '', 'Bearer abc', 'Basic', 'Basic !!!', `Basic ${'A'.repeat(5000)}`]) {
    t.equal(auth.check('d:x', users, h), false, JSON.stringify(h?.slice(0, 20)));
  }
  t.equal(calls.length, 0);
});

t.test('the challenge names the deployment as realm', async (t) => {
  t.equal(basicChallenge('acme', 'mnist', 'web'), 'Basic realm="acme/mnist/web"');
  t.equal(basicChallenge('a"b', 'c\\d', 'e'), 'Basic realm="a\\"b/c\\\\d/e"');
});

t.test('a connection remembers its last verified credentials, and only as long as they stay valid', async (t) => {
  const users = { alice: await hashPassword('wonder', CHEAP), bob: await hashPassword('builder', CHEAP) };
  const { auth, calls } = counting();
  const conn = {};
  t.equal(await auth.check('d:a/b/c', users, basic('alice', 'wonder'), conn), true);
  t.equal(calls.length, 1);
  t.equal(Object.getOwnPropertySymbols(conn).length, 1, 'the connection holds the verified header');
  for (let i = 0; i < 10; i++) t.equal(auth.check('d:a/b/c', users, basic('alice', 'wonder'), conn), true, 'answered at once');
  t.equal(calls.length, 1);
  // Another user on the same connection is checked (and becomes the remembered one).
  t.equal(await auth.check('d:a/b/c', users, basic('bob', 'builder'), conn), true);
  t.equal(calls.length, 2);
  // A wrong password on a connection that had a good one is refused.
  t.equal(await auth.check('d:a/b/c', users, basic('bob', 'wrong'), conn), false);
  // The same header on another deployment is not taken from the connection.
  t.equal(await auth.check('d:a/b/other', { bob: 'scrypt$1024$8$1$AAAA$AAAA' }, basic('bob', 'builder'), conn), false);
  // A changed password invalidates what the connection remembers.
  t.equal(auth.check('d:a/b/c', users, basic('bob', 'builder'), conn), true);
  const changed = { ...users, bob: await hashPassword('new-password', CHEAP) };
  t.equal(await auth.check('d:a/b/c', changed, basic('bob', 'builder'), conn), false);
});
