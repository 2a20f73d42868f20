#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# test-installed-tree.sh REL... - `make install` into a staging tree that
# looks like a system, boot REL with that tree's modules, use kcmux the
# way a program does, then `make uninstall`.  Prints TAP; exits non-zero
# if a test failed.
#
# The stage starts with files a distribution has where kcmux installs:
# its <linux/kcm.h>, a man page, and the kernel's own kcm.ko (which claims
# AF_KCM too) indexed by depmod.  For each release:
#  - make install DESTDIR=stage PREFIX=/usr KERNELRELEASE=REL leaves the
#    distribution's files alone, and its depmod run indexes both modules;
#  - kmod's modprobe, dry run on the stage, resolves AF_KCM to kcmux only
#    (modprobe.d/kcmux.conf);
#  - kcm_autoload.c builds against the installed header (pkg-config);
#  - the installed kcmux.7 renders;
#  - in the VM, with nothing preloaded (no vm-run --module), see
#    guest-check.sh: modprobe, and autoload by socket(AF_KCM) and by the
#    generic netlink family, of kcmux and not of kcm;
#  - make uninstall gives back the stage as it was, byte for byte.
#
# Environment: KCMUX_INSTALL_CHECK_DIR (default build/install-check);
# KCMUX_INSTALL_PARTS, the parts to install and uninstall (default
# "install": all; e.g. "install-module install-headers install-man").

set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
WORK=${KCMUX_INSTALL_CHECK_DIR:-$TOP/build/install-check}
PREFIX=/usr
read -r -a INSTALL_PARTS <<<"${KCMUX_INSTALL_PARTS:-install}"
GUEST_CHECKS=11
TESTS_PER_KERNEL=$((8 + GUEST_CHECKS))
# Files a distribution could have where kcmux installs.
DISTRO_FILES=(
	usr/include/linux/kcm.h
	usr/share/man/man7/tcp.7
	usr/share/pkgconfig/other.pc
	usr/bin/other-tool
	etc/modprobe.d/other.conf
)

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

# check NAME COMMAND...: one TAP line, passing if COMMAND succeeds.
check() {
	local name=$1

	shift
	if "$@"; then
		ok "$name"
	else
		not_ok "$name"
	fi
}

diag() {
	sed 's/^/#   /' "$@"
}

# depmod -b as make install runs it, without the warnings about the
# kernel's modules.order and modules.builtin, which a stage lacks.
depmod_stage() {
	depmod -b "$1" "$2" 2>&1 | grep -v 'WARNING: could not open modules\.\(order\|builtin\)' | diag
	return "${PIPESTATUS[0]}"
}

# A checksum line for every file and symlink of the stage, sorted.
stage_sums() {
	(cd "$1" && find . -type f -o -type l | LC_ALL=C sort | xargs -r sha256sum)
}

# The stage before install: the distribution's files, the kernel's kcm.ko
# and depmod's index of it.
seed_stage() {
	local stage=$1 rel=$2 f kimg kcm_dir

	for f in "${DISTRO_FILES[@]}"; do
		mkdir -p "$stage/$(dirname "$f")"
		echo "# distribution file $f" >"$stage/$f"
	done
	kimg=$("$TOP/scripts/kernels.sh" image "$rel") || return 1
	kcm_dir=$stage/lib/modules/$rel/kernel/net/kcm
	mkdir -p "$kcm_dir"
	cp "$kimg/modules/kcm.ko" "$kcm_dir/" || return 1
	depmod_stage "$stage" "$rel"
}

# What install may change of the seeded files: depmod's index.
distro_files_intact() {
	local stage=$1 seeded=$2

	grep -v '/modules\.[^/]*$' "$seeded" >"$seeded.distro"
	(cd "$stage" && sha256sum --check --quiet "$seeded.distro") 2>&1 | diag
	return "${PIPESTATUS[0]}"
}

index_knows_both() {
	local dir=$1

	grep -q '^updates/kcmux\.ko:' "$dir/modules.dep" &&
		grep -q '^kernel/net/kcm/kcm\.ko:' "$dir/modules.dep" &&
		grep -q '^alias net-pf-41 kcmux$' "$dir/modules.alias" &&
		grep -q '^alias net-pf-16-proto-16-family-kcmux kcmux$' "$dir/modules.alias"
}

# What a real system's modprobe (kmod) would insert for socket(AF_KCM).
kmod_resolves_kcmux_only() {
	local stage=$1 rel=$2 out

	out=$(PATH=$PATH:/usr/sbin:/sbin modprobe --dry-run --verbose --dirname "$stage" \
		--set-version "$rel" --config "$stage/etc/modprobe.d" net-pf-41 2>&1)
	if [[ $out != "insmod $stage/lib/modules/$rel/updates/kcmux.ko " ]]; then
		echo "$out" | diag
		return 1
	fi
}

