/**
 * `thinship certs`: a CA plus server and client certificates for a first
 * setup or a test, made with the openssl CLI (through exec/run.ts). Keys are
 * EC P-256 (fast handshakes); files are PEM, keys mode 0600.
 *
 * The server certificate names every --server-name as a DNS or IP SAN
 * (default: localhost, 127.0.0.1, ::1 and this host's name); each client
 * certificate has its name as subject CN and as a DNS SAN: that name is the
 * identity the receiver's config maps to allowed targets.
 */
import { chmod, mkdir, mkdtemp, rm, writeFile, access } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ThinshipError } from '../errors.js';
import { runTool } from '../exec/run.js';

export interface IssueOptions {
  caCert: string;
  caKey: string;
  /** Output files. */
  cert: string;
  key: string;
  commonName: string;
  /** DNS names, IP addresses, or URIs (containing ':' and '/'). */
  altNames: string[];
  usage: 'server' | 'client';
  days?: number;
  /** Explicit validity, as openssl wants it: YYYYMMDDHHMMSSZ (for tests of expired certificates). */
  notBefore?: string;
  notAfter?: string;
}

const NAME_OK = /^[A-Za-z0-9 ._:@/-]{1,200}$/;

function checkName(n: string, what: string): void {
  if (!NAME_OK.test(n)) throw new ThinshipError('USAGE', `${what} "${n}" may contain only letters, digits, space and . _ : @ / -`);
}

function sanOf(n: string): string {
  if (isIP(n)) return `IP:${n}`;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(n)) return `URI:${n}`;
  return `DNS:${n}`;
}

