/**
 * The receiver's target open (receiver/target.ts openTransferTarget) against
 * someone with write access inside an allowed directory: a path component
 * swapped for a symlink in a tight loop while targets are authorised and
 * opened, a hard link to a file outside, a symlink as the last component, a
 * block device node inside the directory, and a listed device path later
 * replaced by another device's node. Real files, real loop devices, both
 * resolvers (openat2 and the O_NOFOLLOW walk fallback).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import {
  mkdtempSync,
  rmSync,
  mkdirSync,
  writeFileSync,
  readFileSync,
  readdirSync,
  statSync,
  symlinkSync,
  linkSync,
  utimesSync,
  unlinkSync,
  realpathSync,
  renameSync,
  lstatSync,
  openSync,
  readSync,
  closeSync,
  existsSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAccessRules, authorizeTarget, type AccessPolicy, type ClientIdentity } from '../../src/receiver/access.js';
import { openTransferTarget, currentTargetIdentity, type BeneathOpener } from '../../src/receiver/target.js';
import { nativeDevice } from '../../src/device/native.js';
import { devMajorMinor } from '../../src/device/block-info.js';
import { ThinshipError } from '../../src/errors.js';

let base: string;
let allowed: string;
let outside: string;
let policy: AccessPolicy;
const who: ClientIdentity = { name: 'a', names: ['a'] };
const OUTSIDE_TEXT = 'outside: must never be written\n';
const OLD_MTIME = new Date(1_000_000_000_000);
const resolvers: [string, BeneathOpener | undefined][] = [
  ['openat2', undefined],
  ['O_NOFOLLOW walk', (...a) => nativeDevice().openBeneathWalk(...a)],
];

before(async () => {
  base = realpathSync(mkdtempSync(join(tmpdir(), 'thinship-open-')));
  allowed = join(base, 'allowed');
  outside = join(base, 'outside');
  mkdirSync(join(allowed, 'sub'), { recursive: true });
  mkdirSync(outside);
  writeFileSync(join(outside, 'victim.img'), OUTSIDE_TEXT);
  utimesSync(join(outside, 'victim.img'), OLD_MTIME, OLD_MTIME);
  writeFileSync(join(allowed, 'sub', 'victim.img'), 'inside\n');
  policy = await parseAccessRules({ a: { directories: [allowed] } }, 'test');
});

after(() => {
  rmSync(base, { recursive: true, force: true });
});

function assertOutsideUntouched(what: string, extra: string[] = []): void {
  assert.deepEqual(readdirSync(outside).sort(), ['victim.img', ...extra].sort(), `${what}: nothing created outside`);
  assert.equal(readFileSync(join(outside, 'victim.img'), 'utf8'), OUTSIDE_TEXT, `${what}: the outside file's content`);
  assert.equal(statSync(join(outside, 'victim.img')).mtimeMs, OLD_MTIME.getTime(), `${what}: the outside file's mtime`);
}

async function refusedWith(p: Promise<unknown>, code: string, pattern?: RegExp): Promise<ThinshipError> {
  let err: ThinshipError | undefined;
  await assert.rejects(p, (e: ThinshipError) => {
    err = e;
    return true;
  });
  assert.equal(err!.code, code, err!.message);
  if (pattern) assert.match(err!.message, pattern);
  return err!;
}

for (const [resolver, openBeneath] of resolvers) {
  test(`${resolver}: a path component swapped for a symlink to outside in a tight loop: nothing is created or written outside`, async (t) => {
    // The swapper: another process, as a local user with write access to the allowed directory would be.
    const script = `
      const fs = require('fs');
      const [sub, parked, outside] = process.argv.slice(1);
      let cycles = 0;
      for (;;) {
        // Random pauses with the directory in place and with the symlink in place, so that
        // both the checks and the opens meet every state, and some opens succeed.
        const pause = (us) => { const end = process.hrtime.bigint() + BigInt(Math.floor(Math.random() * us * 1000)); while (process.hrtime.bigint() < end); };
        try { pause(400); fs.renameSync(sub, parked); fs.symlinkSync(outside, sub); pause(100); fs.unlinkSync(sub); fs.renameSync(parked, sub); } catch {}
        if (++cycles === 100) process.stdout.write('swapping\\n');
      }`;
    const swapper = spawn(process.execPath, ['-e', script, join(allowed, 'sub'), join(allowed, 'sub.parked'), outside], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('the swapper did not start within 10 s')), 10_000);
        swapper.stdout.once('data', () => {
          clearTimeout(t);
          resolve();
        });
        swapper.once('exit', (c) => {
          clearTimeout(t);
          reject(new Error(`the swapper exited (${c})`));
        });
      });
      const outcomes = { opened: 0, PERMISSION_DENIED: 0, NOT_FOUND: 0 };
      // Refused at the open after authorizeTarget passed: the check-then-open window was hit.
      let raced = 0;
      const deadline = Date.now() + 90_000;
      // At least 1000 calls, and on until the window was hit (bounded).
      for (let i = 0; i < 1000 || (raced === 0 && Date.now() < deadline); i++) {
        const name = join(allowed, 'sub', i % 2 === 0 ? `f${i}.img` : 'victim.img');
        let authorized = false;
        try {
          // As the receiver does: authorise (apply), then open (run).
          const target = await authorizeTarget(policy, who, name);
          authorized = true;
          const o = await openTransferTarget(target, { volumeSizeBytes: 4096, openBeneath });
          try {
            await o.handle.writeAt(Buffer.from('written by the receiver\n'), 0);
          } finally {
            await o.handle.close();
          }
          outcomes.opened++;
        } catch (e) {
          const code = (e as ThinshipError).code;
          assert.ok(code === 'PERMISSION_DENIED' || code === 'NOT_FOUND', `call ${i} (${name}): ${code}: ${(e as Error).message}`);
          outcomes[code]++;
          if (authorized) raced++;
        }
      }
      t.diagnostic(`outcomes: ${JSON.stringify({ ...outcomes, raced })}`);
      assert.ok(outcomes.opened > 0, `some opens succeeded (the directory was in place at times): ${JSON.stringify(outcomes)}`);
      assert.ok(raced > 0, `the window between the check and the open was hit: ${JSON.stringify(outcomes)}`);
      assertOutsideUntouched(`${resolver} race ${JSON.stringify({ ...outcomes, raced })}`);
    } finally {
      swapper.kill('SIGKILL');
      await new Promise((r) => {
        if (swapper.exitCode !== null || swapper.signalCode !== null) r(undefined);
        else swapper.once('exit', r);
      });
      // Leave the tree as it was for the next test (the swapper may have stopped anywhere in its cycle).
      const sub = join(allowed, 'sub');
      if (lstatSync(sub, { throwIfNoEntry: false })?.isSymbolicLink()) unlinkSync(sub);
      if (existsSync(join(allowed, 'sub.parked'))) renameSync(join(allowed, 'sub.parked'), sub);
      assert.ok(statSync(join(allowed, 'sub')).isDirectory() && !existsSync(join(allowed, 'sub.parked')), 'tree restored');
    }
  });

  test(`${resolver}: a hard link inside to a file outside is refused, PERMISSION_DENIED naming the target; the outside file untouched`, async () => {
    const link = join(allowed, `hardlink-${resolver.replace(/\W/g, '')}.img`);
    linkSync(join(outside, 'victim.img'), link);
    try {
      const t = await authorizeTarget(policy, who, link);
      assert.equal(t.kind, 'path', 'a hard link has no other "real path": authorisation alone cannot see it');
      const e = await refusedWith(openTransferTarget(t, { volumeSizeBytes: 1 << 20, openBeneath }), 'PERMISSION_DENIED', /2 hard links/);
      assert.ok(e.message.includes(link), e.message);
      assertOutsideUntouched('hard link');
      assert.equal(statSync(link).size, OUTSIDE_TEXT.length, 'not extended either');
    } finally {
      unlinkSync(link);
    }
  });

  test(`${resolver}: a symlink as the last component (put there after the check) is refused; a dangling one is not created through`, async () => {
    const name = join(allowed, `last-${resolver.replace(/\W/g, '')}.img`);
    writeFileSync(name, 'inside');
    const t = await authorizeTarget(policy, who, name);
    unlinkSync(name);
    symlinkSync(join(outside, 'victim.img'), name);
    await refusedWith(openTransferTarget(t, { volumeSizeBytes: 1 << 20, openBeneath }), 'PERMISSION_DENIED', /symbolic link/);
    assertOutsideUntouched('symlink to an outside file');
    unlinkSync(name);
    // Missing when checked (to be created), a dangling symlink to outside when opened.
    const fresh = await authorizeTarget(policy, who, name);
    assert.equal(fresh.kind === 'path' && fresh.exists, false);
    symlinkSync(join(outside, 'created.img'), name);
    await refusedWith(openTransferTarget(fresh, { volumeSizeBytes: 1 << 20, openBeneath }), 'PERMISSION_DENIED', /symbolic link/);
    assertOutsideUntouched('dangling symlink');
    assert.equal(await currentTargetIdentity(fresh, { openBeneath }), 'unopenable (ELOOP)', 'the identity probe does not follow it either');
    unlinkSync(name);
  });
}

test('a regular file opens (a missing one is created empty: the stream goes to a staging file of the volume size, issue 13); its identity is stable and changes when it is re-created', async () => {
  const name = join(allowed, 'plain.img');
  const t = await authorizeTarget(policy, who, name);
  assert.equal(await currentTargetIdentity(t), undefined, 'missing: no identity');
  const o = await openTransferTarget(t, { volumeSizeBytes: 1 << 20 });
  await o.handle.close();
  assert.equal(o.created, true);
  assert.equal(statSync(name).size, 0);
  assert.match(o.identity, /^file dev=\d+ ino=\d+ born=\d+ size=0$/);
  assert.equal(await currentTargetIdentity(t), o.identity);
  unlinkSync(name);
  writeFileSync(name, Buffer.alloc(1 << 20));
  assert.notEqual(await currentTargetIdentity(t), o.identity, 're-created with the same size (the inode number may well be reused)');
  const existing = await openTransferTarget(t, { volumeSizeBytes: 1 << 20, mustExist: 'test' });
  await existing.handle.close();
  const missing = await authorizeTarget(policy, who, join(allowed, 'nothere.img'));
  await refusedWith(
    openTransferTarget(missing, { volumeSizeBytes: 1 << 20, mustExist: 'an incremental needs its base' }),
    'NOT_FOUND',
    /an incremental needs its base/,
  );
  assert.ok(!existsSync(join(allowed, 'nothere.img')), 'mustExist: not created');
});

// ---- block devices ---------------------------------------------------------------

/** Attaches `file` to a free loop device; a losetup failure fails the test (only a host without loop devices skips it). */
function losetup(file: string): string {
  return execFileSync('losetup', ['-f', '--show', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

function readHead(dev: string, bytes: number): Buffer {
  const b = Buffer.alloc(bytes);
  const fd = openSync(dev, 'r');
  try {
    readSync(fd, b, 0, bytes, 0);
  } finally {
    closeSync(fd);
  }
  return b;
}

test('a listed device path later replaced by another device node is refused; a block device node inside an allowed directory is refused', async (t) => {
  const size = 4 << 20;
  writeFileSync(join(base, 'loop-a.img'), Buffer.alloc(size, 0xaa));
  writeFileSync(join(base, 'loop-b.img'), Buffer.alloc(size, 0xbb));
  // Skip only when loop devices truly cannot exist here; any other losetup failure is a failure.
  if (!existsSync('/dev/loop-control')) {
    t.skip('no loop devices here (/dev/loop-control is missing)');
    return;
  }
  const devA = losetup(join(base, 'loop-a.img'));
  t.after(() => {
    execFileSync('losetup', ['-d', devA]);
  });
  const devB = losetup(join(base, 'loop-b.img'));
  t.after(() => {
    execFileSync('losetup', ['-d', devB]);
  });
  assert.ok(devB, 'a second loop device');
  const nodeDir = join(base, 'nodes');
  mkdirSync(nodeDir);
  const node = join(nodeDir, 'backup-disk');
  const mknod = (path: string, dev: string) => {
    const { major, minor } = devMajorMinor(statSync(dev, { bigint: true }).rdev);
    execFileSync('mknod', [path, 'b', String(major), String(minor)]);
  };
  mknod(node, devA);
  const devPolicy = await parseAccessRules({ a: { devices: [node], directories: [allowed] } }, 'test');
  const target = await authorizeTarget(devPolicy, who, node);
  assert.equal(target.kind, 'device');

  // As configured: opens (exclusively), and its identity names the device.
  const ok = await openTransferTarget(target, { volumeSizeBytes: size });
  const { major, minor } = devMajorMinor(statSync(devA, { bigint: true }).rdev);
  assert.match(ok.identity, new RegExp(`^block ${major}:${minor} seq=\\S+ size=${size}$`));
  await ok.handle.close();
  assert.equal(await currentTargetIdentity(target), ok.identity);

  // The path now names another device: refused, and that device is not written.
  unlinkSync(node);
  mknod(node, devB);
  const again = await authorizeTarget(devPolicy, who, node);
  await refusedWith(openTransferTarget(again, { volumeSizeBytes: size }), 'PERMISSION_DENIED', /not the block device/);
  assert.notEqual(await currentTargetIdentity(again), ok.identity);
  // Replaced by a regular file: refused as well.
  unlinkSync(node);
  writeFileSync(node, Buffer.alloc(size));
  await refusedWith(openTransferTarget(again, { volumeSizeBytes: size }), 'PERMISSION_DENIED', /regular file/);
  assert.ok(readHead(devB, 65536).equals(Buffer.alloc(65536, 0xbb)), 'the other device is untouched');

  // A device node inside an allowed directory is not a file target.
  const inDir = join(allowed, 'disk-node');
  mknod(inDir, devB);
  try {
    await refusedWith(openTransferTarget(await authorizeTarget(policy, who, inDir), { volumeSizeBytes: size }), 'PERMISSION_DENIED', /listed one by one/);
  } finally {
    unlinkSync(inDir);
  }
  assert.ok(readHead(devB, 65536).equals(Buffer.alloc(65536, 0xbb)), 'the other device is still untouched');
});