# The helper the guest runs, against the installed header only.
build_helper() {
	local stage=$1 out=$2 cflags

	cflags=$(PKG_CONFIG_PATH=$stage$PREFIX/share/pkgconfig PKG_CONFIG_SYSROOT_DIR=$stage \
		 pkg-config --cflags kcmux) || return 1
	cflags=${cflags%% }
	[[ $cflags == "-I$stage$PREFIX/include/kcmux" ]] || {
		echo "# pkg-config --cflags kcmux: '$cflags'"
		return 1
	}
	# shellcheck disable=SC2086 # one -I option
	if ! gcc -static -O2 -g -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror $cflags \
		-o "$out" "$HERE/kcm_autoload.c" >"$out.log" 2>&1; then
		diag "$out.log"
		return 1
	fi
}

man_page_renders() {
	local page=$1

	[[ -f $page ]] &&
		groff -man -Tutf8 "$page" 2>/dev/null | grep -q 'Kernel Connection Multiplexor'
}

# Relay the guest's PASS/FAIL lines as TAP; fill in checks that never ran.
relay_guest() {
	local rel=$1 line seen=0

	while IFS= read -r line; do
		case $line in
		"PASS "*) ok "$rel: guest: ${line#PASS }"; seen=$((seen + 1)) ;;
		"FAIL "*) not_ok "$rel: guest: ${line#FAIL }"; seen=$((seen + 1)) ;;
		*) echo "#   $line" ;;
		esac
	done
	while ((seen < GUEST_CHECKS)); do
		seen=$((seen + 1))
		not_ok "$rel: guest: check $seen did not report"
	done
}

make_parts() {
	local verb=$1 stage=$2 rel=$3

	make --no-print-directory -C "$TOP" "${INSTALL_PARTS[@]/#install/$verb}" \
		DESTDIR="$stage" PREFIX=$PREFIX KERNELRELEASE="$rel"
}

test_kernel() {
	local rel=$1 work=$WORK/$1 stage rc=0

	stage=$work/stage
	rm -rf "$work"
	mkdir -p "$stage" "$work/guest"
	if ! seed_stage "$stage" "$rel" >"$work/seed.log" 2>&1; then
		echo "Bail out! cannot seed the stage for $rel"
		diag "$work/seed.log"
		exit 1
	fi
	stage_sums "$stage" >"$work/seeded.sums"

	if make_parts install "$stage" "$rel" >"$work/install.log" 2>&1; then
		ok "$rel: make install DESTDIR=stage PREFIX=$PREFIX"
	else
		not_ok "$rel: make install DESTDIR=stage PREFIX=$PREFIX"
		diag "$work/install.log"
	fi
	check "$rel: the distribution's files, <linux/kcm.h> and kcm.ko among them, are untouched" \
		distro_files_intact "$stage" "$work/seeded.sums"
	check "$rel: depmod indexed updates/kcmux.ko, its aliases and the kernel's kcm.ko" \
		index_knows_both "$stage/lib/modules/$rel"
	check "$rel: kmod modprobe resolves net-pf-41 to kcmux only (modprobe.d/kcmux.conf)" \
		kmod_resolves_kcmux_only "$stage" "$rel"
	check "$rel: kcm_autoload builds with pkg-config --cflags kcmux" \
		build_helper "$stage" "$work/guest/kcm_autoload"
	check "$rel: the installed kcmux.7 renders" \
		man_page_renders "$stage$PREFIX/share/man/man7/kcmux.7"

	cp "$HERE/guest-check.sh" "$work/guest/"
	"$TOP/selftests/vm/vm-run" --kernel "$rel" --timeout 240 \
		--add "$stage/lib/modules/$rel:/lib/modules/$rel" \
		--add "$stage/etc/modprobe.d:/etc/modprobe.d" \
		--add "$work/guest:/install" --log "$work/console.log" \
		-- sh /install/guest-check.sh "$rel" >"$work/guest.out" 2>"$work/vm-run.err" || rc=$?
	relay_guest "$rel" <"$work/guest.out"
	# Also a splat, a timeout or a module that would not unload (126,
	# 124, 125) while every check passed.
	if ((rc == 0)); then
		ok "$rel: vm-run: clean kernel log, kcmux unloaded at the end"
	else
		not_ok "$rel: vm-run: clean kernel log, kcmux unloaded at the end"
		echo "# vm-run exited with $rc (kernel log: $work/console.log)"
		diag "$work/vm-run.err"
	fi

	: >"$work/uninstall.diff"
	if make_parts uninstall "$stage" "$rel" >"$work/uninstall.log" 2>&1 &&
	   diff "$work/seeded.sums" <(stage_sums "$stage") >"$work/uninstall.diff"; then
		ok "$rel: make uninstall gives back the stage as it was"
	else
		not_ok "$rel: make uninstall gives back the stage as it was"
		diag "$work/uninstall.log" "$work/uninstall.diff"
	fi
}

main() {
	local rel

	(($#)) || { echo "usage: ${0##*/} REL..." >&2; exit 2; }
	command -v pkg-config >/dev/null || { echo "Bail out! pkg-config missing"; exit 1; }
	echo "1..$((TESTS_PER_KERNEL * $#))"
	for rel in "$@"; do
		test_kernel "$rel"
	done
	((failed == 0))
}

main "$@"
