/**
 * Which Debian/Ubuntu package provides each external command thinship runs,
 * so "not installed" says what to install (scripts/setup installs the same).
 */
export const DEBIAN_PACKAGE_OF: Readonly<Record<string, string>> = {
  thin_dump: 'thin-provisioning-tools',
  thin_delta: 'thin-provisioning-tools',
  thin_restore: 'thin-provisioning-tools',
  thin_check: 'thin-provisioning-tools',
  thin_ls: 'thin-provisioning-tools',
  thin_metadata_size: 'thin-provisioning-tools',
  openssl: 'openssl',
  lvs: 'lvm2',
  vgs: 'lvm2',
  pvs: 'lvm2',
  lvchange: 'lvm2',
  lvcreate: 'lvm2',
  lvremove: 'lvm2',
  lvm: 'lvm2',
  dmsetup: 'dmsetup',
  losetup: 'mount',
  fincore: 'util-linux',
  blkdiscard: 'util-linux',
  flock: 'util-linux',
  zstd: 'zstd',
  socat: 'socat',
  'qemu-system-x86_64': 'qemu-system-x86',
  xz: 'xz-utils',
  python3: 'python3',
};

/** " (Debian/Ubuntu: apt-get install PACKAGE)" for a known tool, else "". */
export function installHint(tool: string): string {
  const pkg = DEBIAN_PACKAGE_OF[tool.slice(tool.lastIndexOf('/') + 1)];
  return pkg === undefined ? '' : `: install the package ${pkg} (Debian/Ubuntu: apt-get install ${pkg})`;
}
