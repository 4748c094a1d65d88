/**
 * The sender daemon's configuration file (JSON; relative paths from the file's
 * directory). Example (contrib/sender.example.json):
 *
 *   {
 *     "tls": { "ca": "ca.crt", "cert": "sender-daemon.crt", "key": "sender-daemon.key" },
 *     "receiverTls": { "ca": "ca.crt", "cert": "site-a.crt", "key": "site-a.key" },
 *     "stateDir": "/var/lib/thinship-sender",
 *     "maxActiveTransfers": 4,
 *     "keepFinishedSeconds": 86400,
 *     "identities": {
 *       "orchestrator": {
 *         "actions": ["plan", "start", "watch", "cancel"],
 *         "sources": { "lvm": [{ "vg": "vg0", "pool": "pool0", "lv": "snap-*" }], "offlineDirectories": ["/srv/pools"] },
 *         "destinations": [{ "receiver": "backup.example:7443", "target": "vg1/replica-*" }]
 *       }
 *     }
 *   }
 *
 * `tls` is what callers see (the daemon's server certificate and the CA its
 * callers' certificates come from); `receiverTls` is the daemon's own client
 * certificate towards receivers (never a caller's).
 */
import { readFile, realpath, stat } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { ThinshipError } from '../errors.js';
import type { TlsFiles } from '../rpc/tls.js';

export type SenderAction = 'plan' | 'start' | 'watch' | 'cancel';
const SENDER_ACTIONS: readonly SenderAction[] = ['plan', 'start', 'watch', 'cancel'];

export interface SourceRule { vg: string; pool?: string; lv: string }
export interface DestinationRule { receiver: string; target: string }

export interface SenderIdentityRules {
  actions: Set<SenderAction>;
  lvm: SourceRule[];
  /** Real paths of directories whose offline pools (metadata and data files) may be sent. */
  offlineDirectories: string[];
  destinations: DestinationRule[];
}

export interface SenderConfig {
  file: string;
  tls?: TlsFiles;
  receiverTls?: TlsFiles;
  /** Where transfers are remembered across restarts (its own: not a receiver's state directory). */
  stateDir: string;
  maxActiveTransfers: number;
  keepFinishedMs: number;
  identities: Map<string, SenderIdentityRules>;
}

const KEYS = ['tls', 'receiverTls', 'stateDir', 'maxActiveTransfers', 'keepFinishedSeconds', 'identities'];
const NAME = /^[A-Za-z0-9+_.-]+$/;
const PATTERN = /^[A-Za-z0-9+_.*?/-]+$/;

/** `*` any run of characters, `?` one (a glob over a whole name). */
export function globMatch(pattern: string, s: string): boolean {
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
  return re.test(s);
}

