/**
 * Resolving a receive TARGET: an LVM LV (`vg/lv`), or a file or block-device
 * path. Paths are recognised by a leading `/` or `.`, or by existing as a file;
 * anything else of the form `vg/lv` is an LVM name.
 */
import { existsSync } from 'node:fs';
import { ThinshipError } from '../errors.js';
import { runTool } from '../exec/run.js';
import { classifyLvm } from '../exec/known-errors.js';
import { looksLikeLvName, parseLvName, lvDevicePath } from '../thin/names.js';
import { resolveThinVolume } from '../thin/lvm.js';

export type TargetSpec =
  | { kind: 'lvm'; vg: string; lv: string; name: string }
  | { kind: 'path'; path: string; name: string };

export function parseTargetName(name: string): TargetSpec {
  if (name.startsWith('/') || name.startsWith('.') || existsSync(name)) return { kind: 'path', path: name, name };
  if (looksLikeLvName(name)) { const n = parseLvName(name); return { kind: 'lvm', ...n, name }; }
  return { kind: 'path', path: name, name };
}

export interface ResolvedTarget {
  path: string;
  /** Undo what resolving did (deactivate an LV we activated). */
  release(): Promise<void>;
}

/** Finds the device of an LVM target, activating it if it is inactive. */
export async function resolveTarget(t: TargetSpec, opts: { signal?: AbortSignal } = {}): Promise<ResolvedTarget> {
  if (t.kind === 'path') return { path: t.path, release: async () => undefined };
  const v = await resolveThinVolume(`${t.vg}/${t.lv}`, opts).catch((e: unknown) => {
    if ((e as ThinshipError).code === 'NOT_THIN') throw new ThinshipError('NOT_THIN', `target ${t.name} is not a thin volume: thinship receives into thin LVs so that discards free pool space`);
    // `recv dir/file.img` for a file not made yet reads as vg/lv; say how to mean the file.
    if ((e as ThinshipError).code === 'NOT_FOUND' && existsSync(t.vg)) {
      throw new ThinshipError('NOT_FOUND', `${(e as Error).message}; target ${t.name} was read as an LVM name (vg/lv), but ${t.vg} exists here: to receive into a file, write ./${t.name}`, { cause: e });
    }
    throw e;
  });
  if (v.active) return { path: lvDevicePath(v.vg, v.lv), release: async () => undefined };
  await runTool('lvchange', ['-ay', '-K', `${v.vg}/${v.lv}`], { ...opts, classify: classifyLvm });
  return { path: lvDevicePath(v.vg, v.lv), release: async () => { await runTool('lvchange', ['-an', `${v.vg}/${v.lv}`], { classify: classifyLvm }); } };
}
