/**
 * Hostile races on the staging file of a file target (issue 13): the gRPC
 * receiver authorises and opens the target, and only then creates (or, on a
 * resume, reopens) `.NAME.thinship-staging-OWNER` beside it and renames it
 * over the target at commit. Someone who can write inside the allowed
 * directory swaps a symlink in between: the target's directory for a symlink
 * to a directory outside, or the staging file itself for a symlink to a file
 * outside; or, where an incremental is journaled (no reflinks), the directory
 * its undo journal is created in. None may make the receiver create, write or rename anything
 * outside the allowed directory. The TransferRegistry runs in-process on real
 * files; the swap happens inside its openStage step (after the target was
 * opened, before the staging file is touched).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  mkdtempSync,
  rmSync,
  mkdirSync,
  writeFileSync,
  readFileSync,
  readdirSync,
  realpathSync,
  renameSync,
  symlinkSync,
  unlinkSync,
  existsSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { pino } from 'pino';
import { parseAccessRules, type AccessPolicy, type ClientIdentity } from '../../src/receiver/access.js';
import { TransferRegistry } from '../../src/receiver/transfers.js';
import type { TransferBegin, WireRecord } from '../../src/receiver/record-checks.js';
import { StreamDigest } from '../../src/stream/digest.js';
import { ThinshipError } from '../../src/errors.js';
import { stagingPath } from '../../src/receiver/target-state/staging.js';
import { transferOwner } from '../../src/receiver/target-state/transfer-hooks.js';
import { targetStateSettings } from '../../src/receiver/target-state/record.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = 1 * MiB;
const CHUNK = 64 * KiB;
const silent = pino({ level: 'silent' });
const A: ClientIdentity = { name: 'ident-a', names: ['ident-a'] };

let dir: string;
let allowed: string;
let outside: string;
let policy: AccessPolicy;

before(async () => {
  dir = realpathSync(mkdtempSync(join(tmpdir(), 'thinship-stagerace-')));
  allowed = join(dir, 'allowed');
  outside = join(dir, 'outside');
  mkdirSync(allowed);
  mkdirSync(outside);
  policy = await parseAccessRules({ 'ident-a': { directories: [allowed] } }, 'test');
});
after(() => rmSync(dir, { recursive: true, force: true }));

const sha = (b: Buffer) => createHash('sha256').update(b).digest();

function begin(transferId: string, target: string, over: Partial<TransferBegin> = {}): TransferBegin {
  return {
    transferId,
    target,
    incremental: false,
    volumeSizeBytes: SIZE,
    blockSizeBytes: CHUNK,
    sourceId: `src-${transferId}`,
    baseId: '',
    plannedDataBytes: 0,
    plannedUnmapBytes: 0,
    resumeOffsetBytes: 0,
    compression: 'none',
    checksum: 'sha256',
    ...over,
  };
}

function records(): Extract<WireRecord, { type: 'data' }>[] {
  const out: Extract<WireRecord, { type: 'data' }>[] = [];
  for (let off = 0; off < SIZE; off += CHUNK) {
    const payload = Buffer.alloc(CHUNK, ((off / CHUNK) % 251) + 1);
    out.push({ type: 'data', offsetBytes: off, lengthBytes: CHUNK, payload, encoding: 'raw', checksum: sha(payload) });
  }
  return out;
}

function endOf(recs: Extract<WireRecord, { type: 'data' }>[]): WireRecord {
  const d = new StreamDigest();
  for (const r of recs) d.addData(r.offsetBytes, r.lengthBytes, r.checksum);
  return { type: 'end', records: recs.length + 2, dataRecords: recs.length, unmapRecords: 0, dataBytes: recs.length * CHUNK, unmapBytes: 0, digest: d.state };
}

async function* iterate<T>(items: T[], thenFail?: Error): AsyncGenerator<T> {
  for (const it of items) yield it;
  if (thenFail) throw thenFail;
}

/** A registry that runs `swap` once, between opening the target and opening its stage. */
class RacedRegistry extends TransferRegistry {
  swap: (() => void) | undefined;
  protected override openStage(...a: Parameters<TransferRegistry['openStage']>): ReturnType<TransferRegistry['openStage']> {
    const s = this.swap;
    this.swap = undefined;
    s?.();
    return super.openStage(...a);
  }
}

async function registry(state: string): Promise<RacedRegistry> {
  const r = new RacedRegistry({ stateDir: join(dir, state), policy, log: silent, decodeWorkers: 0 });
  await r.start();
  return r;
}

