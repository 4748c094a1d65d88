/**
 * Planning for the plan and send commands: the flags and the environment
 * become PlanOptions, and stop signals an AbortSignal. Kept out of
 * source-args.ts, which `serve` imports: serve must not load the planner.
 */
import { abortError } from '../errors.js';
import { planSend, type PlanOptions, type SendPlan, type SourceSpec } from '../thin/planner.js';
import { checkMetadataReaderChoice } from '../thin/metadata/native-plan.js';
import { parseByteCount } from './source-args.js';
import { withStopSignals } from './signals.js';

export interface PlanFlags {
  maxOpBytes?: string;
  metadataReader?: string;
}

/** A warning from a library, for the person at the terminal: one "thinship: ..." line on stderr. */
function warnOnStderr(message: string): void {
  process.stderr.write(`thinship: ${message}\n`);
}

/**
 * The planning options of plan and send: the flags, and what the environment
 * sets (THINSHIP_METADATA_READER, THINSHIP_LOCK_DIR), read here at the edge
 * rather than in the libraries.
 */
function planOptionsOf(f: PlanFlags, more: PlanOptions = {}): PlanOptions {
  return {
    maxOpBytes: f.maxOpBytes === undefined ? undefined : parseByteCount(f.maxOpBytes, '--max-op-bytes'),
    metadataReader: checkMetadataReaderChoice(f.metadataReader, process.env.THINSHIP_METADATA_READER),
    lockDir: process.env.THINSHIP_LOCK_DIR || undefined,
    warn: warnOnStderr,
    ...more,
  };
}

/**
 * planSend for a command: SIGINT/SIGTERM/SIGHUP while it plans stop the thin
 * tool, release the metadata snapshot and end the command with 128 + the
 * signal number; afterwards signals have their default effect again.
 */
export async function planForCommand(spec: SourceSpec, f: PlanFlags, more: PlanOptions = {}): Promise<SendPlan> {
  return withStopSignals(async (signal) => {
    const p = await planSend(spec, planOptionsOf(f, { ...more, signal }));
    if (signal.aborted) {
      await p.close();
      throw abortError(signal);
    }
    return p;
  });
}
