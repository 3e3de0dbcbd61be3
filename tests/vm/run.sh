#!/usr/bin/env bash
# Runs dpmfs test sets inside a Debian kernel booted under qemu, where the verbs backend
# has a real RDMA device (Soft-RoCE, rdma_rxe) and pools can sit on real DAX PM (an
# emulated NVDIMM). See tests/vm/README.md.
#
#   bash tests/vm/run.sh [--build-dir DIR] [--timeout SEC] [--verbose] [--keep]
#                        [--filter PATTERN] [SET...]
#
# Sets: verbs (transport conformance on verbs + verbs smoke test), persist (every persist
# method through dpmfs-data and dpmfs-bench on verbs), meta (dpmfs-meta and its RPC
# clients on verbs, through dpmfs-bench meta), fs (a cluster on verbs mounted with
# dpmfs-mount: POSIX sanity and fio write+verify through FUSE), dax (a pool on ext4 -o dax over an
# emulated NVDIMM takes persistent writes, the VM is powered off, a second boot checks
# every acknowledged write), all (default). The exit status is 0 when every test passed;
# the last line says "vm: N passed, N failed, N skipped".
# --filter PATTERN: a gtest filter (no spaces) that replaces each test binary's own, e.g.
#   --filter '*RecvTooSmall*/verbs'; --verbose streams the guest console; --keep keeps
#   the work directory. Needs root (or sudo) only to install missing packages.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
vm_dir="$root/tests/vm"
build=${DPMFS_BUILD_DIR:-$root/build}
timeout_s=${DPMFS_VM_TIMEOUT:-900}
cache=${DPMFS_VM_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/dpmfs-vm}
verbose=0
keep=0
filter=""
sets=()
known_sets=(verbs persist meta fs dax)

usage() {
  awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
  exit "${1:-2}"
}

while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build=$2; shift 2 ;;
    --build-dir=*) build=${1#*=}; shift ;;
    --timeout) timeout_s=$2; shift 2 ;;
    --timeout=*) timeout_s=${1#*=}; shift ;;
    -v|--verbose) verbose=1; shift ;;
    --keep) keep=1; shift ;;
    --filter) filter=$2; shift 2 ;;
    --filter=*) filter=${1#*=}; shift ;;
    -h|--help) usage 0 ;;
    -*) echo "run.sh: unknown option $1" >&2; usage ;;
    all) sets+=("${known_sets[@]}"); shift ;;
    *)
      if [[ " ${known_sets[*]} " != *" $1 "* ]]; then
        echo "run.sh: unknown test set '$1' (known: ${known_sets[*]} all)" >&2
        exit 2
      fi
      sets+=("$1"); shift ;;
  esac
