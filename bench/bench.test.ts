/**
 * Tests of the benchmark's own parts (not of thinship's speed): the pool
 * generator against an independent oracle (thin_dump + the data file, read by
 * test/helpers/offline-image.ts), its cache, the statistics, and the parsing
 * of GNU time's output.
 *
 *   node --test dist/bench/bench.test.js
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expectedImage } from '../test/helpers/offline-image.js';
import { DEFAULT_POOL_PARAMS, ensureBenchPool, makeLayout, poolKey } from './pool-gen.js';
import { median, spread, fmtSpread } from './stats.js';
import { readTimed, timed, sq } from './proc.js';
import { areaOf } from './cpuprofile.js';
import { classifySmaps } from './rss-breakdown.js';

const MiB = 2 ** 20;

test('generated pool: thin_dump mappings, volume images and change counts match what the generator says', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bench-pool-'));
  try {
    const params = { ...DEFAULT_POOL_PARAMS, volumeBytes: 64 * MiB, seed: 7 };
    const p = await ensureBenchPool(dir, params);
    // Image of each device, rebuilt from thin_dump and the data file by the test helper.
    const imgA = expectedImage(p.metadataPath, p.dataPath, p.devA, params.volumeBytes);
    const imgB = expectedImage(p.metadataPath, p.dataPath, p.devB, params.volumeBytes);
    assert.equal(createHash('sha256').update(imgA).digest('hex'), p.imageSha256A);
    assert.equal(createHash('sha256').update(imgB).digest('hex'), p.imageSha256B);
    assert.notEqual(p.imageSha256A, p.imageSha256B);
    // Exactly 1% of A's mapped blocks differ between A and B, 0.1% are gone from B.
    const bs = params.blockBytes;
    let differ = 0;
    let holesA = 0;
    for (let b = 0; b < params.volumeBytes / bs; b++) {
      const a = imgA.subarray(b * bs, (b + 1) * bs);
      if (!a.equals(imgB.subarray(b * bs, (b + 1) * bs))) differ++;
      if (a.every((x) => x === 0)) holesA++;
    }
    assert.equal(p.changedBlocks, Math.round(0.01 * p.mappedBlocksA));
    assert.equal(p.discardedBlocks, Math.round(0.001 * p.mappedBlocksA));
    assert.equal(differ, p.changedBlocks + p.discardedBlocks);
    // Holes: about 15% unmapped (plus the 3% all-zero data blocks, which read as zeros too).
    const unmappedFrac = 1 - p.mappedBlocksA / p.volumeBlocks;
    assert.ok(unmappedFrac > 0.05 && unmappedFrac < 0.3, `unmapped fraction ${unmappedFrac}`);
    assert.ok(holesA >= p.volumeBlocks - p.mappedBlocksA);
    // thin_dump agrees on the mapped block counts.
    const xml = execFileSync('thin_dump', [p.metadataPath], { encoding: 'utf8', maxBuffer: 1 << 28 });
    const mapped = [...xml.matchAll(/dev_id="(\d+)" mapped_blocks="(\d+)"/g)].map((m) => [Number(m[1]), Number(m[2])]);
    assert.deepEqual(mapped, [
      [1, p.mappedBlocksA],
      [2, p.mappedBlocksB],
    ]);
    // About 2:1 under zstd -1.
    assert.ok(p.sampleZstd1Ratio > 1.7 && p.sampleZstd1Ratio < 2.5, `zstd -1 ratio ${p.sampleZstd1Ratio}`);
    assert.equal((await stat(p.dataPath)).size, p.dataFileBytes);

    // Cached: a second call with the same parameters returns the same pool without writing it again.
    const mtime = (await stat(p.dataPath)).mtimeMs;
    const again = await ensureBenchPool(dir, params);
    assert.deepEqual(again, p);
    assert.equal((await stat(p.dataPath)).mtimeMs, mtime);
    // Other parameters, another directory.
    assert.notEqual(poolKey({ ...params, seed: 8 }), poolKey(params));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('layout is deterministic and exact for a seed', () => {
  const params = { ...DEFAULT_POOL_PARAMS, volumeBytes: 256 * MiB };
  const a = makeLayout(params);
  const b = makeLayout(params);
  assert.deepEqual(a.dataA, b.dataA);
  assert.deepEqual(a.dataB, b.dataB);
  // A's data blocks are allocated in origin order; B's new ones follow them.
  let last = -1;
  for (const d of a.dataA)
    if (d >= 0) {
      assert.equal(d, last + 1);
      last = d;
    }
  assert.equal(a.nDataA, last + 1);
  assert.equal(a.nData, a.nDataA + a.changed);
  const c = makeLayout({ ...params, seed: params.seed + 1 });
  assert.notDeepEqual(c.dataA, a.dataA);
});

test('median and spread ignore non-finite values; formatting', () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.ok(Number.isNaN(median([])));
  assert.deepEqual(spread([5, NaN, 1, 3]), { median: 3, min: 1, max: 5, n: 3 });
  assert.equal(fmtSpread(spread([10, 12, 11])), '11 (10–12)');
  assert.equal(fmtSpread(spread([2])), '2');
  assert.equal(fmtSpread(spread([])), '-');
});

test('GNU time wrapper: exit status, CPU and peak RSS of a real process', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bench-time-'));
  try {
    const out = join(dir, 't');
    const script = join(dir, 'run.sh');
    // Touches ~64 MiB, burns a little CPU, exits 3.
    await writeFile(script, `${timed(out, ['sh', '-c', 'head -c 67108864 /dev/zero | tail -c 1 >/dev/null; exit 3'])}\n`);
    try {
      execFileSync('bash', [script]);
    } catch {
      /* exit 3 expected */
    }
    const u = await readTimed(out, 'x', 'sender');
    assert.equal(u.exitCode, 3);
    assert.ok(u.wallS >= 0 && u.userS >= 0 && u.sysS >= 0);
    assert.ok(u.maxRssKiB > 500, `maxRss ${u.maxRssKiB}`);
    assert.equal(sq("a'b"), `'a'\\''b'`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('profile areas: thinship layers, libraries, node internals', () => {
  assert.equal(areaOf('file:///x/dist/src/stream/zstd.js', 'decompress'), 'thinship stream/');
  assert.equal(areaOf('file:///x/node_modules/@grpc/grpc-js/build/src/server.js', 'f'), '@grpc/grpc-js');
  assert.equal(areaOf('node:internal/crypto/hash', 'update'), 'node:crypto');
  assert.equal(areaOf('', '(garbage collector)'), 'GC');
  assert.equal(areaOf('', '(idle)'), 'idle');
});

test('rss-breakdown: smaps mappings are grouped by what holds them, each Rss counted once', () => {
  const m = (range: string, name: string, rssKiB: number) =>
    `${range} r-xp 00000000 fe:00 260689                             ${name}\nSize:               1024 kB\nRss:             ${rssKiB} kB\nPss:             ${rssKiB} kB\n`;
  const smaps = [
    m('00400000-00b6f000', '/usr/bin/node', 5000),
    m('00b72000-025fe000', '/usr/bin/node', 16000),
    m('7f0000000000-7f0000100000', '/usr/lib/x86_64-linux-gnu/libc.so.6', 1400),
    m('02a00000-04000000', '[heap]', 20000),
    m('7f1000000000-7f1000040000', '', 256), // exactly 256 KiB: a V8 page
    m('7f1000040000-7f1000080000', '', 200), // another, partly resident
    m('7f2000000000-7f2000101000', '', 1028), // 1 MiB + 4 KiB: a buffer, not a V8 page
    m('7ffd00000000-7ffd00021000', '[stack]', 40),
  ].join('');
  const b = classifySmaps(smaps, '/usr/bin/node');
  const KiB = 1024;
  assert.deepEqual(b, {
    'node binary': 21000 * KiB,
    'other files': 1400 * KiB,
    'malloc [heap]': 20000 * KiB,
    'V8 pages': 456 * KiB,
    'other anon': 1068 * KiB,
  });
  // A node binary under another name is "other files", not the runtime's.
  assert.equal(classifySmaps(smaps, '/opt/node/bin/node')['node binary'], 0);
});
