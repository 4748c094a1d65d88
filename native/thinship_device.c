/*
 * thinship_device: the few Linux block-device and file calls Node does not
 * expose (ioctl, fallocate, posix_fadvise), as a small N-API addon.
 *
 * Everything that can block on the device (discard, zero-out, hole punching,
 * writing zeros, fadvise which may start writeback) runs on the libuv thread
 * pool through napi_async_work and returns a Promise. Only BLKGETSIZE64 and
 * BLKSSZGET, which never touch the media, are synchronous.
 *
 * Two synchronous calls guard files rather than devices: flock (the kernel drops
 * the lock when its owner dies, so no stale-lock guessing) and openBeneath
 * (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS: a path swapped for a symlink
 * between a check and the open cannot lead outside a directory).
 *
 * Errors are JS Errors shaped like Node's own fs errors: `code` is the errno
 * name (EBUSY, EOPNOTSUPP, ...), `errno` is the negative errno, `syscall`
 * names the call and request, e.g. "ioctl(BLKDISCARD)".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/openat2.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NAPI_VERSION 8
#include <node_api.h>

/* Discard and zero-out are issued in pieces so one call never asks the kernel
 * to build an unbounded bio chain, and a failure names a piece, not the whole. */
#define PIECE_BYTES ((uint64_t)1 << 30)
/* Writing zeros (fallback paths) uses one shared, never-written zero buffer. */
#define ZERO_BUF_BYTES ((size_t)1 << 20)

static const char *errno_name(int e) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char *n = strerrorname_np(e);
  if (n != NULL) return n;
#endif
  switch (e) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EINTR: return "EINTR";
    case EIO: return "EIO";
    case ENXIO: return "ENXIO";
    case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case ENODEV: return "ENODEV";
    case EISDIR: return "EISDIR";
    case EINVAL: return "EINVAL";
    case ENOTTY: return "ENOTTY";
    case EFBIG: return "EFBIG";
    case ENOSPC: return "ENOSPC";
    case ESPIPE: return "ESPIPE";
    case EROFS: return "EROFS";
    case ENOSYS: return "ENOSYS";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    default: return "EUNKNOWN";
  }
}

/* Builds (does not throw) an Error like Node's: "EBUSY: Device or resource busy, ioctl(BLKDISCARD)". */
static napi_value make_errno_error(napi_env env, int e, const char *syscall) {
  char msg[256];
  const char *name = errno_name(e);
  snprintf(msg, sizeof msg, "%s: %s, %s", name, strerror(e), syscall);
  napi_value code, message, err, v;
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &err);
  napi_create_int32(env, -e, &v);
  napi_set_named_property(env, err, "errno", v);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, err, "syscall", v);
  return err;
}

static void throw_errno(napi_env env, int e, const char *syscall) {
  napi_throw(env, make_errno_error(env, e, syscall));
}

/* ---- argument parsing ---------------------------------------------------- */

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return 0;
  if (argc < want) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS", "missing arguments");
    return 0;
  }
  return 1;
}

static int get_fd(napi_env env, napi_value v, int *fd) {
  int32_t x;
  if (napi_get_value_int32(env, v, &x) != napi_ok || x < 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "fd must be a non-negative integer");
    return 0;
  }
  *fd = x;
  return 1;
}

/* A byte count or offset: a non-negative integer JS number (exact below 2^53). */
static int get_bytes(napi_env env, napi_value v, const char *what, int64_t *out) {
  double d;
  char msg[128];
  if (napi_get_value_double(env, v, &d) != napi_ok) {
    snprintf(msg, sizeof msg, "%s must be a number", what);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return 0;
  }
  if (!(d >= 0) || d > 9007199254740991.0 || d != (double)(int64_t)d) {
    snprintf(msg, sizeof msg, "%s must be a non-negative safe integer, got %.17g", what, d);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
    return 0;
  }
  *out = (int64_t)d;
  return 1;
}

/* ---- synchronous calls --------------------------------------------------- */

/* blockSizeBytes(fd): BLKGETSIZE64 (fstat of a block device reports 0). */
static napi_value block_size_bytes(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  int fd;
  if (!get_args(env, info, 1, argv) || !get_fd(env, argv[0], &fd)) return NULL;
  uint64_t size = 0;
  if (ioctl(fd, BLKGETSIZE64, &size) < 0) {
    throw_errno(env, errno, "ioctl(BLKGETSIZE64)");
    return NULL;
  }
  if (size > 9007199254740991ULL) {
    throw_errno(env, EOVERFLOW, "ioctl(BLKGETSIZE64)");
    return NULL;
  }
  napi_create_double(env, (double)size, &out);
  return out;
}

/* logicalBlockBytes(fd): BLKSSZGET, used when sysfs is not mounted. */
static napi_value logical_block_bytes(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  int fd;
  if (!get_args(env, info, 1, argv) || !get_fd(env, argv[0], &fd)) return NULL;
  int ssz = 0;
  if (ioctl(fd, BLKSSZGET, &ssz) < 0) {
    throw_errno(env, errno, "ioctl(BLKSSZGET)");
    return NULL;
  }
  napi_create_int32(env, ssz, &out);
  return out;
}

/* ---- asynchronous calls -------------------------------------------------- */

typedef enum { OP_DISCARD, OP_ZEROOUT, OP_PUNCH_HOLE, OP_ZERO_RANGE_FILE, OP_FADVISE } op_kind;

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  op_kind kind;
  int fd;
  int64_t offset;
  int64_t length;
  int advice;
  /* results, written by execute() on the worker thread */
  int err;
  const char *syscall;
  int used_fallback; /* zeroRangeFile: 1 when zeros were written, not fallocated */
} op_t;

static const unsigned char *zero_buffer = NULL;
static pthread_once_t zero_buffer_once = PTHREAD_ONCE_INIT;
static void alloc_zero_buffer(void) { zero_buffer = calloc(1, ZERO_BUF_BYTES); }

/* Allocated once, never written, never freed: safe to share between worker threads. */
static const unsigned char *zero_buf(void) {
  pthread_once(&zero_buffer_once, alloc_zero_buffer);
  return zero_buffer;
}

static int ioctl_range(int fd, unsigned long req, uint64_t offset, uint64_t length) {
  while (length > 0) {
    uint64_t n = length > PIECE_BYTES ? PIECE_BYTES : length;
    uint64_t range[2] = { offset, n };
    if (ioctl(fd, req, range) < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    offset += n;
    length -= n;
  }
  return 0;
}

static int fallocate_eintr(int fd, int mode, off_t offset, off_t length) {
  for (;;) {
    if (fallocate(fd, mode, offset, length) == 0) return 0;
    if (errno != EINTR) return errno;
  }
}

/* Writes zeros over [offset, offset+length), clamped to the file's size: the
 * caller asked for zeros in existing bytes, not for a longer file. */
static int write_zeros_clamped(int fd, uint64_t offset, uint64_t length, const char **syscall) {
  struct stat st;
  if (fstat(fd, &st) < 0) { *syscall = "fstat"; return errno; }
  uint64_t size = (uint64_t)st.st_size;
  if (offset >= size) return 0;
  if (length > size - offset) length = size - offset;
  const unsigned char *zeros = zero_buf();
  if (zeros == NULL) { *syscall = "calloc"; return ENOMEM; }
  while (length > 0) {
    size_t n = length > ZERO_BUF_BYTES ? ZERO_BUF_BYTES : (size_t)length;
    ssize_t w = pwrite(fd, zeros, n, (off_t)offset);
    if (w < 0) {
      if (errno == EINTR) continue;
      *syscall = "pwrite";
      return errno;
    }
    if (w == 0) { *syscall = "pwrite"; return EIO; }
    offset += (uint64_t)w;
    length -= (uint64_t)w;
  }
  return 0;
}

static void execute_op(napi_env env, void *data) {
  (void)env;
  op_t *op = data;
  if (op->length == 0 && op->kind != OP_FADVISE) return; /* nothing to do; 0 means "to EOF" only for fadvise */
  switch (op->kind) {
    case OP_DISCARD:
      op->syscall = "ioctl(BLKDISCARD)";
      op->err = ioctl_range(op->fd, BLKDISCARD, (uint64_t)op->offset, (uint64_t)op->length);
      break;
    case OP_ZEROOUT:
      op->syscall = "ioctl(BLKZEROOUT)";
      op->err = ioctl_range(op->fd, BLKZEROOUT, (uint64_t)op->offset, (uint64_t)op->length);
      break;
    case OP_PUNCH_HOLE:
      op->syscall = "fallocate(PUNCH_HOLE)";
      op->err = fallocate_eintr(op->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, op->offset, op->length);
      break;
    case OP_ZERO_RANGE_FILE:
      op->syscall = "fallocate(ZERO_RANGE)";
      op->err = fallocate_eintr(op->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, op->offset, op->length);
      /* tmpfs, NFS and others lack ZERO_RANGE: write the zeros instead. */
      if (op->err == EOPNOTSUPP || op->err == ENOSYS) {
        op->used_fallback = 1;
        op->err = write_zeros_clamped(op->fd, (uint64_t)op->offset, (uint64_t)op->length, &op->syscall);
      }
      break;
    case OP_FADVISE:
      op->syscall = "posix_fadvise";
      op->err = posix_fadvise(op->fd, op->offset, op->length, op->advice); /* returns the error */
      break;
  }
}

static void complete_op(napi_env env, napi_status status, void *data) {
  op_t *op = data;
  if (status != napi_ok) {
    napi_value err, code, msg;
    napi_create_string_utf8(env, "ERR_ASYNC_WORK", NAPI_AUTO_LENGTH, &code);
    napi_create_string_utf8(env, "asynchronous device operation was cancelled", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, code, msg, &err);
    napi_reject_deferred(env, op->deferred, err);
  } else if (op->err != 0) {
    napi_reject_deferred(env, op->deferred, make_errno_error(env, op->err, op->syscall));
  } else {
    napi_value result;
    if (op->kind == OP_ZERO_RANGE_FILE) {
      /* Tell the caller which way the zeros got there (tests and logs use it). */
      napi_create_string_utf8(env, op->used_fallback ? "write" : "fallocate", NAPI_AUTO_LENGTH, &result);
    } else {
      napi_get_undefined(env, &result);
    }
    napi_resolve_deferred(env, op->deferred, result);
  }
  napi_delete_async_work(env, op->work);
  free(op);
}

static napi_value start_op(napi_env env, op_t *op, const char *name) {
  napi_value promise, resource_name;
  if (napi_create_promise(env, &op->deferred, &promise) != napi_ok) { free(op); return NULL; }
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource_name);
  if (napi_create_async_work(env, NULL, resource_name, execute_op, complete_op, op, &op->work) != napi_ok ||
      napi_queue_async_work(env, op->work) != napi_ok) {
    /* The promise is never returned; throwing is the only signal left. */
    free(op);
    napi_throw_error(env, "ERR_ASYNC_WORK", "could not queue asynchronous device operation");
    return NULL;
  }
  return promise;
}

