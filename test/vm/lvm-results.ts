/**
 * Readers of what an LVM guest scenario (recv-lvm.sh, serve-lvm.sh) wrote into its
 * results directory: one step's files, `lvs --reportformat json` of the target VG
 * after it, the source snapshots' uuids, and the byte comparison of the target.
 * `run` is a getter: the boot happens in the suite's before().
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describeRun, type GuestRun } from './vm-harness.js';

export interface LvsRow {
  lv_name: string;
  lv_attr: string;
  lv_tags: string;
  origin: string;
  pool_lv: string;
  /** Only where the guest script asks lvs for it (recv-lvm.sh). */
  lv_device_open?: string;
}

export function lvmResultReaders(run: () => GuestRun) {
  /** A file the guest wrote, trimmed; a missing one fails naming it. */
  const r = (f: string): string => {
    const p = join(run().resultsDir, f);
    assert.ok(existsSync(p), `the guest did not write ${f}\n${describeRun(run())}`);
    return readFileSync(p, 'utf8').trim();
  };
  const lvs = (name: string): LvsRow[] => (JSON.parse(r(`${name}/lvs.json`)) as { report: { lv: LvsRow[] }[] }).report.flatMap((x) => x.lv);
  const lv = (name: string, lvName: string) => lvs(name).find((x) => x.lv_name === lvName);
  const tagsOf = (row: LvsRow | undefined) => (row?.lv_tags ?? '').split(',').filter(Boolean);
  /** The uuid of a source snapshot (what a record's source id is). */
  const uuid = (snap: string): string => {
    const rows = (JSON.parse(r('src-lvs.json')) as { report: { lv: { lv_name: string; lv_uuid: string }[] }[] }).report.flatMap((x) => x.lv);
    const u = rows.find((x) => x.lv_name === snap)?.lv_uuid;
    assert.ok(u, `no uuid for ${snap}`);
    return u;
  };
  const same = (name: string) => assert.equal(r(`${name}/cmp`), 'same', `${name}: the target must equal its snapshot byte for byte`);
  /** The LVs named `prefix` or `prefix.*` after a step, sorted. */
  const names = (name: string, prefix: string) =>
    lvs(name)
      .map((x) => x.lv_name)
      .filter((n) => n === prefix || n.startsWith(`${prefix}.`))
      .sort();
  return { r, lvs, lv, tagsOf, uuid, same, names };
}
