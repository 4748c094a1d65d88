#!/usr/bin/env bash
# run-guest.sh - run a shell script inside a throw-away QEMU VM that boots a
# stock Debian 12 kernel with real device-mapper (dm-thin) and real LVM2 +
# thin-provisioning-tools.  Output of the guest script is streamed to stdout,
# and its exit status becomes the exit status of this script.
# (How and why it works on machines without KVM: test/vm/README.md.)
#
#   usage: run-guest.sh GUEST_SCRIPT [ARGS...]
#          RV_PREPARE_ONLY=1 run-guest.sh      (build the cache, boot nothing)
#
# Environment (all optional):
#   RV_HOME     cache dir (debs/, cache/)        default: ${XDG_CACHE_HOME:-~/.cache}/thinship-vm
#   RV_DISKS    sizes of sparse virtio disks -> /dev/vda, /dev/vdb, ...  default: "4G"
#   RV_SHARE    host directory shared read-write via virtio-9p and mounted at the
#               SAME absolute path inside the guest (e.g. the project checkout)
#   RV_9P_OPTS  extra 9p mount options (default "cache=loose": ~2-4x faster reads;
#               set RV_9P_OPTS= for cache=none if the host changes files during the run)
#   RV_COPY     host directories copied (not shared) into the guest's RAM root at the
#               same absolute path: fastest for read-only code such as node_modules
#   RV_CWD      working directory for the guest script (default: RV_SHARE or /)
#   RV_ENV      names of host environment variables to pass to the guest script
#   RV_NODE     auto|0|1   copy the host's `node` binary into the guest (auto: if found)
#   RV_NODE_ADDONS  native addons (*.node) the guest's node loads from the share: their
#               shared libraries are copied with node's (e.g. librt, which node lacks)
#   RV_MEM      guest RAM in MiB  (default 2048)    RV_SMP  vCPUs (default 1: faster under TCG)
#   RV_ACCEL    tcg|kvm  (default tcg; kvm does not work on PVM-based hosts)
#   RV_TIMEOUT  seconds before the VM is killed (default 1200)
#   RV_CONSOLE  file to keep the guest kernel console log in (default: temp file)
#   RV_VERBOSE  1 = print timings / build steps to stderr
#   RV_PVH      1 = boot the extracted uncompressed vmlinux via PVH (default), 0 = bzImage
#   RV_KEEP     1 = keep the temporary work dir (disks, initrd, console log)
#   RV_PREPARE_ONLY 1 = install/download/build everything the boot needs, then exit 0
#
# Building the cache is serialised with flock on $RV_HOME/.lock, so parallel runs
# on an empty cache wait for one build instead of racing.
#
# Exit status: the guest script's status; 124 = timeout; 125 = VM/infra failure;
# 128+n = stopped by signal n (SIGTERM, SIGINT, SIGHUP: the VM is killed first).
set -euo pipefail

RV_HOME=${RV_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/thinship-vm}
DEBS=$RV_HOME/debs
CACHE=$RV_HOME/cache
RV_DISKS=${RV_DISKS-4G}
RV_SHARE=${RV_SHARE:-}
RV_CWD=${RV_CWD:-${RV_SHARE:-/}}
RV_ENV=${RV_ENV:-}
RV_NODE=${RV_NODE:-auto}
RV_NODE_ADDONS=${RV_NODE_ADDONS:-}
RV_MEM=${RV_MEM:-2048}
RV_SMP=${RV_SMP:-1}
RV_ACCEL=${RV_ACCEL:-tcg}
RV_TIMEOUT=${RV_TIMEOUT:-1200}
RV_VERBOSE=${RV_VERBOSE:-0}
KERNEL_META=linux-image-amd64   # generic kernel: has 9p modules (linux-image-cloud-amd64 has no 9p)
GUEST_DEBS="busybox-static lvm2 dmsetup libdevmapper1.02.1 libdevmapper-event1.02.1 thin-provisioning-tools libaio1 libedit2 libexpat1 libbsd0 libmd0"
# top-level modules; their dependencies are resolved from the .ko files' modinfo
MODULES="virtio_pci virtio_blk 9pnet_virtio 9p crc32c_generic crc32c-intel libcrc32c dm-mod dm-thin-pool dm-snapshot loop ext4 ${RV_EXTRA_MODULES:-}"

