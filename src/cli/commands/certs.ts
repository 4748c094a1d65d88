/**
 * `thinship certs --out DIR`: a CA, a server certificate and client
 * certificates for a first setup or a test (openssl CLI), or with --add-client
 * one more client certificate from the CA already in DIR. Prints what it made
 * and how to use it. Existing files are never overwritten without --force.
 */
import { resolve } from 'node:path';
import { ThinshipError } from '../../errors.js';
import { addClientCertificates, makeCertificates } from '../../rpc/certs.js';

export interface CertsFlags {
  out: string;
  serverName?: string[];
  client?: string[];
  days?: string;
  force?: boolean;
  addClient?: boolean;
}

const identityConfig = () => ({ lvm: [{ vg: 'vg0', lv: '*' }], directories: ['/srv/images'] });

export async function certsCommand(flags: CertsFlags): Promise<void> {
  const days = flags.days === undefined ? undefined : Number(flags.days);
  if (days !== undefined && (!Number.isInteger(days) || days < 1)) throw new ThinshipError('USAGE', `--days "${flags.days}" must be a positive whole number`);
  const dir = resolve(flags.out);
  const out = (l: string) => process.stdout.write(l + '\n');
  if (flags.addClient) {
    if (flags.serverName !== undefined) throw new ThinshipError('USAGE', '--server-name is not for --add-client (it issues client certificates only)');
    const s = await addClientCertificates({ dir, clientNames: flags.client ?? [], days, force: flags.force });
    for (const c of s.clients) out(`client:  ${c.cert}, ${c.key} (identity "${c.name}", CA ${s.ca})`);
    out('');
    out('add to the receiver config\'s "identities" (then restart thinship serve):');
    out(JSON.stringify(Object.fromEntries(s.clients.map((c) => [c.name, identityConfig()])), null, 2));
    out('');
    for (const c of s.clients)
      out(`sender "${c.name}": thinship send [BASE] SNAP --to HOST:7443 --target vg0/NAME --ca ${s.ca} --cert ${c.cert} --key ${c.key}`);
    return;
  }
  const s = await makeCertificates({ dir, serverNames: flags.serverName, clientNames: flags.client, days, force: flags.force });
  out(`CA:      ${s.ca} (key ${s.caKey}: keep it offline; thinship certs --out ${dir} --add-client --client NAME issues more clients)`);
  out(`server:  ${s.server.cert}, ${s.server.key}`);
  for (const c of s.clients) out(`client:  ${c.cert}, ${c.key} (identity "${c.name}")`);
  out('');
  out('receiver config (thinship serve --listen 0.0.0.0:7443 --config receiver.json):');
  out(
    JSON.stringify(
      {
        tls: { ca: s.ca, cert: s.server.cert, key: s.server.key },
        stateDir: '/var/lib/thinship',
        identities: Object.fromEntries(s.clients.map((c) => [c.name, identityConfig()])),
      },
      null,
      2,
    ),
  );
  out('');
  out(`sender: thinship send [BASE] SNAP --to HOST:7443 --target vg0/NAME --tls-dir ${dir}`);
}
