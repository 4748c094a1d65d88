/**
 * device/ on real loop devices (losetup over sparse files in the temp
 * directory): BLKGETSIZE64, I/O through the device, BLKDISCARD punching holes
 * in the backing file, makeZero with unaligned edges, O_EXCL refusal, and a
 * 4096-byte logical block size. Every loop device is detached in a finally.
 * Needs root (losetup); skipped with a message only if losetup is missing or
 * not permitted.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, stat, truncate, writeFile, open as fsOpen } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { runTool } from '../../src/exec/run.js';
import { ThinshipError } from '../../src/errors.js';
import { openVolume, type VolumeHandle } from '../../src/device/volume.js';
import { nativeDevice } from '../../src/device/native.js';
import { expectThinship } from '../helpers/errors.js';

const MiB = 1024 * 1024;

async function attachLoop(file: string, sectorSizeBytes?: number): Promise<string> {
  const args = ['-f', '--show', ...(sectorSizeBytes ? ['--sector-size', String(sectorSizeBytes)] : []), file];
  return (await runTool('losetup', args)).stdout.trim();
}

async function detachLoop(dev: string): Promise<void> {
  await runTool('losetup', ['-d', dev]);
}

/** Why loop tests cannot run here, or undefined if they can. */
async function loopUnavailable(): Promise<string | undefined> {
  const probeDir = await mkdtemp(join(tmpdir(), 'thinship-loop-probe-'));
  try {
    const f = join(probeDir, 'probe.img');
    await writeFile(f, '');
    await truncate(f, MiB);
    const dev = await attachLoop(f);
    await detachLoop(dev);
    return undefined;
  } catch (e) {
    const err = e as ThinshipError & { stderr?: string };
    if (err.code === 'TOOL_MISSING') return 'losetup is not installed';
    if (/permission denied|operation not permitted/i.test(`${err.message} ${err.stderr ?? ''}`)) return `losetup not permitted: ${err.message}`;
    throw e; // anything else is a real failure, not a reason to skip
  } finally {
    await rm(probeDir, { recursive: true, force: true });
  }
}

const skipReason = await loopUnavailable();
if (skipReason) console.log(`# device-loop tests skipped: ${skipReason}`);

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'thinship-loop-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A sparse backing file attached as a loop device for the duration of fn. */
async function withLoop<T>(name: string, sizeBytes: number, opts: { sectorSizeBytes?: number }, fn: (dev: string, backing: string) => Promise<T>): Promise<T> {
  const backing = join(dir, name);
  await writeFile(backing, '');
  await truncate(backing, sizeBytes);
  const dev = await attachLoop(backing, opts.sectorSizeBytes);
  try {
    return await fn(dev, backing);
  } finally {
    await detachLoop(dev);
  }
}

async function readBacking(backing: string, offsetBytes: number, lengthBytes: number): Promise<Buffer> {
  const fh = await fsOpen(backing, 'r');
  try {
    const buf = Buffer.alloc(lengthBytes);
    const { bytesRead } = await fh.read(buf, 0, lengthBytes, offsetBytes);
    assert.equal(bytesRead, lengthBytes);
    return buf;
  } finally {
    await fh.close();
  }
}

/** Reads through the device after dropping its page cache, so the bytes come from the device. */
async function readDevice(v: VolumeHandle, offsetBytes: number, lengthBytes: number): Promise<Buffer> {
  await v.flush();
  await v.adviseDontNeed(offsetBytes, lengthBytes);
  const buf = Buffer.alloc(lengthBytes);
  assert.equal(await v.readAt(buf, offsetBytes), lengthBytes);
  return buf;
}

const isZero = (b: Buffer): boolean => b.every((x) => x === 0);

