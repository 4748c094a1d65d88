import type { Plan } from '../../src/thin/plan.js';
import type { PlanOp } from '../../src/thin/model.js';

/** Every op of a plan, in order; `close`: close the plan after (its spool files go). */
export async function allOps(plan: Plan, o: { close?: boolean } = {}): Promise<PlanOp[]> {
  const ops: PlanOp[] = [];
  for await (const b of plan.batches()) ops.push(...b);
  if (o.close === true) await plan.close();
  return ops;
}
