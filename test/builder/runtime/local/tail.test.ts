import { appendFileSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { LogTail } from '../../../../builder/runtime/local/tail.ts';

function setup(t: import('tap').Test, maxBytes = 1 << 20, initial = '', fromEnd = false) {
  const dir = mkdtempSync(join(tmpdir(), 'portico-tail-'));
  const file = join(dir, 'r1.out.log');
  writeFileSync(file, initial);
  const lines: string[] = [];
  const tail = new LogTail(file, { fromEnd, maxBytes, onLine: (l) => lines.push(l) });
  t.teardown(() => {
    tail.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { file, lines, tail };
}

t.test('splits lines across reads, strips CR, keeps a partial line until flushed', async (t) => {
  const { file, lines, tail } = setup(t);
  appendFileSync(file, 'one\r\ntw');
  tail.poll();
  t.same(lines, ['one']);
  appendFileSync(file, 'o\nthree');
  tail.poll();
  t.same(lines, ['one', 'two']);
  tail.flush();
  t.same(lines, ['one', 'two', 'three']);
});

t.test('a multi-byte character split between reads stays whole', async (t) => {
  const { file, lines, tail } = setup(t);
  const bytes = Buffer.from('héllo\n');
  appendFileSync(file, bytes.subarray(0, 2));
  tail.poll();
  appendFileSync(file, bytes.subarray(2));
  tail.poll();
  t.same(lines, ['héllo']);
});

t.test('fromEnd skips what is already there', async (t) => {
  const { file, lines, tail } = setup(t, 1 << 20, 'old\n', true);
  appendFileSync(file, 'new\n');
  tail.poll();
  t.same(lines, ['new']);
});

t.test('truncates once everything is read and the file is over the bound', async (t) => {
  const { file, lines, tail } = setup(t, 100);
  appendFileSync(file, 'x'.repeat(60) + '\n');
  tail.poll();
  t.equal(statSync(file).size, 61, 'under the bound: kept');
  appendFileSync(file, 'y'.repeat(60) + '\n');
  tail.poll();
  t.equal(statSync(file).size, 0, 'over the bound and read: truncated');
  appendFileSync(file, 'z\n');
  tail.poll();
  t.same(lines, ['x'.repeat(60), 'y'.repeat(60), 'z'], 'nothing lost across the truncation');
});

t.test('a very long line is passed on in 64 KiB pieces', async (t) => {
  const { file, lines, tail } = setup(t);
  appendFileSync(file, 'a'.repeat(64 * 1024 + 10) + '\n');
  tail.poll();
  t.same(lines.map((l) => l.length), [64 * 1024, 10]);
});