/* (fd, offset, length) → Promise */
static napi_value range_op(napi_env env, napi_callback_info info, op_kind kind, const char *name) {
  napi_value argv[3];
  int fd;
  int64_t offset, length;
  if (!get_args(env, info, 3, argv) || !get_fd(env, argv[0], &fd) ||
      !get_bytes(env, argv[1], "offset", &offset) || !get_bytes(env, argv[2], "length", &length))
    return NULL;
  if (offset > INT64_MAX - length) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "offset + length overflows");
    return NULL;
  }
  op_t *op = calloc(1, sizeof *op);
  if (op == NULL) { throw_errno(env, ENOMEM, name); return NULL; }
  op->kind = kind;
  op->fd = fd;
  op->offset = offset;
  op->length = length;
  return start_op(env, op, name);
}

static napi_value discard(napi_env env, napi_callback_info info) { return range_op(env, info, OP_DISCARD, "thinship.discard"); }
static napi_value zero_out(napi_env env, napi_callback_info info) { return range_op(env, info, OP_ZEROOUT, "thinship.zeroOut"); }
static napi_value punch_hole(napi_env env, napi_callback_info info) { return range_op(env, info, OP_PUNCH_HOLE, "thinship.punchHole"); }
static napi_value zero_range_file(napi_env env, napi_callback_info info) { return range_op(env, info, OP_ZERO_RANGE_FILE, "thinship.zeroRangeFile"); }

/* fadvise(fd, offset, length, advice) with advice one of
 * "normal" | "sequential" | "random" | "willneed" | "dontneed" | "noreuse". */
static napi_value fadvise(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  int fd;
  int64_t offset, length;
  char name[16];
  size_t len = 0;
  if (!get_args(env, info, 4, argv) || !get_fd(env, argv[0], &fd) ||
      !get_bytes(env, argv[1], "offset", &offset) || !get_bytes(env, argv[2], "length", &length))
    return NULL;
  if (napi_get_value_string_utf8(env, argv[3], name, sizeof name, &len) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "advice must be a string");
    return NULL;
  }
  int advice;
  if (strcmp(name, "normal") == 0) advice = POSIX_FADV_NORMAL;
  else if (strcmp(name, "sequential") == 0) advice = POSIX_FADV_SEQUENTIAL;
  else if (strcmp(name, "random") == 0) advice = POSIX_FADV_RANDOM;
  else if (strcmp(name, "willneed") == 0) advice = POSIX_FADV_WILLNEED;
  else if (strcmp(name, "dontneed") == 0) advice = POSIX_FADV_DONTNEED;
  else if (strcmp(name, "noreuse") == 0) advice = POSIX_FADV_NOREUSE;
  else {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "advice must be normal, sequential, random, willneed, dontneed or noreuse");
    return NULL;
  }
  op_t *op = calloc(1, sizeof *op);
  if (op == NULL) { throw_errno(env, ENOMEM, "posix_fadvise"); return NULL; }
  op->kind = OP_FADVISE;
  op->fd = fd;
  op->offset = offset;
  op->length = length;
  op->advice = advice;
  return start_op(env, op, "thinship.fadvise");
}

/* ---- locks and race-free opens -------------------------------------------- */

/* flock(fd, "exclusive" | "shared" | "unlock") → true, or false when another
 * open file description holds a conflicting lock (never blocks: callers poll
 * with their own deadline and AbortSignal). */
static napi_value flock_call(napi_env env, napi_callback_info info) {
  napi_value argv[2], out;
  int fd;
  char name[16];
  size_t len = 0;
  if (!get_args(env, info, 2, argv) || !get_fd(env, argv[0], &fd)) return NULL;
  if (napi_get_value_string_utf8(env, argv[1], name, sizeof name, &len) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "mode must be a string");
    return NULL;
  }
  int op;
  if (strcmp(name, "exclusive") == 0) op = LOCK_EX | LOCK_NB;
  else if (strcmp(name, "shared") == 0) op = LOCK_SH | LOCK_NB;
  else if (strcmp(name, "unlock") == 0) op = LOCK_UN;
  else {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "mode must be exclusive, shared or unlock");
    return NULL;
  }
  int r;
  do { r = flock(fd, op); } while (r < 0 && errno == EINTR);
  if (r < 0 && errno != EWOULDBLOCK) { throw_errno(env, errno, "flock"); return NULL; }
  napi_get_boolean(env, r == 0, &out);
  return out;
}

/* The fallback where openat2 is missing (kernels before 5.6, some seccomp
 * profiles): one component at a time, each opened O_NOFOLLOW relative to the
 * last, so a symlink anywhere fails with ELOOP/ENOTDIR and ".." is refused. */
static int open_beneath_walk(int dirfd, const char *rel, int flags, mode_t mode) {
  char buf[4096];
  if (strlen(rel) >= sizeof buf) { errno = ENAMETOOLONG; return -1; }
  strcpy(buf, rel);
  int cur = dup(dirfd);
  if (cur < 0) return -1;
  char *save = NULL;
  char *part = strtok_r(buf, "/", &save);
  while (part != NULL) {
    char *next = strtok_r(NULL, "/", &save);
    if (strcmp(part, "..") == 0) { close(cur); errno = EXDEV; return -1; }
    if (strcmp(part, ".") == 0) { part = next; continue; }
    int fd;
    if (next == NULL) fd = openat(cur, part, flags | O_NOFOLLOW | O_CLOEXEC, mode);
    else fd = openat(cur, part, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int e = errno;
    close(cur);
    if (fd < 0) { errno = e; return -1; }
    cur = fd;
    part = next;
  }
  return cur;
}

/* The arguments of openBeneath and openBeneathWalk: (dirfd, relativePath, flags, mode).
 * relativePath must be relative, non-empty, shorter than rel_size - 1 and free of NUL. */
static int get_beneath_args(napi_env env, napi_callback_info info, int *dirfd, char *rel, size_t rel_size, int32_t *flags, int32_t *mode) {
  napi_value argv[4];
  size_t len = 0;
  if (!get_args(env, info, 4, argv) || !get_fd(env, argv[0], dirfd)) return 0;
  if (napi_get_value_string_utf8(env, argv[1], rel, rel_size, &len) != napi_ok || len == 0 || len >= rel_size - 1) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "relativePath must be a non-empty string shorter than 4095 bytes");
    return 0;
  }
  if (rel[0] == '/' || strlen(rel) != len) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "relativePath must be relative and contain no NUL");
    return 0;
  }
  if (napi_get_value_int32(env, argv[2], flags) != napi_ok || napi_get_value_int32(env, argv[3], mode) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "flags and mode must be integers");
    return 0;
  }
  return 1;
}

