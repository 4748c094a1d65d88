/**
 * Structured logging (pino) to stderr, so stdout stays free for pipe-mode streams
 * and `--json` output. Level from THINSHIP_LOG (default "error"; "debug" shows
 * every external command's argv, exit code and duration).
 */
import { pino } from 'pino';

export const log = pino(
  { level: process.env.THINSHIP_LOG ?? 'error', base: { pid: process.pid } },
  pino.destination({ dest: 2, sync: true }),
);

/**
 * A debug line naming a phase of a command and when it was reached, in ms
 * since the process started: `THINSHIP_LOG=debug` shows where start-up time goes.
 */
export function logPhase(phase: string, fields: Record<string, unknown> = {}): void {
  if (log.isLevelEnabled('debug')) log.debug({ phase, sinceStartMs: Math.round(performance.now()), ...fields }, 'phase');
}
