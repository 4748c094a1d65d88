/**
 * Offline-pool sources checked before anything is sent (real thin_restore /
 * thin_dump / thin_delta on the demo pool): an incremental given newer first is
 * refused naming both devices, and a --volume-size that would cut the volume
 * short is refused naming the end of the last mapping.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { createDemoPool, type DemoPool } from '../../src/thin/demo-pool.js';
import { checkOfflineOrder } from '../../src/thin/planner.js';
import { parseThinDump } from '../../src/thin/xml/dump.js';
import { ThinshipError } from '../../src/errors.js';
import type { ThinDevice } from '../../src/thin/model.js';
import { runCli } from '../helpers/cli.js';

let dir: string;
let pool: DemoPool;
let offline: string[];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'thinship-offline-checks-'));
  pool = await createDemoPool(join(dir, 'pool'));
  offline = ['--pool-metadata', pool.metadataPath, '--pool-data', pool.dataPath];
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('plan and send of an offline incremental given newer first: exit 4 naming both devices, nothing on stdout', async () => {
  const [older, newer] = [String(pool.baseDevId), String(pool.snapDevId)];
  for (const cmd of ['plan', 'send']) {
    const r = await runCli([cmd, newer, older, ...offline]);
    assert.equal(r.code, 4, `${cmd}: ${r.stderr}`);
    assert.match(
      r.stderr,
      new RegExp(`base device ${newer} \\(creation_time 1, transaction 1\\) is not older than snapshot device ${older} \\(creation_time 0, transaction 0\\)`),
    );
    assert.match(r.stderr, /give the older snapshot first/);
    assert.equal(r.stdout, '', `${cmd}: nothing sent`);
  }
  const same = await runCli(['plan', older, older, ...offline]);
  assert.equal(same.code, 4, same.stderr);
  assert.match(same.stderr, /base and snapshot are the same thin device/);
  const unknown = await runCli(['plan', older, '9', ...offline]);
  assert.equal(unknown.code, 3, unknown.stderr);
  assert.match(unknown.stderr, /SNAP: thin device id 9 is not in the pool metadata .*\(devices found: 1, 2\)/);
  // The right order still plans.
  const ok = await runCli(['plan', older, newer, ...offline, '--json']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(JSON.parse(ok.stdout).mode, 'incremental');
});

test('--volume-size below the end of the last mapping: refused (exit 2) naming that end, for full and incremental, plan and send', async () => {
  const end = 1000 * pool.blockBytes; // the demo's last mapped block is 999, in both snapshots (DEMO_LAYOUT)
  for (const names of [[String(pool.snapDevId)], [String(pool.baseDevId), String(pool.snapDevId)]]) {
    for (const cmd of ['plan', 'send']) {
      for (const size of ['1M', String(end - pool.blockBytes)]) {
        const r = await runCli([cmd, ...names, ...offline, '--volume-size', size]);
        assert.equal(r.code, 2, `${cmd} ${names.join(' ')} --volume-size ${size}: ${r.stderr}`);
        assert.match(r.stderr, new RegExp(`is smaller than the end of the last mapping of device ${pool.snapDevId} \\(${end} bytes, block 999\\)`));
        assert.equal(r.stdout, '', 'nothing sent');
      }
    }
  }
  // A volume that ends inside its last pool block is a real volume size; a larger one too.
  for (const size of [end - pool.blockBytes + 1, end, end + 4 * pool.blockBytes]) {
    const r = await runCli(['plan', String(pool.snapDevId), ...offline, '--volume-size', String(size), '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).totals.volumeSizeBytes, size);
  }
});

test('checkOfflineOrder: creation_time first, then transaction', () => {
  const dev = (devId: number, creationTime: number, transaction: number): ThinDevice => ({
    devId,
    mappedBlocks: 0,
    transaction,
    creationTime,
    snapTime: creationTime,
  });
  const devs = [dev(1, 0, 0), dev(2, 1, 1), dev(3, 1, 2), dev(4, 2, 1)];
  checkOfflineOrder(devs, 1, 2, 'm');
  checkOfflineOrder(devs, 2, 3, 'm'); // same creation_time: the earlier transaction is older
  checkOfflineOrder(devs, 3, 4, 'm'); // a later creation_time wins over a smaller transaction
  for (const [b, s] of [
    [2, 1],
    [3, 2],
    [4, 3],
    [2, 2],
  ] as const) {
    assert.throws(
      () => checkOfflineOrder(devs, b, s, 'm'),
      (e: unknown) => e instanceof ThinshipError && e.code === 'INVALID_SOURCE',
      `${b} ${s}`,
    );
  }
  assert.throws(
    () => checkOfflineOrder(devs, 5, 1, 'm'),
    (e: unknown) => e instanceof ThinshipError && e.code === 'NOT_FOUND' && /BASE: thin device id 5/.test(e.message),
  );
});

test('thin_dump --skip-mappings output that holds a mapping is bad metadata', async () => {
  const xml =
    '<superblock uuid="" time="0" transaction="1" data_block_size="128" nr_data_blocks="4">\n' +
    '  <device dev_id="1" mapped_blocks="1" transaction="0" creation_time="0" snap_time="0">\n' +
    '    <single_mapping origin_block="0" data_block="0" time="0"/>\n  </device>\n</superblock>\n';
  await assert.rejects(
    parseThinDump(Readable.from([xml]), { onMappings: () => undefined }, { skipMappings: true }),
    (e: unknown) => e instanceof ThinshipError && e.code === 'BAD_METADATA' && /no mappings/.test(e.message),
  );
  const r = await parseThinDump(Readable.from([xml.replace(/ +<single_mapping[^\n]*\n/, '')]), { onMappings: () => undefined }, { skipMappings: true });
  assert.deepEqual(
    r.devices.map((d) => [d.devId, d.mappedBlocks]),
    [[1, 1]],
  );
});
