#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# kernels.sh - which kernels kcmux supports, and where their pieces are.
#
#   kernels.sh list          supported releases, one per line, 6.1 first
#   kernels.sh newest612     newest 6.12.N+deb12-amd64 release
#   kernels.sh kdir REL      headers (kbuild) directory for REL
#   kernels.sh image REL     $CACHE/kernels/REL with vmlinuz, kcm.ko, modules/
#
# Releases are never hard-coded: 6.1 is whatever linux-headers-amd64
# depends on, 6.12 is the newest linux-headers-6.12.*+deb12-amd64 apt
# knows about.  Kernel images are fetched with `apt-get download` and
# unpacked with dpkg-deb into the cache: they are never installed on the
# host (the host cannot load modules anyway; everything runs in QEMU).
#
# Environment: KCMUX_CACHE (default ~/.cache/kcmux).

set -euo pipefail

CACHE=${KCMUX_CACHE:-$HOME/.cache/kcmux}
PROG=${0##*/}

die() {
	echo "$PROG: $*" >&2
	exit 1
}

# apt-get update is slow: do it only after a lookup failed, only as
# root, and at most once per run.  deps.sh, which calls us, shares its
# "already updated" state through the stamp file KCMUX_APT_STAMP.
apt_updated=

apt_update_once() {
	[[ $(id -u) -eq 0 ]] || return 1
	if [[ -n ${KCMUX_APT_STAMP:-} ]]; then
		[[ ! -s $KCMUX_APT_STAMP ]] || return 1
		echo updated >"$KCMUX_APT_STAMP"
	else
		[[ -z $apt_updated ]] || return 1
		apt_updated=1
	fi
	echo "$PROG: package lists look stale, running apt-get update" >&2
	apt-get update -q >&2
}

# The answers of `list` depend only on apt's package lists and dpkg's
# status.  apt-cache needs ~0.7 s per call here (no pkgcache.bin), so
# remember the answer until either of those changes.
RELEASES_CACHE=$CACHE/kernels/releases

releases_cache_valid() {
	[[ -s $RELEASES_CACHE ]] || return 1
	[[ -z $(find /var/lib/apt/lists /var/lib/dpkg/status -maxdepth 1 \
		-newer "$RELEASES_CACHE" -print -quit 2>/dev/null) ]]
}

# 6.1: the release the linux-headers-amd64 meta package points at.
lookup_61() {
	local rel

	rel=$(apt-cache depends linux-headers-amd64 2>/dev/null |
	      sed -n 's/^ *Depends: linux-headers-\(6\.1\.[^ ]*-amd64\)$/\1/p' |
	      sort -V | tail -n 1)
	if [[ -z $rel ]]; then
		# No apt lists: trust what is installed.
		rel=$(dpkg-query -W -f='${Depends}' linux-headers-amd64 2>/dev/null |
		      grep -o 'linux-headers-6\.1\.[^ ,]*-amd64' |
		      sed 's/^linux-headers-//' | sort -V | tail -n 1) || true
	fi
	if [[ -z $rel ]]; then
		rel=$(installed_headers '6.1.*-amd64') || true
	fi
	echo "$rel"
}

# 6.12: the highest point release of the linux-headers-6.12.N+deb12-amd64
# packages apt can see.
lookup_612() {
	local rel

	rel=$(apt-cache pkgnames linux-headers-6.12. 2>/dev/null |
	      sed -n 's/^linux-headers-\(6\.12\.[0-9]*+deb12-amd64\)$/\1/p' |
	      sort -V | tail -n 1)
	if [[ -z $rel ]]; then
		rel=$(installed_headers '6.12.*+deb12-amd64') || true
	fi
	echo "$rel"
}

# Newest /usr/src/linux-headers-GLOB that is a real kbuild tree.
installed_headers() {
	local d

	for d in /usr/src/linux-headers-$1; do
		[[ -f $d/Makefile ]] && echo "${d#/usr/src/linux-headers-}"
	done | sort -V | tail -n 1
}

lookup_releases() {
	local r61 r612

	r61=$(lookup_61)
	r612=$(lookup_612)
	if [[ -z $r61 || -z $r612 ]] && apt_update_once; then
		r61=$(lookup_61)
		r612=$(lookup_612)
	fi
	[[ -n $r61 ]] || die "cannot determine the 6.1 release (linux-headers-amd64 unknown to apt)"
	[[ -n $r612 ]] || die "cannot determine the 6.12 release (no linux-headers-6.12.*+deb12-amd64 known to apt)"
	printf '%s\n%s\n' "$r61" "$r612"
}

cmd_list() {
	local tmp

	if ! releases_cache_valid; then
		mkdir -p "${RELEASES_CACHE%/*}"
		tmp=$(mktemp "$RELEASES_CACHE.XXXXXX")
		lookup_releases >"$tmp"
		mv -f "$tmp" "$RELEASES_CACHE"
	fi
	cat "$RELEASES_CACHE"
}

cmd_newest612() {
	cmd_list | grep '^6\.12\.'
}

cmd_kdir() {
	local rel=$1 kdir=/usr/src/linux-headers-$1

	[[ -f $kdir/Makefile ]] ||
		die "no headers for $rel in $kdir: run scripts/deps.sh build"
	echo "$kdir"
}

# --- image ---------------------------------------------------------------

# Debian ships the same files in the signed package (linux-image-REL)
# and in linux-image-REL-unsigned; either will do for QEMU, which does no
# secure boot.
image_packages() {
	echo "linux-image-$1" "linux-image-$1-unsigned"
}

# Newest already downloaded .deb for REL: ours, or one apt left behind.
find_image_deb() {
	local pkg

	for pkg in $(image_packages "$1"); do
		compgen -G "$CACHE/debs/${pkg}_*.deb" ||
			compgen -G "/var/cache/apt/archives/${pkg}_*.deb" || true
	done | sort -V | tail -n 1 | grep .
}

download_image_deb() {
	local pkg

	for pkg in $(image_packages "$1"); do
		download_deb "$pkg" "$CACHE/debs" && return 0
	done
	return 1
}

# Print the path of a .deb of the kernel image package for REL, fetching
# it into $CACHE/debs if needed.
fetch_image_deb() {
	local rel=$1

	find_image_deb "$rel" && return 0
	mkdir -p "$CACHE/debs"
	if download_image_deb "$rel" || { apt_update_once && download_image_deb "$rel"; }; then
		find_image_deb "$rel" && return 0
	fi
	die "cannot download $(image_packages "$rel" | sed 's/ / or /') with apt-get download"
}

# apt-get download writes into the current directory; run it in a
# subshell so that our cwd does not change.
download_deb() {
	local pkg=$1 dir=$2 opts=()

	# As root, apt would drop to _apt, which cannot write into $HOME.
	[[ $(id -u) -ne 0 ]] || opts=(-o APT::Sandbox::User=root)
	echo "$PROG: downloading $pkg" >&2
	(cd "$dir" && apt-get download -q "${opts[@]}" "$pkg" >&2) 2>&1 |
		sed "s/^/$PROG: /" >&2
	compgen -G "$dir/${pkg}_*.deb" >/dev/null
}

# Copy module NAME (path relative to lib/modules/REL, maybe .ko.xz/.ko.zst)
# from the unpacked package into DEST as an uncompressed .ko, so that
# busybox insmod in the guest never has to decompress anything.
copy_module() {
	local src=$1 dest=$2

	case $src in
	*.ko.xz)  xz -dc "$src" >"$dest" ;;
	*.ko.zst) zstd -qdc "$src" >"$dest" ;;
	*.ko.gz)  gzip -dc "$src" >"$dest" ;;
	*.ko)     cp "$src" "$dest" ;;
	*)        die "unknown module format: $src" ;;
	esac
}