/* openBeneath(dirfd, relativePath, flags, mode) → fd. The path is resolved
 * beneath dirfd with no symlinks, no magic links and no "..": EXDEV when it
 * would leave, ELOOP when a component is a symlink. flags are Node's
 * fs.constants (O_RDWR, O_CREAT, O_EXCL, ...). */
static napi_value open_beneath(napi_env env, napi_callback_info info) {
  napi_value out;
  int dirfd;
  int32_t flags, mode;
  char rel[4096];
  if (!get_beneath_args(env, info, &dirfd, rel, sizeof rel, &flags, &mode)) return NULL;
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = (uint64_t)(uint32_t)(flags | O_CLOEXEC);
  how.mode = (flags & (O_CREAT | O_TMPFILE)) ? (uint64_t)(mode & 07777) : 0;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  long fd;
  do { fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof how); } while (fd < 0 && (errno == EINTR || errno == EAGAIN));
  if (fd < 0 && (errno == ENOSYS || errno == EPERM)) {
    /* EPERM: a seccomp filter that denies openat2 outright. */
    fd = open_beneath_walk(dirfd, rel, flags, (mode_t)mode);
    if (fd < 0) { throw_errno(env, errno, "openat(O_NOFOLLOW walk)"); return NULL; }
  } else if (fd < 0) {
    throw_errno(env, errno, "openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS)");
    return NULL;
  }
  napi_create_int32(env, (int32_t)fd, &out);
  return out;
}

/* openBeneathWalk: the fallback itself, exported so tests exercise it on kernels that have openat2. */
static napi_value open_beneath_walk_js(napi_env env, napi_callback_info info) {
  napi_value out;
  int dirfd;
  int32_t flags, mode;
  char rel[4096];
  if (!get_beneath_args(env, info, &dirfd, rel, sizeof rel, &flags, &mode)) return NULL;
  int fd = open_beneath_walk(dirfd, rel, flags, (mode_t)mode);
  if (fd < 0) { throw_errno(env, errno, "openat(O_NOFOLLOW walk)"); return NULL; }
  napi_create_int32(env, fd, &out);
  return out;
}


/* ---- extended attributes and reflinks (receiver target records) ----------- */

/* Reads a string argument into buf (NUL-terminated); 0 on error (thrown). */
static int get_name(napi_env env, napi_value v, char *buf, size_t size, const char *what) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, buf, size, &len) != napi_ok || len == 0 || len >= size - 1) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", what);
    return 0;
  }
  return 1;
}

/* addressMod(arrayBuffer, n) → the address of its first byte modulo n (n a power of two, ≤ 1 MiB).
 * O_DIRECT reads need a buffer aligned to the logical block size; V8 places
 * ArrayBuffers anywhere, so the sender's read slabs (sender/chunk-buffers.ts)
 * over-allocate and start their views at the aligned offset this gives. */
static napi_value address_mod(napi_env env, napi_callback_info info) {
  napi_value argv[2], out;
  void *data = NULL;
  size_t len = 0;
  uint32_t n = 0;
  if (!get_args(env, info, 2, argv)) return NULL;
  if (napi_get_arraybuffer_info(env, argv[0], &data, &len) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "addressMod needs an ArrayBuffer");
    return NULL;
  }
  if (napi_get_value_uint32(env, argv[1], &n) != napi_ok || n == 0 || n > (1u << 20) || (n & (n - 1)) != 0) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "addressMod: n must be a power of two up to 1 MiB");
    return NULL;
  }
  napi_create_uint32(env, (uint32_t)((uintptr_t)data & (n - 1)), &out);
  return out;
}

/* fgetxattr(fd, name) → Buffer, or null when the attribute is not set (ENODATA).
 * ENOTSUP (a file system without user xattrs) is thrown: callers fall back to a sidecar. */
static napi_value fgetxattr_js(napi_env env, napi_callback_info info) {
  napi_value argv[2], out;
  int fd;
  char name[256];
  if (!get_args(env, info, 2, argv) || !get_fd(env, argv[0], &fd)) return NULL;
  if (!get_name(env, argv[1], name, sizeof name, "name must be a non-empty string shorter than 255 bytes")) return NULL;
  for (;;) {
    ssize_t n = fgetxattr(fd, name, NULL, 0);
    if (n < 0) {
      if (errno == ENODATA) { napi_get_null(env, &out); return out; }
      throw_errno(env, errno, "fgetxattr");
      return NULL;
    }
    void *data = NULL;
    if (napi_create_buffer(env, (size_t)n, &data, &out) != napi_ok) return NULL;
    ssize_t m = n == 0 ? 0 : fgetxattr(fd, name, data, (size_t)n);
    if (m < 0 && errno == ERANGE) continue; /* grew in between: ask again */
    if (m < 0) {
      if (errno == ENODATA) { napi_get_null(env, &out); return out; }
      throw_errno(env, errno, "fgetxattr");
      return NULL;
    }
    if (m == n) return out;
    napi_value slice;
    if (napi_create_buffer_copy(env, (size_t)m, data, NULL, &slice) != napi_ok) return NULL;
    return slice;
  }
}

/* fsetxattr(fd, name, buffer): creates or replaces the attribute. */
static napi_value fsetxattr_js(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int fd;
  char name[256];
  void *data = NULL;
  size_t len = 0;
  if (!get_args(env, info, 3, argv) || !get_fd(env, argv[0], &fd)) return NULL;
  if (!get_name(env, argv[1], name, sizeof name, "name must be a non-empty string shorter than 255 bytes")) return NULL;
  if (napi_get_buffer_info(env, argv[2], &data, &len) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "value must be a Buffer");
    return NULL;
  }
  if (fsetxattr(fd, name, data, len, 0) < 0) { throw_errno(env, errno, "fsetxattr"); return NULL; }
  return NULL;
}

/* fremovexattr(fd, name) → true when removed, false when it was not set. */
static napi_value fremovexattr_js(napi_env env, napi_callback_info info) {
  napi_value argv[2], out;
  int fd;
  char name[256];
  if (!get_args(env, info, 2, argv) || !get_fd(env, argv[0], &fd)) return NULL;
  if (!get_name(env, argv[1], name, sizeof name, "name must be a non-empty string shorter than 255 bytes")) return NULL;
  int r = fremovexattr(fd, name);
  if (r < 0 && errno != ENODATA) { throw_errno(env, errno, "fremovexattr"); return NULL; }
  napi_get_boolean(env, r == 0, &out);
  return out;
}

/* ficlone(destFd, srcFd): ioctl(FICLONE), the whole file shared copy-on-write.
 * EOPNOTSUPP / EXDEV / EINVAL where the file system has no reflinks. */
static napi_value ficlone_js(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int dst, src;
  if (!get_args(env, info, 2, argv) || !get_fd(env, argv[0], &dst) || !get_fd(env, argv[1], &src)) return NULL;
  if (ioctl(dst, FICLONE, src) < 0) { throw_errno(env, errno, "ioctl(FICLONE)"); return NULL; }
  return NULL;
}

/* ---- crc32c --------------------------------------------------------------- */

/* crc32c(seed, buffer, start, end): the CRC-32C (Castagnoli) register after
 * buffer[start, end) from `seed`, with no final inversion (the kernel's
 * crc32c(), which persistent-data's block checksums use). SSE4.2's crc32
 * instruction where the CPU has it (a 4 KiB metadata block in well under a
 * microsecond), else a byte-wise table. Synchronous: it never touches a device. */
static uint32_t crc32c_table[256];

static void crc32c_table_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
    crc32c_table[i] = c;
  }
}

static uint32_t crc32c_bytes(uint32_t c, const uint8_t *p, size_t n) {
  while (n--) c = crc32c_table[(c ^ *p++) & 0xff] ^ (c >> 8);
  return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc32c_sse42_1(uint32_t c, const uint8_t *p, size_t n) {
  uint64_t c64 = c;
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    c64 = __builtin_ia32_crc32di(c64, w);
    p += 8;
    n -= 8;
  }
  c = (uint32_t)c64;
  while (n--) c = __builtin_ia32_crc32qi(c, *p++);
  return c;
}

/* The crc32 instruction takes 3 cycles but can start one every cycle: three
 * independent streams over thirds of the buffer run ~3x faster than one (a
 * 4 KiB block ~0.2 us instead of ~0.6 us), and are joined with the linear
 * "append STRIDE zero bytes" operator (crc_raw(c, A||B) = shift(crc_raw(c, A),
 * |B|) ^ crc_raw(0, B)), tabulated once as four byte tables. */
