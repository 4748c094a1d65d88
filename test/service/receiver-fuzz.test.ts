/**
 * Fuzzing the receiver with fast-check: random ApplyStream message sequences
 * (valid and broken Begins, data / unmap / end records with random offsets,
 * lengths, encodings, payloads and checksums, stray Begins and empty
 * messages) against an in-process receiver over mTLS, for a bounded time.
 * Every call ends; every refusal carries a stable thinship code (never
 * INTERNAL) as ErrorInfo.reason in its grpc-status-details-bin trailer;
 * nothing is written outside the target (a sentinel file beside it is unchanged, no other file appears) and
 * the target is never larger than its volume; the receiver still works after.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, mkdirSync, writeFileSync, readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import type * as grpc from '@grpc/grpc-js';
import { errorInfoOf } from '../../src/rpc/status.js';
import { exitCodeOf } from '../../src/cli/exit-codes.js';
import { ThinshipError, type ErrorCode } from '../../src/errors.js';
import type { ReceiverClient } from '../../src/rpc/client.js';
import { makeTestCerts, type TestCerts } from './helpers.js';
import { startTestReceiver, rawCall, beginMsg, sha, type TestReceiver } from './receiver-helpers.js';
import { StreamDigest } from '../../src/stream/digest.js';

let dir: string;
let fz: string;
let certs: TestCerts;
let r: TestReceiver;
let a: ReceiverClient;
const SENTINEL = randomBytes(64 * 1024);
const VOLUME = 256 * 1024;
const FUZZ_MS = Number(process.env.THINSHIP_FUZZ_MS ?? 20_000);

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'thinship-fuzz-'));
  fz = join(dir, 'fz');
  mkdirSync(fz);
  writeFileSync(join(fz, 'sentinel.img'), SENTINEL);
  certs = await makeTestCerts(join(dir, 'certs'));
  r = await startTestReceiver(
    certs,
    { stateDir: join(dir, 'state'), identities: { 'sender-a': { directories: [fz] } }, idleTimeoutSeconds: 5, maxChunkBytes: 65536 },
    join(dir, 'rx.json'),
  );
  a = await r.client(certs.clientA);
});

after(async () => {
  await r?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A known code: exit-codes.ts maps every ErrorCode; anything else maps to 1 like INTERNAL. */
function isStableCode(c: unknown): c is ErrorCode {
  return typeof c === 'string' && c !== 'INTERNAL' && exitCodeOf(new ThinshipError(c as ErrorCode, 'x')) !== 1;
}

const offsetArb = fc.oneof(
  fc.integer({ min: 0, max: VOLUME / 4096 }).map((b) => b * 4096),
  fc.integer({ min: 0, max: VOLUME + 8192 }),
  fc.constantFrom(0, VOLUME - 1, VOLUME, 2 ** 32, 2 ** 53 - 1, 2 ** 53, 2 ** 60),
);
const lengthArb = fc.oneof(fc.constantFrom(0, 1, 4096, 65536, 65537, VOLUME, 2 ** 53), fc.integer({ min: 0, max: 70_000 }));

const dataArb = fc
  .record({
    offset: offsetArb,
    length: lengthArb,
    payloadBytes: fc.oneof(fc.constant(-1), fc.integer({ min: 0, max: 8192 })), // -1: as many as length (when small)
    encoding: fc.constantFrom('ENCODING_RAW', 'ENCODING_ZSTD', 'ENCODING_ZERO', 'ENCODING_UNSPECIFIED'),
    checksum: fc.constantFrom('right', 'wrong', 'empty', 'short'),
  })
  .map((d) => {
    const n = d.payloadBytes === -1 ? Math.min(d.length, 70_000) : d.payloadBytes;
    const payload = d.encoding === 'ENCODING_ZERO' && d.payloadBytes === -1 ? Buffer.alloc(0) : randomBytes(n);
    const right = sha(d.encoding === 'ENCODING_ZERO' ? Buffer.alloc(Math.min(d.length, 70_000)) : payload);
    const checksum =
      d.checksum === 'right' ? right : d.checksum === 'wrong' ? randomBytes(32) : d.checksum === 'short' ? right.subarray(0, 16) : Buffer.alloc(0);
    return { kind: 'data', data: { offsetBytes: d.offset, lengthBytes: d.length, payload, encoding: d.encoding, checksum } };
  });
