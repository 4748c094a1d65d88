/**
 * Soak (npm run soak; not part of npm test): `thinship serve` SIGKILLed and
 * restarted at least 50 times in the middle of transfers, each kill after a
 * new checkpoint; the sender (in this process) runs the same send again after
 * every kill and resumes from the receiver's durable offset. Each target must
 * end byte-identical to the source snapshot. Prints the cycles and resumes.
 *
 *   npm run soak                 # 50 kills
 *   THINSHIP_SOAK_KILLS=200 npm run soak
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDemoPool } from '../../src/thin/demo-pool.js';
import { expectedImage } from '../helpers/offline-image.js';
import { makeTestCerts, writeConfig, startServe, stopServe, assertSameImage, readImage, type ServeProcess } from '../service/helpers.js';
import { sendDemo } from '../service/receiver-helpers.js';
import { ReceiverClient } from '../../src/rpc/client.js';

const KILLS = Number(process.env.THINSHIP_SOAK_KILLS ?? 50);
const CHECKPOINT_BYTES = 512 * 1024;

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'thinship-soak-'));
  let serve: ServeProcess | undefined;
  try {
    mkdirSync(join(dir, 'targets'));
    const pool = await createDemoPool(join(dir, 'pool'));
    const img = expectedImage(pool.metadataPath, pool.dataPath, pool.baseDevId, pool.volumeSizeBytes);
    const certs = await makeTestCerts(join(dir, 'certs'));
    const cfg = writeConfig(join(dir, 'rx.json'), {
      tls: { ca: certs.server.ca, cert: certs.server.cert, key: certs.server.key },
      stateDir: join(dir, 'state'),
      checkpointIntervalBytes: CHECKPOINT_BYTES,
      receiveWindowBytes: 1024 * 1024,
      identities: { 'sender-a': { directories: [join(dir, 'targets')] } },
    });
    serve = await startServe(['--listen', '127.0.0.1:0', '--config', cfg]);
    const port = serve.port;
    let kills = 0;
    let transfers = 0;
    while (kills < KILLS) {
      const id = `soak-${++transfers}`;
      const target = join(dir, 'targets', `${id}.img`);
      for (;;) {
        const client = await ReceiverClient.connect({ address: `127.0.0.1:${port}`, tls: certs.clientA, serverName: 'localhost' });
        const s: ServeProcess = serve;
        const checkpointsBefore = s.lines.filter((l) => l.msg === 'checkpoint' && l.transferId === id).length;
        const sending = sendDemo(pool, client, target, pool.baseDevId, { transferId: id, maxAttempts: 1 });
        sending.catch(() => undefined);
        let killed = false;
        if (kills < KILLS) {
          // Kill after a new checkpoint of this transfer (progress every cycle), unless the send finishes first.
          const next = s.waitFor(
            (l) =>
              l.msg === 'checkpoint' &&
              l.transferId === id &&
              l.status === 'in_progress' &&
              s.lines.filter((x) => x.msg === 'checkpoint' && x.transferId === id).indexOf(l) >= checkpointsBefore + 1,
            120_000,
          );
          const winner = await Promise.race([
            next.then(() => 'checkpoint'),
            sending.then(
              () => 'done',
              () => 'failed',
            ),
          ]);
          if (winner === 'checkpoint') {
            s.child.kill('SIGKILL');
            await s.exited;
            kills++;
            killed = true;
          }
          next.catch(() => undefined);
        }
        try {
          const r = await sending;
          client.close();
          assert.equal(r.state.status, 'TRANSFER_STATUS_COMPLETE');
          assertSameImage(readImage(target, pool.volumeSizeBytes), img, `${id} after ${kills} kills`);
          process.stdout.write(`${id}: complete and byte-identical (kills so far ${kills})\n`);
          break;
        } catch (e) {
          client.close();
          if (!killed) throw e;
        }
        serve = await startServe(['--listen', `127.0.0.1:${port}`, '--config', cfg]);
      }
    }
    process.stdout.write(`soak: ${kills} SIGKILLs of serve, ${transfers} transfers; every target byte-identical\n`);
    assert.ok(kills >= KILLS);
  } finally {
    if (serve) await stopServe(serve);
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
