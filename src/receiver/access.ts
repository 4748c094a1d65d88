/**
 * Which targets a client identity may write, and resolving a target name from
 * the wire into something safe to open.
 *
 * A name from the wire never reaches the filesystem unless it falls under
 * what the identity allows:
 * - LVM targets are `vg/lv` names matched against the identity's VG (and
 *   optionally thin pool) and LV name patterns; the device path is built by
 *   us, not taken from the wire.
 * - File targets are absolute, normalised paths (no `.` or `..` segments, no
 *   `//`) lexically under an allowed directory, and their real path (symlinks
 *   resolved) must still be inside that directory's real path. A missing file
 *   is allowed if its parent's real path is inside.
 * - Block devices outside directories (a loop device, a disk) must be listed
 *   one by one under `devices`, and are compared by real path; the device
 *   number the listed path had when the rules were read is kept.
 * Everything is decided before anything is opened; PERMISSION_DENIED opens
 * nothing. The decision is then enforced at the open (target.ts), so that
 * nothing changed in between can redirect it: a file is opened beneath the
 * allowed directory's descriptor with no symlink in any component (openat2
 * RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), must be a regular file with exactly
 * one link, and a device must still be the device the rules named.
 */
import { realpath, lstat, stat } from 'node:fs/promises';
import { posix } from 'node:path';
import { ThinshipError } from '../errors.js';
import { thinLvOfDevice } from '../device/block-info.js';
import { checkKeys, configUint, globMatch, parseIdentities, parseLvmRules, validLvmName, type LvmNameRule } from '../rpc/config-file.js';

/** vg, pool (only LVs in this thin pool, checked against lvs before opening) and an LV name pattern. */
export type LvmRule = LvmNameRule;

export interface IdentityRules {
  lvm: LvmRule[];
  /** Directories (absolute) under which file targets may be written, with their real paths. */
  directories: { path: string; real: string }[];
  /** Block devices (absolute paths) that may be written, with their real paths and device numbers (st_rdev). */
  devices: { path: string; real: string; rdev: bigint }[];
  /** What all of this identity's running transfers together may receive, in wire bytes per second (DATA payloads as sent); unset: no limit. */
  maxBytesPerSecond?: number;
}

export interface AccessPolicy {
  /** Keyed by identity: a certificate's subject CN or any of its SAN values, or "anonymous" with --insecure. */
  identities: Map<string, IdentityRules>;
}

/** Who is calling: the names its certificate carries (CN first, then SANs). */
export interface ClientIdentity {
  /** The name the access rules matched, or the CN, for logs and ownership of transfers. */
  name: string;
  names: string[];
}

export type AllowedTarget =
  | { kind: 'lvm'; name: string; vg: string; lv: string; pool?: string; key: string }
  /** A file under an allowed directory: opened as `rel` beneath the directory's real path `dir`. */
  | { kind: 'path'; name: string; realPath: string; exists: boolean; key: string; dir: string; rel: string }
  /** A listed block device: realPath must still be the device numbered `rdev` when it is opened. */
  | { kind: 'device'; name: string; realPath: string; key: string; rdev: bigint };

const MAX_TARGET_NAME = 4096;

/** An LVM target's registry key (AllowedTarget.key, kept in checkpoints): the same for every name of the LV. */
function lvmKey(vg: string, lv: string): string {
  return `lvm:${vg}/${lv}`;
}

/** The LV an LVM target's key names; undefined for a file or device key. */
export function lvmOfKey(key: string): { vg: string; lv: string } | undefined {
  const m = /^lvm:([^/]+)\/([^/]+)$/.exec(key);
  return m ? { vg: m[1]!, lv: m[2]! } : undefined;
}

function checkAbsoluteNormal(p: string, what: string): void {
  if (
    !p.startsWith('/') ||
    p.includes('\0') ||
    posix.normalize(p) !== p ||
    p.split('/').some((s) => s === '.' || s === '..') ||
    (p.length > 1 && p.endsWith('/'))
  ) {
    throw new ThinshipError('USAGE', `${what} "${p}" must be an absolute, normalised path (no "." or ".." segments, no "//", no trailing "/")`);
  }
}