log() { if [ "$RV_VERBOSE" = 1 ]; then echo "[run-guest] $*" >&2; fi; }
die() { echo "[run-guest] ERROR: $*" >&2; exit 125; }
now() { date +%s.%N; }
T0=$(now)

RV_PREPARE_ONLY=${RV_PREPARE_ONLY:-0}
if [ "$RV_PREPARE_ONLY" != 1 ]; then
  [ $# -ge 1 ] || { awk 'NR>1 && /^#/ {print; next} NR>1 {exit}' "$0" >&2; exit 2; }
  GUEST_SCRIPT=$1; shift
  [ -r "$GUEST_SCRIPT" ] || die "cannot read guest script $GUEST_SCRIPT"
fi
[ -z "$RV_SHARE" ] || [ -d "$RV_SHARE" ] || die "RV_SHARE=$RV_SHARE is not a directory"
[ -z "$RV_SHARE" ] || RV_SHARE=$(cd "$RV_SHARE" && pwd -P)

mkdir -p "$DEBS/partial" "$CACHE" || die "cannot create the cache in $RV_HOME (set RV_HOME to a writable directory)"
command -v flock >/dev/null || die "flock (util-linux) is needed"
# One builder at a time: the others wait here, then find the cache ready.
exec 9>"$RV_HOME/.lock"
flock 9 || die "cannot lock $RV_HOME/.lock"

# ---------------------------------------------------------------- host tools
APT_UPDATED=0
apt_update_once() { if [ $APT_UPDATED = 0 ]; then log "apt-get update"; apt-get update -qq >&2; APT_UPDATED=1; fi; }
if ! command -v qemu-system-x86_64 >/dev/null; then
  apt_update_once
  log "installing qemu-system-x86"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o DPkg::Lock::Timeout=600 -o Dir::Cache::archives="$DEBS" qemu-system-x86 >&2
fi

# ------------------------------------------------------------- guest packages
have_deb() { compgen -G "$DEBS/${1}_*.deb" >/dev/null; }
KPKG=$(cd "$DEBS" && ls -1 linux-image-[0-9]*-amd64_*.deb 2>/dev/null | grep -v cloud | sort -V | tail -1 | cut -d_ -f1 || true)
if [ -z "$KPKG" ]; then
  apt_update_once
  KPKG=$(apt-cache depends "$KERNEL_META" | awk '/Depends: linux-image-/{print $2; exit}')
  [ -n "$KPKG" ] || die "cannot resolve $KERNEL_META"
fi
missing=""
for p in $KPKG $GUEST_DEBS; do have_deb "$p" || missing="$missing $p"; done
if [ -n "$missing" ]; then
  apt_update_once
  log "downloading:$missing"
  (cd "$DEBS" && apt-get download -qq $missing 2>&1 | grep -v 'unsandboxed' >&2 || true)
  for p in $missing; do have_deb "$p" || die "download of $p failed"; done
fi
KDEB=$(ls -1 "$DEBS/${KPKG}"_*.deb | sort -V | tail -1)
KVER=${KPKG#linux-image-}

# ---------------------------------------------------------- base initramfs
# cache key: the .deb files + the module list + this script
KEY=$( (ls -l "$DEBS"/*.deb | awk '{print $5, $9}'; echo "$MODULES"; cat "$0") | sha256sum | cut -c1-16)
BASE=$CACHE/base-$KEY.cpio.gz
KERNEL=$CACHE/vmlinuz-$KVER
copy_with_libs() { # copy_with_libs ROOT FILE... : copies binaries and their shared libs
  local root=$1; shift
  local f lib
  for f in "$@"; do
    LD_LIBRARY_PATH="$STAGE/lib/x86_64-linux-gnu" ldd "$f" 2>/dev/null | grep -q 'not found' && \
      die "missing shared libs for $f: $(LD_LIBRARY_PATH="$STAGE/lib/x86_64-linux-gnu" ldd "$f" | grep 'not found' | tr -d '\t' | tr '\n' ' ')"
    for lib in $(LD_LIBRARY_PATH="$STAGE/lib/x86_64-linux-gnu" ldd "$f" 2>/dev/null | awk '/=> \//{print $3} /^\t\/lib64\//{print $1}'); do
      case $lib in
        */ld-linux-x86-64.so.2) [ -e "$root/lib64/ld-linux-x86-64.so.2" ] || cp -L "$lib" "$root/lib64/ld-linux-x86-64.so.2";;
        *) [ -e "$root/lib/x86_64-linux-gnu/${lib##*/}" ] || cp -L "$lib" "$root/lib/x86_64-linux-gnu/";;
      esac
    done
  done
}
if [ ! -s "$BASE" ] || [ ! -s "$KERNEL" ]; then
  t=$(now); log "building base initramfs $BASE"
  BUILD=$(mktemp -d "$CACHE/build.XXXXXX")
  STAGE=$BUILD/stage; ROOT=$BUILD/root; KX=$BUILD/kernel
  mkdir -p "$STAGE" "$ROOT"/{bin,sbin,usr/bin,usr/sbin,lib/x86_64-linux-gnu,lib64,lib/modules,etc/lvm,proc,sys,dev,run,tmp,var/tmp,rv,mnt} "$KX"
  for p in $GUEST_DEBS; do dpkg -x "$(ls -1 "$DEBS/${p}"_*.deb | sort -V | tail -1)" "$STAGE"; done
  # kernel + modules (whole package extracted to a temp dir, ~4 s, 400 MB)
  dpkg -x "$KDEB" "$KX"
  cp "$KX/boot/vmlinuz-$KVER" "$KERNEL"
  MD=$KX/lib/modules/$KVER
  declare -A MODPATH=() DONE=()
  while IFS= read -r m; do n=${m##*/}; n=${n%.ko}; MODPATH[${n//-/_}]=$m; done < "$MD/modules.order"
  ORDER=()
  resolve() {
    local n=${1//-/_} d p
    [ -n "${DONE[$n]:-}" ] && return 0
    DONE[$n]=1
    p=${MODPATH[$n]:-}
    if [ -z "$p" ]; then grep -q "/${1}.ko\$\|/${n}.ko\$" "$MD/modules.builtin" 2>/dev/null && return 0; die "module $1 not found"; fi
    for d in $(tr '\0' '\n' < "$MD/$p" | sed -n 's/^depends=//p' | tr ',' ' '); do resolve "$d"; done
    ORDER+=("$p")
  }
  for m in $MODULES; do resolve "$m"; done
  for p in "${ORDER[@]}"; do cp "$MD/$p" "$ROOT/lib/modules/"; echo "${p##*/}" >> "$ROOT/etc/rv-modules"; done
  # userland
  cp "$STAGE/bin/busybox" "$ROOT/bin/busybox"
  cp -a "$STAGE/sbin/." "$ROOT/sbin/"
  cp -a "$STAGE/usr/sbin/." "$ROOT/usr/sbin/"
  cp -a "$STAGE/lib/x86_64-linux-gnu/." "$ROOT/lib/x86_64-linux-gnu/"
  copy_with_libs "$ROOT" "$STAGE/sbin/lvm" "$STAGE/sbin/dmsetup" "$STAGE/usr/sbin/pdata_tools"
  # host bash (same Debian 12) so that guest scripts may use #!/bin/bash
  cp "$(readlink -f /bin/bash)" "$ROOT/bin/bash"; copy_with_libs "$ROOT" /bin/bash
  for a in $("$ROOT/bin/busybox" --list-full); do [ -e "$ROOT/$a" ] || [ -L "$ROOT/$a" ] || ln -s /bin/busybox "$ROOT/$a"; done
  # guest-side files (everything between the GUEST markers is part of the cache key)
  sed -n '/^#==GUEST==lvm.conf/,/^#==END==/p' "$0" | sed '1d;$d' > "$ROOT/etc/lvm/lvm.conf"
  sed -n '/^#==GUEST==init/,/^#==END==/p' "$0" | sed '1d;$d' > "$ROOT/init"
  chmod 755 "$ROOT/init"
  echo "root:x:0:0:root:/root:/bin/sh" > "$ROOT/etc/passwd"; echo "root:x:0:" > "$ROOT/etc/group"
  (cd "$ROOT" && find . | "$ROOT/bin/busybox" cpio -o -H newc 2>/dev/null | gzip -1 > "$BASE.tmp")
  # other copies of this recipe share RV_HOME with another key: only prune old bases
  find "$CACHE" -maxdepth 1 -name 'base-*.cpio.gz' -mtime +30 -delete 2>/dev/null || true
  mv "$BASE.tmp" "$BASE"
  rm -rf "$BUILD"
  log "base initramfs $(du -h "$BASE" | cut -f1) built in $(awk -v a="$t" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}')s"
fi

# Uncompressed vmlinux (ELF with a PVH note) boots ~3 s faster under TCG than
# the xz-compressed bzImage (no real-mode setup, no in-guest xz decompression).
VMLINUX=$CACHE/vmlinux-$KVER
if [ ! -s "$VMLINUX" ] && [ ! -e "$VMLINUX.none" ]; then
  off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$KERNEL" | head -1 | cut -d: -f1 || true)
  if [ -n "$off" ] && { tail -c +$((off + 1)) "$KERNEL" 2>/dev/null || true; } | xz -dc --single-stream > "$VMLINUX.tmp" 2>/dev/null \
     && [ "$(head -c 4 "$VMLINUX.tmp" | od -An -c | tr -d ' ')" = '177ELF' ]; then
    mv "$VMLINUX.tmp" "$VMLINUX"
  else rm -f "$VMLINUX.tmp"; touch "$VMLINUX.none"; fi
fi

# ------------------------------------------------------------ node (optional)
BB=$CACHE/busybox   # host-side copy of busybox, used as `cpio -o`
if [ ! -x "$BB" ]; then
  dpkg-deb --fsys-tarfile "$(ls -1 "$DEBS"/busybox-static_*.deb | sort -V | tail -1)" | tar -xO ./bin/busybox > "$BB.tmp"
  chmod 755 "$BB.tmp"; mv "$BB.tmp" "$BB"
fi
NODE_CPIO=""
if [ "$RV_NODE" != 0 ]; then
  NODE_BIN=$(command -v node || true)
  if [ -n "$NODE_BIN" ]; then
    NODE_BIN=$(readlink -f "$NODE_BIN")
    # shellcheck disable=SC2086 # RV_NODE_ADDONS is a list of paths
    NKEY=$( (stat -c '%s %Y' "$NODE_BIN"; echo "$NODE_BIN"; for a in $RV_NODE_ADDONS; do stat -c '%s %Y %n' "$a"; done) | sha256sum | cut -c1-16)
    NODE_CPIO=$CACHE/node-$NKEY.cpio      # uncompressed: faster to unpack under TCG
    if [ ! -s "$NODE_CPIO" ]; then
      log "packing $NODE_BIN into $NODE_CPIO"
      NB=$(mktemp -d "$CACHE/node.XXXXXX"); mkdir -p "$NB/usr/bin" "$NB/lib/x86_64-linux-gnu" "$NB/lib64"
      # shellcheck disable=SC2086 # RV_NODE_ADDONS is a list of paths
      cp "$NODE_BIN" "$NB/usr/bin/node"; STAGE=/nonexistent copy_with_libs "$NB" "$NODE_BIN" $RV_NODE_ADDONS
      (cd "$NB" && find . | "$BB" cpio -o -H newc 2>/dev/null > "$NODE_CPIO.tmp")
      mv "$NODE_CPIO.tmp" "$NODE_CPIO"; rm -rf "$NB"
    fi
  elif [ "$RV_NODE" = 1 ]; then die "RV_NODE=1 but no node on PATH"; fi
fi

touch "$BASE"    # marks it as in use (old ones are pruned by mtime)
flock -u 9; exec 9>&-
if [ "$RV_PREPARE_ONLY" = 1 ]; then
  command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 is not installed"
  log "cache ready in $RV_HOME ($(awk -v a="$T0" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}')s)"
  exit 0
fi

# ----------------------------------------------------------------- per run
# The kernel only recognises an uncompressed cpio segment that starts at a
# 4-byte aligned offset, so every segment is zero-padded to 512 bytes.
pad512() { local s; s=$(stat -c %s "$1"); truncate -s $(( (s + 511) / 512 * 512 )) "$1"; }
WORK=$(mktemp -d /tmp/run-guest.XXXXXX)
cleanup() { if [ "${RV_KEEP:-0}" = 1 ]; then echo "[run-guest] kept $WORK" >&2; else rm -rf "$WORK"; fi; }
trap cleanup EXIT
mkdir -p "$WORK/rv/rv"
cp "$GUEST_SCRIPT" "$WORK/rv/rv/script"; chmod 755 "$WORK/rv/rv/script"
{
  printf 'export RV_SHARE=%q RV_CWD=%q\n' "$RV_SHARE" "$RV_CWD"
  printf 'RV_9P_OPTS=%q\n' "${RV_9P_OPTS-cache=loose}"
  printf 'set --'; for a in "$@"; do printf ' %q' "$a"; done; echo
  for v in $RV_ENV; do [ -n "${!v+x}" ] && printf 'export %s=%q\n' "$v" "${!v}"; done
} > "$WORK/rv/rv/env"
(cd "$WORK/rv" && find . | "$BB" cpio -o -H newc 2>/dev/null > "$WORK/run.cpio")
for d in ${RV_COPY:-}; do   # copied into the guest's RAM root at the same absolute path
  d=$(cd "$d" && pwd -P) || die "RV_COPY: no directory $d"
  pad512 "$WORK/run.cpio"
  # the kernel does not create missing parent directories: list them first
  (cd / && { p=""; IFS=/; for c in ${d#/}; do p=${p:+$p/}$c; [ "$p" = "${d#/}" ] || echo "$p"; done; unset IFS; find "${d#/}"; } \
     | "$BB" cpio -o -H newc 2>/dev/null >> "$WORK/run.cpio")
done
pad512 "$BASE"; [ -z "$NODE_CPIO" ] || pad512 "$NODE_CPIO"
cat "$BASE" ${NODE_CPIO:+"$NODE_CPIO"} "$WORK/run.cpio" > "$WORK/initrd"

DRIVES=()
i=0
for s in $RV_DISKS; do
  truncate -s "$s" "$WORK/disk$i.img"
  DRIVES+=(-drive "file=$WORK/disk$i.img,if=virtio,format=raw,cache=unsafe,discard=unmap,detect-zeroes=unmap")
  i=$((i+1))
done
SHARE_OPTS=()
[ -z "$RV_SHARE" ] || SHARE_OPTS=(-virtfs "local,path=$RV_SHARE,mount_tag=rvshare,security_model=none,id=rvshare")
CONSOLE=${RV_CONSOLE:-$WORK/console.log}
BOOT_KERNEL=$KERNEL
[ "${RV_PVH:-1}" = 1 ] && [ -s "$VMLINUX" ] && BOOT_KERNEL=$VMLINUX
case $RV_ACCEL in
  kvm) ACCEL=(-accel kvm -cpu host);;
  *)   ACCEL=(-accel tcg -cpu max);;
esac
log "prepared in $(awk -v a="$T0" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}')s; booting ($RV_ACCEL, ${RV_SMP} vCPU, ${RV_MEM} MiB)"
T1=$(now)
set +e
# qemu runs in the background so that a signal to this script is handled at
# once (bash runs traps only between commands, and `wait` is interruptible):
# SIGTERM, SIGINT or SIGHUP stop the VM (timeout passes the signal on to qemu,
# SIGKILL if it lingers) and exit 128+n, never leaving qemu behind.
QPID=
stop_vm() { # stop_vm SIGNAL NUMBER
  trap - TERM INT HUP
  if [ -n "$QPID" ] && kill -0 "$QPID" 2>/dev/null; then
    kill -s TERM "$QPID" 2>/dev/null  # (a background job ignores SIGINT: always TERM)
    for _ in $(seq 50); do kill -0 "$QPID" 2>/dev/null || break; sleep 0.1; done
    pkill -KILL -P "$QPID" 2>/dev/null; kill -KILL "$QPID" 2>/dev/null
  fi
  echo "[run-guest] stopped by SIG$1: VM killed" >&2
  exit $((128 + $2))
}
trap 'stop_vm TERM 15' TERM
trap 'stop_vm INT 2' INT
trap 'stop_vm HUP 1' HUP
timeout --foreground -k 5 "$RV_TIMEOUT" qemu-system-x86_64 \
  -machine pc "${ACCEL[@]}" -smp "$RV_SMP" -m "$RV_MEM" \
  -nodefaults -no-user-config -display none -nic none -no-reboot \
  -kernel "$BOOT_KERNEL" -initrd "$WORK/initrd" \
  -append "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init" \
  -serial "file:$CONSOLE" -chardev stdio,id=rvout,signal=off -serial chardev:rvout \
  "${DRIVES[@]}" "${SHARE_OPTS[@]}" < /dev/null &
QPID=$!
wait "$QPID"
QRC=$?
trap - TERM INT HUP
set -e
T2=$(now)
RC=$(sed -n 's/^RV_EXIT=\([0-9]*\).*/\1/p' "$CONSOLE" | tail -1)
if [ "$RV_VERBOSE" = 1 ]; then
  log "qemu exit $QRC, VM wall time $(awk -v a="$T1" -v b="$T2" 'BEGIN{printf "%.1f", b-a}')s, total $(awk -v a="$T0" -v b="$T2" 'BEGIN{printf "%.1f", b-a}')s"
  grep -a '^RV_TIME' "$CONSOLE" | sed 's/^/[run-guest] guest /' >&2 || true
fi
if [ -z "$RC" ]; then
  echo "[run-guest] guest did not report an exit status (qemu rc=$QRC); console log tail:" >&2
  tail -n 40 "$CONSOLE" >&2 || true
  [ "$QRC" = 124 ] && exit 124
  exit 125
fi
exit "$RC"

# ============================ guest-side files ==============================
: <<'__GUEST_FILES__'
#==GUEST==lvm.conf
config { checks = 1 }
devices {
  scan = [ "/dev" ]
  obtain_device_list_from_udev = 0
  external_device_info_source = "none"
  multipath_component_detection = 0
  md_component_detection = 0
}
activation {
  udev_sync = 0
  udev_rules = 0
  verify_udev_operations = 0
  monitoring = 0
}
global {
  thin_check_executable = "/usr/sbin/thin_check"
  thin_dump_executable = "/usr/sbin/thin_dump"
  thin_repair_executable = "/usr/sbin/thin_repair"
}
#==END==
#==GUEST==init
#!/bin/busybox sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb LANG=C.UTF-8
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /run/lvm /run/lock/lvm /root /tmp /var/tmp
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
ln -sf /proc/self/fd /dev/fd; ln -sf /proc/self/fd/0 /dev/stdin; ln -sf /proc/self/fd/1 /dev/stdout; ln -sf /proc/self/fd/2 /dev/stderr
ln -sf /proc/mounts /etc/mtab
while read -r m; do insmod "/lib/modules/$m" 2>/dev/null || echo "rv-init: insmod $m failed" >&2; done < /etc/rv-modules
. /rv/env
if [ -n "$RV_SHARE" ]; then
  mkdir -p "$RV_SHARE"
  if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,access=any${RV_9P_OPTS:+,$RV_9P_OPTS} rvshare "$RV_SHARE"; then
    echo "rv-init: 9p mount of $RV_SHARE failed" > /dev/ttyS1; echo "RV_EXIT=125"; poweroff -f
  fi
fi
stty -F /dev/ttyS1 raw -echo 2>/dev/null
echo "RV_TIME script-start uptime=$(cut -d' ' -f1 /proc/uptime)"
cd "${RV_CWD:-/}" 2>/dev/null || cd /
case $(head -c 2 /rv/script) in '#!') /rv/script "$@";; *) sh /rv/script "$@";; esac < /dev/null > /dev/ttyS1 2>&1
rc=$?
echo "RV_TIME script-end uptime=$(cut -d' ' -f1 /proc/uptime)"
cd /; sync
[ -n "$RV_SHARE" ] && umount "$RV_SHARE" 2>/dev/null
echo "RV_EXIT=$rc"
poweroff -f
#==END==
__GUEST_FILES__
