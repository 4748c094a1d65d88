/**
 * `thinship serve` onto LVM thin LV targets (transfer-hooks.ts, lvm-stage.ts)
 * against fake lvs/lvcreate/lvremove/dmsetup/thin_delta on PATH (test/tools/fakes):
 * every refusal happens before any LV is made (only lvs, and the pool-metadata
 * delta of the divergence check, run) and before the transfer is recorded; a
 * staging LV is made of the right LV with its owner tag; start-up recovery and
 * AbortTransfer remove exactly the staging LVs of gRPC transfers that are no
 * longer resumable. The real-kernel tier (test/vm/serve-lvm.test.ts) runs the
 * same against real LVM.
 */
import { test, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, readFileSync, existsSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { repoRoot } from '../helpers/paths.js';
import { runCli } from '../helpers/cli.js';
import { parseAccessRules } from '../../src/receiver/access.js';
import { TransferRegistry } from '../../src/receiver/transfers.js';
import type { TransferBegin } from '../../src/receiver/record-checks.js';
import { ThinshipError } from '../../src/errors.js';
import { discardTransferStage } from '../../src/receiver/target-state/transfer-hooks.js';
import { tag } from '../../src/receiver/target-state/lvm-tags.js';
import { targetStateSettings } from '../../src/receiver/target-state/record.js';

const fakes = join(repoRoot, 'test/tools/fakes/bin');
const MiB = 1024 * 1024;
const SIZE = 256 * MiB;
const who = { name: 'who', names: ['who'] };

let state: string;
const saved: Record<string, string | undefined> = {};
const ENV = ['PATH', 'FAKE_STATE', 'FAKE_LVS_JSON', 'FAKE_THIN_DELTA_XML', 'THINSHIP_LOCK_DIR', 'THINSHIP_METADATA_READER'];
beforeEach(() => {
  state = mkdtempSync(join(tmpdir(), 'thinship-lvm-serve-'));
  for (const k of ENV) saved[k] = process.env[k];
  Object.assign(process.env, {
    PATH: `${fakes}:${process.env.PATH}`,
    FAKE_STATE: state,
    FAKE_LVS_JSON: join(state, 'lvs.json'),
    FAKE_THIN_DELTA_XML: join(state, 'delta.xml'),
    THINSHIP_LOCK_DIR: join(state, 'locks'),
    THINSHIP_METADATA_READER: 'thin-tools',
  });
  // The fakes are thin tools printing recorded XML: there is no metadata device to read natively.
  targetStateSettings.metadataReader = 'thin-tools';
  // No difference between the target (thin id 1) and its last received snapshot (thin id 2).
  writeFileSync(
    join(state, 'delta.xml'),
    '<superblock uuid="" time="2" transaction="3" data_block_size="128" nr_data_blocks="0">\n  <diff left="2" right="1">\n    <same begin="0" length="4096"/>\n  </diff>\n</superblock>\n',
  );
});
afterEach(() => {
  targetStateSettings.metadataReader = 'auto';
  for (const k of ENV) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
  rmSync(state, { recursive: true, force: true });
});

const calls = () => (existsSync(join(state, 'calls.log')) ? readFileSync(join(state, 'calls.log'), 'utf8').trim().split('\n').filter(Boolean) : []);
const tools = () => [...new Set(calls().map((c) => c.split(' ')[0]))].sort();

interface Row {
  lv: string;
  thinId?: string;
  tags?: string[];
  open?: boolean;
  pool?: string;
}

function writeLvs(rows: Row[]): void {
  const lv = [
    {
      vg_name: 'vg0',
      lv_name: 'pool',
      lv_uuid: 'uuid-pool',
      lv_size: '1073741824',
      pool_lv: '',
      origin: '',
      thin_id: '',
      lv_attr: 'twi-aotz--',
      lv_tags: '',
      lv_device_open: '',
    },
    ...rows.map((r) => ({
      vg_name: 'vg0',
      lv_name: r.lv,
      lv_uuid: `uuid-${r.lv}`,
      lv_size: String(SIZE),
      pool_lv: r.pool ?? 'pool',
      origin: '',
      thin_id: r.thinId ?? '',
      lv_attr: r.thinId ? 'Vwi-a-tz--' : '-wi-a-----',
      lv_tags: (r.tags ?? []).join(','),
      lv_device_open: r.open ? 'open' : '',
    })),
  ];
  writeFileSync(join(state, 'lvs.json'), JSON.stringify({ report: [{ lv }] }));
}

/** thin1 holds SNAP-A (its record in its tags), received as thin1.a. */
const holdsA = (extra: Partial<Row> = {}): Row[] => [
  {
    lv: 'thin1',
    thinId: '1',
    tags: [tag('v', 1), tag('src', 'SNAP-A'), tag('size', SIZE), tag('xfer', 'x'), tag('at', 1000), tag('snap', 'thin1.a')],
    ...extra,
  },
  { lv: 'thin1.a', thinId: '2', tags: [tag('v', 1), tag('src', 'SNAP-A'), tag('size', SIZE), tag('xfer', 'x'), tag('at', 1000), tag('snapof', 'thin1')] },
];

function begin(o: Partial<TransferBegin>): TransferBegin {
  return {
    transferId: 't1',
    target: 'vg0/thin1',
    incremental: true,
    volumeSizeBytes: SIZE,
    blockSizeBytes: 65536,
    sourceId: 'SNAP-B',
    baseId: 'SNAP-A',
    plannedDataBytes: 0,
    plannedUnmapBytes: 0,
    resumeOffsetBytes: 0,
    compression: 'none',
    checksum: 'sha256',
    ...o,
  };
}

async function withRegistry<T>(rules: Record<string, unknown>, fn: (reg: TransferRegistry, stateDir: string) => Promise<T>): Promise<T> {
  const policy = await parseAccessRules({ who: { lvm: [rules] } }, 'test');
  const stateDir = join(state, 'rx');
  const reg = new TransferRegistry({ stateDir, policy, log: pino({ level: 'silent' }), decodeWorkers: 0 });
  await reg.start();
  try {
    return await fn(reg, stateDir);
  } finally {
    await reg.close();
  }
}

async function applyError(reg: TransferRegistry, b: TransferBegin): Promise<ThinshipError> {
  async function* none() {
    /* refused before the first record is read */
  }
  const e = await reg.apply(who, b, none()).then(
    () => undefined,
    (x: unknown) => x,
  );
  assert.ok(e instanceof ThinshipError, `refused: ${String(e)}`);
  return e;
}

const stored = (stateDir: string) => (existsSync(join(stateDir, 'transfers')) ? readdirSync(join(stateDir, 'transfers'), { recursive: true }) : []);

test('every refusal comes before any LV is made and before the transfer is recorded', async () => {
  const cases: { rows: Row[]; b: Partial<TransferBegin>; rule?: Record<string, unknown>; code: string; msg: RegExp }[] = [
    { rows: holdsA(), b: { baseId: 'SNAP-OTHER' }, code: 'BASE_MISMATCH', msg: /holds SNAP-A .*but this incremental stream applies to base SNAP-OTHER/ },
    { rows: holdsA({ open: true }), b: {}, code: 'TARGET_BUSY', msg: /target vg0\/thin1 is open/ },
    { rows: [{ lv: 'thin1' }], b: {}, code: 'NOT_THIN', msg: /is not a thin volume/ },
    { rows: [], b: {}, code: 'NOT_FOUND', msg: /does not exist: an incremental stream applies only to a target holding its base SNAP-A/ },
    {
      rows: [],
      b: { incremental: false, baseId: undefined },
      rule: { vg: 'vg0', lv: '*' },
      code: 'NOT_FOUND',
      msg: /lvm rule for it names no "pool" to create it in/,
    },
    { rows: holdsA({ pool: 'other' }), b: {}, code: 'PERMISSION_DENIED', msg: /thin pool vg0\/other, not in the allowed pool vg0\/pool/ },
  ];
  for (const c of cases) {
    writeLvs(c.rows);
    rmSync(join(state, 'calls.log'), { force: true });
    await withRegistry(c.rule ?? { vg: 'vg0', pool: 'pool', lv: '*' }, async (reg, stateDir) => {
      const e = await applyError(reg, begin(c.b));
      assert.equal(e.code, c.code, e.message);
      assert.match(e.message, c.msg);
      assert.ok(
        tools().every((t) => t === 'lvs' || t === 'dmsetup' || t === 'thin_delta'),
        `${c.code}: only lvs and the divergence check ran: ${calls().join('; ')}`,
      );
      assert.deepEqual(stored(stateDir), [], `${c.code}: nothing recorded`);
    });
  }
});

test('a diverged target (pool metadata shows writes since its last received snapshot) is DIVERGED; --force stages from that snapshot', async () => {
  // 4 blocks written on the target since thin1.a.
  writeFileSync(
    join(state, 'delta.xml'),
    '<superblock uuid="" time="2" transaction="3" data_block_size="128" nr_data_blocks="0">\n  <diff left="2" right="1">\n    <same begin="0" length="10"/>\n    <different begin="10" length="4"/>\n  </diff>\n</superblock>\n',
  );
  writeLvs(holdsA());
  await withRegistry({ vg: 'vg0', pool: 'pool', lv: '*' }, async (reg, stateDir) => {
    const e = await applyError(reg, begin({}));
    assert.equal(e.code, 'DIVERGED', e.message);
    assert.match(e.message, /was written since it received SNAP-A: .*since vg0\/thin1\.a \(pool metadata: thin ids 2 → 1\)/);
    assert.ok(!tools().includes('lvcreate'));
    assert.deepEqual(stored(stateDir), []);
    // --force: the staging LV is a snapshot of the last received snapshot (the target rolled back), tagged with its owner.
    const forced = await applyError(reg, begin({ force: true }));
    assert.match(forced.message, /lvcreate made no LV vg0\/thin1\.thinship-staging/, 'the fake lvcreate makes nothing');
    const made = calls().filter((c) => c.startsWith('lvcreate'));
    assert.equal(made.length, 1, made.join('; '));
    assert.match(made[0]!, / -s .*-n thin1\.thinship-staging .*--addtag thinship\.staging:thin1 .*vg0\/thin1\.a$/);
    assert.ok(made[0]!.includes(`--addtag ${tag('owner', 'grpc:who/t1')}`), made[0]);
  });
});

test('a full stream to a missing LV stages a new thin LV of the volume size in the rule’s pool', async () => {
  writeLvs([]);
  await withRegistry({ vg: 'vg0', pool: 'pool', lv: 'new*' }, async (reg) => {
    await applyError(reg, begin({ target: 'vg0/newlv', incremental: false, baseId: undefined }));
    const made = calls().filter((c) => c.startsWith('lvcreate'));
    assert.equal(made.length, 1, made.join('; '));
    assert.match(made[0]!, new RegExp(`-V ${SIZE}b -T vg0/pool -n newlv\\.thinship-staging`));
  });
});

test('receiver start removes the staging LVs of gRPC transfers it cannot resume, and leaves pipe-mode ones to their next recv', async () => {
  writeLvs([
    { lv: 'x', thinId: '1' },
    { lv: 'x.thinship-staging', thinId: '5', tags: [tag('staging', 'x'), tag('owner', 'grpc:who/gone')] },
    { lv: 'y', thinId: '2' },
    { lv: 'y.thinship-staging', thinId: '6', tags: [tag('staging', 'y')] },
  ]);
  await withRegistry({ vg: 'vg0', pool: 'pool', lv: '*' }, async () => {
    assert.deepEqual(
      calls().filter((c) => c.startsWith('lvremove')),
      ['lvremove -q -f vg0/x.thinship-staging'],
    );
  });
});

test('a pipe-mode recv refuses a target staged by a gRPC transfer (it may still resume) and removes nothing; --force discards that staging', async () => {
  writeLvs([...holdsA(), { lv: 'thin1.thinship-staging', thinId: '5', tags: [tag('staging', 'thin1'), tag('owner', 'grpc:who/t7')] }]);
  const args = ['recv', 'vg0/thin1', '--state-dir', join(state, 'rx')];
  const r = await runCli(args, { cwd: state });
  assert.equal(r.code, 11, r.stderr);
  assert.match(
    r.stderr,
    /target vg0\/thin1 has the staging LV vg0\/thin1\.thinship-staging of a gRPC transfer \(grpc:who\/t7\) that its sender may still resume; nothing was changed/,
  );
  assert.deepEqual(tools(), ['lvs'], 'only lvs ran: nothing was removed');
  const forced = await runCli([...args, '--force'], { cwd: state });
  assert.ok(calls().includes('lvremove -q -f vg0/thin1.thinship-staging'), `--force removes it: ${calls().join('; ')} ${forced.stderr}`);
  assert.match(forced.stderr, /its staging LV was removed/);
});

test('AbortTransfer and expiry remove the staging LV only when that transfer made it', async () => {
  writeLvs([
    { lv: 'x', thinId: '1' },
    { lv: 'x.thinship-staging', thinId: '5', tags: [tag('staging', 'x'), tag('owner', 'grpc:who/mine')] },
  ]);
  const log = pino({ level: 'silent' });
  await discardTransferStage('vg0/x', 'lvm:vg0/x', 'grpc:who/other', join(state, 'rx'), log);
  assert.deepEqual(
    calls().filter((c) => c.startsWith('lvremove')),
    [],
    "another transfer's staging LV is left alone",
  );
  await discardTransferStage('/dev/vg0/x', 'lvm:vg0/x', 'grpc:who/mine', join(state, 'rx'), log);
  assert.deepEqual(
    calls().filter((c) => c.startsWith('lvremove')),
    ['lvremove -q -f vg0/x.thinship-staging'],
  );
});