/** Lexically strictly below dir: `/x/allowed-evil/f` is not inside `/x/allowed`. */
export function isInside(child: string, dir: string): boolean {
  return dir === '/' ? child.startsWith('/') && child !== '/' : child.startsWith(dir + '/');
}

/** The path of child relative to dir (child inside dir). */
function below(child: string, dir: string): string {
  return dir === '/' ? child.slice(1) : child.slice(dir.length + 1);
}

/** The smallest per-identity limit: below one chunk per second a transfer's records would stall (and trip the progress check). */
const MIN_IDENTITY_BYTES_PER_SECOND = 65536;

/** Parses the "identities" object of the receiver config (see docs in the README). */
export async function parseAccessRules(v: unknown, where: string): Promise<AccessPolicy> {
  const identities = await parseIdentities(v, where, '"lvm", "directories" and/or "devices"', async (r, at) => {
    checkKeys(r, at, ['lvm', 'directories', 'devices', 'maxBytesPerSecond']);
    const rules: IdentityRules = { lvm: parseLvmRules(r.lvm, `${at}.lvm`), directories: [], devices: [] };
    if (r.maxBytesPerSecond !== undefined)
      rules.maxBytesPerSecond = configUint(r.maxBytesPerSecond, `${at}.maxBytesPerSecond`, 0, MIN_IDENTITY_BYTES_PER_SECOND);
    for (const key of ['directories', 'devices'] as const) {
      const list = r[key] ?? [];
      if (!Array.isArray(list)) throw new ThinshipError('USAGE', `${at}.${key} must be a list of absolute paths`);
      for (const p of list) {
        if (typeof p !== 'string') throw new ThinshipError('USAGE', `${at}.${key}: ${JSON.stringify(p)} is not a path`);
        checkAbsoluteNormal(p, `${at}.${key} entry`);
        let real: string;
        let st;
        try {
          real = await realpath(p);
          st = await stat(real, { bigint: true });
        } catch (e) {
          throw new ThinshipError('USAGE', `${at}.${key}: ${p} does not exist (${(e as NodeJS.ErrnoException).code})`, { cause: e });
        }
        if (key === 'directories') {
          if (!st.isDirectory()) throw new ThinshipError('USAGE', `${at}.directories: ${p} is not a directory`);
          rules.directories.push({ path: p, real });
        } else {
          if (!st.isBlockDevice()) throw new ThinshipError('USAGE', `${at}.devices: ${p} is not a block device (files go under "directories")`);
          rules.devices.push({ path: p, real, rdev: st.rdev });
        }
      }
    }
    return rules;
  });
  return { identities };
}

/** The rules that apply to a client: those of every name it carries (union). */
export function rulesFor(policy: AccessPolicy, who: ClientIdentity): IdentityRules[] {
  return who.names.flatMap((n) => {
    const r = policy.identities.get(n);
    return r ? [r] : [];
  });
}

/** The identity name to record as owner: the first of the client's names that has rules, else its first name. */
export function ownerName(policy: { identities: ReadonlyMap<string, unknown> }, names: string[]): string {
  return names.find((n) => policy.identities.has(n)) ?? names[0] ?? 'unknown';
}

function denied(who: ClientIdentity, target: string, why: string): ThinshipError {
  return new ThinshipError('PERMISSION_DENIED', `identity "${who.name}" may not write target "${target.slice(0, 300)}": ${why}`, {
    details: { identity: who.name, target: target.slice(0, 300) },
  });
}

/**
 * Decides whether `who` may write `target`, and resolves it. Throws
 * PERMISSION_DENIED (nothing opened) or BAD_STREAM (not a target name at all).
 */
