/**
 * `thinship sender-serve --listen HOST:PORT --config FILE`: the sender daemon
 * (proto/thinship/sender/v1/sender.proto). Other services plan, start, watch and
 * cancel sends from this host's pools over gRPC with mTLS. Logs JSON lines on
 * stderr at info; SIGTERM/SIGINT cancel running transfers (their receiver-side
 * transfers stay resumable: StartTransfer with the same request_id after a
 * restart resumes them) and stop.
 */
import { log } from '../../log.js';
import { loadSenderConfig } from '../../service/sender-config.js';
import { startSenderServer } from '../../rpc/sender-server.js';

export interface SenderServeFlags { listen: string; config: string; insecure?: boolean; allowInsecureRemote?: boolean; insecureReceivers?: boolean }

export async function senderServeCommand(flags: SenderServeFlags): Promise<void> {
  if (process.env.THINSHIP_LOG === undefined) log.level = 'info';
  const config = await loadSenderConfig(flags.config);
  let stopSignal: NodeJS.Signals | undefined;
  let requestStop: (s: NodeJS.Signals) => void = (s) => { stopSignal ??= s; };
  const onStop = (s: NodeJS.Signals) => requestStop(s);
  const onHup = () => log.warn({ signal: 'SIGHUP' }, 'SIGHUP ignored: the config is read at start; restart sender-serve to apply changes');
  process.once('SIGTERM', onStop);
  process.once('SIGINT', onStop);
  process.on('SIGHUP', onHup);
  try {
    const s = await startSenderServer({ listen: flags.listen, config, insecure: flags.insecure, allowInsecureRemote: flags.allowInsecureRemote, insecureReceivers: flags.insecureReceivers, log });
    await new Promise<void>((done) => {
      requestStop = (signal) => {
        log.info({ signal }, 'stopping');
        s.close().then(done, (e: unknown) => { log.error({ err: (e as Error).message }, 'error while stopping'); done(); });
      };
      if (stopSignal) requestStop(stopSignal);
    });
  } finally {
    process.off('SIGHUP', onHup);
  }
}