done
[ ${#sets[@]} -gt 0 ] || sets=("${known_sets[@]}")
build=$(cd "$build" 2>/dev/null && pwd) || { echo "run.sh: no build directory $build" >&2; exit 2; }

log() { printf 'vm: %s\n' "$*" >&2; }
die() {
  printf 'vm: ERROR: %s\n' "$*" >&2
  echo "vm: 0 passed, 1 failed, 0 skipped"
  exit 3
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root for: $*"
  fi
}

# --- host packages ------------------------------------------------------------------
apt_updated=0
apt_update() {
  if [ "$apt_updated" -eq 0 ]; then
    log "apt-get update"
    as_root apt-get update -qq >&2
    apt_updated=1
  fi
}

host_packages=(qemu-system-x86 busybox-static cpio kmod binutils
  libibverbs1 librdmacm1 ibverbs-providers ibverbs-utils rdmacm-utils iproute2
  ndctl libpmem1 e2fsprogs fio fuse3 libfuse3-3)
ensure_packages() {
  local missing=() p
  for p in "${host_packages[@]}"; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" = "install ok installed" ] ||
      missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  apt_update
  log "installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >&2
}

# --- kernel and modules (cached per kernel package version) -------------------------
# Modules the guest loads; their dependencies come along. crc32_generic: rxe loads the
# crc32 hash at run time (not a modinfo dependency). libnvdimm is named explicitly.
modules=(udp_tunnel ip6_udp_tunnel ib_core ib_uverbs rdma_rxe crc32_generic
  configfs ib_cm iw_cm rdma_cm rdma_ucm libnvdimm nd_btt nd_pmem nfit
  crc16 mbcache jbd2 crc32c_generic ext4 dummy fuse virtio_pci 9pnet_virtio 9p)
optional_modules=(crc32-pclmul)

kernel_package() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}

# Sets kdir (cache entry holding vmlinuz and lib/modules/KVER) and kver.
prepare_kernel() {
  local pkg ver
  pkg=$(kernel_package)
  if [ -z "$pkg" ]; then apt_update; pkg=$(kernel_package); fi
  [ -n "$pkg" ] || die "apt knows no linux-image-amd64 (is a Debian mirror configured?)"
  ver=$(apt-cache policy "$pkg" | awk '$1 == "Candidate:" { print $2 }')
  [ -n "$ver" ] && [ "$ver" != "(none)" ] || die "apt has no candidate for $pkg"
  kdir="$cache/kernel/${pkg}_$ver"
  if [ -f "$kdir/complete" ]; then
    kver=$(cat "$kdir/complete")
    return 0
  fi
  log "fetching $pkg $ver (cache: $kdir)"
  local tmp dl=(apt-get download -q)
  tmp=$(mktemp -d "$work/kernel.XXXXXX")
  # apt's sandbox user cannot write into our private temp dir.
  [ "$(id -u)" -ne 0 ] || dl+=(-o APT::Sandbox::User=root)
  if ! (cd "$tmp" && "${dl[@]}" "$pkg=$ver" >&2); then
    # The lists may name a version the mirror no longer has: refresh once.
    apt_update
    ver=$(apt-cache policy "$pkg" | awk '$1 == "Candidate:" { print $2 }')
    kdir="$cache/kernel/${pkg}_$ver"
    (cd "$tmp" && "${dl[@]}" "$pkg=$ver" >&2) || die "apt-get download $pkg failed"
  fi
  local deb=("$tmp"/*.deb)
  mkdir -p "$tmp/x"
  dpkg-deb --fsys-tarfile "${deb[0]}" |
    tar -x -C "$tmp/x" --wildcards '*/vmlinuz-*' '*/modules/*' ||
    die "extracting ${deb[0]} failed"
  rm -f "${deb[@]}"
  local moddir
  moddir=$(find "$tmp/x" -path '*/modules/*' -maxdepth 4 -type d -name '[0-9]*' | head -n 1)
  [ -n "$moddir" ] || die "$pkg holds no lib/modules/KVER"
  kver=$(basename "$moddir")
  mkdir -p "$tmp/full/lib/modules"
  mv "$moddir" "$tmp/full/lib/modules/$kver"
  depmod -b "$tmp/full" "$kver"

  local new="$tmp/cache" m line path
  mkdir -p "$new/lib/modules/$kver"
  cp "$(find "$tmp/x" -name "vmlinuz-$kver" | head -n 1)" "$new/vmlinuz" ||
    die "$pkg holds no vmlinuz-$kver"
  cp "$tmp/full/lib/modules/$kver"/modules.{order,builtin,builtin.modinfo} \
    "$new/lib/modules/$kver/"
  for m in "${modules[@]}" "${optional_modules[@]}"; do
    local deps
    if ! deps=$(modprobe -C /dev/null -d "$tmp/full" -S "$kver" --show-depends "$m" 2>&1); then
      if [[ " ${optional_modules[*]} " == *" $m "* ]]; then continue; fi
      die "kernel $kver lacks module $m: $deps"
    fi
    while read -r line; do
      case "$line" in
        insmod\ *)
          path=${line#insmod }
          path=${path%% *}
          mkdir -p "$new/$(dirname "${path#"$tmp/full"}")"
          cp "$path" "$new/${path#"$tmp/full"}"
          ;;
      esac
    done <<<"$deps"
  done
  depmod -b "$new" "$kver"
  echo "$kver" >"$new/complete"
  # Keep only the current kernel in the cache.
  rm -rf "$cache/kernel"
  mkdir -p "$(dirname "$kdir")"
  mv "$new" "$kdir"
  rm -rf "$tmp"
  log "kernel $kver cached ($(du -sh "$kdir" | cut -f1))"
}

# --- initramfs ----------------------------------------------------------------------
# Project binaries (path in the build dir); those not built are left out.
project_bins=(tests/transport_conformance_test tests/verbs_smoke_test
  tests/persist_method_test tests/vm_powerloss datapath/dpmfs-data mkfs/mkfs.dpmfs
  metadata/dpmfs-meta tools/bench/dpmfs-bench tools/powerloss/dpmfs-powerloss fs/dpmfs-mount)
# Host tools copied in (the first found of each name).
# fio: the fs set's I/O (its ldd closure, ~85 MB with librbd and friends, comes along);
# fusermount3: libfuse falls back to it where mount(2) is refused.
host_tools=(ip rdma ndctl mkfs.ext4 ibv_devinfo ibv_devices rping kmod fio fusermount3 setpriv)

copy_with_libs() {  # copy_with_libs FILE DEST_IN_ROOT
  local src=$1 dst=$2
  mkdir -p "$rootfs/$(dirname "$dst")"
  if [ -e "$rootfs/$dst" ]; then return 0; fi
  cp -L "$src" "$rootfs/$dst"
  elves+=("$src")
}

build_initramfs() {
  rootfs="$work/root"
  elves=()
  mkdir -p "$rootfs"/{usr/bin,usr/sbin,usr/lib,usr/lib64,usr/local/bin,opt/dpmfs/bin}
  ln -s usr/bin "$rootfs/bin"
  ln -s usr/sbin "$rootfs/sbin"
  ln -s usr/lib "$rootfs/lib"
  ln -s usr/lib64 "$rootfs/lib64"
  mkdir -p "$rootfs"/{dev,proc,sys,tmp,run,mnt/pmem,share,etc/libibverbs.d,root}

  local bb
  bb=$(command -v busybox) || die "busybox not found"
  case "$(ldd "$bb" 2>&1 || true)" in
    *"not a dynamic executable"* | *"statically linked"*) ;;
    *) die "$bb is not statically linked (install busybox-static)" ;;
  esac
  cp "$bb" "$rootfs/usr/bin/busybox"
  ln -s busybox "$rootfs/usr/bin/sh"  # the guest /init installs the other applets

  local t p
  for t in "${host_tools[@]}"; do
    p=$(PATH=/usr/sbin:/usr/bin:/sbin:/bin command -v "$t") || die "host tool $t not found"
    copy_with_libs "$p" "usr/local/bin/$t"
  done
  ln -s kmod "$rootfs/usr/local/bin/modprobe"
  ln -s kmod "$rootfs/usr/local/bin/lsmod"
  # mke2fs reads its defaults; without the file it still works but warns.
  [ -f /etc/mke2fs.conf ] && cp /etc/mke2fs.conf "$rootfs/etc/"

  # libibverbs loads its provider at run time: ldd cannot see it.
  local provider found=0
  for provider in /usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav*.so; do
    [ -e "$provider" ] || continue
    copy_with_libs "$provider" "${provider#/}"
    found=1
  done
  [ "$found" -eq 1 ] || die "librxe-rdmav*.so not found (ibverbs-providers)"
  cp /etc/libibverbs.d/rxe.driver "$rootfs/etc/libibverbs.d/"
  # glibc dlopens libgcc_s for unwinding (thread cancellation, exceptions).
  local gcc_s
  gcc_s=$(ldconfig -p | awk '/libgcc_s\.so\.1 .*x86-64/ { print $NF; exit }')
  [ -n "$gcc_s" ] && copy_with_libs "$gcc_s" "${gcc_s#/}"

  local rel have=()
  for rel in "${project_bins[@]}"; do
    [ -x "$build/$rel" ] || continue
    local dst="opt/dpmfs/bin/$(basename "$rel")"
    objcopy --strip-debug "$build/$rel" "$rootfs/$dst" 2>/dev/null || cp "$build/$rel" "$rootfs/$dst"
    elves+=("$build/$rel")
    have+=("$(basename "$rel")")
  done
  log "project binaries: ${have[*]:-none}"

  # Every shared library the ELF files need (ldd lists the whole closure of each), at the
  # path the loader looks for it.
  local lib
  while read -r lib; do
    mkdir -p "$rootfs/$(dirname "$lib")"
    cp -L "$lib" "$rootfs/$lib"
  done < <(ldd "${elves[@]}" 2>/dev/null |
    awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }' | sort -u)
  ldconfig -r "$rootfs" 2>/dev/null || true

  cp -a "$kdir/lib/modules" "$rootfs/lib/"
  install -m 0755 "$vm_dir/init.sh" "$rootfs/init"

  (cd "$rootfs" && find . -print0 | cpio --null -o -H newc --quiet) >"$work/initramfs.cpio"
  rm -rf "$rootfs"
  log "initramfs $(du -h "$work/initramfs.cpio" | cut -f1)"
}

# --- boot ---------------------------------------------------------------------------
# boot N "SETS": boots once; sets boot_rc to the guest's code (0 pass, 1 fail, 2+ error)
# or 100 (guest died without reporting) / 124 (timeout).
boot() {
  local n=$1 guest_sets=$2
  local out="$work/boot$n.log"
  : >"$out"
  local tail_pid=""
  if [ "$verbose" -eq 1 ]; then
    tail -n +1 -f "$out" >&2 &
    tail_pid=$!
  fi
  local rc=0
  # In the background and waited for, so that a signal to this script stops qemu too
  # (timeout runs it in a process group of its own, out of reach of the terminal's ^C).
  timeout -k 10 "$timeout_s" qemu-system-x86_64 \
    -machine pc,nvdimm=on -accel tcg,thread=multi -cpu max -smp 2 \
    -m 1G,slots=2,maxmem=4G -display none -monitor none -no-reboot -nic none \
    -serial "file:$out" \
    -kernel "$kdir/vmlinuz" -initrd "$work/initramfs.cpio" \
    -append "console=ttyS0 quiet panic=-1 dpmfs.sets=${guest_sets// /,} dpmfs.boot=$n${filter:+ dpmfs.filter=$filter}" \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
    -object "memory-backend-file,id=mem1,share=on,mem-path=$work/nvdimm.img,size=512M" \
    -device nvdimm,id=nv1,memdev=mem1 \
    </dev/null >"$work/qemu$n.err" 2>&1 &
  qemu_pid=$!
  wait "$qemu_pid" || rc=$?
  qemu_pid=""
  if [ -n "$tail_pid" ]; then sleep 0.2; kill "$tail_pid" 2>/dev/null || true; wait "$tail_pid" 2>/dev/null || true; fi
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    log "boot $n: timed out after ${timeout_s}s"
    boot_rc=124
  elif [ $((rc & 1)) -eq 1 ]; then
    boot_rc=$((rc >> 1))
  else
    log "boot $n: the guest stopped without reporting a result (qemu exit $rc)"
    sed 's/^/qemu: /' "$work/qemu$n.err" >&2
    boot_rc=100
  fi
}

show_output() {  # the guest's console, kernel noise included
  local n=$1
  echo "----- guest console, boot $n -----" >&2
  tr -d '\r' <"$work/boot$n.log" >&2
  echo "----- end of boot $n -----" >&2
}

# --- main ---------------------------------------------------------------------------
start=$(date +%s)
mkdir -p "$cache"
work=$(mktemp -d "${TMPDIR:-/tmp}/dpmfs-vm.XXXXXX")
cleanup() {
  if [ "$keep" -eq 1 ]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
qemu_pid=""
on_signal() {
  if [ -n "$qemu_pid" ]; then kill -TERM "$qemu_pid" 2>/dev/null || true; wait "$qemu_pid" 2>/dev/null || true; fi
  exit 130
}
trap on_signal INT TERM

# The binaries each set runs: missing ones fail here, loudly, before anything boots.
for s in "${sets[@]}"; do
  case "$s" in
    verbs) need=(tests/transport_conformance_test tests/verbs_smoke_test) ;;
    persist) need=(mkfs/mkfs.dpmfs datapath/dpmfs-data tools/bench/dpmfs-bench) ;;
    meta) need=(mkfs/mkfs.dpmfs metadata/dpmfs-meta tools/bench/dpmfs-bench) ;;
    fs) need=(mkfs/mkfs.dpmfs datapath/dpmfs-data metadata/dpmfs-meta fs/dpmfs-mount) ;;
    dax) need=(mkfs/mkfs.dpmfs datapath/dpmfs-data tests/vm_powerloss) ;;
  esac
  for b in "${need[@]}"; do
    [ -x "$build/$b" ] || die "set $s needs $build/$b: build it first (tools/build.sh)"
  done
done

ensure_packages
# One kernel preparation at a time per cache (parallel runs share it).
exec 9>"$cache/.lock"
flock 9
prepare_kernel
flock -u 9
build_initramfs
truncate -s 512M "$work/nvdimm.img"

# Known order (dax last: its first boot ends in the power-off), duplicates dropped.
ordered=()
for k in "${known_sets[@]}"; do
  [[ " ${sets[*]} " == *" $k "* ]] && ordered+=("$k")
done
boots=("${ordered[*]}")
[[ " ${ordered[*]} " == *" dax "* ]] && boots+=("dax")

log "booting Debian kernel $kver under qemu (TCG) for: ${ordered[*]}"
total_pass=0 total_fail=0 total_skip=0 verdict=0
for i in "${!boots[@]}"; do
  n=$((i + 1))
  if [ "$n" -gt 1 ] && ! grep -q 'powering off while writes stream' "$work/boot1.log"; then
    log "boot $n (dax check) not run: boot 1 never reached the power-off"
    total_fail=$((total_fail + 1)) verdict=1
    break
  fi
  boot "$n" "${boots[$i]}"
  read -r p f s < <(tr -d '\r' <"$work/boot$n.log" |
    awk '$1 == "DPMFS-VM-COUNTS" { p += $2; f += $3; s += $4 } END { print p+0, f+0, s+0 }')
  total_pass=$((total_pass + p)) total_fail=$((total_fail + f)) total_skip=$((total_skip + s))
  if [ "$boot_rc" -ne 0 ]; then
    verdict=1
    [ "$f" -gt 0 ] || total_fail=$((total_fail + 1))  # died or timed out before counting
    [ "$verbose" -eq 1 ] || show_output "$n"
  elif [ "$verbose" -eq 0 ]; then
    # Short form on success: the verdict lines.
    tr -d '\r' <"$work/boot$n.log" |
      grep -E '^(dpmfs-vm|\[  (PASSED|SKIPPED|FAILED) *\])' >&2 || true
  fi
  # A later boot only makes sense after a boot that reported (the dax check).
  [ "$boot_rc" -lt 100 ] || break
done

log "done in $(($(date +%s) - start))s"
echo "vm: $total_pass passed, $total_fail failed, $total_skip skipped"
exit "$verdict"
