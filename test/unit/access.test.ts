/**
 * Target authorisation (receiver/access.ts) at its edges: a sibling
 * directory sharing the allowed directory's name as a prefix, the
 * directory-relative path the open uses, and config entries of the wrong kind.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, mkdirSync, writeFileSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAccessRules, authorizeTarget, isInside } from '../../src/receiver/access.js';
import type { ThinshipError } from '../../src/errors.js';

let dir: string;
before(() => {
  dir = realpathSync(mkdtempSync(join(tmpdir(), 'thinship-access-')));
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

test('a sibling directory whose name starts with the allowed one is outside it', async () => {
  const allowed = join(dir, 'allowed');
  const evil = join(dir, 'allowed-evil');
  mkdirSync(allowed);
  mkdirSync(evil);
  writeFileSync(join(evil, 'f.img'), 'x');
  const policy = await parseAccessRules({ a: { directories: [allowed] } }, 'test');
  const who = { name: 'a', names: ['a'] };
  for (const t of [join(evil, 'f.img'), join(evil, 'new.img'), `${allowed}evil/f.img`]) {
    await assert.rejects(authorizeTarget(policy, who, t), (e: ThinshipError) => {
      assert.equal(e.code, 'PERMISSION_DENIED', `${t}: ${e.message}`);
      return true;
    });
  }
  assert.equal(isInside('/x/allowed-evil/f', '/x/allowed'), false);
  assert.equal(isInside('/x/allowed', '/x/allowed'), false, 'the directory itself is not a target');
  assert.equal(isInside('/x/allowed/f', '/x/allowed'), true);
  assert.equal(isInside('/f', '/'), true);
});

test('a file target carries its allowed directory and the path beneath it that the open resolves', async () => {
  const allowed = join(dir, 'rel');
  mkdirSync(join(allowed, 'a', 'b'), { recursive: true });
  writeFileSync(join(allowed, 'a', 'b', 'old.img'), 'x');
  const policy = await parseAccessRules({ a: { directories: [allowed] } }, 'test');
  const who = { name: 'a', names: ['a'] };
  const existing = await authorizeTarget(policy, who, join(allowed, 'a', 'b', 'old.img'));
  assert.deepEqual(existing.kind === 'path' && { dir: existing.dir, rel: existing.rel, exists: existing.exists }, {
    dir: allowed,
    rel: 'a/b/old.img',
    exists: true,
  });
  const fresh = await authorizeTarget(policy, who, join(allowed, 'a', 'new.img'));
  assert.deepEqual(fresh.kind === 'path' && { dir: fresh.dir, rel: fresh.rel, exists: fresh.exists }, { dir: allowed, rel: 'a/new.img', exists: false });
});

test('config: "directories" must be directories, "devices" block devices', async () => {
  const file = join(dir, 'plain.img');
  writeFileSync(file, 'x');
  await assert.rejects(parseAccessRules({ a: { devices: [file] } }, 'cfg'), /cfg: identities\["a"\]\.devices: .*plain\.img is not a block device/);
  await assert.rejects(parseAccessRules({ a: { directories: [file] } }, 'cfg'), /cfg: identities\["a"\]\.directories: .*plain\.img is not a directory/);
});