async function newKey(path: string): Promise<void> {
  // Made 0600 before openssl writes into it: the key is never readable by others, even briefly.
  await writeFile(path, '', { mode: 0o600 });
  await chmod(path, 0o600);
  await runTool('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path]);
}

export async function makeCa(dir: string, commonName = 'thinship CA', days = 3650): Promise<{ cert: string; key: string }> {
  checkName(commonName, 'CA name');
  const cert = join(dir, 'ca.crt');
  const key = join(dir, 'ca.key');
  await newKey(key);
  await runTool('openssl', [
    'req',
    '-x509',
    '-new',
    '-key',
    key,
    '-subj',
    `/CN=${commonName}`,
    '-days',
    String(days),
    '-sha256',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
    '-out',
    cert,
  ]);
  return { cert, key };
}

/** Issues one certificate signed by the CA (openssl ca, which also takes explicit dates). */
export async function issueCertificate(o: IssueOptions): Promise<void> {
  checkName(o.commonName, 'certificate name');
  for (const n of o.altNames) checkName(n, 'alternative name');
  const work = await mkdtemp(join(tmpdir(), 'thinship-certs-'));
  try {
    const cnf = join(work, 'ca.cnf');
    await writeFile(join(work, 'index.txt'), '');
    await writeFile(join(work, 'serial'), randomBytes(8).toString('hex') + '\n');
    const sans = o.altNames.map(sanOf).join(',');
    await writeFile(
      cnf,
      [
        '[ ca ]',
        'default_ca = ca_default',
        '[ ca_default ]',
        `database = ${join(work, 'index.txt')}`,
        `new_certs_dir = ${work}`,
        `serial = ${join(work, 'serial')}`,
        'default_md = sha256',
        'policy = policy_any',
        'unique_subject = no',
        'copy_extensions = none',
        '[ policy_any ]',
        'commonName = supplied',
        '[ leaf ]',
        'basicConstraints = critical,CA:FALSE',
        'keyUsage = critical,digitalSignature,keyEncipherment',
        `extendedKeyUsage = ${o.usage === 'server' ? 'serverAuth' : 'clientAuth'}`,
        ...(sans ? [`subjectAltName = ${sans}`] : []),
        '',
      ].join('\n'),
    );
    await newKey(o.key);
    const csr = join(work, 'leaf.csr');
    await runTool('openssl', ['req', '-new', '-key', o.key, '-subj', `/CN=${o.commonName}`, '-out', csr]);
    const validity =
      o.notBefore || o.notAfter
        ? [...(o.notBefore ? ['-startdate', o.notBefore] : []), ...(o.notAfter ? ['-enddate', o.notAfter] : ['-days', String(o.days ?? 825)])]
        : ['-days', String(o.days ?? 825)];
    await runTool('openssl', [
      'ca',
      '-batch',
      '-config',
      cnf,
      '-cert',
      o.caCert,
      '-keyfile',
      o.caKey,
      '-in',
      csr,
      '-out',
      o.cert,
      '-extensions',
      'leaf',
      '-notext',
      ...validity,
    ]);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export interface CertSetOptions {
  dir: string;
  /** Server names (DNS or IP SANs). Default: localhost, 127.0.0.1, ::1 and this host's name. */
  serverNames?: string[];
  /** Client identities; the first goes to client.crt/client.key, others to client-<name>.crt/.key. */
  clientNames?: string[];
  days?: number;
  caName?: string;
  /** Replace files that exist (a new CA: certificates issued by the old one stop working). */
  force?: boolean;
}

export interface CertSet {
  ca: string;
  caKey: string;
  server: { cert: string; key: string };
  clients: { name: string; cert: string; key: string }[];
}

const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );

/** A client name as a file name: nothing that leaves the directory. */
const fileBaseOf = (name: string) => name.replace(/[^A-Za-z0-9._-]/g, '_');

/** Refuses to overwrite: a second run would replace the CA and lose the keys issued before. */
async function refuseExisting(dir: string, files: string[], hint: string): Promise<void> {
  const there: string[] = [];
  for (const f of files) if (await exists(f)) there.push(f);
  if (there.length > 0)
    throw new ThinshipError('USAGE', `${dir} already holds ${there.join(', ')}: not overwritten (${hint})`, { details: { existing: there } });
}

/** Makes a CA, then server and client certificates, in `dir`. Existing files there are refused unless `force`. */
export async function makeCertificates(o: CertSetOptions): Promise<CertSet> {
  const caPath = join(o.dir, 'ca.crt');
  const caKeyPath = join(o.dir, 'ca.key');
  const serverNames = o.serverNames?.length ? o.serverNames : [...new Set(['localhost', '127.0.0.1', '::1', hostname()])];
  const server = { cert: join(o.dir, 'server.crt'), key: join(o.dir, 'server.key') };
  const clients: CertSet['clients'] = (o.clientNames?.length ? o.clientNames : ['thinship-sender']).map((name, i) => {
    const base = i === 0 ? 'client' : `client-${fileBaseOf(name)}`;
    return { name, cert: join(o.dir, `${base}.crt`), key: join(o.dir, `${base}.key`) };
  });
  if (!o.force) {
    await refuseExisting(
      o.dir,
      [caPath, caKeyPath, server.cert, server.key, ...clients.flatMap((c) => [c.cert, c.key])],
      `--force replaces them all with a new CA; --add-client --client NAME adds a client certificate to this CA`,
    );
  }
  await mkdir(o.dir, { recursive: true, mode: 0o700 });
  const ca = await makeCa(o.dir, o.caName);
  await issueCertificate({ caCert: ca.cert, caKey: ca.key, ...server, commonName: serverNames[0]!, altNames: serverNames, usage: 'server', days: o.days });
  for (const c of clients) {
    await issueCertificate({ caCert: ca.cert, caKey: ca.key, cert: c.cert, key: c.key, commonName: c.name, altNames: [c.name], usage: 'client', days: o.days });
  }
  return { ca: ca.cert, caKey: ca.key, server, clients };
}

/** Names whose files would be the CA's or the server's own. */
const RESERVED_BASES = new Set(['ca', 'server']);

/**
 * Adds client certificates to the CA already in `dir` (DIR/ca.crt + ca.key):
 * DIR/<name>.crt and DIR/<name>.key for each name. Existing ones are refused unless `force`.
 */
export async function addClientCertificates(o: {
  dir: string;
  clientNames: string[];
  days?: number;
  force?: boolean;
}): Promise<{ ca: string; clients: CertSet['clients'] }> {
  if (o.clientNames.length === 0) throw new ThinshipError('USAGE', '--add-client needs --client NAME (the identity of the new client)');
  const ca = join(o.dir, 'ca.crt');
  const caKey = join(o.dir, 'ca.key');
  const missing = [];
  for (const f of [ca, caKey]) if (!(await exists(f))) missing.push(f);
  if (missing.length > 0)
    throw new ThinshipError(
      'NOT_FOUND',
      `--add-client needs the CA in ${o.dir}: ${missing.join(' and ')} not found (make one first: thinship certs --out ${o.dir})`,
    );
  const clients = o.clientNames.map((name) => {
    checkName(name, 'client name');
    const base = fileBaseOf(name);
    if (RESERVED_BASES.has(base))
      throw new ThinshipError(
        'USAGE',
        `client name "${name}" would write ${base}.crt, the ${base === 'ca' ? "CA's" : "server's"} own file: choose another name`,
      );
    return { name, cert: join(o.dir, `${base}.crt`), key: join(o.dir, `${base}.key`) };
  });
  if (new Set(clients.map((c) => c.cert)).size !== clients.length)
    throw new ThinshipError('USAGE', `client names ${o.clientNames.join(', ')} would share a file name`);
  if (!o.force)
    await refuseExisting(
      o.dir,
      clients.flatMap((c) => [c.cert, c.key]),
      '--force replaces them',
    );
  for (const c of clients) {
    await issueCertificate({ caCert: ca, caKey, cert: c.cert, key: c.key, commonName: c.name, altNames: [c.name], usage: 'client', days: o.days });
  }
  return { ca, clients };
}