export async function loadSenderConfig(file: string): Promise<SenderConfig> {
  let v: unknown;
  try {
    v = JSON.parse(await readFile(file, 'utf8'));
  } catch (e) {
    throw new ThinshipError('USAGE', `cannot read the sender config ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
  return parseSenderConfig(v, file);
}

export async function parseSenderConfig(v: unknown, file: string): Promise<SenderConfig> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new ThinshipError('USAGE', `${file}: the config must be a JSON object`);
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!KEYS.includes(k)) throw new ThinshipError('USAGE', `${file}: unknown key "${k}" (known: ${KEYS.join(', ')})`);
  const base = dirname(resolve(file));
  const path = (p: unknown, what: string) => {
    if (typeof p !== 'string' || p === '') throw new ThinshipError('USAGE', `${file}: ${what} must be a path`);
    return isAbsolute(p) ? p : resolve(base, p);
  };
  const tlsOf = (t: unknown, key: string): TlsFiles | undefined => {
    if (t === undefined) return undefined;
    if (t === null || typeof t !== 'object') throw new ThinshipError('USAGE', `${file}: "${key}" must be an object with ca, cert and key`);
    const r = t as Record<string, unknown>;
    return { ca: path(r.ca, `${key}.ca`), cert: path(r.cert, `${key}.cert`), key: path(r.key, `${key}.key`) };
  };
  const uint = (k: string, dflt: number, max: number) => {
    const x = o[k];
    if (x === undefined) return dflt;
    if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 1 || x > max) throw new ThinshipError('USAGE', `${file}: "${k}" must be an integer from 1 to ${max}`);
    return x;
  };
  const ids = o.identities ?? {};
  if (ids === null || typeof ids !== 'object' || Array.isArray(ids)) throw new ThinshipError('USAGE', `${file}: "identities" must map an identity to its rules`);
  const identities = new Map<string, SenderIdentityRules>();
  for (const [id, raw] of Object.entries(ids as Record<string, unknown>)) {
    const at = `${file}: identities["${id}"]`;
    if (id === '' || raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new ThinshipError('USAGE', `${at} must be an object with "sources" and "destinations"`);
    const r = raw as Record<string, unknown>;
    for (const k of Object.keys(r)) if (!['actions', 'sources', 'destinations'].includes(k)) throw new ThinshipError('USAGE', `${at}: unknown key "${k}" (expected actions, sources, destinations)`);
    const actions = new Set<SenderAction>();
    for (const a of (r.actions ?? SENDER_ACTIONS) as unknown[]) {
      if (!(SENDER_ACTIONS as readonly unknown[]).includes(a)) throw new ThinshipError('USAGE', `${at}.actions: "${String(a)}" is not one of ${SENDER_ACTIONS.join(', ')}`);
      actions.add(a as SenderAction);
    }
    const src = (r.sources ?? {}) as Record<string, unknown>;
    if (src === null || typeof src !== 'object' || Array.isArray(src)) throw new ThinshipError('USAGE', `${at}.sources must be an object with "lvm" and/or "offlineDirectories"`);
    for (const k of Object.keys(src)) if (!['lvm', 'offlineDirectories'].includes(k)) throw new ThinshipError('USAGE', `${at}.sources: unknown key "${k}" (expected lvm, offlineDirectories)`);
    const lvm: SourceRule[] = [];
    for (const [i, l] of ((src.lvm ?? []) as unknown[]).entries()) {
      const x = l as Record<string, unknown>;
      if (x === null || typeof x !== 'object' || typeof x.vg !== 'string' || !NAME.test(x.vg)) throw new ThinshipError('USAGE', `${at}.sources.lvm[${i}]: "vg" must be a VG name`);
      if (x.pool !== undefined && (typeof x.pool !== 'string' || !NAME.test(x.pool))) throw new ThinshipError('USAGE', `${at}.sources.lvm[${i}]: "pool" must be an LV name`);
      const lv = x.lv ?? '*';
      if (typeof lv !== 'string' || !PATTERN.test(lv) || lv.includes('/')) throw new ThinshipError('USAGE', `${at}.sources.lvm[${i}]: "lv" must be an LV name pattern`);
      lvm.push({ vg: x.vg, pool: x.pool, lv });
    }
    const offlineDirectories: string[] = [];
    for (const d of (src.offlineDirectories ?? []) as unknown[]) {
      if (typeof d !== 'string' || !isAbsolute(d)) throw new ThinshipError('USAGE', `${at}.sources.offlineDirectories: ${JSON.stringify(d)} is not an absolute path`);
      const real = await realpath(d).catch((e: NodeJS.ErrnoException) => { throw new ThinshipError('USAGE', `${at}.sources.offlineDirectories: ${d} does not exist (${e.code})`); });
      if (!(await stat(real)).isDirectory()) throw new ThinshipError('USAGE', `${at}.sources.offlineDirectories: ${d} is not a directory`);
      offlineDirectories.push(real);
    }
    const destinations: DestinationRule[] = [];
    for (const [i, d] of ((r.destinations ?? []) as unknown[]).entries()) {
      const x = d as Record<string, unknown>;
      if (x === null || typeof x !== 'object' || typeof x.receiver !== 'string' || !/^(\[[^\]]+\]|[^:[\]]+):\d+$/.test(x.receiver)) throw new ThinshipError('USAGE', `${at}.destinations[${i}]: "receiver" must be HOST:PORT`);
      if (typeof x.target !== 'string' || x.target === '' || x.target.length > 4096) throw new ThinshipError('USAGE', `${at}.destinations[${i}]: "target" must be a target name pattern (vg/lv or an absolute path; * and ? allowed)`);
      destinations.push({ receiver: x.receiver, target: x.target });
    }
    identities.set(id, { actions, lvm, offlineDirectories, destinations });
  }
  return {
    file,
    tls: tlsOf(o.tls, 'tls'),
    receiverTls: tlsOf(o.receiverTls, 'receiverTls'),
    stateDir: o.stateDir === undefined ? '/var/lib/thinship-sender' : path(o.stateDir, 'stateDir'),
    maxActiveTransfers: uint('maxActiveTransfers', 4, 64),
    keepFinishedMs: uint('keepFinishedSeconds', 86400, 30 * 86400) * 1000,
    identities,
  };
}
