/**
 * Per-tool classifiers: known stderr of lvs, lvchange, dmsetup, thin_dump and
 * thin_delta turned into specific error codes, so callers and users see
 * "unknown LV vg0/x" rather than "lvs exited with status 5".
 * The messages matched here were recorded on a real kernel (test/fixtures/samples).
 */
import { ToolError, type Classifier, type ToolResult } from './run.js';

const has = (r: ToolResult, re: RegExp) => re.test(r.stderr);

export const classifyLvm: Classifier = (r) => {
  let m = /Failed to find logical volume "([^"]+)"/.exec(r.stderr);
  if (m) return new ToolError('NOT_FOUND', `no such logical volume: ${m[1]}`, r);
  m = /Volume group "([^"]+)" not found/.exec(r.stderr);
  if (m) return new ToolError('NOT_FOUND', `no such volume group: ${m[1]}`, r);
  if (has(r, /Invalid argument for --reportformat/))
    return new ToolError('TOOL_FAILED', `this lvm2 does not support the report format asked for: ${r.stderr.trim()}`, r);
  return undefined;
};

export const classifyDmsetup: Classifier = (r) => {
  const m = /message ioctl on (\S+)\s+failed: (.*)/.exec(r.stderr);
  const msg = r.argv.includes('reserve_metadata_snap')
    ? 'reserve_metadata_snap'
    : r.argv.includes('release_metadata_snap')
      ? 'release_metadata_snap'
      : 'message';
  if (m && /Device or resource busy/.test(m[2] ?? '')) {
    return new ToolError('METADATA_SNAP_BUSY', `${m[1]}: a metadata snapshot is already reserved on this pool (${msg} gave EBUSY)`, r, true);
  }
  if (m && /Invalid argument/.test(m[2] ?? '')) {
    return new ToolError(
      'TOOL_FAILED',
      `${m[1]}: ${msg} refused with EINVAL (nothing reserved, or not a thin-pool device: messages go to <vg>-<pool>-tpool)`,
      r,
    );
  }
  if (has(r, /Device (\S+) not found|No such device or address/))
    return new ToolError('NOT_FOUND', `device-mapper device not found: ${r.stderr.trim().split('\n')[0]}`, r);
  return undefined;
};

/** thin_dump and thin_delta share these. */
export const classifyThinTool: Classifier = (r) => {
  if (has(r, /no current metadata snap/))
    return new ToolError('NO_METADATA_SNAP', `${r.tool}: no current metadata snap (the pool's metadata snapshot is not reserved)`, r, true);
  if (has(r, /Couldn't stat path/))
    return new ToolError('POOL_INACTIVE', `${r.tool}: cannot open ${r.argv[r.argv.length - 1]} (is the pool active? an inactive pool has no _tmeta device)`, r);
  const m = /Unable to find mapping tree for (snap[12]) \((\d+)\)/.exec(r.stderr);
  if (m) return new ToolError('NOT_FOUND', `${r.tool}: no thin device with id ${m[2]} in the pool metadata (${m[1]})`, r);
  if (has(r, /bad checksum|superblock|Couldn't read/i) && r.exitCode !== 0)
    return new ToolError('BAD_METADATA', `${r.tool}: cannot read thin metadata: ${r.stderr.trim().split('\n')[0]}`, r);
  return undefined;
};
