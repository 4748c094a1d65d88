/** `thinship plan [BASE] SNAP [--json]`: the exact dry run. */
import { once } from 'node:events';
import type { SendPlan } from '../../thin/planner.js';
import { sourceSpecOf, type SourceFlags } from '../source-args.js';
import { planForCommand, type PlanFlags as PlanningFlags } from '../plan-options.js';
import { formatBytes } from '../format.js';

export interface PlanFlags extends SourceFlags, PlanningFlags {
  json?: boolean;
}

async function write(s: string): Promise<void> {
  if (!process.stdout.write(s)) await once(process.stdout, 'drain');
}

/** JSON: a header object, then ops streamed (millions of ops must not be held in memory). */
async function printJson(p: SendPlan): Promise<void> {
  const head = { mode: p.mode, source: describe(p, 'source'), base: p.base ? describe(p, 'base') : null, totals: p.plan.totals };
  const headText = JSON.stringify(head);
  await write(headText.slice(0, -1) + ',"ops":[');
  let first = true;
  for await (const batch of p.plan.batches()) {
    let s = '';
    for (const op of batch) {
      s += (first ? '\n' : ',\n') + JSON.stringify({ kind: op.kind, offsetBytes: op.offsetBytes, lengthBytes: op.lengthBytes });
      first = false;
    }
    await write(s);
  }
  await write('\n]}\n');
}

function describe(p: SendPlan, which: 'source' | 'base'): Record<string, unknown> {
  const id = which === 'source' ? p.source : p.base!;
  const v = which === 'source' ? p.lvm?.snap : p.lvm?.base;
  return v ? { ...id, vg: v.vg, lv: v.lv, pool: v.pool.lv, sizeBytes: v.sizeBytes, transactionId: v.transactionId } : { ...id };
}

function printHuman(p: SendPlan): void {
  const t = p.plan.totals;
  const lines = [
    `${p.mode === 'full' ? 'full send of' : 'incremental send of'} ${p.source.name}${p.base ? ` from base ${p.base.name}` : ''}`,
    `  volume size   ${formatBytes(t.volumeSizeBytes)} (${t.volumeSizeBytes} bytes)`,
    `  block size    ${formatBytes(t.blockSizeBytes)}`,
    `  to send       ${formatBytes(t.dataBytes)} (${t.dataBytes} bytes) in ${t.dataOps} data ops`,
    `  to unmap      ${formatBytes(t.unmapBytes)} (${t.unmapBytes} bytes) in ${t.unmapOps} unmap ops`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

export async function planCommand(names: string[], flags: PlanFlags): Promise<void> {
  const spec = sourceSpecOf(names, flags);
  const p = await planForCommand(spec, flags);
  try {
    if (flags.json) await printJson(p);
    else printHuman(p);
  } finally {
    await p.close();
  }
}
