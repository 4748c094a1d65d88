/**
 * What the two daemons' JSON config files (the receiver's, rpc/server-config.ts;
 * the sender daemon's, service/sender-config.ts) parse the same way: reading
 * the file, the known keys, paths relative to the file's directory, a TLS
 * section, bounded integers, HOST:PORT values and LVM rules of an identity.
 * One place, so that both files say the same thing about the same mistake.
 */
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { ThinshipError } from '../errors.js';
import type { TlsFiles } from './tls.js';

/** HOST:PORT or [IPv6]:PORT (the port checked by tls.ts parseHostPort when used). */
export const HOST_PORT = /^(\[[^\]]+\]|[^:[\]]+):\d+$/;

/** Reads a config file as a JSON object; `what` names it in errors ("receiver", "sender"). */
export async function readConfigJson(file: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new ThinshipError('USAGE', `cannot read the ${what} config ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new ThinshipError('USAGE', `${what} config ${file} is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
}

/** The top-level object of a config file, its keys checked against `keys`; its accessors name the file in every error. */
export class ConfigObject {
  readonly v: Record<string, unknown>;
  private readonly base: string;

  constructor(
    v: unknown,
    readonly file: string,
    keys: readonly string[],
  ) {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new ThinshipError('USAGE', `${file}: the config must be a JSON object`);
    this.v = v as Record<string, unknown>;
    for (const k of Object.keys(this.v)) if (!keys.includes(k)) throw new ThinshipError('USAGE', `${file}: unknown key "${k}" (known: ${keys.join(', ')})`);
    this.base = dirname(resolve(file));
  }

  /** A path value, relative ones taken from the config file's directory. */
  path(p: unknown, what: string): string {
    if (typeof p !== 'string' || p === '') throw new ThinshipError('USAGE', `${this.file}: ${what} must be a path`);
    return isAbsolute(p) ? p : resolve(this.base, p);
  }

  /** A TLS section { ca, cert, key } under `key`, or undefined if absent. */
  tls(key: string): TlsFiles | undefined {
    const t = this.v[key];
    if (t === undefined) return undefined;
    if (t === null || typeof t !== 'object' || Array.isArray(t))
      throw new ThinshipError('USAGE', `${this.file}: "${key}" must be an object with ca, cert and key`);
    const r = t as Record<string, unknown>;
    for (const k of Object.keys(r))
      if (!['ca', 'cert', 'key'].includes(k)) throw new ThinshipError('USAGE', `${this.file}: "${key}": unknown key "${k}" (expected ca, cert, key)`);
    return { ca: this.path(r.ca, `${key}.ca`), cert: this.path(r.cert, `${key}.cert`), key: this.path(r.key, `${key}.key`) };
  }

  /** An integer from min to max, or `dflt` if absent. */
  uint(k: string, dflt: number, min = 1, max = Number.MAX_SAFE_INTEGER): number {
    return configUint(this.v[k], `${this.file}: "${k}"`, dflt, min, max);
  }

  /** A HOST:PORT string, or undefined if absent. */
  hostPort(k: string): string | undefined {
    const x = this.v[k];
    if (x === undefined) return undefined;
    if (typeof x !== 'string' || !HOST_PORT.test(x)) throw new ThinshipError('USAGE', `${this.file}: "${k}" must be HOST:PORT`);
    return x;
  }

  bool(k: string, dflt: boolean): boolean {
    const x = this.v[k];
    if (x === undefined) return dflt;
    if (typeof x !== 'boolean') throw new ThinshipError('USAGE', `${this.file}: "${k}" must be true or false`);
    return x;
  }
}

/** An integer config value from min to max (`at` names it in the error), `dflt` if undefined. */
export function configUint(x: unknown, at: string, dflt: number, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  if (x === undefined) return dflt;
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < min || x > max) {
    throw new ThinshipError('USAGE', max === Number.MAX_SAFE_INTEGER ? `${at} must be an integer >= ${min}` : `${at} must be an integer from ${min} to ${max}`);
  }
  return x;
}

/** The "identities" object of a config: each identity's rules, parsed by `parse` (`at` names the identity in errors; `what` lists the keys a rule object has). */
export async function parseIdentities<R>(
  v: unknown,
  file: string,
  what: string,
  parse: (raw: Record<string, unknown>, at: string) => Promise<R> | R,
): Promise<Map<string, R>> {
  if (v === null || typeof v !== 'object' || Array.isArray(v))
    throw new ThinshipError('USAGE', `${file}: "identities" must be an object mapping an identity to its rules`);
  const out = new Map<string, R>();
  for (const [id, raw] of Object.entries(v as Record<string, unknown>)) {
    const at = `${file}: identities["${id}"]`;
    if (id === '' || raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new ThinshipError('USAGE', `${at} must be an object with ${what}`);
    out.set(id, await parse(raw as Record<string, unknown>, at));
  }
  return out;
}

/** Checks an identity's keys against the known ones. */
export function checkKeys(r: Record<string, unknown>, at: string, keys: readonly string[]): void {
  for (const k of Object.keys(r)) if (!keys.includes(k)) throw new ThinshipError('USAGE', `${at}: unknown key "${k}" (expected ${keys.join(', ')})`);
}

export interface LvmNameRule {
  vg: string;
  /** Only LVs in this thin pool. */
  pool?: string;
  /** LV name pattern: `*` any run of characters, `?` one character. Default `*`. */
  lv: string;
}

const LVM_NAME = /^[A-Za-z0-9+_.][A-Za-z0-9+_.-]*$/;

export function validLvmName(s: string): boolean {
  return LVM_NAME.test(s) && s !== '.' && s !== '..' && s.length <= 127;
}

/** A list of { vg, pool?, lv } rules (`at` names the list: `identities["a"].lvm`). */
export function parseLvmRules(list: unknown, at: string): LvmNameRule[] {
  if (list === undefined) return [];
  if (!Array.isArray(list)) throw new ThinshipError('USAGE', `${at} must be a list of { vg, pool, lv } rules`);
  return list.map((l: unknown, i) => {
    const o = l as Record<string, unknown>;
    if (o === null || typeof o !== 'object' || typeof o.vg !== 'string' || !validLvmName(o.vg))
      throw new ThinshipError('USAGE', `${at}[${i}]: "vg" must be a VG name`);
    if (o.pool !== undefined && (typeof o.pool !== 'string' || !validLvmName(o.pool)))
      throw new ThinshipError('USAGE', `${at}[${i}]: "pool" must be an LV name`);
    const lv = o.lv ?? '*';
    if (typeof lv !== 'string' || !/^[A-Za-z0-9+_.*?-]+$/.test(lv))
      throw new ThinshipError('USAGE', `${at}[${i}]: "lv" must be an LV name pattern (letters, digits, + _ . -, and * ?)`);
    return { vg: o.vg, pool: o.pool, lv };
  });
}

/** `*` any run of characters, `?` one (a glob over a whole name). */
export function globMatch(pattern: string, s: string): boolean {
  const re = new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
  );
  return re.test(s);
}
