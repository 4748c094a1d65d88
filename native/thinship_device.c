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
static uint32_t crc32c_sse42(uint32_t c, const uint8_t *p, size_t n) {
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
#endif

static int crc32c_has_sse42 = 0;

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
  uint32_t c;
#if defined(__x86_64__)
  c = crc32c_has_sse42 ? crc32c_sse42(seed, p, n) : crc32c_bytes(seed, p, n);
#else
  c = crc32c_bytes(seed, p, n);
#endif
  napi_create_uint32(env, c, &out);
  return out;
}

/* firstBadKey(buffer, nrEntries, lo, hi): the index of the first of a btree
 * node's nrEntries u64 keys (little endian, from byte 32) that is beyond
 * 2^53 - 1, not above the key before it, or outside [lo, hi); -1 when every
 * key is fine. The rule is parseNode's (src/thin/metadata/btree.ts), which
 * words the error for the index found; this is the same scan without a
 * JavaScript step per key (the scan dominated a cold incremental). */
static napi_value first_bad_key(napi_env env, napi_callback_info info) {
  napi_value argv[4], out;
  if (!get_args(env, info, 4, argv)) return NULL;
  void *data;
  size_t len;
  uint32_t nr;
  double lo_d, hi_d;
  if (napi_get_buffer_info(env, argv[0], &data, &len) != napi_ok) { napi_throw_type_error(env, NULL, "firstBadKey: expected a Buffer"); return NULL; }
  if (napi_get_value_uint32(env, argv[1], &nr) != napi_ok || napi_get_value_double(env, argv[2], &lo_d) != napi_ok ||
      napi_get_value_double(env, argv[3], &hi_d) != napi_ok || !(lo_d >= 0) || !(hi_d >= 0) || hi_d > 9007199254740992.0) {
    napi_throw_type_error(env, NULL, "firstBadKey: bad nrEntries, lo or hi");
    return NULL;
  }
  if (32 + (uint64_t)nr * 8 > len) { napi_throw_range_error(env, NULL, "firstBadKey: keys beyond the buffer"); return NULL; }
  const uint64_t max_safe = 9007199254740991ULL, lo = (uint64_t)lo_d, hi = (uint64_t)hi_d;
  const uint8_t *p = (const uint8_t *)data + 32;
  int64_t bad = -1;
  uint64_t prev = 0;
  for (uint32_t i = 0; i < nr; i++) {
    uint64_t k = 0;
    for (int b = 7; b >= 0; b--) k = (k << 8) | p[8 * i + b];
    if (k > max_safe || (i > 0 && k <= prev) || k < lo || k >= hi) { bad = i; break; }
    prev = k;
  }
  napi_create_int64(env, bad, &out);
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
    { "crc32c", NULL, crc32c_js, NULL, NULL, NULL, napi_enumerable, NULL },
    { "firstBadKey", NULL, first_bad_key, NULL, NULL, NULL, napi_enumerable, NULL },
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
