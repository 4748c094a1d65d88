/**
 * `thinship certs --out DIR`: a CA, a server certificate and client
 * certificates for a first setup or a test (openssl CLI). Prints what it made
 * and how to use it.
 */
import { resolve } from 'node:path';
import { ThinshipError } from '../../errors.js';
import { makeCertificates } from '../../rpc/certs.js';

export interface CertsFlags { out: string; serverName?: string[]; client?: string[]; days?: string }

export async function certsCommand(flags: CertsFlags): Promise<void> {
  const days = flags.days === undefined ? undefined : Number(flags.days);
  if (days !== undefined && (!Number.isInteger(days) || days < 1)) throw new ThinshipError('USAGE', `--days "${flags.days}" must be a positive whole number`);
  const dir = resolve(flags.out);
  const s = await makeCertificates({ dir, serverNames: flags.serverName, clientNames: flags.client, days });
  const out = (l: string) => process.stdout.write(l + '\n');
  out(`CA:      ${s.ca} (key ${s.caKey}: keep it offline; run certs again with this --out to issue more)`);
  out(`server:  ${s.server.cert}, ${s.server.key}`);
  for (const c of s.clients) out(`client:  ${c.cert}, ${c.key} (identity "${c.name}")`);
  out('');
  out('receiver config (thinship serve --listen 0.0.0.0:7443 --config receiver.json):');
  out(JSON.stringify({
    tls: { ca: s.ca, cert: s.server.cert, key: s.server.key },
    stateDir: '/var/lib/thinship',
    identities: Object.fromEntries(s.clients.map((c) => [c.name, { lvm: [{ vg: 'vg0', lv: '*' }], directories: ['/srv/images'] }])),
  }, null, 2));
  out('');
  out(`sender: thinship send [BASE] SNAP --to HOST:7443 --target vg0/NAME --tls-dir ${dir}`);
}