#define CRC_STRIDE 1360 /* bytes per stream: 3 x 1360 = 4080, most of a 4 KiB block's 4092 checksummed bytes */
static uint32_t crc_shift_table[4][256];
static int crc_shift_ready = 0;

static uint32_t crc32c_shift(uint32_t c) {
  return crc_shift_table[0][c & 0xff] ^ crc_shift_table[1][(c >> 8) & 0xff] ^
         crc_shift_table[2][(c >> 16) & 0xff] ^ crc_shift_table[3][c >> 24];
}

static void crc_shift_init(void) {
  uint32_t basis[32];
  static const uint8_t zeros[CRC_STRIDE];
  for (int b = 0; b < 32; b++) basis[b] = crc32c_bytes(1u << b, zeros, CRC_STRIDE);
  for (int k = 0; k < 4; k++) {
    for (int v = 0; v < 256; v++) {
      uint32_t x = 0;
      for (int b = 0; b < 8; b++) if (v & (1 << b)) x ^= basis[8 * k + b];
      crc_shift_table[k][v] = x;
    }
  }
  crc_shift_ready = 1;
}

__attribute__((target("sse4.2")))
static uint32_t crc32c_sse42(uint32_t c, const uint8_t *p, size_t n) {
  if (n >= 3 * CRC_STRIDE) {
    if (!crc_shift_ready) crc_shift_init();
    while (n >= 3 * CRC_STRIDE) {
      uint64_t a = c, b = 0, d = 0;
      const uint8_t *pb = p + CRC_STRIDE, *pd = p + 2 * CRC_STRIDE;
      for (size_t i = 0; i < CRC_STRIDE; i += 8) {
        uint64_t wa, wb, wd;
        memcpy(&wa, p + i, 8);
        memcpy(&wb, pb + i, 8);
        memcpy(&wd, pd + i, 8);
        a = __builtin_ia32_crc32di(a, wa);
        b = __builtin_ia32_crc32di(b, wb);
        d = __builtin_ia32_crc32di(d, wd);
      }
      c = crc32c_shift(crc32c_shift((uint32_t)a) ^ (uint32_t)b) ^ (uint32_t)d;
      p += 3 * CRC_STRIDE;
      n -= 3 * CRC_STRIDE;
    }
  }
  return crc32c_sse42_1(c, p, n);
}
#endif

static int crc32c_has_sse42 = 0;

static uint32_t crc32c_raw(uint32_t c, const uint8_t *p, size_t n) {
#if defined(__x86_64__)
  return crc32c_has_sse42 ? crc32c_sse42(c, p, n) : crc32c_bytes(c, p, n);
#else
  return crc32c_bytes(c, p, n);
#endif
}

static napi_value crc32c_js(napi_env env, napi_callback_info info) {
  napi_value argv[4], out;
  if (!get_args(env, info, 4, argv)) return NULL;
  uint32_t seed;
  int64_t start, end;
  void *data;
  size_t len;
  if (napi_get_value_uint32(env, argv[0], &seed) != napi_ok) { napi_throw_type_error(env, NULL, "crc32c: seed must be a number"); return NULL; }
  if (napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok) { napi_throw_type_error(env, NULL, "crc32c: expected a Buffer"); return NULL; }
  if (napi_get_value_int64(env, argv[2], &start) != napi_ok || napi_get_value_int64(env, argv[3], &end) != napi_ok ||
      start < 0 || end < start || (uint64_t)end > len) {
    napi_throw_range_error(env, NULL, "crc32c: start/end outside the buffer");
    return NULL;
  }
  const uint8_t *p = (const uint8_t *)data + start;
  size_t n = (size_t)(end - start);
  napi_create_uint32(env, crc32c_raw(seed, p, n), &out);
  return out;
}

/* ---- btree nodes ----------------------------------------------------------
 * The per-block and per-entry loops of the metadata reader
 * (src/thin/metadata/btree.ts, delta.ts, reader.ts), each the twin of a
 * JavaScript rule that stays the reference (unit tests check they agree) and
 * the fallback without the addon. Node layout: csum u32, flags u32, blocknr
 * u64, nr_entries u32, max_entries u32, value_size u32, padding u32, then
 * keys u64[max_entries] and values[max_entries * value_size], little endian.
 * Synchronous: pure computation on a buffer already read. */

static uint64_t le64(const uint8_t *p) {
  uint64_t k = 0;
  for (int b = 7; b >= 0; b--) k = (k << 8) | p[b];
  return k;
}

static uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

#define MAX_SAFE_INTEGER 9007199254740991ULL

/* Index of the first of nr keys at p that is beyond 2^53 - 1, not above the one before, or outside [lo, hi); -1 if none. */
static int64_t scan_keys(const uint8_t *p, uint32_t nr, uint64_t lo, uint64_t hi) {
  uint64_t prev = 0;
  for (uint32_t i = 0; i < nr; i++) {
    uint64_t k = le64(p + 8 * i);
    if (k > MAX_SAFE_INTEGER || (i > 0 && k <= prev) || k < lo || k >= hi) return i;
    prev = k;
  }
  return -1;
}

/* lo and hi of a key range: non-negative integers up to 2^53. */
static int get_key_range(napi_env env, napi_value vlo, napi_value vhi, uint64_t *lo, uint64_t *hi) {
  double lo_d, hi_d;
  if (napi_get_value_double(env, vlo, &lo_d) != napi_ok || napi_get_value_double(env, vhi, &hi_d) != napi_ok ||
      !(lo_d >= 0) || !(hi_d >= 0) || hi_d > 9007199254740992.0) return 0;
  *lo = (uint64_t)lo_d;
  *hi = (uint64_t)hi_d;
  return 1;
}

/* firstBadKey(buffer, nrEntries, lo, hi): scan_keys over a node's keys (from
 * byte 32). parseNode (btree.ts) words the error for the index found. */
static napi_value first_bad_key(napi_env env, napi_callback_info info) {
  napi_value argv[4], out;
  if (!get_args(env, info, 4, argv)) return NULL;
  void *data;
  size_t len;
  uint32_t nr;
  uint64_t lo, hi;
  if (napi_get_buffer_info(env, argv[0], &data, &len) != napi_ok) { napi_throw_type_error(env, NULL, "firstBadKey: expected a Buffer"); return NULL; }
  if (napi_get_value_uint32(env, argv[1], &nr) != napi_ok || !get_key_range(env, argv[2], argv[3], &lo, &hi)) {
    napi_throw_type_error(env, NULL, "firstBadKey: bad nrEntries, lo or hi");
    return NULL;
  }
  if (32 + (uint64_t)nr * 8 > len) { napi_throw_range_error(env, NULL, "firstBadKey: keys beyond the buffer"); return NULL; }
  napi_create_int64(env, scan_keys((const uint8_t *)data + 32, nr, lo, hi), &out);
  return out;
}

/* checkNode(buffer, block, leafValueSize, lo, hi): true when the block passes
 * every check of parseNode (btree.ts): checksum (crc32c of bytes 4.. end, xor
 * 121107), its own block number, flags, value size, max_entries (a positive
 * multiple of 3 that fits the block), nr_entries (<= max, > 0 in an internal
 * node) and the keys (scan_keys). One call instead of a JavaScript step per
 * field; on false parseNode runs its JavaScript checks to name what is wrong. */
/* Every check of parseNode on the node at p (len bytes). */
static int node_ok(const uint8_t *p, size_t len, uint64_t block, uint32_t leaf_vs, uint64_t lo, uint64_t hi) {
  if (len < 32) return 0;
  uint32_t flags = le32(p + 4), nr = le32(p + 16), max = le32(p + 20), vs = le32(p + 24);
  int leaf = flags == 2;
  return ((crc32c_raw(0xffffffffu, p + 4, len - 4) ^ 121107u) == le32(p)) &&
         le64(p + 8) == block &&
         (flags == 1 || flags == 2) &&
         vs == (leaf ? leaf_vs : 8) &&
         max != 0 && max % 3 == 0 &&
         32 + (uint64_t)(8 + vs) * max <= 4096 && 32 + (uint64_t)(8 + vs) * max <= len &&
         nr <= max && (leaf || nr > 0) &&
         scan_keys(p + 32, nr, lo, hi) < 0;
}

static napi_value check_node(napi_env env, napi_callback_info info) {
  napi_value argv[5], out;
  if (!get_args(env, info, 5, argv)) return NULL;
  void *data;
  size_t len;
  double block_d;
  uint32_t leaf_vs;
  uint64_t lo, hi;
  if (napi_get_buffer_info(env, argv[0], &data, &len) != napi_ok) { napi_throw_type_error(env, NULL, "checkNode: expected a Buffer"); return NULL; }
  if (napi_get_value_double(env, argv[1], &block_d) != napi_ok || napi_get_value_uint32(env, argv[2], &leaf_vs) != napi_ok ||
      !get_key_range(env, argv[3], argv[4], &lo, &hi) || !(block_d >= 0) || block_d > 9007199254740991.0) {
    napi_throw_type_error(env, NULL, "checkNode: bad block, leafValueSize, lo or hi");
    return NULL;
  }
  napi_get_boolean(env, node_ok((const uint8_t *)data, len, (uint64_t)block_d, leaf_vs, lo, hi), &out);
  return out;
}

