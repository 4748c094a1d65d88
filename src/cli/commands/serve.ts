/**
 * `thinship serve --listen HOST:PORT --config FILE`: the gRPC receiver
 * daemon. Logs structured JSON lines (pino) on stderr, at "info" unless
 * THINSHIP_LOG says otherwise; stops on SIGTERM or SIGINT, letting running
 * transfers checkpoint first.
 */
import { resolve } from 'node:path';
import { log } from '../../log.js';
import { loadReceiverConfig } from '../../rpc/server-config.js';
import { startReceiver } from '../../rpc/server.js';

export interface ServeFlags { listen: string; config: string; insecure?: boolean; allowInsecureRemote?: boolean; stateDir?: string }

export async function serveCommand(flags: ServeFlags): Promise<void> {
  if (process.env.THINSHIP_LOG === undefined) log.level = 'info';
  const config = await loadReceiverConfig(flags.config);
  if (flags.stateDir) config.stateDir = resolve(flags.stateDir);
  const rx = await startReceiver({ listen: flags.listen, config, insecure: flags.insecure, allowInsecureRemote: flags.allowInsecureRemote, log });
  await new Promise<void>((done) => {
    const stop = (signal: NodeJS.Signals) => {
      log.info({ signal }, 'stopping');
      rx.close().then(done, (e: unknown) => { log.error({ err: (e as Error).message }, 'error while stopping'); done(); });
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}