function outsideEntries(): string[] {
  return readdirSync(outside).filter((n) => n !== 'victim.bin');
}

test("the target's directory swapped for a symlink to a directory outside, after the target was opened: the staging file is not created there (PERMISSION_DENIED), nothing outside is written", async () => {
  const reg = await registry('state-dir-swap');
  try {
    const sub = join(allowed, 'sub');
    mkdirSync(sub);
    const target = join(sub, 't.img');
    reg.swap = () => {
      renameSync(sub, join(allowed, 'sub-moved'));
      symlinkSync(outside, sub);
    };
    const recs = records();
    await assert.rejects(reg.apply(A, begin('dir-swap', target), iterate([...recs, endOf(recs)])), (e: ThinshipError) => {
      assert.equal(e.code, 'PERMISSION_DENIED', e.message);
      assert.match(e.message, /symbolic link/);
      return true;
    });
    assert.deepEqual(outsideEntries(), [], 'nothing was created outside the allowed directory');
  } finally {
    await reg.close();
  }
});

test('the staging file of a resumable transfer swapped for a symlink to a file outside: the resume refuses it (PERMISSION_DENIED), the file outside is untouched', async () => {
  const reg = await registry('state-staging-swap');
  try {
    const target = join(allowed, 'resumed.img');
    const victim = join(outside, 'victim.bin');
    const victimBytes = Buffer.alloc(SIZE, 0xee);
    writeFileSync(victim, victimBytes);
    const recs = records();
    // The first call breaks after half the records: its staging file stays for the resume.
    await assert.rejects(reg.apply(A, begin('stage-swap', target), iterate(recs.slice(0, 8), new ThinshipError('UNAVAILABLE', 'sender went away'))));
    const durable = (await reg.state(A, 'stage-swap')).durableOffsetBytes;
    assert.ok(durable > 0);
    const staging = stagingPath(target, transferOwner(A.name, 'stage-swap'));
    assert.ok(existsSync(staging), 'the broken transfer kept its staging file');
    reg.swap = () => {
      unlinkSync(staging);
      symlinkSync(victim, staging);
    };
    const rest = recs.filter((r) => r.offsetBytes >= durable);
    await assert.rejects(reg.apply(A, begin('stage-swap', target, { resumeOffsetBytes: durable }), iterate([...rest, endOf(recs)])), (e: ThinshipError) => {
      assert.equal(e.code, 'PERMISSION_DENIED', e.message);
      assert.match(e.message, /staging file .* symbolic link/);
      return true;
    });
    assert.ok(readFileSync(victim).equals(victimBytes), 'the file the symlink points to was not written');
    assert.deepEqual(outsideEntries(), []);
    assert.ok(!existsSync(target) || readFileSync(target).length === 0, 'the target was not replaced by the symlink');
  } finally {
    await reg.close();
  }
});

test("an incremental's undo journal (no reflinks) with the target's directory swapped for a symlink: not created outside (PERMISSION_DENIED), the target untouched", async () => {
  const reg = await registry('state-journal-swap');
  targetStateSettings.forceJournal = true;
  try {
    const sub = join(allowed, 'jsub');
    mkdirSync(sub);
    const target = join(sub, 'j.img');
    const recs = records();
    await reg.apply(A, begin('j-full', target), iterate([...recs, endOf(recs)]));
    const before = readFileSync(target);
    reg.swap = () => {
      renameSync(sub, join(allowed, 'jsub-moved'));
      symlinkSync(outside, sub);
    };
    const inc = recs.slice(0, 2).map((r) => {
      const payload = Buffer.alloc(CHUNK, 0x42);
      return { ...r, payload, checksum: sha(payload) };
    });
    await assert.rejects(
      reg.apply(A, begin('j-inc', target, { incremental: true, baseId: 'src-j-full', sourceId: 'src-j-inc' }), iterate([...inc, endOf(inc)])),
      (e: ThinshipError) => {
        assert.equal(e.code, 'PERMISSION_DENIED', e.message);
        assert.match(e.message, /symbolic link/);
        return true;
      },
    );
    assert.deepEqual(outsideEntries(), [], 'no journal outside the allowed directory');
    assert.ok(readFileSync(join(allowed, 'jsub-moved', 'j.img')).equals(before), 'the target is untouched');
  } finally {
    targetStateSettings.forceJournal = false;
    await reg.close();
  }
});