/* ---- the delta walk ---------------------------------------------------------
 * The whole parallel walk of two devices' mapping trees (src/thin/metadata/
 * delta.ts has its JavaScript twin: the reference the tests check this
 * against, and the fallback without the addon): both trees descended
 * together, a subtree both point at skipped unread, leaves merged entry by
 * entry, and the blocks that differ merged into plan runs (data: mapped in
 * the snapshot and not the same as in the base; unmap: mapped only in the
 * base) in increasing order. No JavaScript object per block or per node:
 * deltaWalkNext fills a Float64Array with (first block, length, kind)
 * triples. Every node read is checked as parseNode checks it; a fault throws
 * an Error whose code is BAD_METADATA (or IO_ERROR) and whose `block` names
 * the metadata block, with the message parseNode would give. */

#define DW_MAX_DEPTH 32 /* MAX_DEPTH in btree.ts: deeper is a loop */
#define DW_KEY_END (MAX_SAFE_INTEGER + 1)
/* Blocks one deltaWalkNext call reads at most before it returns, so the event loop turns. */
#define DW_BLOCKS_PER_CALL 2048

/* A fault a walk found: thrown as an Error with this code, message and `block`. */
typedef struct {
  int failed;
  char code[16];
  char msg[1024];
  uint64_t block;
} mw_fault;

typedef struct {
  uint8_t *buf; /* the node, 4 KiB (the cursor's buffer for this depth) */
  uint64_t block, hi;
  uint32_t nr, max, i;
  int leaf;
} dw_frame;

typedef struct {
  dw_frame f[DW_MAX_DEPTH];
  uint8_t *bufs; /* DW_MAX_DEPTH blocks: depth d's node in bufs + d * 4096 */
  int depth;
  int root_pending;
  uint64_t root;
  char what[64]; /* "mapping tree of device N" */
} dw_cursor;

typedef struct {
  int fd;
  uint64_t nr_blocks;
  char path[512];
  dw_cursor c[2]; /* 0: base (left), 1: snapshot (right) */
  int kind;       /* the run being built: -1 none, 0 data, 1 unmap */
  uint64_t begin, len;
  int walked;     /* both trees done; the last run may still be pending */
  int done;
  mw_fault fault; /* once failed, the walk cannot go on */
  double blocks_read, shared_skipped;
  /* this call's output */
  double *out;
  size_t out_n, out_cap;
} dw_state;

typedef struct {
  int kind; /* 0 none (the tree is done), 1 subtree not yet read, 2 leaf entry */
  uint64_t block, lo, hi, key, data;
} dw_head;

static uint64_t dw_key(const dw_frame *f, uint32_t i) { return le64(f->buf + 32 + 8 * (size_t)i); }
static uint64_t dw_value(const dw_frame *f, uint32_t i) { return le64(f->buf + 32 + 8 * (size_t)f->max + 8 * (size_t)i); }

static int dw_fault(mw_fault *s, const char *code, uint64_t block, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Records the fault; returns 0 (so a check can `return dw_fault(...)`). */
static int dw_fault(mw_fault *s, const char *code, uint64_t block, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->msg, sizeof s->msg, fmt, ap);
  va_end(ap);
  snprintf(s->code, sizeof s->code, "%s", code);
  s->block = block;
  s->failed = 1;
  return 0;
}

/* Throws the fault as an Error: code, message, block. */
static void throw_fault(napi_env env, const mw_fault *f) {
  napi_value code, msg, err, block;
  napi_create_string_utf8(env, f->code, NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, f->msg, NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, code, msg, &err);
  napi_create_double(env, (double)f->block, &block);
  napi_set_named_property(env, err, "block", block);
  napi_throw(env, err);
}