export async function authorizeTarget(policy: AccessPolicy, who: ClientIdentity, target: string): Promise<AllowedTarget> {
  if (typeof target !== 'string' || target.length === 0 || target.length > MAX_TARGET_NAME || target.includes('\0')) {
    throw new ThinshipError('BAD_STREAM', `target name must be 1 to ${MAX_TARGET_NAME} characters without NUL`);
  }
  const rules = rulesFor(policy, who);
  if (rules.length === 0) throw denied(who, target, 'no rules for this identity in the receiver configuration');

  if (!target.startsWith('/')) {
    const m = /^([^/]+)\/([^/]+)$/.exec(target);
    if (!m || !validLvmName(m[1]!) || !validLvmName(m[2]!)) throw denied(who, target, 'not an LVM name vg/lv nor an absolute path');
    const [vg, lv] = [m[1]!, m[2]!];
    const rule = rules.flatMap((r) => r.lvm).find((l) => l.vg === vg && globMatch(l.lv, lv));
    if (!rule) throw denied(who, target, `no lvm rule allows VG ${vg} with LV name ${lv}`);
    return { kind: 'lvm', name: target, vg, lv, pool: rule.pool, key: lvmKey(vg, lv) };
  }

  try {
    checkAbsoluteNormal(target, 'target');
  } catch {
    throw denied(who, target, 'a path target must be absolute and normalised (no "." or ".." segments, no "//")');
  }
  // Exact devices first (compared by real path, so /dev/disk/by-id links work).
  const devices = rules.flatMap((r) => r.devices);
  const dirs = rules.flatMap((r) => r.directories);
  let real: string | undefined;
  try {
    real = await realpath(target);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') throw denied(who, target, `it cannot be resolved (${code})`);
  }
  if (real !== undefined) {
    // A thin LV named by its device path takes the LVM route (staging LV, record in its tags) like vg/lv, when an
    // lvm rule allows the LV or the device is listed: it is one target whatever it is called (same key).
    const thin = await thinLvOfDevice(real);
    if (thin) {
      const rule = rules.flatMap((r) => r.lvm).find((l) => l.vg === thin.vg && globMatch(l.lv, thin.lv));
      if (rule || devices.some((d) => d.real === real))
        return { kind: 'lvm', name: target, vg: thin.vg, lv: thin.lv, pool: rule?.pool, key: lvmKey(thin.vg, thin.lv) };
    }
    const dev = devices.find((d) => d.real === real);
    if (dev) return { kind: 'device', name: target, realPath: real, key: real, rdev: dev.rdev };
    const dir = dirs.find((d) => isInside(target, d.path) || isInside(target, d.real));
    if (!dir) throw denied(who, target, 'it is not under an allowed directory');
    if (!isInside(real, dir.real)) throw denied(who, target, `it resolves to ${real}, outside ${dir.path}`);
    return { kind: 'path', name: target, realPath: real, exists: true, key: real, dir: dir.real, rel: below(real, dir.real) };
  }
  // Does not exist: it will be created, so its parent must resolve inside an allowed directory.
  const dir = dirs.find((d) => isInside(target, d.path) || isInside(target, d.real));
  if (!dir) throw denied(who, target, 'it is not under an allowed directory');
  const parent = posix.dirname(target);
  let realParent: string;
  try {
    realParent = await realpath(parent);
  } catch (e) {
    throw denied(who, target, `its directory ${parent} cannot be resolved (${(e as NodeJS.ErrnoException).code})`);
  }
  if (realParent !== dir.real && !isInside(realParent, dir.real)) throw denied(who, target, `its directory resolves to ${realParent}, outside ${dir.path}`);
  const realPath = posix.join(realParent, posix.basename(target));
  // A dangling symlink at the name: refused here with a clear reason (the open would refuse it too).
  const st = await lstat(realPath).catch(() => undefined);
  if (st?.isSymbolicLink()) throw denied(who, target, 'it is a dangling symbolic link');
  return { kind: 'path', name: target, realPath, exists: false, key: realPath, dir: dir.real, rel: below(realPath, dir.real) };
}
