/**
 * When may a receiver trust a discard to leave zeros? Only where it is known
 * (loop devices punch holes in their backing file; dm-thin). Here, end to end
 * on real loop devices pre-filled with garbage, a full pipe-mode
 * `thinship send | thinship recv` must leave exactly the source image:
 * - a loop device over a file on ramfs, which has no fallocate: the kernel
 *   gives it no discard and no write-zeroes (BLKDISCARD fails with
 *   EOPNOTSUPP), so nothing may be trusted and the unmapped ranges are
 *   zeroed with plain writes. (Lowering sysfs discard_max_bytes to 0 is not
 *   used: the kernel keeps that user limit across detach and re-attach, and
 *   with granularity 0 it cannot be raised again — it would break the loop
 *   device for everyone else.)
 * - with discard enabled: it is trusted, and the backing file ends sparse.
 * A device whose discard succeeds but leaves old data (where "always trust"
 * would corrupt the target) cannot be made here: no device-mapper, no
 * scsi_debug. The trust decision itself is asserted on both devices.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, readFileSync, openSync, readSync, closeSync, statSync } from 'node:fs';
import { execFileSync, spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join, basename } from 'node:path';
import { createDemoPool, type DemoPool } from '../../src/thin/demo-pool.js';
import { openVolume } from '../../src/device/volume.js';
import { expectedImage } from '../helpers/offline-image.js';
import { cliPath, type CliResult } from '../helpers/cli.js';
import { assertSameImage } from '../service/helpers.js';

let dir: string;
let pool: DemoPool;
let img: Buffer;
const GARBAGE = 0xee;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'thinship-dz-'));
  pool = await createDemoPool(join(dir, 'pool'));
  img = expectedImage(pool.metadataPath, pool.dataPath, pool.baseDevId, pool.volumeSizeBytes);
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** A loop device over a file of garbage in `where`; detach() after use. */
function garbageLoop(where: string, name: string): { dev: string; backing: string; detach: () => void } {
  const backing = join(where, name);
  writeFileSync(backing, Buffer.alloc(pool.volumeSizeBytes, GARBAGE));
  const dev = execFileSync('losetup', ['-f', '--show', backing], { encoding: 'utf8' }).trim();
  return { dev, backing, detach: () => execFileSync('losetup', ['-d', dev]) };
}

function readDev(dev: string, offsetBytes = 0, lengthBytes = pool.volumeSizeBytes): Buffer {
  const b = Buffer.alloc(lengthBytes);
  const fd = openSync(dev, 'r');
  try {
    readSync(fd, b, 0, lengthBytes, offsetBytes);
  } finally {
    closeSync(fd);
  }
  return b;
}

function sendRecv(target: string): Promise<CliResult> {
  const send = spawn(
    process.execPath,
    [
      cliPath,
      'send',
      '-q',
      '--pool-metadata',
      pool.metadataPath,
      '--pool-data',
      pool.dataPath,
      '--volume-size',
      String(pool.volumeSizeBytes),
      String(pool.baseDevId),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  // --state-dir: the device's record and journal stay in the test's directory.
  const recv = spawn(process.execPath, [cliPath, 'recv', '--state-dir', join(dir, 'state'), target], { stdio: ['pipe', 'pipe', 'pipe'] });
  send.stdout.pipe(recv.stdin);
  recv.stdin.on('error', () => undefined);
  let stderr = '';
  recv.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  send.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  return new Promise<CliResult>((resolve, reject) => {
    const t = setTimeout(() => {
      send.kill('SIGKILL');
      recv.kill('SIGKILL');
      reject(new Error(`send | recv did not finish in 120 s: ${stderr}`));
    }, 120_000);
    recv.on('close', (code, signal) => {
      clearTimeout(t);
      resolve({ code, signal, stdout: '', stderr });
    });
  });
}

test('a device without discard (loop over ramfs): not trusted; makeZero and a full recv leave zeros over the garbage', { timeout: 180_000 }, async (t) => {
  const ramfs = join(dir, 'ramfs');
  mkdirSync(ramfs);
  execFileSync('mount', ['-t', 'ramfs', 'ramfs', ramfs]);
  const { dev, detach } = garbageLoop(ramfs, 'nodiscard.img');
  t.after(() => {
    detach();
    execFileSync('umount', [ramfs]);
  });
  assert.equal(readFileSync(`/sys/block/${basename(dev)}/queue/discard_max_bytes`, 'utf8').trim(), '0', 'the kernel gives it no discard');
  assert.throws(() => execFileSync('blkdiscard', ['-o', '0', '-l', '65536', dev], { stdio: 'pipe' }), 'the device really refuses discard');
  const v = await openVolume(dev, { mode: 'write' });
  try {
    assert.equal(v.discardGranularityBytes, 0);
    assert.equal(v.discardZeroes, false, 'a device without discard is not trusted to zero');
    // unaligned edges and a multi-MiB middle
    await v.makeZero(1_000_000 + 123, 3 * 1024 * 1024 + 77);
    await v.flush();
  } finally {
    await v.close();
  }
  assert.ok(readDev(dev, 1_000_000 + 123, 3 * 1024 * 1024 + 77).equals(Buffer.alloc(3 * 1024 * 1024 + 77)), 'zeros');
  assert.ok(
    readDev(dev, 1_000_000 + 122, 1).equals(Buffer.from([GARBAGE])) && readDev(dev, 1_000_000 + 123 + 3 * 1024 * 1024 + 77, 1).equals(Buffer.from([GARBAGE])),
    'edges untouched',
  );
  const r = await sendRecv(dev);
  assert.equal(r.code, 0, r.stderr);
  assertSameImage(readDev(dev), img, 'after a full recv onto a device without discard');
});

test('discard enabled (loop: punches holes): trusted; a full recv is exact and the backing file ends sparse', { timeout: 180_000 }, async (t) => {
  const { dev, backing, detach } = garbageLoop(dir, 'discard.img');
  t.after(detach);
  const v = await openVolume(dev, { mode: 'write' });
  try {
    assert.ok(v.discardGranularityBytes > 0);
    assert.equal(v.discardZeroes, true, 'loop discard is known to zero');
  } finally {
    await v.close();
  }
  const allocatedBefore = statSync(backing).blocks * 512;
  const r = await sendRecv(dev);
  assert.equal(r.code, 0, r.stderr);
  assertSameImage(readDev(dev), img, 'after a full recv onto a device with discard');
  const allocatedAfter = statSync(backing).blocks * 512;
  // the base maps 500 of 1024 blocks: the unmapped ranges were given back
  assert.ok(allocatedAfter < allocatedBefore * 0.7, `backing file allocated ${allocatedAfter} of ${allocatedBefore} bytes`);
});
