#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# deps.sh GROUP... - install the Debian packages a task needs.
#
#   build   compiler, kbuild tools, headers of every supported kernel
#   vm      QEMU and what vm-run puts into the guest
#   bpf     clang/llvm, libbpf (static too), bpftool
#   peers   real protocol peers, to capture parser test fixtures
#   install dkms and rst2man (make install, make dkms-install)
#   bench   gnuplot for the benchmark plots
#   source  the Debian kernel source (kselftest harness, checkpatch)
#   tests   static libc for the selftest binaries
#   docs    docutils (rst checks)
#   all     every group
#
# Does nothing, quickly, when everything is installed.  As root it runs
# apt-get install (and apt-get update once, only if an install or a
# lookup failed); otherwise it prints the command to run and fails.
#
# Kernel header versions are never hard-coded: 6.1 comes with the
# linux-headers-amd64 meta package, 6.12 is the newest point release apt
# knows (scripts/kernels.sh newest612).

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROG=${0##*/}
GROUPS_ALL=(build vm bpf source tests docs peers install bench)

die() {
	echo "$PROG: $*" >&2
	exit 1
}

usage() {
	sed -n '4,15s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
	exit 2
}

# apt-get update at most once per run, shared with kernels.sh (which we
# call) through a stamp file.
init_apt_stamp() {
	if [[ -z ${KCMUX_APT_STAMP:-} ]]; then
		KCMUX_APT_STAMP=$(mktemp "${TMPDIR:-/tmp}/kcmux-apt.XXXXXX")
		export KCMUX_APT_STAMP
		trap 'rm -f "$KCMUX_APT_STAMP"' EXIT
	fi
}

apt_update_once() {
	[[ ! -s $KCMUX_APT_STAMP ]] || return 1
	echo updated >"$KCMUX_APT_STAMP"
	echo "$PROG: apt-get update" >&2
	apt-get update -q -o DPkg::Lock::Timeout=600
}

packages_of() {
	local rel

	case $1 in
	build)
		rel=$("$HERE/kernels.sh" newest612) || die "cannot resolve the 6.12 headers package"
		echo gcc make kmod sparse bc flex bison libelf-dev linux-headers-amd64
		echo "linux-headers-$rel"
		;;
	# kmod: kernels.sh image reads module dependencies with modinfo.
	vm)     echo qemu-system-x86 busybox-static cpio xz-utils kmod ;;
	# libelf-dev, zlib1g-dev: static libbpf for the VM's static binaries.
	bpf)    echo clang llvm libbpf-dev libelf-dev zlib1g-dev bpftool ;;
	peers)
		echo nghttp2-client nghttp2-server mosquitto mosquitto-clients
		echo dnsmasq-base bind9-dnsutils memcached libmemcached-tools
		echo postgresql socat python3-thrift kcat
		;;
	install) echo dkms python3-docutils pkg-config groff-base openssl ;;
	bench)  echo gnuplot-nox python3 ;;
	source) echo linux-source-6.12 xz-utils ;;
	tests)  echo libc6-dev gcc make ;;
	docs)   echo python3-docutils ;;
	*)      echo "$PROG: unknown group: $1" >&2; usage ;;
	esac
}

# The packages among $@ that are not fully installed.
missing_packages() {
	local -A ok=()
	local status pkg

	while read -r status pkg; do
		[[ $status == ii ]] && ok[$pkg]=1
	done < <(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' -- "$@" 2>/dev/null || true)
	for pkg in "$@"; do
		[[ -n ${ok[$pkg]:-} ]] || echo "$pkg"
	done
}

# Another apt (unattended-upgrades, a second make) may hold the dpkg lock
# for a while: wait for it rather than fail.
apt_install() {
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		-o DPkg::Lock::Timeout=600 --no-install-recommends "$@"
}

install_packages() {
	if [[ $(id -u) -ne 0 ]]; then
		echo "$PROG: missing packages; run:" >&2
		echo "sudo apt-get install -y $*" >&2
		exit 1
	fi
	echo "$PROG: installing $*" >&2
	if ! apt_install "$@"; then
		apt_update_once || die "apt-get install failed"
		apt_install "$@" || die "apt-get install failed"
	fi
}

main() {
	local groups=("$@") group pkgs=() missing

	((${#groups[@]})) || usage
	for group in "${groups[@]}"; do
		[[ $group != all ]] || groups=("${GROUPS_ALL[@]}")
	done
	init_apt_stamp
	for group in "${groups[@]}"; do
		# shellcheck disable=SC2207 # package names have no spaces
		pkgs+=($(packages_of "$group"))
	done
	mapfile -t missing < <(missing_packages "${pkgs[@]}" | sort -u)
	((${#missing[@]})) || return 0
	install_packages "${missing[@]}"
}

main "$@"
