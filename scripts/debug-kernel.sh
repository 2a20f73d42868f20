#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# debug-kernel.sh - build (once) and locate the kcmux debug kernel.
#
#   debug-kernel.sh build    build it unless cached; print its directory
#   debug-kernel.sh dir      print its directory if built, else exit 1
#   debug-kernel.sh kdir     print its kbuild directory (KDIR for
#                            out-of-tree modules) if built, else exit 1
#   debug-kernel.sh config   only unpack the source and write/verify the
#                            .config (no compile); print the .config path
#   debug-kernel.sh prune    delete cached debug kernels built from
#                            other sources/configs than the current ones
#
# The kernel: Debian's linux-source-6.12 (/usr/src/linux-source-6.12.tar.xz)
# configured as `make x86_64_defconfig` + scripts/debug-kernel.config
# (KASAN, UBSAN, lockdep, debug objects, kmemleak, fault injection, ...)
# for vm-run's QEMU test VM:
#
#   selftests/vm/vm-run --kernel "$(scripts/debug-kernel.sh build)" \
#       --module kcm -- CMD...
#   make -C "$(scripts/debug-kernel.sh kdir)" M=$PWD modules
#
# Cache layout (nothing is written inside the repository):
#
#   ${KCMUX_CACHE:-~/.cache/kcmux}/debug-kernel/
#     .lock-<key>         flock(1) lock held while <key> is being built
#     <key>/              key = <source version>-<hash>: the Debian
#                         version of linux-source-6.12 ('~' -> '_') and
#                         the first 12 hex digits of the SHA-256 of this
#                         script followed by the config fragment; any
#                         edit of either gives a new directory
#       vmlinuz           the bzImage (written last: its presence means
#                         the build is complete)
#       kcm.ko            the in-tree KCM (AF_KCM=m), the reference
#       modules/kcm.ko    the same
#       modules/tls.ko    kTLS (TLS=m), for the kTLS attach tests
#       modules/load-order  "tls.ko kcm.ko", one a line, like the stock
#                         kernels of scripts/kernels.sh: vm-run loads
#                         them all for --module kcm, all but kcm.ko
#                         (then kcmux.ko) for --module kcmux=PATH
#       config            the final .config
#       build.log         output of the last configure/compile
#       build/            the kernel tree, built in place (sources and
#                         objects): .config, Module.symvers,
#                         include/generated, scripts/ (modpost, ...),
#                         vmlinux with line-number debug info, and the
#                         unstripped net/kcm/kcm.ko, net/tls/tls.ko.
#                         This is KDIR: make -C <key>/build M=... modules
#
# The .ko copies outside build/ are stripped of debug info (smaller
# initramfs); decode their splats with the copies under build/.
#
# An interrupted build resumes where make stopped (the tree is kept);
# concurrent `build` calls wait for each other.  The compile runs under
# `nice -n 19` with KCMUX_DEBUG_KERNEL_JOBS (default 2) jobs: the machine
# is shared with QEMU test runs.  Missing build tools are installed with
# apt-get when running as root.
#
# Environment: KCMUX_CACHE (default ~/.cache/kcmux),
# KCMUX_DEBUG_KERNEL_JOBS (default 2).

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SELF=$HERE/${BASH_SOURCE[0]##*/}
FRAGMENT=$HERE/debug-kernel.config
PROG=${0##*/}

CACHE=${KCMUX_CACHE:-$HOME/.cache/kcmux}
TOP=$CACHE/debug-kernel
SRC_PKG=linux-source-6.12
SRC_TAR=/usr/src/$SRC_PKG.tar.xz
JOBS=${KCMUX_DEBUG_KERNEL_JOBS:-2}

# Build tools: compiler and make, kconfig (flex, bison), bc for
# timeconst, objtool (libelf), sign-file/certs (libssl), xz for the
# source tarball, cpio for the built-in initramfs, kmod for depmod.
# No dwarves: BTF is off, pahole is not needed.
BUILD_PKGS=(build-essential bc flex bison libelf-dev libssl-dev cpio kmod
	    xz-utils)

die() {
	echo "$PROG: $*" >&2
	exit 1
}

info() {
	echo "$PROG: $*" >&2
}

usage() {
	sed -n '4,13s/^# \{0,1\}//p' "$SELF" >&2
	exit 2
}

# Debian version of the source package, made path-friendly.
source_version() {
	local ver

	ver=$(dpkg-query -W -f='${Version}' "$SRC_PKG" 2>/dev/null) || ver=
	[[ -n $ver && -r $SRC_TAR ]] ||
		die "$SRC_PKG is not installed ($SRC_TAR): apt-get install $SRC_PKG"
	echo "${ver//[^A-Za-z0-9.+-]/_}"
}

cache_key() {
	local ver hash

	[[ -r $FRAGMENT ]] || die "missing $FRAGMENT"
	ver=$(source_version)
	hash=$(cat "$SELF" "$FRAGMENT" | sha256sum)
	echo "$ver-${hash:0:12}"
}

# Complete: vmlinuz is copied last, the rest is what users rely on.
is_built() {
	local dir=$1

	[[ -f $dir/vmlinuz && -f $dir/kcm.ko && -f $dir/modules/load-order &&
	   -f $dir/modules/tls.ko &&
	   -f $dir/build/.config && -f $dir/build/Module.symvers &&
	   -d $dir/build/include/generated && -x $dir/build/scripts/mod/modpost ]]
}

pkg_installed() {
	[[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == *' installed' ]]
}

# The build tools, and the source package itself (needed by cache_key).
ensure_packages() {
	local pkg missing=()

	if [[ $(uname -m) != x86_64 ]]; then
		die "the debug kernel is built for x86_64 hosts only"
	fi
	for pkg in "${BUILD_PKGS[@]}" "$SRC_PKG"; do
		pkg_installed "$pkg" || missing+=("$pkg")
	done
	((${#missing[@]})) || return 0
	[[ $(id -u) -eq 0 ]] ||
		die "missing packages: ${missing[*]} (apt-get install them as root)"
	info "installing ${missing[*]}"
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends "${missing[@]}" >&2; then
		apt-get update -q >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
			--no-install-recommends "${missing[@]}" >&2
	fi
}

# make in the tree, with nothing from the caller's environment that
# would redirect or reconfigure kbuild.
KENV=(env -u KBUILD_OUTPUT -u KCONFIG_CONFIG -u ARCH -u SUBARCH
      -u CROSS_COMPILE -u CC -u LLVM -u KBUILD_EXTMOD -u M -u O -u V)

kmake() {
	local build=$1

	shift
	"${KENV[@]}" make -C "$build" "$@"
}

unpack() {
	local build=$1

	[[ -f $build/.kcmux-unpacked ]] && return 0
	info "unpacking $SRC_TAR"
	rm -rf "$build"
	mkdir -p "$build"
	tar -xf "$SRC_TAR" -C "$build" --strip-components=1
	[[ -f $build/Makefile && -d $build/net/kcm ]] ||
		die "$SRC_TAR does not look like a kernel source tree"
	touch "$build/.kcmux-unpacked"
}

# Every "SYMBOL=value" line of the fragment must be in the .config as
# is; every "SYMBOL is not set" must not be enabled (absent is fine: the
# symbol's menu may be off altogether).  Kconfig drops requests whose
# dependencies are not met without failing, hence this check.
verify_config() {
	local config=$1 line sym want have bad=0

	while IFS= read -r line; do
		if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
			sym=${BASH_REMATCH[1]}
			want=${BASH_REMATCH[2]}
			have=$(grep -m 1 "^$sym=" "$config") || have=
			if [[ ${have#*=} != "$want" || -z $have ]]; then
				echo "$PROG: $sym: requested $want, got ${have:+${have#*=}}${have:-not set}" >&2
				bad=1
			fi
		elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
			sym=${BASH_REMATCH[1]}
			if have=$(grep -m 1 "^$sym=" "$config"); then
				echo "$PROG: $sym: requested off, got ${have#*=}" >&2
				bad=1
			fi
		fi
	done <"$FRAGMENT"
	((bad == 0)) || die "the .config lacks settings of $FRAGMENT (missing dependencies?)"
}

# x86_64_defconfig, the fragment merged over it, dependencies resolved.
configure() {
	local build=$1 log=$2

	[[ -f $build/.kcmux-configured && -f $build/.config ]] && return 0
	info "configuring: x86_64_defconfig + ${FRAGMENT##*/}"
	{
		kmake "$build" x86_64_defconfig
		(cd "$build" &&
			scripts/kconfig/merge_config.sh -m .config "$FRAGMENT")
		kmake "$build" olddefconfig
	} >>"$log" 2>&1 || {
		tail -n 30 "$log" >&2
		die "configuration failed (log: $log)"
	}
	verify_config "$build/.config"
	touch "$build/.kcmux-configured"
}

compile() {
	local build=$1 log=$2

	info "compiling with $JOBS jobs at nice 19 (log: $log)"
	if ! nice -n 19 "${KENV[@]}" make -C "$build" -j"$JOBS" \
		bzImage modules >>"$log" 2>&1; then
		grep -E -m 20 '(error|Error [0-9]+)' "$log" >&2 || tail -n 30 "$log" >&2
		die "kernel build failed (log: $log)"
	fi
	kmake "$build" modules_prepare >>"$log" 2>&1 ||
		die "make modules_prepare failed (log: $log)"
}

# The pieces vm-run and the tests use, next to the tree.
install_outputs() {
	local dir=$1 build=$1/build m

	for m in net/kcm/kcm.ko net/tls/tls.ko arch/x86/boot/bzImage \
		 Module.symvers; do
		[[ -f $build/$m ]] || die "the build did not produce $m"
	done
	rm -rf "$dir/modules" "$dir/vmlinuz"
	mkdir -p "$dir/modules"
	strip --strip-debug -o "$dir/modules/kcm.ko" "$build/net/kcm/kcm.ko"
	strip --strip-debug -o "$dir/modules/tls.ko" "$build/net/tls/tls.ko"
	cp "$dir/modules/kcm.ko" "$dir/kcm.ko"
	printf '%s\n' tls.ko kcm.ko >"$dir/modules/load-order"
	cp "$build/.config" "$dir/config"
	cp "$build/arch/x86/boot/bzImage" "$dir/vmlinuz.tmp"
	mv "$dir/vmlinuz.tmp" "$dir/vmlinuz"
}

do_build() {
	local key dir log start elapsed

	pkg_installed "$SRC_PKG" || ensure_packages
	key=$(cache_key)
	dir=$TOP/$key
	if is_built "$dir"; then
		echo "$dir"
		return 0
	fi
	mkdir -p "$TOP"
	exec 9>"$TOP/.lock-$key"
	if ! flock -n 9; then
		info "another build of $key is running; waiting for it"
		flock 9
	fi
	if is_built "$dir"; then
		echo "$dir"
		return 0
	fi
	start=$SECONDS
	ensure_packages
	mkdir -p "$dir"
	log=$dir/build.log
	: >"$log"
	info "building the debug kernel in $dir"
	unpack "$dir/build"
	configure "$dir/build" "$log"
	compile "$dir/build" "$log"
	install_outputs "$dir"
	elapsed=$((SECONDS - start))
	info "built $(<"$dir/build/include/config/kernel.release") in $((elapsed / 60)) min $((elapsed % 60)) s"
	echo "$dir"
}

do_config() {
	local key dir

	pkg_installed "$SRC_PKG" || ensure_packages
	key=$(cache_key)
	dir=$TOP/$key
	mkdir -p "$TOP"
	exec 9>"$TOP/.lock-$key"
	flock 9
	if ! is_built "$dir"; then
		ensure_packages
		mkdir -p "$dir"
		: >"$dir/build.log"
		unpack "$dir/build"
		configure "$dir/build" "$dir/build.log"
	fi
	echo "$dir/build/.config"
}

do_dir() {
	local dir

	dir=$TOP/$(cache_key)
	if ! is_built "$dir"; then
		info "no debug kernel in $dir (run: $SELF build)"
		exit 1
	fi
	echo "$dir${1:-}"
}

do_prune() {
	local key entry

	key=$(cache_key)
	[[ -d $TOP ]] || return 0
	for entry in "$TOP"/*; do
		[[ -d $entry && ${entry##*/} != "$key" ]] || continue
		# Skip a build in progress (its lock is held).
		if ! flock -n "$TOP/.lock-${entry##*/}" true 2>/dev/null; then
			info "skipping ${entry##*/}: being built"
			continue
		fi
		info "removing $entry"
		rm -rf "$entry" "$TOP/.lock-${entry##*/}"
	done
}

main() {
	(($# == 1)) || usage
	case $1 in
	build)  do_build ;;
	dir)    do_dir ;;
	kdir)   do_dir /build ;;
	config) do_config ;;
	prune)  do_prune ;;
	-h|--help) usage ;;
	*)      echo "$PROG: unknown command: $1" >&2; usage ;;
	esac
}

main "$@"
