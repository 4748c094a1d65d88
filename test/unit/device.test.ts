/**
 * device/ on regular (sparse) files, the range math of makeZero, sysfs parsing
 * on a fake sysfs tree, and the native addon's error shape. Real files in the
 * OS temp directory (ext4 here; punch hole needs a file system that has it).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, readFile, stat, mkdir, symlink, open as fsOpen } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { openVolume } from '../../src/device/volume.js';
import { planZeroRange, type ZeroPiece } from '../../src/device/zero-plan.js';
import { devMajorMinor, readBlockLimits, discardZeroesKnown, dmTargetTypes } from '../../src/device/block-info.js';
import { nativeDevice } from '../../src/device/native.js';
import { expectThinship } from '../helpers/errors.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'thinship-device-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const MiB = 1024 * 1024;

/** Writes `size` bytes of a recognisable pattern (never zero) to a new file. */
async function patternFile(name: string, size: number): Promise<{ path: string; data: Buffer }> {
  const data = Buffer.alloc(size);
  for (let i = 0; i < size; i++) data[i] = (i % 251) + 1;
  const path = join(dir, name);
  await writeFile(path, data);
  return { path, data };
}

describe('planZeroRange', () => {
  const sum = (ps: ZeroPiece[]): number => ps.reduce((a, p) => a + p.lengthBytes, 0);
  const contiguous = (ps: ZeroPiece[], off: number, len: number): void => {
    let at = off;
    for (const p of ps) {
      assert.equal(p.offsetBytes, at);
      assert.ok(p.lengthBytes > 0);
      at += p.lengthBytes;
    }
    assert.equal(at, off + len);
  };

  test('thin-like device: unaligned edges written, block edges zeroed, middle discarded', () => {
    const limits = { logicalBlockBytes: 512, discardGranularityBytes: 65536, discardZeroes: true };
    const ps = planZeroRange(1000, 300_000, limits);
    assert.deepEqual(ps, [
      { kind: 'write', offsetBytes: 1000, lengthBytes: 24 },
      { kind: 'zeroOut', offsetBytes: 1024, lengthBytes: 65536 - 1024 },
      { kind: 'discard', offsetBytes: 65536, lengthBytes: 3 * 65536 },
      { kind: 'zeroOut', offsetBytes: 4 * 65536, lengthBytes: 300_544 - 4 * 65536 },
      { kind: 'write', offsetBytes: 300_544, lengthBytes: 301_000 - 300_544 },
    ]);
  });

  test('discard not known to zero: the whole aligned part is zeroOut', () => {
    const ps = planZeroRange(0, 10 * 65536, { logicalBlockBytes: 4096, discardGranularityBytes: 65536, discardZeroes: false });
    assert.deepEqual(ps, [{ kind: 'zeroOut', offsetBytes: 0, lengthBytes: 10 * 65536 }]);
  });

  test('range inside one logical block is a single write', () => {
    assert.deepEqual(planZeroRange(4097, 100, { logicalBlockBytes: 4096, discardGranularityBytes: 4096, discardZeroes: true }), [
      { kind: 'write', offsetBytes: 4097, lengthBytes: 100 },
    ]);
    // Crossing one block boundary without containing a whole block: still writes only.
    assert.deepEqual(planZeroRange(4000, 200, { logicalBlockBytes: 4096, discardGranularityBytes: 4096, discardZeroes: true }), [
      { kind: 'write', offsetBytes: 4000, lengthBytes: 200 },
    ]);
  });

  test('range smaller than the granularity: zeroOut, no discard', () => {
    assert.deepEqual(planZeroRange(65536 + 512, 65536, { logicalBlockBytes: 512, discardGranularityBytes: 65536, discardZeroes: true }), [
      { kind: 'zeroOut', offsetBytes: 65536 + 512, lengthBytes: 65536 },
    ]);
  });

  test('non-power-of-two granularity and a discard alignment offset', () => {
    const g = 3 * 65536; // e.g. a 192 KiB thin pool block
    const ps = planZeroRange(0, 4 * g, { logicalBlockBytes: 512, discardGranularityBytes: g, discardAlignmentBytes: 4096, discardZeroes: true });
    assert.deepEqual(ps, [
      { kind: 'zeroOut', offsetBytes: 0, lengthBytes: 4096 },
      { kind: 'discard', offsetBytes: 4096, lengthBytes: 3 * g },
      { kind: 'zeroOut', offsetBytes: 4096 + 3 * g, lengthBytes: g - 4096 },
    ]);
  });

  test('pieces always tile the range exactly (sweep)', () => {
    for (const lbs of [512, 4096]) {
      for (const gran of [0, lbs, 65536, 3 * 65536]) {
        for (const off of [0, 1, 511, 512, 4095, 65535, 65536, 100_000]) {
          for (const len of [0, 1, 511, 4096, 65536, 200_000, 1_000_001]) {
            const ps = planZeroRange(off, len, { logicalBlockBytes: lbs, discardGranularityBytes: gran, discardZeroes: true });
            contiguous(ps, off, len);
            assert.equal(sum(ps), len);
            for (const p of ps) {
              if (p.kind !== 'write') assert.equal((p.offsetBytes % lbs) + (p.lengthBytes % lbs), 0, `${p.kind} must be block aligned`);
              else assert.ok(p.lengthBytes < lbs || ps.length === 1, 'writes only for sub-block edges');
              if (p.kind === 'discard') assert.equal((p.offsetBytes % gran) + (p.lengthBytes % gran), 0, 'discard must be granularity aligned');
            }
          }
        }
      }
    }
  });
});

