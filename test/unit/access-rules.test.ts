/**
 * receiver/access.ts in detail, on real directories and symlinks: every
 * refusal of the receiver config's "identities" names what and where, and
 * every kind of target is allowed exactly where a rule says so (written to
 * kill the mutants StrykerJS found surviving: docs/testing.md).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, mkdirSync, symlinkSync, writeFileSync, realpathSync, statSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAccessRules, authorizeTarget, rulesFor, ownerName, type AccessPolicy } from '../../src/receiver/access.js';
import { ThinshipError } from '../../src/errors.js';

let dir: string;
let real: string;
before(() => {
  dir = realpathSync(mkdtempSync(join(tmpdir(), 'thinship-access-')));
  real = join(dir, 'real');
  mkdirSync(join(real, 'sub'), { recursive: true });
  symlinkSync(real, join(dir, 'via-link'));
  mkdirSync(join(dir, 'outside'));
  writeFileSync(join(dir, 'outside', 'f.img'), 'x');
  symlinkSync(join(dir, 'outside'), join(real, 'out'));
  // a listed device must be a block device node: a node of loop0's number (never opened here)
  execFileSync('mknod', [join(dir, 'dev-like.img'), 'b', '7', '0']);
  symlinkSync(join(dir, 'dev-like.img'), join(dir, 'dev-link'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** A path target without the fields of the race-free open (dir, rel). */
function pathShape(t: unknown): unknown {
  const { dir: _dir, rel: _rel, ...rest } = t as Record<string, unknown>;
  return rest;
}

async function usage(v: unknown, re: RegExp): Promise<void> {
  await assert.rejects(parseAccessRules(v, 'cfg.json'), (e: ThinshipError) => {
    assert.equal(e.code, 'USAGE', e.message);
    assert.match(e.message, re);
    assert.match(e.message, /^cfg\.json: /, 'names the file');
    return true;
  });
}

test('config: every malformed "identities" entry is a usage error naming the file, identity and field', async () => {
  for (const v of [null, [], 'x', 3]) await usage(v, /"identities" must be an object mapping an identity/);
  await usage({ '': {} }, /identities\[""\] must be an object with "lvm", "directories" and\/or "devices"/);
  for (const raw of [null, [], 'x']) await usage({ a: raw }, /identities\["a"\] must be an object with/);
  await usage({ a: { files: [] } }, /identities\["a"\]: unknown key "files" \(expected lvm, directories, devices, maxBytesPerSecond\)/);
  for (const l of [null, 'vg0', {}, { vg: 5 }, { vg: '' }, { vg: '..' }, { vg: '.' }, { vg: '-vg' }, { vg: 'v/g' }, { vg: 'v'.repeat(128) }]) {
    await usage({ a: { lvm: [l] } }, /identities\["a"\]\.lvm\[0\]: "vg" must be a VG name/);
  }
  for (const pool of [5, '', 'p/q', '..']) await usage({ a: { lvm: [{ vg: 'vg0', pool }] } }, /\.lvm\[0\]: "pool" must be an LV name/);
  for (const lv of [5, '', 'a/b', 'a b', '[x]']) await usage({ a: { lvm: [{ vg: 'vg0' }, { vg: 'vg0', lv }] } }, /\.lvm\[1\]: "lv" must be an LV name pattern/);
  for (const key of ['directories', 'devices']) {
    await usage({ a: { [key]: '/x' } }, new RegExp(`identities\\["a"\\]\\.${key} must be a list of absolute paths`));
    await usage({ a: { [key]: [5] } }, new RegExp(`\\.${key}: 5 is not a path`));
    for (const p of ['rel', '/a/../b', '/a/./b', '/a//b', '/a/', `/a\0b`]) await usage({ a: { [key]: [p] } }, /must be an absolute, normalised path/);
    // a path of the other kind: a file is not a directory, a directory not a block device
    await usage(
      { a: { [key]: [key === 'directories' ? join(dir, 'outside', 'f.img') : join(dir, 'outside')] } },
      key === 'directories' ? /\.directories: .*f\.img is not a directory$/ : /\.devices: .*outside is not a block device \(files go under "directories"\)$/,
    );
    await usage({ a: { [key]: [join(dir, 'missing')] } }, new RegExp(`\\.${key}: ${join(dir, 'missing').replace(/[/]/g, '\\/')} does not exist \\(ENOENT\\)`));
    await assert.rejects(
      parseAccessRules({ a: { [key]: [join(dir, 'missing')] } }, 'cfg'),
      (e: ThinshipError) => (e.cause as NodeJS.ErrnoException).code === 'ENOENT',
      'the cause is kept',
    );
  }
  const v = 'v'.repeat(127);
  const p = await parseAccessRules(
    {
      a: { lvm: [{ vg: v, pool: 'p-0.x+_', lv: 'A-z0.9+_*?' }, { vg: 'vg0' }], directories: [join(dir, 'via-link')], devices: [join(dir, 'dev-link')] },
      b: {},
    },
    'cfg.json',
  );
  const r = p.identities.get('a')!;
  assert.deepEqual(r.lvm, [
    { vg: v, pool: 'p-0.x+_', lv: 'A-z0.9+_*?' },
    { vg: 'vg0', pool: undefined, lv: '*' },
  ]);
  assert.deepEqual(r.directories, [{ path: join(dir, 'via-link'), real }], 'the real path is resolved once');
  assert.deepEqual(
    r.devices.map(({ path, real: rp }) => ({ path, real: rp })),
    [{ path: join(dir, 'dev-link'), real: join(dir, 'dev-like.img') }],
  );
  assert.deepEqual(p.identities.get('b'), { lvm: [], directories: [], devices: [] });
});

