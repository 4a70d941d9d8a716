import t from 'tap';
import { DEFAULT_SCRYPT_COST, hashPassword, verifyPassword } from '../../../gateway/auth/password.ts';

const CHEAP = { N: 1024, r: 8, p: 1 };

t.test('a hash is self-describing and verifies only its own password', async (t) => {
  const hash = await hashPassword('s3cret', CHEAP);
  t.match(hash, /^scrypt\$1024\$8\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
  t.equal(await verifyPassword('s3cret', hash), true);
  t.equal(await verifyPassword('s3cret ', hash), false);
  t.equal(await verifyPassword('', hash), false);
  t.not(await hashPassword('s3cret', CHEAP), hash, 'a fresh salt each time');
});

t.test('the default cost is what production hashes carry', async (t) => {
  const hash = await hashPassword('pw');
  t.ok(hash.startsWith(`scrypt$${DEFAULT_SCRYPT_COST.N}$${DEFAULT_SCRYPT_COST.r}$${DEFAULT_SCRYPT_COST.p}$`));
  t.equal(await verifyPassword('pw', hash), true);
});

t.test('malformed or abusive hashes are mismatches, never exceptions', async (t) => {
  const good = await hashPassword('pw', CHEAP);
  const [, , , , salt, key] = good.split('$');
  const bad = [
    '',
    'plain',
    'bcrypt$10$abc',
    `scrypt$1000$8$1$${salt}$${key}`, // N not a power of two
    `scrypt$${2 ** 24}$8$1$${salt}$${key}`, // N far too large
    `scrypt$1024$999$1$${salt}$${key}`,
    `scrypt$1024$8$0$${salt}$${key}`,
    `scrypt$1024$8$1$$${key}`,
    `scrypt$1024$8$1$${salt}$`,
    `scrypt$1024$8$1$${salt}`,
  ];
  for (const h of bad) t.equal(await verifyPassword('pw', h), false, JSON.stringify(h));
});
