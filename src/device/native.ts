/**
 * Loads the thinship_device N-API addon (native/thinship_device.c), built by
 * `node-gyp rebuild` (package.json's install script) into build/Release.
 * Node has no ioctl, fallocate or posix_fadvise; this addon provides them.
 * Loaded lazily so commands that never touch a device work without it.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ThinshipError } from '../errors.js';

export type FadviseAdvice = 'normal' | 'sequential' | 'random' | 'willneed' | 'dontneed' | 'noreuse';

/**
 * The addon's functions. Errors are Errors with `code` (errno name, e.g.
 * EBUSY), `errno` (negative) and `syscall` (e.g. "ioctl(BLKDISCARD)").
 * All offsets and lengths are in bytes.
 */
export interface NativeDevice {
  /** BLKGETSIZE64: a block device's size (fstat reports 0 for block devices). */
  blockSizeBytes(fd: number): number;
  /** BLKSSZGET: logical block size; the fallback when sysfs is not mounted. */
  logicalBlockBytes(fd: number): number;
  /** BLKDISCARD in pieces of at most 1 GiB; offset/length aligned to the logical block size. */
  discard(fd: number, offsetBytes: number, lengthBytes: number): Promise<void>;
  /** BLKZEROOUT in pieces of at most 1 GiB (the kernel writes zero pages if the device has no offload). */
  zeroOut(fd: number, offsetBytes: number, lengthBytes: number): Promise<void>;
  /** fallocate(PUNCH_HOLE|KEEP_SIZE): files and (offloaded write-zeroes) block devices. */
  punchHole(fd: number, offsetBytes: number, lengthBytes: number): Promise<void>;
  /** fallocate(ZERO_RANGE|KEEP_SIZE), else writes zeros up to the file's size; says which it did. */
  zeroRangeFile(fd: number, offsetBytes: number, lengthBytes: number): Promise<'fallocate' | 'write'>;
  /** posix_fadvise; length 0 means "to the end". */
  fadvise(fd: number, offsetBytes: number, lengthBytes: number, advice: FadviseAdvice): Promise<void>;
  /**
   * flock(2), never blocking: true when taken (or released), false when another
   * open file description holds a conflicting lock. The kernel drops the lock
   * when the fd is closed or its process dies.
   */
  flock(fd: number, mode: 'exclusive' | 'shared' | 'unlock'): boolean;
  /**
   * Opens `relativePath` beneath the directory `dirFd` with openat2
   * (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS), or a
   * per-component O_NOFOLLOW walk where openat2 is missing. A symlink in any
   * component fails (ELOOP), leaving the directory fails (EXDEV). `flags` are
   * fs.constants O_* values; returns the fd (close it with fs.closeSync / FileHandle).
   */
  openBeneath(dirFd: number, relativePath: string, flags: number, mode: number): number;
  /** The O_NOFOLLOW walk alone (tests run it on kernels that have openat2). */
  openBeneathWalk(dirFd: number, relativePath: string, flags: number, mode: number): number;
  /** fgetxattr: the attribute's value, null when not set; throws ENOTSUP where the file system has no user xattrs. */
  fgetxattr(fd: number, name: string): Buffer | null;
  /** fsetxattr: creates or replaces the attribute. */
  fsetxattr(fd: number, name: string, value: Buffer): void;
  /** fremovexattr: true when removed, false when it was not set. */
  fremovexattr(fd: number, name: string): boolean;
  /** The address of the ArrayBuffer's first byte modulo `n` (a power of two): where an aligned view (O_DIRECT) starts. */
  addressMod(buf: ArrayBuffer, n: number): number;
  /** ioctl(FICLONE): makes destFd share all of srcFd's blocks (reflink); EOPNOTSUPP/EXDEV/EINVAL where unsupported. */
  ficlone(destFd: number, srcFd: number): void;
}

/** The errno-carrying Error the addon throws or rejects with. */
export interface NativeErrnoError extends Error {
  code: string;
  errno: number;
  syscall: string;
}

export function isNativeErrnoError(e: unknown): e is NativeErrnoError {
  return e instanceof Error && typeof (e as Partial<NativeErrnoError>).code === 'string' && typeof (e as Partial<NativeErrnoError>).syscall === 'string';
}

// dist/src/device/native.js -> repo root is three levels up (src/device/native.ts: two).
const CANDIDATES = ['../../../build/Release/thinship_device.node', '../../build/Release/thinship_device.node', '../../../build/Debug/thinship_device.node'];

let cached: NativeDevice | undefined;

export function nativeDevice(): NativeDevice {
  if (cached !== undefined) return cached;
  const require = createRequire(import.meta.url);
  const tried: string[] = [];
  for (const rel of CANDIDATES) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    tried.push(p);
    if (!existsSync(p)) continue;
    try {
      cached = require(p) as NativeDevice;
      return cached;
    } catch (e) {
      throw new ThinshipError(
        'INTERNAL',
        `cannot load native addon ${p}: ${(e as Error).message} (rebuild it with \`npm run install\` or \`node-gyp rebuild\` in the repository root)`,
        { cause: e },
      );
    }
  }
  throw new ThinshipError(
    'INTERNAL',
    `native addon thinship_device.node is not built (looked in ${tried.join(', ')}); run \`npm run install\` or \`node-gyp rebuild\` in the repository root`,
  );
}