describe('loop devices', { skip: skipReason }, () => {
  test('size from BLKGETSIZE64, limits from sysfs, I/O through the device', async () => {
    await withLoop('io.img', 64 * MiB, {}, async (dev, backing) => {
      const v = await openVolume(dev, { mode: 'write' });
      try {
        assert.equal(v.kind, 'block');
        assert.equal(v.sizeBytes, (await stat(backing)).size);
        assert.equal(v.sizeBytes, 64 * MiB);
        assert.equal(v.logicalBlockBytes, 512);
        assert.ok(v.discardGranularityBytes >= 512, `loop supports discard (granularity ${v.discardGranularityBytes})`);
        assert.equal(v.discardZeroes, true, 'loop discard punches holes: trusted to zero');
        const data = randomBytes(MiB + 333);
        await v.writeAt(data, 12_345); // buffered writes need no alignment
        assert.ok((await readDevice(v, 12_345, data.length)).equals(data));
        assert.ok((await readBacking(backing, 12_345, data.length)).equals(data));
        // Past the end of the device: a short read, not an error.
        const buf = Buffer.alloc(4096);
        assert.equal(await v.readAt(buf, 64 * MiB - 1000), 1000);
        assert.equal(await v.readAt(buf, 64 * MiB), 0);
      } finally {
        await v.close();
      }
      // A read-only open sees the same size.
      const r = await openVolume(dev, { mode: 'read' });
      try {
        assert.equal(r.sizeBytes, 64 * MiB);
        await expectThinship(r.writeAt(Buffer.alloc(1), 0), 'USAGE', [dev, 'reading']);
      } finally {
        await r.close();
      }
    });
  });

  test('BLKDISCARD punches a hole in the backing file and the range reads zeros', async () => {
    await withLoop('discard.img', 64 * MiB, {}, async (dev, backing) => {
      const v = await openVolume(dev, { mode: 'write' });
      try {
        const data = randomBytes(8 * MiB);
        await v.writeAt(data, 16 * MiB);
        await v.flush();
        const blocksBefore = (await stat(backing)).blocks;
        assert.ok(blocksBefore >= (8 * MiB) / 512, `backing file holds the data (${blocksBefore} sectors)`);
        await v.discard(17 * MiB, 4 * MiB);
        const blocksAfter = (await stat(backing)).blocks;
        assert.equal(blocksBefore - blocksAfter, (4 * MiB) / 512, 'exactly 4 MiB freed in the backing file');
        const back = await readDevice(v, 16 * MiB, 8 * MiB);
        assert.ok(back.subarray(0, MiB).equals(data.subarray(0, MiB)));
        assert.ok(isZero(back.subarray(MiB, 5 * MiB)));
        assert.ok(back.subarray(5 * MiB).equals(data.subarray(5 * MiB)));
        assert.ok(isZero(await readBacking(backing, 17 * MiB, 4 * MiB)));
        // Raw discard wants logical-block alignment.
        await expectThinship(v.discard(17 * MiB + 100, 4096), 'USAGE', [dev, 'offset 17825892', 'logical block size 512']);
        // Beyond the end.
        await expectThinship(v.discard(64 * MiB - 4096, 8192), 'IO_ERROR', [dev, 'beyond the end']);
      } finally {
        await v.close();
      }
    });
  });

  test('makeZero with unaligned edges: zeros, neighbours intact, space freed — with and without trusting discard', async () => {
    await withLoop('mz.img', 64 * MiB, {}, async (dev, backing) => {
      for (const discardZeroes of [undefined, false]) {
        const v = await openVolume(dev, { mode: 'write', ...(discardZeroes === undefined ? {} : { discardZeroes }) });
        try {
          assert.equal(v.discardZeroes, discardZeroes ?? true);
          const base = 32 * MiB;
          const data = randomBytes(4 * MiB);
          await v.writeAt(data, base);
          await v.flush();
          const blocksBefore = (await stat(backing)).blocks;
          const cases: Array<[number, number]> = [
            [1000, 2 * MiB + 333],
            [3 * MiB + 7, 1],
            [3 * MiB + 511, 2],
            [4 * MiB - 513, 513],
          ];
          for (const [off, len] of cases) await v.makeZero(base + off, len);
          const expected = Buffer.from(data);
          for (const [off, len] of cases) expected.fill(0, off, off + len);
          assert.ok((await readDevice(v, base, 4 * MiB)).equals(expected), `device reads zeros exactly in the ranges (discardZeroes ${String(discardZeroes)})`);
          assert.ok((await readBacking(backing, base, 4 * MiB)).equals(expected), 'backing file agrees');
          // Whole 4 KiB units inside [1000, 2 MiB+1333) are holes now: discard, or the
          // write-zeroes fallocate that loop turns into a hole punch.
          const freedSectors = blocksBefore - (await stat(backing)).blocks;
          assert.ok(freedSectors >= (2 * MiB - 8192) / 512, `space freed: ${freedSectors} sectors`);
        } finally {
          await v.close();
        }
      }
    });
  });

  test('zeroOut (BLKZEROOUT) zeroes an aligned range', async () => {
    await withLoop('zo.img', 16 * MiB, {}, async (dev) => {
      const v = await openVolume(dev, { mode: 'write' });
      try {
        const data = randomBytes(2 * MiB);
        await v.writeAt(data, 0);
        await v.zeroOut(512, MiB);
        const expected = Buffer.from(data);
        expected.fill(0, 512, 512 + MiB);
        assert.ok((await readDevice(v, 0, 2 * MiB)).equals(expected));
        await expectThinship(v.zeroOut(100, 512), 'USAGE', [dev, 'logical block size']);
      } finally {
        await v.close();
      }
    });
  });

  test('O_EXCL: a device held exclusively elsewhere is TARGET_BUSY', async () => {
    await withLoop('excl.img', 16 * MiB, {}, async (dev) => {
      // Another process holds the device with O_EXCL, as a mount or LVM would.
      const holder = spawn(
        process.execPath,
        [
          '-e',
          "const fs=require('fs');fs.openSync(process.argv[1],fs.constants.O_RDONLY|fs.constants.O_EXCL);process.stdout.write('held\\n');setInterval(()=>{},1e6)",
          dev,
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      const exited = new Promise((resolve) => holder.once('exit', resolve));
      try {
        await new Promise<void>((resolve, reject) => {
          holder.stdout.on('data', (d: Buffer) => {
            if (d.toString().includes('held')) resolve();
          });
          holder.once('exit', (code) => reject(new Error(`holder exited early with ${String(code)}`)));
        });
        await expectThinship(openVolume(dev, { mode: 'write' }), 'TARGET_BUSY', [`${dev} is in use (mounted or held open exclusively)`]);
        await expectThinship(openVolume(dev, { mode: 'read', exclusive: true }), 'TARGET_BUSY', [dev]);
        // Not asking for exclusivity still works (a sender reading a snapshot).
        const r = await openVolume(dev, { mode: 'read' });
        await r.close();
      } finally {
        holder.kill();
        await exited;
      }
      // Released: now we get it, and a second exclusive open (even in this process) is refused.
      const v = await openVolume(dev, { mode: 'write' });
      try {
        await expectThinship(openVolume(dev, { mode: 'write' }), 'TARGET_BUSY', [dev]);
      } finally {
        await v.close();
      }
      const again = await openVolume(dev, { mode: 'write' });
      await again.close();
    });
  });

  test('4096-byte logical blocks: alignment edges', async () => {
    await withLoop('4k.img', 32 * MiB, { sectorSizeBytes: 4096 }, async (dev, backing) => {
      const v = await openVolume(dev, { mode: 'write' });
      try {
        assert.equal(v.logicalBlockBytes, 4096);
        assert.equal(v.sizeBytes, 32 * MiB);
        // 512-aligned is not enough on this device: refused before the kernel sees it,
        // and the kernel itself says EINVAL.
        await expectThinship(v.discard(512, 4096), 'USAGE', [dev, 'logical block size 4096']);
        const fh = await fsOpen(dev, 'r+');
        try {
          assert.equal(nativeDevice().logicalBlockBytes(fh.fd), 4096, 'BLKSSZGET agrees with sysfs');
          await assert.rejects(
            nativeDevice().discard(fh.fd, 512, 4096),
            (e: NodeJS.ErrnoException) => e.code === 'EINVAL' && e.syscall === 'ioctl(BLKDISCARD)',
          );
        } finally {
          await fh.close();
        }

        const data = randomBytes(MiB);
        await v.writeAt(data, 4 * MiB);
        const cases: Array<[number, number]> = [
          [512, 3 * 4096],
          [4096 * 5 + 1, 4096 * 40 + 100],
          [8191, 2],
          [4096 * 100, 4096 * 64],
          [MiB - 4097, 4097],
        ];
        for (const [off, len] of cases) await v.makeZero(4 * MiB + off, len);
        const expected = Buffer.from(data);
        for (const [off, len] of cases) expected.fill(0, off, off + len);
        assert.ok((await readDevice(v, 4 * MiB, MiB)).equals(expected));
        assert.ok((await readBacking(backing, 4 * MiB, MiB)).equals(expected));
        await expectThinship(v.makeZero(32 * MiB - 100, 200), 'IO_ERROR', [dev, 'beyond the end', String(32 * MiB)]);
        await expectThinship(v.extendTo(32 * MiB + 4096), 'TARGET_TOO_SMALL', [dev]);
        await v.extendTo(32 * MiB); // no-op: already that large
      } finally {
        await v.close();
      }
    });
  });
});