const unmapArb = fc.record({ offset: offsetArb, length: lengthArb }).map((u) => ({ kind: 'unmap', unmap: { offsetBytes: u.offset, lengthBytes: u.length } }));
const endArb = fc
  .record({
    records: fc.nat(10),
    dataRecords: fc.nat(8),
    unmapRecords: fc.nat(8),
    dataBytes: fc.nat(VOLUME),
    unmapBytes: fc.nat(VOLUME),
    digest: fc.constantFrom(0, 32, 31),
  })
  .map((e) => ({ kind: 'end', end: { ...e, digest: randomBytes(e.digest) } }));
const strayArb = fc.constantFrom<Record<string, unknown>>({ kind: 'begin', begin: { protocolVersion: 1 } }, {});
const recordArb = fc.oneof(
  { weight: 5, arbitrary: dataArb },
  { weight: 2, arbitrary: unmapArb },
  { weight: 1, arbitrary: endArb },
  { weight: 1, arbitrary: strayArb },
);

const beginOverArb = fc.record(
  {
    mode: fc.constantFrom('TRANSFER_MODE_FULL', 'TRANSFER_MODE_INCREMENTAL', 'TRANSFER_MODE_UNSPECIFIED'),
    baseId: fc.constantFrom('', 'base-1'),
    compression: fc.constantFrom('COMPRESSION_NONE', 'COMPRESSION_ZSTD'),
    checksum: fc.constantFrom('CHECKSUM_ALGORITHM_SHA256', 'CHECKSUM_ALGORITHM_SHA256', 'CHECKSUM_ALGORITHM_NONE'),
    volumeSizeBytes: fc.constantFrom(VOLUME, VOLUME, 0, 4096, 2 ** 53),
    blockSizeBytes: fc.constantFrom(65536, 0, 4096, 2 ** 53),
    resumeOffsetBytes: fc.constantFrom(0, 0, 4096, VOLUME + 1),
    protocolVersion: fc.constantFrom(1, 1, 1, 2),
  },
  { requiredKeys: [] },
);

/**
 * A valid stream (ascending 4 KiB-aligned data, zero and unmap records, the
 * right end and digest) with at most one record swapped for a random one:
 * reaches the record checks, the writes and the end's digest.
 */
const validishArb = fc
  .record({
    ops: fc.array(fc.record({ gapBlocks: fc.nat(3), lenBlocks: fc.integer({ min: 1, max: 4 }), kind: fc.constantFrom('data', 'data', 'zero', 'unmap') }), {
      maxLength: 8,
    }),
    mutate: fc.option(fc.tuple(fc.nat(9), recordArb), { freq: 2 }),
    withEnd: fc.boolean(),
    flipDigest: fc.boolean(),
  })
  .map(({ ops, mutate, withEnd, flipDigest }) => {
    const out: Record<string, unknown>[] = [];
    const digest = new StreamDigest();
    let cur = 0;
    const counts = { dataRecords: 0, unmapRecords: 0, dataBytes: 0, unmapBytes: 0 };
    for (const o of ops) {
      const off = cur + o.gapBlocks * 4096;
      const len = o.lenBlocks * 4096;
      if (off + len > VOLUME) break;
      cur = off + len;
      if (o.kind === 'unmap') {
        out.push({ kind: 'unmap', unmap: { offsetBytes: off, lengthBytes: len } });
        digest.addUnmap(off, len);
        counts.unmapRecords++;
        counts.unmapBytes += len;
      } else {
        const bytes = o.kind === 'zero' ? Buffer.alloc(len) : randomBytes(len);
        out.push({
          kind: 'data',
          data: {
            offsetBytes: off,
            lengthBytes: len,
            payload: o.kind === 'zero' ? Buffer.alloc(0) : bytes,
            encoding: o.kind === 'zero' ? 'ENCODING_ZERO' : 'ENCODING_RAW',
            checksum: sha(bytes),
          },
        });
        digest.addData(off, len, sha(bytes));
        counts.dataRecords++;
        counts.dataBytes += len;
      }
    }
    if (withEnd)
      out.push({ kind: 'end', end: { records: counts.dataRecords + counts.unmapRecords + 2, ...counts, digest: flipDigest ? randomBytes(32) : digest.state } });
    if (mutate && out.length > 0) out[mutate[0] % out.length] = mutate[1];
    return out;
  });

let run = 0;
/** Outcomes by thinship code ("ok" for a completed transfer): shows what the fuzzer reached. */
const outcomes = new Map<string, number>();