test('identities: the rules of every name a client carries apply; the owner is its first name with rules', async () => {
  const p = await parseAccessRules({ cn: { lvm: [{ vg: 'vg0', lv: 'a' }] }, san: { lvm: [{ vg: 'vg0', lv: 'b' }] } }, 'cfg');
  assert.equal(rulesFor(p, { name: 'x', names: ['x', 'san', 'cn'] }).length, 2);
  assert.deepEqual(rulesFor(p, { name: 'x', names: ['x'] }), []);
  assert.equal(ownerName(p, ['x', 'san', 'cn']), 'san');
  assert.equal(ownerName(p, ['x', 'y']), 'x');
  assert.equal(ownerName(p, []), 'unknown');
  const who = { name: 'x', names: ['x', 'san', 'cn'] };
  assert.equal((await authorizeTarget(p, who, 'vg0/a')).name, 'vg0/a');
  assert.equal((await authorizeTarget(p, who, 'vg0/b')).name, 'vg0/b');
});

function denied(p: AccessPolicy, t: string, re: RegExp, who = { name: 'a', names: ['a'] }) {
  return assert.rejects(authorizeTarget(p, who, t), (e: ThinshipError) => {
    assert.equal(e.code, 'PERMISSION_DENIED', `${t}: ${e.code} ${e.message}`);
    assert.match(e.message, new RegExp(`^identity "${who.name}" may not write target "`));
    assert.match(e.message, re, t);
    assert.deepEqual(e.details, { identity: who.name, target: t.slice(0, 300) });
    return true;
  });
}

test('target names: empty, too long or with NUL are not target names; a client without rules is refused', async () => {
  const p = await parseAccessRules({ a: { directories: [real] } }, 'cfg');
  const who = { name: 'a', names: ['a'] };
  for (const t of ['', `${real}/${'x'.repeat(4097 - real.length - 1)}`, `${real}/a\0b`]) {
    await assert.rejects(
      authorizeTarget(p, who, t),
      (e: ThinshipError) => e.code === 'BAD_STREAM' && /1 to 4096 characters without NUL/.test(e.message),
      JSON.stringify(t.slice(0, 20)),
    );
  }
  const longest = `${real}/${'x'.repeat(4096 - real.length - 1)}`; // 4096: a name (the file system then says it is too long)
  await assert.rejects(authorizeTarget(p, who, longest), (e: ThinshipError) => e.code === 'PERMISSION_DENIED');
  await denied(p, join(real, 'x.img'), /no rules for this identity in the receiver configuration/, { name: 'z', names: ['z'] });
  const long = `${join(dir, 'outside')}/${'y'.repeat(400)}`;
  await denied(p, long, /cannot be resolved \(ENAMETOOLONG\)/);
  await assert.rejects(
    authorizeTarget(p, who, long),
    (e: ThinshipError) => e.message.includes(`target "${long.slice(0, 300)}"`) && !e.message.includes(long.slice(0, 301)),
  );
  // a target that is not a string at all (the wire decoder gives strings; a bug upstream must not reach the file system)
  await assert.rejects(authorizeTarget(p, who, 5 as unknown as string), (e: ThinshipError) => e.code === 'BAD_STREAM');
});

test('LVM targets: VG and LV pattern (glob * and ?, everything else literal), valid names only', async () => {
  const p = await parseAccessRules(
    {
      a: {
        lvm: [
          { vg: 'vg0', lv: 'db?.x*' },
          { vg: 'vg1', pool: 'tp', lv: '*' },
        ],
      },
    },
    'cfg',
  );
  const who = { name: 'a', names: ['a'] };
  assert.deepEqual(await authorizeTarget(p, who, 'vg0/db1.x'), {
    kind: 'lvm',
    name: 'vg0/db1.x',
    vg: 'vg0',
    lv: 'db1.x',
    pool: undefined,
    key: 'lvm:vg0/db1.x',
  });
  assert.equal((await authorizeTarget(p, who, 'vg0/dbZ.x-backup')).kind, 'lvm');
  assert.deepEqual(await authorizeTarget(p, who, 'vg1/anything'), {
    kind: 'lvm',
    name: 'vg1/anything',
    vg: 'vg1',
    lv: 'anything',
    pool: 'tp',
    key: 'lvm:vg1/anything',
  });
  for (const t of ['vg0/db1yx', 'vg0/db12.x', 'vg0/db.x', 'vg0/xdb1.x', 'vg2/db1.x', 'vg0x/db1.x']) await denied(p, t, /no lvm rule allows VG/);
  for (const t of ['vg0/..', 'vg0/.', '../vg0', 'vg0/-x', 'vg0/a/b', 'vg0', 'vg0/', '/vg0', 'vg 0/x', `vg0/${'l'.repeat(128)}`]) {
    await (t.startsWith('/')
      ? denied(p, t, /not under an allowed directory|absolute and normalised/)
      : denied(p, t, /not an LVM name vg\/lv nor an absolute path/));
  }
});