/* Reads count blocks from `first` into buf (what BlockReader.check and readRun check and say). 0 on a fault. */
static int mw_read(mw_fault *f, int fd, uint64_t nr_blocks, const char *path, const char *what, uint64_t first, uint32_t count, uint8_t *buf) {
  if (first >= nr_blocks)
    return dw_fault(f, "BAD_METADATA", first, "%s: block %llu is outside the metadata device %s (%llu blocks of 4096 bytes)", what, (unsigned long long)first, path,
                    (unsigned long long)nr_blocks);
  size_t got = 0, want = (size_t)count * 4096;
  while (got < want) {
    ssize_t n = pread(fd, buf + got, want - got, (off_t)(first * 4096 + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      return dw_fault(f, "IO_ERROR", first + got / 4096, "reading metadata block %llu of %s: %s", (unsigned long long)(first + got / 4096), path, strerror(errno));
    if (n == 0)
      return dw_fault(f, "BAD_METADATA", first + got / 4096, "metadata block %llu of %s is cut short (the file ends at byte %llu)", (unsigned long long)(first + got / 4096),
                      path, (unsigned long long)(first * 4096 + got));
    got += (size_t)n;
  }
  return 1;
}

/* parseNodeJs's checks in its order, with its words: 1 when the node is good, else the fault is recorded. */
static int dw_check_node(mw_fault *s, const char *what, const uint8_t *p, uint64_t block, uint64_t lo, uint64_t hi) {
  if (node_ok(p, 4096, block, 8, lo, hi)) return 1;
  uint32_t stored = le32(p), computed = crc32c_raw(0xffffffffu, p + 4, 4092) ^ 121107u;
  if (stored != computed)
    return dw_fault(s, "BAD_METADATA", block, "metadata block %llu: %s: btree node checksum mismatch (stored %u, computed %u)", (unsigned long long)block, what, stored, computed);
  if (le64(p + 8) != block)
    return dw_fault(s, "BAD_METADATA", block, "metadata block %llu: %s: btree node says it is block %llu", (unsigned long long)block, what, (unsigned long long)le64(p + 8));
  uint32_t flags = le32(p + 4), nr = le32(p + 16), max = le32(p + 20), vs = le32(p + 24);
  if (flags != 1 && flags != 2)
    return dw_fault(s, "BAD_METADATA", block, "metadata block %llu: %s: btree node flags %u are neither internal (1) nor leaf (2)", (unsigned long long)block, what, flags);
  int leaf = flags == 2;
  if (vs != 8)
    return dw_fault(s, "BAD_METADATA", block, "metadata block %llu: %s: %s has value size %u, expected 8", (unsigned long long)block, what, leaf ? "leaf" : "internal node", vs);
  if (max == 0 || max % 3 != 0)
    return dw_fault(s, "BAD_METADATA", block, "metadata block %llu: %s: max_entries %u is not a positive multiple of 3", (unsigned long long)block, what, max);
  if (32 + (uint64_t)(8 + vs) * max > 4096)
    return dw_fault(s, "BAD_METADATA", block, "metadata block %llu: %s: max_entries %u of %u-byte values do not fit a block", (unsigned long long)block, what, max, vs);
  if (nr > max)
    return dw_fault(s, "BAD_METADATA", block, "metadata block %llu: %s: nr_entries %u > max_entries %u", (unsigned long long)block, what, nr, max);
  if (!leaf && nr == 0)
    return dw_fault(s, "BAD_METADATA", block, "metadata block %llu: %s: internal node without entries", (unsigned long long)block, what);
  int64_t i = scan_keys(p + 32, nr, lo, hi);
  if (i < 0) return dw_fault(s, "BAD_METADATA", block, "metadata block %llu: %s: the addon and its checks disagree", (unsigned long long)block, what);
  uint64_t k = le64(p + 32 + 8 * (size_t)i);
  if (k > MAX_SAFE_INTEGER)
    return dw_fault(s, "BAD_METADATA", block, "metadata block %llu: %s: key %lld (%llu) is beyond the largest integer this program handles", (unsigned long long)block, what, (long long)i, (unsigned long long)k);
  if (i > 0 && k <= le64(p + 32 + 8 * (size_t)(i - 1)))
    return dw_fault(s, "BAD_METADATA", block, "metadata block %llu: %s: keys out of order (key %lld is %llu, after %llu)", (unsigned long long)block, what, (long long)i, (unsigned long long)k, (unsigned long long)le64(p + 32 + 8 * (size_t)(i - 1)));
  char hib[24];
  if (hi >= DW_KEY_END) snprintf(hib, sizeof hib, "end");
  else snprintf(hib, sizeof hib, "%llu", (unsigned long long)hi);
  return dw_fault(s, "BAD_METADATA", block, "metadata block %llu: %s: key %llu is outside the range [%llu, %s) its parent gives it", (unsigned long long)block, what, (unsigned long long)k, (unsigned long long)lo, hib);
}

/* The top frame with entries left (exhausted frames are popped), or NULL. */
static dw_frame *dw_top(dw_cursor *c) {
  if (c->root_pending) return NULL;
  while (c->depth > 0) {
    dw_frame *f = &c->f[c->depth - 1];
    if (f->i < f->nr) return f;
    c->depth--;
  }
  return NULL;
}

static void dw_head_of(dw_cursor *c, dw_head *h) {
  if (c->root_pending) {
    h->kind = 1; h->block = c->root; h->lo = 0; h->hi = DW_KEY_END;
    return;
  }
  dw_frame *f = dw_top(c);
  if (f == NULL) { h->kind = 0; return; }
  if (f->leaf) {
    h->kind = 2; h->key = dw_key(f, f->i); h->data = dw_value(f, f->i) >> 24;
    return;
  }
  h->kind = 1;
  h->block = dw_value(f, f->i);
  h->lo = dw_key(f, f->i);
  h->hi = f->i + 1 < f->nr ? dw_key(f, f->i + 1) : f->hi;
}

/* Moves past the head (dw_head_of was called since the last change). */
static void dw_advance(dw_cursor *c) {
  if (c->root_pending) c->root_pending = 0;
  else c->f[c->depth - 1].i++;
}

/* Replaces the head subtree h by its contents: reads and checks its node. 0 on a fault. */
static int dw_expand(dw_state *s, dw_cursor *c, const dw_head *h) {
  dw_advance(c);
  for (int d = 0; d < c->depth; d++)
    if (c->f[d].block == h->block)
      return dw_fault(&s->fault, "BAD_METADATA", h->block, "metadata block %llu: %s: loop: block %llu points back to its ancestor %llu", (unsigned long long)h->block, c->what,
                      (unsigned long long)c->f[c->depth - 1].block, (unsigned long long)h->block);
  if (c->depth >= DW_MAX_DEPTH)
    return dw_fault(&s->fault, "BAD_METADATA", h->block, "metadata block %llu: %s: tree deeper than %d levels (a loop?)", (unsigned long long)h->block, c->what, DW_MAX_DEPTH);
  uint8_t *buf = c->bufs + (size_t)c->depth * 4096;
  if (!mw_read(&s->fault, s->fd, s->nr_blocks, s->path, c->what, h->block, 1, buf)) return 0;
  s->blocks_read++;
  if (!dw_check_node(&s->fault, c->what, buf, h->block, h->lo, h->hi)) return 0;
  dw_frame *f = &c->f[c->depth++];
  f->buf = buf;
  f->block = h->block;
  f->hi = h->hi;
  f->nr = le32(buf + 16);
  f->max = le32(buf + 20);
  f->leaf = le32(buf + 4) == 2;
  f->i = 0;
  return 1;
}

/* Adds one block of plan kind k (0 data, 1 unmap); the caller has made room for one finished run. */
static void dw_block(dw_state *s, int k, uint64_t key) {
  if (k == s->kind && key == s->begin + s->len) { s->len++; return; }
  if (s->kind >= 0) {
    double *o = s->out + 3 * s->out_n++;
    o[0] = (double)s->begin; o[1] = (double)s->len; o[2] = s->kind;
  }
  s->kind = k; s->begin = key; s->len = 1;
}

/* How many entries (at most max) from a's entry ia and b's entry ib have the same key and value. */
static uint32_t dw_identical(const dw_frame *a, uint32_t ia, const dw_frame *b, uint32_t ib, uint32_t max) {
  const uint8_t *ka = a->buf + 32 + 8 * (size_t)ia, *kb = b->buf + 32 + 8 * (size_t)ib;
  const uint8_t *va = a->buf + 32 + 8 * (size_t)a->max + 8 * (size_t)ia, *vb = b->buf + 32 + 8 * (size_t)b->max + 8 * (size_t)ib;
  uint32_t n = 0;
  while (n < max && memcmp(ka, kb, 8) == 0 && memcmp(va, vb, 8) == 0) { n++; ka += 8; kb += 8; va += 8; vb += 8; }
  return n;
}

/* Walks until the output is full, DW_BLOCKS_PER_CALL blocks were read, the trees end, or a fault (0). */
static int dw_run(dw_state *s) {
  dw_cursor *A = &s->c[0], *B = &s->c[1];
  double read0 = s->blocks_read;
  while (!s->walked) {
    if (s->out_n >= s->out_cap || s->blocks_read - read0 >= DW_BLOCKS_PER_CALL) return 1;
    dw_frame *fa = dw_top(A), *fb = dw_top(B);
    if (fa != NULL && fb != NULL && fa->leaf && fb->leaf) {
      /* Both heads in leaves: merge their entries. */
      while (fa->i < fa->nr && fb->i < fb->nr && s->out_n < s->out_cap) {
        uint64_t ka = dw_key(fa, fa->i), kb = dw_key(fb, fb->i);
        if (ka < kb) { dw_block(s, 1, ka); fa->i++; }
        else if (kb < ka) { dw_block(s, 0, kb); fb->i++; }
        else if ((dw_value(fa, fa->i) >> 24) != (dw_value(fb, fb->i) >> 24)) { dw_block(s, 0, ka); fa->i++; fb->i++; }
        else {
          /* The same block mapped the same: a shadowed leaf is its origin's copy but for what the write changed. */
          uint32_t k = 1 + dw_identical(fa, fa->i + 1, fb, fb->i + 1, (fa->nr - fa->i < fb->nr - fb->i ? fa->nr - fa->i : fb->nr - fb->i) - 1);
          fa->i += k; fb->i += k;
        }
      }
      continue;
    }
    if (fa != NULL && fb != NULL && !fa->leaf && !fb->leaf) {
      /* Both heads in internal nodes: skip the children both share in one step. */
      uint32_t k = dw_identical(fa, fa->i, fb, fb->i, fa->nr - fa->i < fb->nr - fb->i ? fa->nr - fa->i : fb->nr - fb->i);
      if (k > 0) {
        fa->i += k; fb->i += k;
        s->shared_skipped += k;
        continue;
      }
    }
    dw_head a, b;
    dw_head_of(A, &a);
    dw_head_of(B, &b);
    if (a.kind == 0 && b.kind == 0) { s->walked = 1; break; }
    if (a.kind == 1 && b.kind == 1 && a.block == b.block) {
      dw_advance(A); dw_advance(B);
      s->shared_skipped++;
      continue;
    }
    uint64_t la = a.kind == 0 ? DW_KEY_END : a.kind == 1 ? a.lo : a.key;
    uint64_t lb = b.kind == 0 ? DW_KEY_END : b.kind == 1 ? b.lo : b.key;
    if (a.kind == 2 && la < lb) { dw_block(s, 1, a.key); dw_advance(A); continue; }
    if (b.kind == 2 && lb < la) { dw_block(s, 0, b.key); dw_advance(B); continue; }
    if (a.kind == 2 && b.kind == 2) {
      if (a.data != b.data) dw_block(s, 0, a.key);
      dw_advance(A); dw_advance(B);
      continue;
    }
    /* A subtree starts at or before the other head: read it. Both from the same key: the wider first, both if alike. */
    if (a.kind == 1 && b.kind == 1 && la == lb) {
      if (a.hi >= b.hi && !dw_expand(s, A, &a)) return 0;
      if (b.hi >= a.hi && !dw_expand(s, B, &b)) return 0;
    } else if (a.kind == 1 && la <= lb) {
      if (!dw_expand(s, A, &a)) return 0;
    } else if (!dw_expand(s, B, &b)) return 0;
  }
  if (s->kind >= 0) {
    if (s->out_n >= s->out_cap) return 1;
    double *o = s->out + 3 * s->out_n++;
    o[0] = (double)s->begin; o[1] = (double)s->len; o[2] = s->kind;
    s->kind = -1;
  }
  s->done = 1;
  return 1;
}

static void dw_finalize(napi_env env, void *data, void *hint) {
  (void)env; (void)hint;
  dw_state *s = data;
  free(s->c[0].bufs);
  free(s->c[1].bufs);
  free(s);
}

/* deltaWalkStart(fd, nrBlocks, path, leftRoot, leftDevId, rightRoot, rightDevId): a walk
 * of the base's (left) and the snapshot's (right) mapping trees, for deltaWalkNext.
 * The fd stays the caller's; it must stay open while the walk is used. */
static napi_value delta_walk_start(napi_env env, napi_callback_info info) {
  napi_value argv[7], out;
  if (!get_args(env, info, 7, argv)) return NULL;
  int fd;
  double nr_d, lroot_d, rroot_d, ldev_d, rdev_d;
  char path[512];
  size_t plen = 0;
  if (!get_fd(env, argv[0], &fd)) return NULL;
  if (napi_get_value_double(env, argv[1], &nr_d) != napi_ok || napi_get_value_string_utf8(env, argv[2], path, sizeof path, &plen) != napi_ok ||
      napi_get_value_double(env, argv[3], &lroot_d) != napi_ok || napi_get_value_double(env, argv[4], &ldev_d) != napi_ok ||
      napi_get_value_double(env, argv[5], &rroot_d) != napi_ok || napi_get_value_double(env, argv[6], &rdev_d) != napi_ok ||
      !(nr_d >= 0) || nr_d > 9007199254740991.0 / 4096 || !(lroot_d >= 0) || lroot_d > 9007199254740991.0 || !(rroot_d >= 0) ||
      rroot_d > 9007199254740991.0) {
    napi_throw_type_error(env, NULL, "deltaWalkStart: bad fd, nrBlocks, path, roots or device ids");
    return NULL;
  }
  dw_state *s = calloc(1, sizeof *s);
  if (s != NULL) {
    s->c[0].bufs = aligned_alloc(4096, (size_t)DW_MAX_DEPTH * 4096);
    s->c[1].bufs = aligned_alloc(4096, (size_t)DW_MAX_DEPTH * 4096);
  }
  if (s == NULL || s->c[0].bufs == NULL || s->c[1].bufs == NULL) {
    if (s != NULL) { free(s->c[0].bufs); free(s->c[1].bufs); free(s); }
    throw_errno(env, ENOMEM, "deltaWalkStart");
    return NULL;
  }
  s->fd = fd;
  s->nr_blocks = (uint64_t)nr_d;
  snprintf(s->path, sizeof s->path, "%s", path);
  s->kind = -1;
  s->c[0].root = (uint64_t)lroot_d;
  s->c[1].root = (uint64_t)rroot_d;
  s->c[0].root_pending = s->c[1].root_pending = 1;
  snprintf(s->c[0].what, sizeof s->c[0].what, "mapping tree of device %.0f", ldev_d);
  snprintf(s->c[1].what, sizeof s->c[1].what, "mapping tree of device %.0f", rdev_d);
  if (napi_create_external(env, s, dw_finalize, NULL, &out) != napi_ok) {
    dw_finalize(env, s, NULL);
    napi_throw_error(env, NULL, "deltaWalkStart: could not create the walk");
    return NULL;
  }
  return out;
}

/* deltaWalkNext(walk, out, stats): the next plan runs into out (a Float64Array;
 * triples first block, length, kind 0 data / 1 unmap), stats[0] = blocks read,
 * stats[1] = shared subtrees skipped, so far. Returns runs * 2 + 1 when the walk
 * is done, runs * 2 when there is more (it returns after DW_BLOCKS_PER_CALL
 * blocks, so the caller's event loop turns). A fault throws an Error with code
 * BAD_METADATA or IO_ERROR and `block`; the walk is then over. */
static napi_value delta_walk_next(napi_env env, napi_callback_info info) {
  napi_value argv[3], out;
  if (!get_args(env, info, 3, argv)) return NULL;
  void *ext, *odata, *sdata;
  size_t olen, slen, ooff, soff;
  napi_typedarray_type otype, stype;
  napi_value obuf, sbuf;
  if (napi_get_value_external(env, argv[0], &ext) != napi_ok ||
      napi_get_typedarray_info(env, argv[1], &otype, &olen, &odata, &obuf, &ooff) != napi_ok || otype != napi_float64_array ||
      napi_get_typedarray_info(env, argv[2], &stype, &slen, &sdata, &sbuf, &soff) != napi_ok || stype != napi_float64_array || slen < 2 || olen < 3) {
    napi_throw_type_error(env, NULL, "deltaWalkNext: expected a walk, a Float64Array of at least 3 and one of at least 2");
    return NULL;
  }
  dw_state *s = ext;
  if (s->fault.failed) { napi_throw_error(env, NULL, "deltaWalkNext: the walk stopped at a fault"); return NULL; }
  s->out = odata;
  s->out_cap = olen / 3;
  s->out_n = 0;
  if (!s->done) dw_run(s);
  double *st = sdata;
  st[0] = s->blocks_read;
  st[1] = s->shared_skipped;
  if (s->fault.failed) {
    throw_fault(env, &s->fault);
    return NULL;
  }
  napi_create_double(env, (double)s->out_n * 2 + (s->done ? 1 : 0), &out);
  return out;
}

/* ---- the full walk ----------------------------------------------------------
 * One device's mapped blocks as runs of consecutive blocks, in order: what a
 * full plan needs when it keeps no mappings (reader.ts walkMappedRuns, whose
 * JavaScript walk is the twin and the fallback without the addon). Depth
 * first in constant memory; a node's children whose block numbers follow
 * each other are read in one pread of up to MW_RUN_BLOCKS into that level's
 * buffer (a child node lives there until its frame is done). Every node is
 * checked as parseNode checks it, loops and trees deeper than DW_MAX_DEPTH
 * refused: faults as the delta walk's (BAD_METADATA or IO_ERROR, naming the
 * block, the JavaScript walk's words). */

#define MW_RUN_BLOCKS 64 /* MAX_RUN_BLOCKS in block-reader.ts: 256 KiB a read */

typedef struct {
  const uint8_t *node;
  uint64_t block, hi;
  uint32_t nr, max, i;
  uint32_t run_from, run_count; /* children [run_from, run_from + run_count) are in this level's run buffer */
} mw_frame;

typedef struct {
  int fd;
  uint64_t nr_blocks;
  char path[512];
  char what[64];
  uint64_t root;
  uint8_t *root_buf;
  uint8_t *runs[DW_MAX_DEPTH]; /* depth d's children, allocated when first needed */
  mw_frame f[DW_MAX_DEPTH];
  int depth;
  int started, root_leaf, done;
  uint64_t begin, len; /* the run being built; none while len is 0 */
  double blocks_read;
  double *out; /* pairs: first block, length */
  size_t out_n, out_cap;
  mw_fault fault;
} mw_state;

static void mw_emit(mw_state *s) {
  s->out[2 * s->out_n] = (double)s->begin;
  s->out[2 * s->out_n + 1] = (double)s->len;
  s->out_n++;
}

/* Adds a checked leaf's keys; the caller made room for one finished run per entry. */
static void mw_leaf(mw_state *s, const uint8_t *p) {
  uint32_t nr = le32(p + 16);
  for (uint32_t i = 0; i < nr; i++) {
    uint64_t k = le64(p + 32 + 8 * (size_t)i);
    if (s->len > 0 && k == s->begin + s->len) { s->len++; continue; }
    if (s->len > 0) mw_emit(s);
    s->begin = k;
    s->len = 1;
  }
}

/* Walks until the output has no room for another leaf, the tree ends, or a fault (0). */
static int mw_run(mw_state *s) {
  if (!s->started) {
    s->started = 1;
    if (!mw_read(&s->fault, s->fd, s->nr_blocks, s->path, s->what, s->root, 1, s->root_buf)) return 0;
    s->blocks_read++;
    if (!dw_check_node(&s->fault, s->what, s->root_buf, s->root, 0, DW_KEY_END)) return 0;
    if (le32(s->root_buf + 4) == 2) s->root_leaf = 1;
    else {
      mw_frame *f = &s->f[s->depth++];
      f->node = s->root_buf;
      f->block = s->root;
      f->hi = DW_KEY_END;
      f->nr = le32(s->root_buf + 16);
      f->max = le32(s->root_buf + 20);
      f->i = f->run_from = f->run_count = 0;
    }
  }
  if (s->root_leaf) {
    if (s->out_n + le32(s->root_buf + 16) > s->out_cap) return 1;
    mw_leaf(s, s->root_buf);
    s->root_leaf = 0;
  }
  while (s->depth > 0) {
    mw_frame *f = &s->f[s->depth - 1];
    if (f->i >= f->nr) { s->depth--; continue; }
    uint32_t i = f->i;
    const uint8_t *values = f->node + 32 + 8 * (size_t)f->max;
    uint64_t child = le64(values + 8 * (size_t)i);
    for (int d = 0; d < s->depth; d++)
      if (s->f[d].block == child)
        return dw_fault(&s->fault, "BAD_METADATA", child, "metadata block %llu: %s: loop: block %llu points back to its ancestor %llu", (unsigned long long)child, s->what,
                        (unsigned long long)f->block, (unsigned long long)child);
    if (s->depth >= DW_MAX_DEPTH)
      return dw_fault(&s->fault, "BAD_METADATA", child, "metadata block %llu: %s: tree deeper than %d levels (a loop?)", (unsigned long long)child, s->what, DW_MAX_DEPTH);
    uint8_t **run = &s->runs[s->depth - 1];
    if (i >= f->run_from + f->run_count) {
      /* Children i.. whose block numbers follow each other, in one read. */
      uint32_t count = 1;
      while (i + count < f->nr && count < MW_RUN_BLOCKS && le64(values + 8 * (size_t)(i + count)) == child + count && child + count < s->nr_blocks) count++;
      if (*run == NULL && (*run = aligned_alloc(4096, (size_t)MW_RUN_BLOCKS * 4096)) == NULL)
        return dw_fault(&s->fault, "IO_ERROR", child, "reading metadata block %llu of %s: out of memory", (unsigned long long)child, s->path);
      if (!mw_read(&s->fault, s->fd, s->nr_blocks, s->path, s->what, child, count, *run)) return 0;
      s->blocks_read += count;
      f->run_from = i;
      f->run_count = count;
    }
    const uint8_t *p = *run + (size_t)(i - f->run_from) * 4096;
    uint64_t lo = le64(f->node + 32 + 8 * (size_t)i);
    uint64_t hi = i + 1 < f->nr ? le64(f->node + 32 + 8 * (size_t)(i + 1)) : f->hi;
    if (!dw_check_node(&s->fault, s->what, p, child, lo, hi)) return 0;
    if (le32(p + 4) == 2) {
      if (s->out_n + le32(p + 16) > s->out_cap) return 1; /* checked again on the next call */
      mw_leaf(s, p);
      f->i++;
      continue;
    }
    f->i++;
    mw_frame *c = &s->f[s->depth++];
    c->node = p;
    c->block = child;
    c->hi = hi;
    c->nr = le32(p + 16);
    c->max = le32(p + 20);
    c->i = c->run_from = c->run_count = 0;
  }
  if (s->len > 0) {
    if (s->out_n >= s->out_cap) return 1;
    mw_emit(s);
    s->len = 0;
  }
  s->done = 1;
  return 1;
}

static void mw_finalize(napi_env env, void *data, void *hint) {
  (void)env; (void)hint;
  mw_state *s = data;
  for (int d = 0; d < DW_MAX_DEPTH; d++) free(s->runs[d]);
  free(s->root_buf);
  free(s);
}

/* mappedRunsWalkStart(fd, nrBlocks, path, root, devId): a walk of the mapping
 * tree at root (device devId's), for mappedRunsWalkNext. The fd stays the
 * caller's; it must stay open while the walk is used. */
static napi_value mapped_runs_walk_start(napi_env env, napi_callback_info info) {
  napi_value argv[5], out;
  if (!get_args(env, info, 5, argv)) return NULL;
  int fd;
  double nr_d, root_d, dev_d;
  char path[512];
  size_t plen = 0;
  if (!get_fd(env, argv[0], &fd)) return NULL;
  if (napi_get_value_double(env, argv[1], &nr_d) != napi_ok || napi_get_value_string_utf8(env, argv[2], path, sizeof path, &plen) != napi_ok ||
      napi_get_value_double(env, argv[3], &root_d) != napi_ok || napi_get_value_double(env, argv[4], &dev_d) != napi_ok || !(nr_d >= 0) ||
      nr_d > 9007199254740991.0 / 4096 || !(root_d >= 0) || root_d > 9007199254740991.0) {
    napi_throw_type_error(env, NULL, "mappedRunsWalkStart: bad fd, nrBlocks, path, root or device id");
    return NULL;
  }
  mw_state *s = calloc(1, sizeof *s);
  if (s != NULL) s->root_buf = aligned_alloc(4096, 4096);
  if (s == NULL || s->root_buf == NULL) {
    free(s);
    throw_errno(env, ENOMEM, "mappedRunsWalkStart");
    return NULL;
  }
  s->fd = fd;
  s->nr_blocks = (uint64_t)nr_d;
  snprintf(s->path, sizeof s->path, "%s", path);
  snprintf(s->what, sizeof s->what, "mapping tree of device %.0f", dev_d);
  s->root = (uint64_t)root_d;
  if (napi_create_external(env, s, mw_finalize, NULL, &out) != napi_ok) {
    mw_finalize(env, s, NULL);
    napi_throw_error(env, NULL, "mappedRunsWalkStart: could not create the walk");
    return NULL;
  }
  return out;
}

/* mappedRunsWalkNext(walk, out, stats): the next runs into out (a Float64Array
 * of at least 1024: pairs first block, length; a run that may go on in the
 * next leaf is held back), stats[0] = blocks read so far. Returns runs * 2,
 * + 1 when the walk is done. A fault throws as deltaWalkNext's do. */
static napi_value mapped_runs_walk_next(napi_env env, napi_callback_info info) {
  napi_value argv[3], out;
  if (!get_args(env, info, 3, argv)) return NULL;
  void *ext, *odata, *sdata;
  size_t olen, slen, ooff, soff;
  napi_typedarray_type otype, stype;
  napi_value obuf, sbuf;
  if (napi_get_value_external(env, argv[0], &ext) != napi_ok ||
      napi_get_typedarray_info(env, argv[1], &otype, &olen, &odata, &obuf, &ooff) != napi_ok || otype != napi_float64_array ||
      napi_get_typedarray_info(env, argv[2], &stype, &slen, &sdata, &sbuf, &soff) != napi_ok || stype != napi_float64_array || slen < 1 || olen < 1024) {
    napi_throw_type_error(env, NULL, "mappedRunsWalkNext: expected a walk, a Float64Array of at least 1024 and one of at least 1");
    return NULL;
  }
  mw_state *s = ext;
  if (s->fault.failed) { napi_throw_error(env, NULL, "mappedRunsWalkNext: the walk stopped at a fault"); return NULL; }
  s->out = odata;
  s->out_cap = olen / 2;
  s->out_n = 0;
  if (!s->done) mw_run(s);
  ((double *)sdata)[0] = s->blocks_read;
  if (s->fault.failed) {
    throw_fault(env, &s->fault);
    return NULL;
  }
  napi_create_double(env, (double)s->out_n * 2 + (s->done ? 1 : 0), &out);
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "blockSizeBytes", NULL, block_size_bytes, NULL, NULL, NULL, napi_enumerable, NULL },
    { "logicalBlockBytes", NULL, logical_block_bytes, NULL, NULL, NULL, napi_enumerable, NULL },
    { "discard", NULL, discard, NULL, NULL, NULL, napi_enumerable, NULL },
    { "zeroOut", NULL, zero_out, NULL, NULL, NULL, napi_enumerable, NULL },
    { "punchHole", NULL, punch_hole, NULL, NULL, NULL, napi_enumerable, NULL },
    { "zeroRangeFile", NULL, zero_range_file, NULL, NULL, NULL, napi_enumerable, NULL },
    { "fadvise", NULL, fadvise, NULL, NULL, NULL, napi_enumerable, NULL },
    { "flock", NULL, flock_call, NULL, NULL, NULL, napi_enumerable, NULL },
    { "openBeneath", NULL, open_beneath, NULL, NULL, NULL, napi_enumerable, NULL },
    { "openBeneathWalk", NULL, open_beneath_walk_js, NULL, NULL, NULL, napi_enumerable, NULL },
    { "fgetxattr", NULL, fgetxattr_js, NULL, NULL, NULL, napi_enumerable, NULL },
    { "fsetxattr", NULL, fsetxattr_js, NULL, NULL, NULL, napi_enumerable, NULL },
    { "fremovexattr", NULL, fremovexattr_js, NULL, NULL, NULL, napi_enumerable, NULL },
    { "ficlone", NULL, ficlone_js, NULL, NULL, NULL, napi_enumerable, NULL },
    { "addressMod", NULL, address_mod, NULL, NULL, NULL, napi_enumerable, NULL },
    { "crc32c", NULL, crc32c_js, NULL, NULL, NULL, napi_enumerable, NULL },
    { "firstBadKey", NULL, first_bad_key, NULL, NULL, NULL, napi_enumerable, NULL },
    { "checkNode", NULL, check_node, NULL, NULL, NULL, napi_enumerable, NULL },
    { "deltaWalkStart", NULL, delta_walk_start, NULL, NULL, NULL, napi_enumerable, NULL },
    { "deltaWalkNext", NULL, delta_walk_next, NULL, NULL, NULL, napi_enumerable, NULL },
    { "mappedRunsWalkStart", NULL, mapped_runs_walk_start, NULL, NULL, NULL, napi_enumerable, NULL },
    { "mappedRunsWalkNext", NULL, mapped_runs_walk_next, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  crc32c_table_init();
#if defined(__x86_64__)
  __builtin_cpu_init();
  crc32c_has_sse42 = __builtin_cpu_supports("sse4.2");
#endif
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