# Modules the tests need; their dependencies are added automatically.
# kcm is the reference; tls lets tests attach a kTLS socket (EBUSY).
IMAGE_MODULES=(kcm tls)

# Path of module NAME under MODDIR (file names may use - where the module
# name has _).
find_module() {
	local moddir=$1 name=$2

	find "$moddir" -name "$name.ko*" -o -name "${name//_/-}.ko*" | head -n 1 | grep .
}

# Print the module files needed for IMAGE_MODULES, dependencies last.
# The package has no modules.dep (depmod runs at install time), so follow
# each module's "depends" field instead.
module_closure() {
	local moddir=$1 name path dep
	local -A seen=()
	local -a todo=("${IMAGE_MODULES[@]}")

	while ((${#todo[@]})); do
		name=${todo[0]}
		todo=("${todo[@]:1}")
		[[ -z ${seen[$name]:-} ]] || continue
		seen[$name]=1
		path=$(find_module "$moddir" "$name") || die "module $name not in the image package"
		echo "$path"
		for dep in $(modinfo -F depends "$path" | tr ',' ' '); do
			todo+=("$dep")
		done
	done
}

unpack_image() {
	local rel=$1 deb=$2 dir=$3 tmp path mod base

	tmp=$(mktemp -d "$CACHE/kernels/.unpack.XXXXXX")
	# shellcheck disable=SC2064 # expand now: tmp is local
	trap "rm -rf '$tmp'" EXIT
	echo "$PROG: unpacking ${deb##*/}" >&2
	dpkg-deb -x "$deb" "$tmp/root"

	mod=$tmp/root/lib/modules/$rel
	[[ -d $mod ]] || mod=$tmp/root/usr/lib/modules/$rel
	[[ -f $tmp/root/boot/vmlinuz-$rel ]] || die "${deb##*/} has no boot/vmlinuz-$rel"
	[[ -d $mod/kernel ]] || die "${deb##*/} has no lib/modules/$rel/kernel"

	mkdir -p "$tmp/out/modules"
	cp "$tmp/root/boot/vmlinuz-$rel" "$tmp/out/vmlinuz"
	# The config tells which debug options a splat could come from.
	# (Debian's System.map is a placeholder: symbols live in the -dbg package.)
	cp "$tmp/root/boot/config-$rel" "$tmp/out/config" 2>/dev/null || true
	module_closure "$mod/kernel" >"$tmp/closure"
	while read -r path; do
		base=${path##*/}
		copy_module "$path" "$tmp/out/modules/${base%%.ko*}.ko"
	done <"$tmp/closure"
	# The order for insmod: dependencies first.
	tac "$tmp/closure" | sed 's|.*/||; s|\.ko.*|.ko|' >"$tmp/out/modules/load-order"
	cp "$tmp/out/modules/kcm.ko" "$tmp/out/kcm.ko"
	echo "${deb##*/}" >"$tmp/out/source-deb"

	rm -rf "$dir"
	mv "$tmp/out" "$dir"
	rm -rf "$tmp"
	trap - EXIT
}

cmd_image() {
	local rel=$1 dir=$CACHE/kernels/$1 deb

	[[ $rel =~ ^[0-9]+\.[0-9]+\.[0-9A-Za-z.+~-]+$ ]] || die "bad release name: $rel"
	if [[ -f $dir/vmlinuz && -f $dir/modules/tls.ko && -f $dir/source-deb ]]; then
		echo "$dir"
		return 0
	fi
	mkdir -p "$CACHE/kernels"
	# Two runs (make -j, parallel vm-runs) must not unpack at once.
	exec 9>"$CACHE/kernels/.lock"
	flock 9
	if [[ ! -f $dir/modules/tls.ko ]]; then
		deb=$(fetch_image_deb "$rel")
		unpack_image "$rel" "$deb" "$dir"
	fi
	exec 9>&-
	echo "$dir"
}

usage() {
	cat >&2 <<EOF
usage: $PROG list | newest612 | kdir REL | image REL
EOF
	exit 2
}

main() {
	(($#)) || usage
	case $1 in
	list)      (($# == 1)) || usage; cmd_list ;;
	newest612) (($# == 1)) || usage; cmd_newest612 ;;
	kdir)      (($# == 2)) || usage; cmd_kdir "$2" ;;
	image)     (($# == 2)) || usage; cmd_image "$2" ;;
	*)         usage ;;
	esac
}

main "$@"
