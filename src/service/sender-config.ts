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
 *     "metricsListen": "127.0.0.1:9465",
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
import { realpath, stat } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { ThinshipError } from '../errors.js';
import type { TlsFiles } from '../rpc/tls.js';
import { ConfigObject, HOST_PORT, checkKeys, configUint, parseIdentities, parseLvmRules, readConfigJson, type LvmNameRule } from '../rpc/config-file.js';

export type SenderAction = 'plan' | 'start' | 'watch' | 'cancel';
const SENDER_ACTIONS: readonly SenderAction[] = ['plan', 'start', 'watch', 'cancel'];

export type SourceRule = LvmNameRule;
export interface DestinationRule {
  receiver: string;
  target: string;
}

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
  /** HOST:PORT of the plain-HTTP /metrics, /healthz, /readyz listener (ops/ops-listener.ts); unset: none. */
  metricsListen?: string;
  identities: Map<string, SenderIdentityRules>;
}

const KEYS = ['tls', 'receiverTls', 'stateDir', 'maxActiveTransfers', 'keepFinishedSeconds', 'metricsListen', 'identities'];

export async function loadSenderConfig(file: string): Promise<SenderConfig> {
  return parseSenderConfig(await readConfigJson(file, 'sender'), file);
}

async function parseSenderIdentity(r: Record<string, unknown>, at: string): Promise<SenderIdentityRules> {
  checkKeys(r, at, ['actions', 'sources', 'destinations']);
  const actions = new Set<SenderAction>();
  const actionList = r.actions ?? SENDER_ACTIONS;
  if (!Array.isArray(actionList)) throw new ThinshipError('USAGE', `${at}.actions must be a list of ${SENDER_ACTIONS.join(', ')}`);
  for (const a of actionList as unknown[]) {
    if (!(SENDER_ACTIONS as readonly unknown[]).includes(a))
      throw new ThinshipError('USAGE', `${at}.actions: "${String(a)}" is not one of ${SENDER_ACTIONS.join(', ')}`);
    actions.add(a as SenderAction);
  }
  const src = (r.sources ?? {}) as Record<string, unknown>;
  if (src === null || typeof src !== 'object' || Array.isArray(src))
    throw new ThinshipError('USAGE', `${at}.sources must be an object with "lvm" and/or "offlineDirectories"`);
  checkKeys(src, `${at}.sources`, ['lvm', 'offlineDirectories']);
  const lvm = parseLvmRules(src.lvm, `${at}.sources.lvm`);
  const offlineDirectories: string[] = [];
  const dirs = src.offlineDirectories ?? [];
  if (!Array.isArray(dirs)) throw new ThinshipError('USAGE', `${at}.sources.offlineDirectories must be a list of absolute paths`);
  for (const d of dirs as unknown[]) {
    if (typeof d !== 'string' || !isAbsolute(d))
      throw new ThinshipError('USAGE', `${at}.sources.offlineDirectories: ${JSON.stringify(d)} is not an absolute path`);
    const real = await realpath(d).catch((e: NodeJS.ErrnoException) => {
      throw new ThinshipError('USAGE', `${at}.sources.offlineDirectories: ${d} does not exist (${e.code})`);
    });
    if (!(await stat(real)).isDirectory()) throw new ThinshipError('USAGE', `${at}.sources.offlineDirectories: ${d} is not a directory`);
    offlineDirectories.push(real);
  }
  const destinations: DestinationRule[] = [];
  const dests = r.destinations ?? [];
  if (!Array.isArray(dests)) throw new ThinshipError('USAGE', `${at}.destinations must be a list of { receiver, target }`);
  for (const [i, d] of (dests as unknown[]).entries()) {
    const x = d as Record<string, unknown>;
    if (x === null || typeof x !== 'object' || typeof x.receiver !== 'string' || !HOST_PORT.test(x.receiver))
      throw new ThinshipError('USAGE', `${at}.destinations[${i}]: "receiver" must be HOST:PORT`);
    if (typeof x.target !== 'string' || x.target === '' || x.target.length > 4096)
      throw new ThinshipError('USAGE', `${at}.destinations[${i}]: "target" must be a target name pattern (vg/lv or an absolute path; * and ? allowed)`);
    destinations.push({ receiver: x.receiver, target: x.target });
  }
  return { actions, lvm, offlineDirectories, destinations };
}

export async function parseSenderConfig(v: unknown, file: string): Promise<SenderConfig> {
  const c = new ConfigObject(v, file, KEYS);
  return {
    file,
    tls: c.tls('tls'),
    receiverTls: c.tls('receiverTls'),
    stateDir: c.v.stateDir === undefined ? '/var/lib/thinship-sender' : c.path(c.v.stateDir, 'stateDir'),
    maxActiveTransfers: c.uint('maxActiveTransfers', 4, 1, 64),
    keepFinishedMs: configUint(c.v.keepFinishedSeconds, `${file}: "keepFinishedSeconds"`, 86400, 1, 30 * 86400) * 1000,
    metricsListen: c.hostPort('metricsListen'),
    identities: await parseIdentities(c.v.identities ?? {}, file, '"sources" and "destinations"', parseSenderIdentity),
  };
}
