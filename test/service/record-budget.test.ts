/**
 * The receiver's record budget (half of maxBufferedBytes) under contention:
 * more concurrent transfers than the budget has room for, each reserving its
 * worst case before every message, all complete with every byte in place
 * (no deadlock: a transfer holding budget holds it for records that need
 * nothing more to be written), and the debug state serve logs on SIGUSR2
 * shows transfers waiting for the budget meanwhile. The TransferRegistry
 * runs on real files; with and without the decode pool's worker threads.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, mkdirSync, readFileSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { setImmediate as tick } from 'node:timers/promises';
import { pino } from 'pino';
import { parseAccessRules, type AccessPolicy, type ClientIdentity } from '../../src/receiver/access.js';
import { TransferRegistry, MESSAGE_OVERHEAD_BYTES } from '../../src/receiver/transfers.js';
import type { TransferBegin, WireRecord } from '../../src/receiver/record-checks.js';
import { StreamDigest } from '../../src/stream/digest.js';

const KiB = 1024;
const CHUNK_BYTES = 256 * KiB;
const RECORDS = 12;
const TRANSFERS = 6;
/** What a transfer reserves before each RAW message (transfers.ts: the message and the decoder's copy). */
const WORST_BYTES = 2 * (CHUNK_BYTES + MESSAGE_OVERHEAD_BYTES);
const silent = pino({ level: 'silent' });
const who: ClientIdentity = { name: 'ident-a', names: ['ident-a'] };
const sha = (b: Buffer) => createHash('sha256').update(b).digest();

let dir: string;
let policy: AccessPolicy;
before(async () => {
  dir = realpathSync(mkdtempSync(join(tmpdir(), 'thinship-budget-')));
  mkdirSync(join(dir, 'targets'));
  policy = await parseAccessRules({ 'ident-a': { directories: [join(dir, 'targets')] } }, 'test');
});
after(() => rmSync(dir, { recursive: true, force: true }));

function payloadOf(transfer: number, record: number): Buffer {
  return Buffer.alloc(CHUNK_BYTES, ((transfer * 31 + record) % 251) + 1);
}

for (const decodeWorkers of [0, 1]) {
  test(
    `${TRANSFERS} transfers share a record budget of 1.5 messages (decode workers: ${decodeWorkers}): all complete, and they did wait for it`,
    { timeout: 120_000 },
    async () => {
      const reg = new TransferRegistry({
        stateDir: join(dir, `state-${decodeWorkers}`),
        policy,
        log: silent,
        decodeWorkers,
        maxChunkBytes: CHUNK_BYTES,
        // The record budget is half of it: room for one worst-case reservation, not two.
        maxBufferedBytes: 3 * WORST_BYTES,
      });
      await reg.start();
      let mostWaiting = 0;
      let sawReaderWaitingForBudget = false;
      try {
        const runs = Array.from({ length: TRANSFERS }, (_, t) => {
          const target = join(dir, 'targets', `w${decodeWorkers}-t${t}.img`);
          const volumeSizeBytes = RECORDS * CHUNK_BYTES;
          const begin: TransferBegin = {
            transferId: `budget-${decodeWorkers}-${t}`,
            target,
            incremental: false,
            volumeSizeBytes,
            blockSizeBytes: 64 * KiB,
            sourceId: 'budget-source',
            baseId: '',
            plannedDataBytes: volumeSizeBytes,
            plannedUnmapBytes: 0,
            resumeOffsetBytes: 0,
            compression: 'none',
            checksum: 'sha256',
          };
          async function* records(): AsyncGenerator<WireRecord> {
            const digest = new StreamDigest();
            for (let i = 0; i < RECORDS; i++) {
              await tick();
              const st = reg.debugState();
              mostWaiting = Math.max(mostWaiting, st.recordBudget.waiting.length);
              sawReaderWaitingForBudget ||= st.transfers.some((x) => x.reader === 'record budget');
              const payload = payloadOf(t, i);
              const checksum = sha(payload);
              digest.addData(i * CHUNK_BYTES, CHUNK_BYTES, checksum);
              yield { type: 'data', offsetBytes: i * CHUNK_BYTES, lengthBytes: CHUNK_BYTES, payload, encoding: 'raw', checksum };
            }
            yield { type: 'end', records: RECORDS + 2, dataRecords: RECORDS, unmapRecords: 0, dataBytes: volumeSizeBytes, unmapBytes: 0, digest: digest.state };
          }
          return reg.apply(who, begin, records()).then((r) => ({ r, target }));
        });
        const done = await Promise.all(runs);
        for (const [t, { r, target }] of done.entries()) {
          assert.equal(r.state.status, 'complete', `transfer ${t}`);
          const img = readFileSync(target);
          for (let i = 0; i < RECORDS; i++)
            assert.ok(img.subarray(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES).equals(payloadOf(t, i)), `transfer ${t} record ${i}`);
        }
        assert.ok(mostWaiting >= 2, `transfers queued for the record budget (at most ${mostWaiting} waited at once): the test must contend`);
        assert.ok(sawReaderWaitingForBudget, 'the debug state showed a reader waiting for the record budget');
        const after = reg.debugState();
        assert.deepEqual(
          { held: after.recordBudget.heldBytes, waiting: after.recordBudget.waiting, running: after.transfers.length },
          { held: 0, waiting: [], running: 0 },
        );
      } finally {
        await reg.close();
      }
    },
  );
}
