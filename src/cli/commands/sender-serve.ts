/**
 * `thinship sender-serve --listen HOST:PORT --config FILE`: the sender daemon
 * (proto/thinship/sender/v1/sender.proto). Other services plan, start, watch and
 * cancel sends from this host's pools over gRPC with mTLS. Logs JSON lines on
 * stderr at info; SIGTERM/SIGINT cancel running transfers (their receiver-side
 * transfers stay resumable: StartTransfer with the same request_id after a
 * restart resumes them) and stop. SIGHUP reloads the config (TLS files, the
 * client certificate towards receivers, identities); running transfers go on.
 */
import { log } from '../../log.js';
import { loadSenderConfig } from '../../service/sender-config.js';
import { startSenderServer } from '../../rpc/sender-server.js';
import { runDaemon } from '../signals.js';

export interface SenderServeFlags {
  listen: string;
  config: string;
  metricsListen?: string;
  insecure?: boolean;
  allowInsecureRemote?: boolean;
  insecureReceivers?: boolean;
}

export async function senderServeCommand(flags: SenderServeFlags): Promise<void> {
  if (process.env.THINSHIP_LOG === undefined) log.level = 'info';
  // --metrics-listen overrides the file at start and at every reload alike.
  const load = async () => {
    const config = await loadSenderConfig(flags.config);
    if (flags.metricsListen !== undefined) config.metricsListen = flags.metricsListen;
    return config;
  };
  const config = await load();
  await runDaemon(
    'sender-serve',
    log,
    () =>
      startSenderServer({
        listen: flags.listen,
        config,
        insecure: flags.insecure,
        allowInsecureRemote: flags.allowInsecureRemote,
        insecureReceivers: flags.insecureReceivers,
        log,
      }),
    {
      reload: (s) => s.reload(load),
    },
  );
}
