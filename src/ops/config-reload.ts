/**
 * What a daemon's reload on SIGHUP does the same way in serve and sender-serve:
 * one reload at a time, each counted by result
 * (`thinship_…_config_reloads_total{result}`), and a warning naming the keys
 * that changed in the file but apply only at a restart. What a reload swaps is
 * the daemon's `apply`, which reads and checks everything before it changes
 * anything: a failure leaves the daemon as it was.
 */
import type { Counter } from 'prom-client';

export interface ConfigReloaderOptions<C> {
  /** "serve", "sender-serve": named in the warning. */
  daemon: string;
  log: { warn(o: object, msg: string): void };
  reloads: Counter<'result'>;
  /** The config the daemon started with, and the keys of it a reload does not apply. */
  started: C;
  restartOnlyKeys: readonly (keyof C)[];
  apply(next: C): Promise<void>;
}

export function configReloader<C>(o: ConfigReloaderOptions<C>): (load: () => Promise<C>) => Promise<void> {
  let last: Promise<void> = Promise.resolve();
  const once = async (load: () => Promise<C>) => {
    try {
      const next = await load();
      await o.apply(next);
      o.reloads.inc({ result: 'ok' });
      const keys = o.restartOnlyKeys.filter((k) => JSON.stringify(next[k]) !== JSON.stringify(o.started[k]));
      if (keys.length > 0) o.log.warn({ keys }, `these config changes apply only after a restart of ${o.daemon}`);
    } catch (e) {
      o.reloads.inc({ result: 'error' });
      throw e;
    }
  };
  return (load) => (last = last.catch(() => undefined).then(() => once(load)));
}