test('path targets: exact devices by real path, files under a directory by name and by real path', async () => {
  const p = await parseAccessRules({ a: { directories: [join(dir, 'via-link')], devices: [join(dir, 'dev-link')] } }, 'cfg');
  const who = { name: 'a', names: ['a'] };
  // the device, by its listed name and by its real path
  for (const t of [join(dir, 'dev-link'), join(dir, 'dev-like.img')]) {
    assert.deepEqual(await authorizeTarget(p, who, t), {
      kind: 'device',
      name: t,
      realPath: join(dir, 'dev-like.img'),
      key: join(dir, 'dev-like.img'),
      rdev: statSync(join(dir, 'dev-like.img'), { bigint: true }).rdev,
    });
  }
  // a new file: under the rule's path (a symlink) or under its real path; parent resolved
  // (dir and rel, what the open resolves beneath, are asserted in access.test.ts)
  assert.deepEqual(pathShape(await authorizeTarget(p, who, join(dir, 'via-link', 'n.img'))), {
    kind: 'path',
    name: join(dir, 'via-link', 'n.img'),
    realPath: join(real, 'n.img'),
    exists: false,
    key: join(real, 'n.img'),
  });
  assert.equal((await authorizeTarget(p, who, join(real, 'sub', 'n.img'))).key, join(real, 'sub', 'n.img'));
  // an existing file
  writeFileSync(join(real, 'e.img'), 'x');
  assert.deepEqual(pathShape(await authorizeTarget(p, who, join(dir, 'via-link', 'e.img'))), {
    kind: 'path',
    name: join(dir, 'via-link', 'e.img'),
    realPath: join(real, 'e.img'),
    exists: true,
    key: join(real, 'e.img'),
  });
  // refusals, each with its reason
  await denied(p, `${real}/./x.img`, /absolute and normalised/);
  await denied(p, `${real}/x.img/`, /absolute and normalised/);
  await denied(p, join(dir, 'outside', 'f.img'), /it is not under an allowed directory/);
  await denied(p, join(dir, 'outside', 'new.img'), /it is not under an allowed directory/);
  await denied(p, join(dir, 'via-link'), /it is not under an allowed directory/);
  await denied(p, real, /it is not under an allowed directory/);
  await denied(p, join(real, 'out', 'f.img'), new RegExp(`it resolves to ${join(dir, 'outside', 'f.img')}, outside ${join(dir, 'via-link')}`));
  await denied(p, join(real, 'out', 'new.img'), new RegExp(`its directory resolves to ${join(dir, 'outside')}, outside`));
  await denied(p, join(real, 'nodir', 'new.img'), new RegExp(`its directory ${join(real, 'nodir')} cannot be resolved \\(ENOENT\\)`));
  writeFileSync(join(real, 'plain'), 'x');
  await denied(p, join(real, 'plain', 'new.img'), /cannot be resolved \(ENOTDIR\)/);
  symlinkSync(join(dir, 'outside', 'gone.img'), join(real, 'dangling.img'));
  await denied(p, join(real, 'dangling.img'), /dangling symbolic link/);
  symlinkSync(join(real, 'loop-b'), join(real, 'loop-a'));
  symlinkSync(join(real, 'loop-a'), join(real, 'loop-b'));
  await denied(p, join(real, 'loop-a'), /it cannot be resolved \(ELOOP\)/);
});

test('a rule for "/" allows every absolute path but "/" itself', async () => {
  const p = await parseAccessRules({ a: { directories: ['/'] } }, 'cfg');
  const who = { name: 'a', names: ['a'] };
  assert.equal((await authorizeTarget(p, who, join(dir, 'outside', 'f.img'))).kind, 'path');
  assert.equal((await authorizeTarget(p, who, join(dir, 'new.img'))).kind, 'path');
  await denied(p, '/', /not under an allowed directory/);
  // What the open resolves beneath the rule's directory: "/" and the path without its leading "/",
  // for an existing file and for a new one.
  for (const t of [join(dir, 'outside', 'f.img'), join(dir, 'new.img')]) {
    const a = (await authorizeTarget(p, who, t)) as { dir: string; rel: string };
    assert.deepEqual({ dir: a.dir, rel: a.rel }, { dir: '/', rel: t.slice(1) });
  }
});