async function oneSequence(over: Record<string, unknown>, records: Record<string, unknown>[]): Promise<void> {
  const id = `fz-${++run}`;
  const target = join(fz, `${id}.img`);
  const c = rawCall(a);
  c.write(beginMsg(id, target, over));
  for (const m of records) c.write(m);
  c.call.end();
  let outcome: unknown;
  const bound = new Promise((_, reject) => setTimeout(() => reject(new Error(`call ${id} did not end within 15 s`)), 15_000).unref());
  try {
    await Promise.race([c.response, bound]);
  } catch (e) {
    outcome = e;
  }
  if (outcome !== undefined) {
    const se = outcome as grpc.ServiceError;
    assert.ok(se.metadata, `call ${id} failed without a status: ${JSON.stringify(outcome)}`);
    const code = errorInfoOf(se.metadata)?.reason;
    assert.ok(isStableCode(code), `call ${id}: ${se.details} (ErrorInfo.reason ${String(code)})`);
  }
  const key = outcome === undefined ? 'ok' : String(errorInfoOf((outcome as grpc.ServiceError).metadata)?.reason);
  outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
  // nothing outside the target; the target no larger than the volume it was begun with
  assert.ok(readFileSync(join(fz, 'sentinel.img')).equals(SENTINEL), 'sentinel unchanged');
  // Issue 13: beside the target, its staging file (a resumable transfer keeps it) is allowed, nothing else.
  const staging = new RegExp(`^\\.${id.replace(/[.]/g, '\\.')}\\.img\\.thinship-staging-[0-9a-f]{16}$`);
  for (const f of readdirSync(fz)) assert.ok(f === 'sentinel.img' || f === `${id}.img` || staging.test(f), `unexpected file ${f}`);
  const volume = (over.volumeSizeBytes as number | undefined) ?? 1024 * 1024;
  for (const f of readdirSync(fz).filter((n) => staging.test(n))) assert.equal(statSync(join(fz, f)).size, volume, `staging ${f}`);
  if (existsSync(target)) {
    // created empty; the volume's size once a transfer committed onto it
    assert.ok([0, volume].includes(statSync(target).size), `target size ${statSync(target).size}`);
    rmSync(target);
  }
  await a.abortTransfer(id).catch(() => undefined);
  for (const f of readdirSync(fz).filter((n) => staging.test(n))) rmSync(join(fz, f));
}

test(`fuzzed ApplyStream sequences (${FUZZ_MS / 1000} s): every call ends with a stable code, nothing written outside the volume`, async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.oneof({ weight: 3, arbitrary: fc.constant({}) }, { weight: 1, arbitrary: beginOverArb }),
      fc.oneof({ weight: 3, arbitrary: validishArb }, { weight: 1, arbitrary: fc.array(recordArb, { maxLength: 12 }) }),
      async (over, records) => oneSequence({ volumeSizeBytes: VOLUME, ...over }, records),
    ),
    { numRuns: 1_000_000, interruptAfterTimeLimit: FUZZ_MS, markInterruptAsFailure: false },
  );
  process.stdout.write(`fuzz: ${run} sequences, outcomes ${JSON.stringify(Object.fromEntries(outcomes))}\n`);
  assert.ok(run >= 20, `only ${run} sequences ran`);
  // the generators reach past the Begin checks into the record checks
  for (const k of ['ok', 'BAD_STREAM', 'CHECKSUM_MISMATCH'])
    assert.ok((outcomes.get(k) ?? 0) > 0, `no sequence ended ${k}: the generators do not reach that far`);
  // the receiver still works: a valid small transfer completes
  const c = rawCall(a);
  const data = randomBytes(65536);
  const d = new StreamDigest();
  d.addData(0, data.length, sha(data));
  c.write(beginMsg('after-fuzz', join(fz, 'after.img'), { volumeSizeBytes: 65536, plannedDataBytes: 65536 }));
  c.write({ kind: 'data', data: { offsetBytes: 0, lengthBytes: data.length, payload: data, encoding: 'ENCODING_RAW', checksum: sha(data) } });
  c.write({ kind: 'end', end: { records: 3, dataRecords: 1, unmapRecords: 0, dataBytes: 65536, unmapBytes: 0, digest: d.state } });
  c.call.end();
  const res = await c.response;
  assert.equal(res.state?.status, 'TRANSFER_STATUS_COMPLETE');
  assert.ok(readFileSync(join(fz, 'after.img')).equals(data));
});