describe('devMajorMinor', () => {
  // glibc's makedev, written out independently of the decoder under test.
  const makedev = (ma: bigint, mi: bigint): bigint => ((ma & 0xfffn) << 8n) | ((ma & ~0xfffn) << 32n) | (mi & 0xffn) | ((mi & ~0xffn) << 12n);
  test('decodes small and large numbers', () => {
    for (const [ma, mi] of [
      [7, 0],
      [253, 9],
      [259, 65536],
      [8, 17],
      [4095, 1_048_575],
      [5000, 300],
    ] as const) {
      assert.deepEqual(devMajorMinor(makedev(BigInt(ma), BigInt(mi))), { major: ma, minor: mi });
    }
  });
  test('matches /dev/null (1:3)', async () => {
    const st = await stat('/dev/null', { bigint: true });
    assert.deepEqual(devMajorMinor(st.rdev), { major: 1, minor: 3 });
  });
});

describe('readBlockLimits on a fake sysfs tree', () => {
  let sys: string;
  before(async () => {
    sys = join(dir, 'sys');
    const disk = join(sys, 'devices', 'virtual', 'block', 'sdz');
    await mkdir(join(disk, 'queue'), { recursive: true });
    await mkdir(join(disk, 'sdz1'), { recursive: true });
    await writeFile(join(disk, 'queue', 'logical_block_size'), '4096\n');
    await writeFile(join(disk, 'queue', 'discard_granularity'), '1048576\n');
    await writeFile(join(disk, 'queue', 'discard_max_bytes'), '2147450880\n');
    await writeFile(join(disk, 'queue', 'discard_zeroes_data'), '0\n');
    await writeFile(join(disk, 'discard_alignment'), '0\n');
    await writeFile(join(disk, 'sdz1', 'discard_alignment'), '4096\n');
    await writeFile(join(disk, 'sdz1', 'partition'), '1\n');
    const dm = join(sys, 'devices', 'virtual', 'block', 'dm-9');
    await mkdir(join(dm, 'queue'), { recursive: true });
    await mkdir(join(dm, 'dm'), { recursive: true });
    await writeFile(join(dm, 'queue', 'logical_block_size'), '512\n');
    await writeFile(join(dm, 'queue', 'discard_granularity'), '0\n');
    await writeFile(join(dm, 'queue', 'discard_max_bytes'), '0\n');
    await writeFile(join(dm, 'dm', 'name'), 'dst-replica\n');
    await writeFile(join(dm, 'dm', 'uuid'), 'LVM-abc\n');
    await mkdir(join(sys, 'dev', 'block'), { recursive: true });
    await symlink('../../devices/virtual/block/sdz', join(sys, 'dev', 'block', '8:16'));
    await symlink('../../devices/virtual/block/sdz/sdz1', join(sys, 'dev', 'block', '8:17'));
    await symlink('../../devices/virtual/block/dm-9', join(sys, 'dev', 'block', '253:9'));
  });

  test('whole disk', async () => {
    assert.deepEqual(await readBlockLimits(8, 16, sys), {
      logicalBlockBytes: 4096,
      discardGranularityBytes: 1048576,
      discardMaxBytes: 2147450880,
      discardAlignmentBytes: 0,
      discardZeroesData: false,
      isLoop: false,
    });
  });

  test("a partition uses its parent's queue and its own discard_alignment", async () => {
    const l = await readBlockLimits(8, 17, sys);
    assert.equal(l?.logicalBlockBytes, 4096);
    assert.equal(l?.discardGranularityBytes, 1048576);
    assert.equal(l?.discardAlignmentBytes, 4096);
  });

  test('dm device without discard: granularity 0, dm name and uuid, discard not trusted', async () => {
    const l = await readBlockLimits(253, 9, sys);
    assert.ok(l);
    assert.equal(l.discardGranularityBytes, 0);
    assert.deepEqual(l.dm, { name: 'dst-replica', uuid: 'LVM-abc' });
    assert.equal(await discardZeroesKnown(l, 253, 9), false);
  });

  test('dm devices: discard trusted only when every table line is a thin target (fake dmsetup on PATH)', async () => {
    // Replays `dmsetup table -j MAJ -m MIN` as on the VM (samples/dmsetup-table.txt, without the name column).
    const bin = join(dir, 'fake-bin');
    await mkdir(bin, { recursive: true });
    await writeFile(
      join(bin, 'dmsetup'),
      [
        '#!/bin/sh',
        'case "$*" in',
        '  "table -j 253 -m 9") echo "0 524288 thin 253:2 1" ;;',
        '  "table -j 253 -m 3") echo "0 2097152 linear 253:2 0" ;;',
        '  "table -j 253 -m 4") printf "0 1024 thin 253:2 1\\n1024 1024 linear 254:0 0\\n" ;;',
        '  *) echo "Device does not exist." >&2; exit 1 ;;',
        'esac',
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    const savedPath = process.env.PATH;
    process.env.PATH = `${bin}:${savedPath ?? ''}`;
    try {
      const withDiscard = {
        logicalBlockBytes: 512,
        discardGranularityBytes: 65536,
        discardMaxBytes: 1 << 30,
        discardAlignmentBytes: 0,
        discardZeroesData: false,
        isLoop: false,
        dm: { name: 'x', uuid: 'LVM-x' },
      };
      assert.deepEqual(await dmTargetTypes(253, 9), ['thin']);
      assert.deepEqual(await dmTargetTypes(253, 4), ['thin', 'linear']);
      assert.equal(await dmTargetTypes(253, 99), undefined, 'dmsetup failure: nothing assumed');
      assert.equal(await discardZeroesKnown(withDiscard, 253, 9), true, 'thin LV');
      assert.equal(await discardZeroesKnown(withDiscard, 253, 3), false, 'linear LV');
      assert.equal(await discardZeroesKnown(withDiscard, 253, 4), false, 'mixed table');
      assert.equal(await discardZeroesKnown({ ...withDiscard, discardGranularityBytes: 0 }, 253, 9), false, 'thin pool ignoring discards');
    } finally {
      process.env.PATH = savedPath;
    }
  });

  test('unknown device: undefined', async () => {
    assert.equal(await readBlockLimits(99, 99, sys), undefined);
  });

  test('a plain disk is never trusted to zero on discard; a loop device is', async () => {
    const l = await readBlockLimits(8, 16, sys);
    assert.ok(l);
    assert.equal(await discardZeroesKnown(l, 8, 16), false);
    assert.equal(await discardZeroesKnown({ ...l, isLoop: true }, 7, 0), true);
    assert.equal(await discardZeroesKnown({ ...l, discardZeroesData: true }, 8, 16), true);
  });
});

describe('volumes on regular files', () => {
  test('size, round trip, short read at end of file', async () => {
    const path = join(dir, 'rt.img');
    await writeFile(path, '');
    const v = await openVolume(path, { mode: 'write' });
    try {
      assert.equal(v.kind, 'file');
      assert.equal(v.sizeBytes, 0);
      await v.extendTo(4 * MiB);
      assert.equal(v.sizeBytes, 4 * MiB);
      assert.equal((await stat(path)).size, 4 * MiB);
      assert.equal((await stat(path)).blocks, 0, 'extendTo leaves a hole');
      const data = randomBytes(300_000);
      await v.writeAt(data, 1_000_001);
      const back = Buffer.alloc(300_000);
      assert.equal(await v.readAt(back, 1_000_001), 300_000);
      assert.ok(back.equals(data));
      // Past the end: a short count, the rest of the buffer untouched.
      const tail = Buffer.alloc(8192, 0xee);
      assert.equal(await v.readAt(tail, 4 * MiB - 100), 100);
      assert.equal(tail[100], 0xee);
      assert.equal(await v.readAt(tail, 5 * MiB), 0);
      // Reading less than the buffer.
      const part = Buffer.alloc(1000, 0xaa);
      assert.equal(await v.readAt(part, 1_000_001, 10), 10);
      assert.ok(part.subarray(0, 10).equals(data.subarray(0, 10)));
      assert.equal(part[10], 0xaa);
      // Writing past the end of a file grows it.
      await v.writeAt(Buffer.from('end'), 4 * MiB + 10);
      assert.equal(v.sizeBytes, 4 * MiB + 13);
      await v.flush();
    } finally {
      await v.close();
    }
    const onDisk = await readFile(path);
    assert.equal(onDisk.length, 4 * MiB + 13);
    assert.equal(onDisk.subarray(4 * MiB + 10).toString(), 'end');
  });

  test('discard punches a hole: zeros, st_blocks shrink, size kept', async () => {
    const { path, data } = await patternFile('punch.img', 8 * MiB);
    const v = await openVolume(path, { mode: 'write' });
    try {
      assert.ok(v.discardGranularityBytes >= 512, 'files report st_blksize as granularity');
      const blocksBefore = (await stat(path)).blocks;
      assert.ok(blocksBefore >= (8 * MiB) / 512, 'pattern file fully allocated');
      await v.discard(2 * MiB, 4 * MiB);
      const after = await stat(path);
      assert.equal(after.size, 8 * MiB);
      assert.equal(blocksBefore - after.blocks, (4 * MiB) / 512, 'exactly 4 MiB freed');
      const buf = Buffer.alloc(8 * MiB);
      assert.equal(await v.readAt(buf, 0), 8 * MiB);
      assert.ok(buf.subarray(2 * MiB, 6 * MiB).every((b) => b === 0));
      assert.ok(buf.subarray(0, 2 * MiB).equals(data.subarray(0, 2 * MiB)));
      assert.ok(buf.subarray(6 * MiB).equals(data.subarray(6 * MiB)));
    } finally {
      await v.close();
    }
  });

  test('makeZero with unaligned edges reads back zeros and leaves neighbours intact', async () => {
    const { path, data } = await patternFile('mz.img', 4 * MiB);
    const v = await openVolume(path, { mode: 'write' });
    try {
      const cases: Array<[number, number]> = [
        [1, 1],
        [4095, 2],
        [12_345, 1_000_000],
        [2 * MiB - 7, 70_001],
        [4 * MiB - 3, 3],
      ];
      for (const [off, len] of cases) await v.makeZero(off, len);
      const expected = Buffer.from(data);
      for (const [off, len] of cases) expected.fill(0, off, off + len);
      assert.ok((await readFile(path)).equals(expected));
      // Whole 4 KiB blocks inside [12345, 1012345) were freed.
      assert.ok((await stat(path)).blocks < (4 * MiB - 900_000) / 512);
      assert.equal(v.sizeBytes, 4 * MiB);
    } finally {
      await v.close();
    }
  });

  test('makeZero past the end of a file extends it with zeros', async () => {
    const { path, data } = await patternFile('mz-tail.img', 10_000);
    const v = await openVolume(path, { mode: 'write' });
    try {
      await v.makeZero(9_000, 20_000);
      assert.equal(v.sizeBytes, 29_000);
    } finally {
      await v.close();
    }
    const back = await readFile(path);
    assert.equal(back.length, 29_000);
    assert.ok(back.subarray(0, 9_000).equals(data.subarray(0, 9_000)));
    assert.ok(back.subarray(9_000).every((b) => b === 0));
  });

  test('zeroOut keeps the range allocated (ext4: ZERO_RANGE) and the size; tmpfs falls back to writing zeros', async () => {
    for (const base of [dir, '/dev/shm']) {
      const path = join(base, `thinship-zo-${process.pid}.img`);
      const data = Buffer.alloc(MiB, 0x5a);
      await writeFile(path, data);
      try {
        const v = await openVolume(path, { mode: 'write' });
        try {
          await v.zeroOut(100, 300_000);
          await v.zeroOut(MiB - 10, 1000); // crosses the end: only the existing 10 bytes
          assert.equal(v.sizeBytes, MiB);
        } finally {
          await v.close();
        }
        const back = await readFile(path);
        assert.equal(back.length, MiB, `${base}: size unchanged`);
        const expected = Buffer.from(data);
        expected.fill(0, 100, 300_100);
        expected.fill(0, MiB - 10);
        assert.ok(back.equals(expected), `${base}: zeros exactly where asked`);
      } finally {
        await rm(path, { force: true });
      }
    }
  });

  test('native zeroRangeFile says how it zeroed', async () => {
    const n = nativeDevice();
    const path = join('/dev/shm', `thinship-zr-${process.pid}.img`);
    await writeFile(path, Buffer.alloc(65536, 1));
    const fh = await fsOpen(path, 'r+');
    try {
      // tmpfs has PUNCH_HOLE but not ZERO_RANGE.
      assert.equal(await n.zeroRangeFile(fh.fd, 0, 4096), 'write');
    } finally {
      await fh.close();
      await rm(path, { force: true });
    }
    const { path: p2 } = await patternFile('zr-ext4.img', 65536);
    const fh2 = await fsOpen(p2, 'r+');
    try {
      assert.equal(await n.zeroRangeFile(fh2.fd, 0, 4096), 'fallocate');
    } finally {
      await fh2.close();
    }
  });

  test('fadvise: dontneed, sequential and friends do not throw', async () => {
    const { path } = await patternFile('fadv.img', MiB);
    const v = await openVolume(path, { mode: 'read' });
    try {
      await v.advise('sequential');
      await v.adviseDontNeed(0, MiB);
      await v.advise('willneed', 4096, 8192);
      await v.advise('normal');
    } finally {
      await v.close();
    }
    assert.throws(() => nativeDevice().fadvise(0, 0, 0, 'sometimes' as never), /advice must be/);
  });

  test('create: a missing file is created for writing', async () => {
    const path = join(dir, 'new.img');
    await expectThinship(openVolume(path, { mode: 'write' }), 'NOT_FOUND', [path]);
    const v = await openVolume(path, { mode: 'write', create: true });
    try {
      assert.equal(v.sizeBytes, 0);
      await v.extendTo(MiB);
    } finally {
      await v.close();
    }
    const st = await stat(path);
    assert.equal(st.size, MiB);
    assert.equal(st.mode & 0o777, 0o600);
  });

  test('close is idempotent; use after close is refused', async () => {
    const { path } = await patternFile('close.img', 4096);
    const v = await openVolume(path, { mode: 'write' });
    const reading = v.readAt(Buffer.alloc(4096), 0); // close waits for it
    await Promise.all([v.close(), v.close()]);
    assert.equal(await reading, 4096);
    await v.close();
    assert.equal(v.closed, true);
    await expectThinship(v.readAt(Buffer.alloc(10), 0), 'USAGE', [path, 'closed']);
    await expectThinship(v.writeAt(Buffer.alloc(10), 0), 'USAGE', [path, 'closed']);
    await expectThinship(v.flush(), 'USAGE', [path, 'closed']);
  });
});

describe('errors', () => {
  test('missing file: NOT_FOUND naming the path', async () => {
    const path = join(dir, 'nope', 'missing.img');
    await expectThinship(openVolume(path, { mode: 'read' }), 'NOT_FOUND', [path]);
  });

  test('a directory is refused', async () => {
    await expectThinship(openVolume(dir, { mode: 'read' }), 'USAGE', [dir, 'directory']);
  });

  test('a character device is refused without being opened for writing', async () => {
    await expectThinship(openVolume('/dev/null', { mode: 'write' }), 'USAGE', ['/dev/null', 'character device']);
  });

  test('writes on a read-only volume are refused', async () => {
    const { path } = await patternFile('ro.img', 8192);
    const v = await openVolume(path, { mode: 'read' });
    try {
      await expectThinship(v.writeAt(Buffer.alloc(10), 5), 'USAGE', [path, 'offset 5', 'length 10', 'reading']);
      await expectThinship(v.makeZero(0, 4096), 'USAGE', [path, 'reading']);
      await expectThinship(v.discard(0, 4096), 'USAGE', [path]);
      await expectThinship(v.extendTo(65536), 'USAGE', [path]);
    } finally {
      await v.close();
    }
  });

  test('bad ranges and shrinking are refused', async () => {
    const { path } = await patternFile('range.img', 8192);
    const v = await openVolume(path, { mode: 'write' });
    try {
      await expectThinship(v.makeZero(-1, 10), 'USAGE', [path, '-1']);
      await expectThinship(v.readAt(Buffer.alloc(10), 1.5), 'USAGE', [path]);
      await expectThinship(v.readAt(Buffer.alloc(10), 0, 11), 'USAGE', [path, 'buffer']);
      await expectThinship(v.extendTo(4096), 'USAGE', [path, 'truncate']);
    } finally {
      await v.close();
    }
  });

  test('native errors carry the errno name and syscall', async () => {
    const n = nativeDevice();
    const { path } = await patternFile('native.img', 8192);
    const fh = await fsOpen(path, 'r');
    try {
      assert.throws(
        () => n.blockSizeBytes(fh.fd),
        (e: NodeJS.ErrnoException) => e.code === 'ENOTTY' && e.syscall === 'ioctl(BLKGETSIZE64)' && e.errno === -25,
      );
      await assert.rejects(n.discard(fh.fd, 0, 4096), (e: NodeJS.ErrnoException) => e.code === 'ENOTTY' && e.syscall === 'ioctl(BLKDISCARD)');
      // Read-only descriptor: fallocate says EBADF.
      await assert.rejects(
        n.punchHole(fh.fd, 0, 4096),
        (e: NodeJS.ErrnoException) => e.code === 'EBADF' && e.syscall === 'fallocate(PUNCH_HOLE)' && /EBADF: Bad file descriptor/.test(e.message),
      );
    } finally {
      await fh.close();
    }
    assert.throws(() => n.punchHole(3, -1, 10), /offset must be a non-negative safe integer/);
    assert.throws(() => n.zeroOut(3, 0, 2 ** 60), /length must be a non-negative safe integer/);
    assert.throws(() => (n.discard as unknown as (fd: number) => Promise<void>)(3), /missing arguments/);
  });
});
