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
import { runDaemon } from '../signals.js';

export interface SenderServeFlags { listen: string; config: string; insecure?: boolean; allowInsecureRemote?: boolean; insecureReceivers?: boolean }

export async function senderServeCommand(flags: SenderServeFlags): Promise<void> {
  if (process.env.THINSHIP_LOG === undefined) log.level = 'info';
  const config = await loadSenderConfig(flags.config);
  await runDaemon('sender-serve', log, () => startSenderServer({ listen: flags.listen, config, insecure: flags.insecure, allowInsecureRemote: flags.allowInsecureRemote, insecureReceivers: flags.insecureReceivers, log }));
}
