/**
 * LVM volume names and device-mapper names.
 * dm names double every hyphen inside a VG or LV name: test-vg/pool-1 ->
 * test--vg-pool--1. The pool's messages go to <vg>-<pool>-tpool (the
 * <vg>-<pool> device is a linear layer that answers EINVAL).
 */
import { ThinshipError } from '../errors.js';

export interface LvName {
  vg: string;
  lv: string;
}

// LVM's own rules for VG/LV names: letters, digits and + _ . -, not starting with '-'.
const LVM_NAME = /^[A-Za-z0-9+_.][A-Za-z0-9+_.-]*$/;

/** Parses `vg/lv` or `/dev/vg/lv`. */
export function parseLvName(name: string): LvName {
  const m = /^(?:\/dev\/)?([^/]+)\/([^/]+)$/.exec(name);
  if (!m || !LVM_NAME.test(m[1]!) || !LVM_NAME.test(m[2]!) || m[1] === '.' || m[1] === '..' || m[2] === '.' || m[2] === '..') {
    throw new ThinshipError('USAGE', `not an LVM volume name: "${name}" (expected vg/lv or /dev/vg/lv)`);
  }
  return { vg: m[1]!, lv: m[2]! };
}

export function looksLikeLvName(name: string): boolean {
  try {
    parseLvName(name);
    return true;
  } catch {
    return false;
  }
}

const dmEscape = (s: string) => s.replace(/-/g, '--');

/** `<vg>-<lv>` with hyphens doubled. */
function dmName(vg: string, lv: string): string {
  return `${dmEscape(vg)}-${dmEscape(lv)}`;
}

/** The thin-pool target that takes reserve/release messages. */
export function poolTpoolDmName(vg: string, pool: string): string {
  return `${dmName(vg, pool)}-tpool`;
}

/** The pool's metadata device, read by thin_dump -m / thin_delta -m. */
export function poolTmetaPath(vg: string, pool: string): string {
  return `/dev/mapper/${dmName(vg, pool)}_tmeta`;
}

/**
 * The LV a device-mapper name stands for (`test--vg-pool--1` → test-vg/pool-1);
 * undefined when it is not `<vg>-<lv>` with hyphens doubled (a `-tpool`, `_tmeta`
 * or other LVM layer has a suffix that the caller rules out by its dm uuid).
 */
export function lvOfDmName(name: string): LvName | undefined {
  const m = /^((?:[^-]|--)+)-((?:[^-]|--)+)$/.exec(name);
  if (!m) return undefined;
  const vg = m[1]!.replace(/--/g, '-');
  const lv = m[2]!.replace(/--/g, '-');
  return LVM_NAME.test(vg) && LVM_NAME.test(lv) ? { vg, lv } : undefined;
}

export function lvDevicePath(vg: string, lv: string): string {
  return `/dev/mapper/${dmName(vg, lv)}`;
}
