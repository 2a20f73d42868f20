#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# test-dkms.sh REL... - `make dkms-install` and `make dkms-uninstall` for
# each kernel release, on private trees: prints TAP, exits non-zero if a
# test failed.
#
# The very recipes of the Makefile run, with dkms pointed at trees under
# build/dkms-check/REL/ (--dkmstree, --sourcetree, --installtree) and
# --no-depmod, the module signed with a key made there, and the modprobe
# configuration put there too (MODPROBEDIR).  The host's DKMS state,
# /usr/src, /lib/modules and /etc/modprobe.d are compared before and
# after: the check must leave no trace.  dkms insists on root for
# `install`.
#
# Environment: KCMUX_DKMS_CHECK_DIR (default build/dkms-check).

set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
WORK=${KCMUX_DKMS_CHECK_DIR:-$TOP/build/dkms-check}
VERSION=$(cat "$TOP/VERSION")
# What dkms.conf's BUILD_EXCLUSIVE_CONFIG must list.
REQUIRED_CONFIGS=(CONFIG_INET CONFIG_BPF_SYSCALL CONFIG_PROC_FS)
TESTS_PER_KERNEL=$((8 + ${#REQUIRED_CONFIGS[@]}))

n=0
failed=0

ok() {
	n=$((n + 1))
	echo "ok $n - $*"
}

not_ok() {
	n=$((n + 1))
	failed=$((failed + 1))
	echo "not ok $n - $*"
}

skip() {
	n=$((n + 1))
	echo "ok $n - $1 # SKIP $2"
}

# Indented copy of a log, as TAP diagnostics.
diag() {
	sed 's/^/#   /' "$@"
}

# Everything of kcmux the host's DKMS, /usr/src, /lib/modules and /etc hold.
host_state() {
	local rel=$1

	ls -d /var/lib/dkms/kcmux /usr/src/kcmux-* 2>/dev/null
	find "/lib/modules/$rel" -name 'kcmux.ko*' 2>/dev/null
	ls -l /var/lib/dkms/mok.* /etc/modprobe.d/kcmux.conf 2>/dev/null
}

# make dkms-install / dkms-uninstall on the private trees of REL.
make_dkms() {
	local root=$1 target=$2 rel=$3

	mok_signing_key=$root/mok.key mok_certificate=$root/mok.pub \
	make --no-print-directory -C "$TOP" "$target" DKMS_KERNELS="$rel" \
		DKMS_SOURCETREE="$root/src" MODPROBEDIR="$root/modprobe.d" \
		DKMS_FLAGS="--dkmstree $root/tree --sourcetree $root/src --installtree $root/lib/modules --no-depmod"
}

dkms_private() {
	local root=$1

	shift
	PATH=$PATH:/usr/sbin:/sbin dkms "$@" --dkmstree "$root/tree" \
		--sourcetree "$root/src" --installtree "$root/lib/modules"
}

# The kernel's .config without one option: dkms must refuse the build
# (exit 77) before running make.
check_exclusive() {
	local root=$1 rel=$2 config=$3 kdir fake rc=0

	kdir=$("$TOP/scripts/kernels.sh" kdir "$rel") || return 1
	fake=$root/without-$config
	mkdir -p "$fake/include"
	grep -v "^$config=" "$kdir/.config" >"$fake/.config"
	dkms_private "$root" build -m kcmux -v "$VERSION" -k "0.0.0-without-$config" \
		--kernelsourcedir "$fake" >"$root/exclusive.log" 2>&1 || rc=$?
	((rc == 77))
}

test_kernel() {
	local rel=$1 root=$WORK/$1 log before after ko vermagic signer config

	log=$root/make.log
	before=$(host_state "$rel")
	rm -rf "$root"
	mkdir -p "$root/src" "$root/tree" "$root/lib/modules/$rel" "$root/modprobe.d"

	if make_dkms "$root" dkms-install "$rel" >"$log" 2>&1; then
		ok "$rel: make dkms-install"
	else
		not_ok "$rel: make dkms-install"
		diag "$log"
		find "$root/tree" -name make.log -exec sed 's/^/#   /' {} +
	fi

	if dkms_private "$root" status -m kcmux -v "$VERSION" -k "$rel" 2>>"$log" |
	   grep -q "^kcmux/$VERSION, $rel, [^:]*: installed$"; then
		ok "$rel: dkms status says installed"
	else
		not_ok "$rel: dkms status says installed"
	fi

	# dkms compresses like the kernel's own modules (xz on Debian 6.12).
	ko=$(find "$root/lib/modules/$rel/updates/dkms" -name 'kcmux.ko*' 2>/dev/null | head -n 1)
	vermagic=$([[ -n $ko ]] && modinfo -F vermagic "$ko")
	if [[ ${vermagic%% *} == "$rel" ]]; then
		ok "$rel: updates/dkms/${ko##*/} has vermagic $rel"
	else
		not_ok "$rel: updates/dkms/kcmux.ko* has vermagic $rel (got '${vermagic:-no module}')"
	fi

	if ! grep -q "modules won't be signed" "$log"; then
		signer=$([[ -n $ko ]] && modinfo -F signer "$ko")
		if [[ $signer == "DKMS module signing key" && -s $root/mok.key ]]; then
			ok "$rel: module signed with the private key"
		else
			not_ok "$rel: module signed with the private key (signer '$signer')"
		fi
	else
		skip "$rel: module signed with the private key" "dkms found no sign-file for $rel"
	fi

	if grep -qx 'blacklist kcm' "$root/modprobe.d/kcmux.conf" 2>/dev/null; then
		ok "$rel: modprobe.d/kcmux.conf installed"
	else
		not_ok "$rel: modprobe.d/kcmux.conf installed"
	fi

	for config in "${REQUIRED_CONFIGS[@]}"; do
		if check_exclusive "$root" "$rel" "$config"; then
			ok "$rel: dkms refuses a kernel without $config"
		else
			not_ok "$rel: dkms refuses a kernel without $config"
			diag "$root/exclusive.log"
		fi
	done

	if make_dkms "$root" dkms-uninstall "$rel" >"$log" 2>&1 &&
	   [[ -z $(find "$root/lib/modules" "$root/tree" "$root/src" "$root/modprobe.d" \
			-mindepth 1 -not -path "$root/lib/modules/$rel" -print -quit) ]]; then
		ok "$rel: make dkms-uninstall leaves the trees empty"
	else
		not_ok "$rel: make dkms-uninstall leaves the trees empty"
		diag "$log"
		find "$root/lib/modules" "$root/tree" "$root/src" "$root/modprobe.d" -mindepth 1 | diag
	fi

	if make_dkms "$root" dkms-uninstall "$rel" >"$log" 2>&1; then
		ok "$rel: make dkms-uninstall again does nothing"
	else
		not_ok "$rel: make dkms-uninstall again does nothing"
		diag "$log"
	fi

	after=$(host_state "$rel")
	if [[ $before == "$after" ]]; then
		ok "$rel: the host's DKMS tree, /usr/src, /lib/modules and /etc are untouched"
	else
		not_ok "$rel: the host's DKMS tree, /usr/src, /lib/modules and /etc are untouched"
		diff <(echo "$before") <(echo "$after") | diag
	fi
}

main() {
	local rel

	(($#)) || { echo "usage: ${0##*/} REL..." >&2; exit 2; }
	if [[ $(id -u) -ne 0 ]]; then
		echo "1..0 # SKIP dkms install needs root"
		exit 0
	fi
	command -v dkms >/dev/null || { echo "Bail out! dkms missing: scripts/deps.sh install"; exit 1; }
	echo "1..$((TESTS_PER_KERNEL * $#))"
	for rel in "$@"; do
		test_kernel "$rel"
	done
	((failed == 0))
}

main "$@"
