#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# test-installed-tree.sh REL... - `make install` into a staging tree, boot
# REL with that tree's /lib/modules/REL, use kcmux the way a program does,
# then `make uninstall`.  Prints TAP; exits non-zero if a test failed.
#
# For each release:
#  - make install DESTDIR=stage PREFIX=/usr KERNELRELEASE=REL, with a few
#    files already in the stage standing for the distribution's (its
#    <linux/kcm.h> among them): install must not touch them;
#  - the depmod index of the stage knows the module and its alias;
#  - kcm_autoload.c builds against the installed header (pkg-config);
#  - the installed kcmux.7 renders;
#  - in the VM, with nothing preloaded (no vm-run --module), see
#    guest-check.sh: modprobe, and autoload by socket(AF_KCM) and by the
#    generic netlink family;
#  - make uninstall leaves exactly the distribution's files.
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
GUEST_CHECKS=10
TESTS_PER_KERNEL=$((7 + GUEST_CHECKS))
# Files a distribution could have where kcmux installs.
DISTRO_FILES=(
	usr/include/linux/kcm.h
	usr/share/man/man7/tcp.7
	usr/share/pkgconfig/other.pc
	usr/bin/other-tool
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

# Run the check "$@", one TAP line named $1... with the command after --.
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

# The stage before install: the distribution's files, one line each.
seed_stage() {
	local stage=$1 f

	for f in "${DISTRO_FILES[@]}"; do
		mkdir -p "$stage/$(dirname "$f")"
		echo "distribution file $f" >"$stage/$f"
	done
}

# Every file and symlink of the stage, relative, sorted.
stage_files() {
	(cd "$1" && find . -type f -o -type l | sed 's|^\./||' | LC_ALL=C sort)
}

distro_files_intact() {
	local stage=$1 f

	for f in "${DISTRO_FILES[@]}"; do
		[[ $(cat "$stage/$f" 2>/dev/null) == "distribution file $f" ]] || {
			echo "# $f was changed or removed"
			return 1
		}
	done
}

index_knows_kcmux() {
	local dir=$1

	grep -q '^updates/kcmux\.ko:' "$dir/modules.dep" &&
		grep -q '^alias net-pf-41 kcmux$' "$dir/modules.alias" &&
		grep -q '^alias net-pf-16-proto-16-family-kcmux kcmux$' "$dir/modules.alias"
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

test_kernel() {
	local rel=$1 work=$WORK/$1 stage rc=0

	stage=$work/stage
	rm -rf "$work"
	mkdir -p "$stage" "$work/guest"
	seed_stage "$stage"

	if make --no-print-directory -C "$TOP" "${INSTALL_PARTS[@]}" DESTDIR="$stage" PREFIX=$PREFIX \
		KERNELRELEASE="$rel" >"$work/install.log" 2>&1; then
		ok "$rel: make install DESTDIR=stage PREFIX=$PREFIX"
	else
		not_ok "$rel: make install DESTDIR=stage PREFIX=$PREFIX"
		diag "$work/install.log"
	fi
	stage_files "$stage" >"$work/installed.txt"
	check "$rel: the distribution's files, <linux/kcm.h> among them, are untouched" \
		distro_files_intact "$stage"
	check "$rel: depmod indexed updates/kcmux.ko and its aliases" \
		index_knows_kcmux "$stage/lib/modules/$rel"
	check "$rel: kcm_autoload builds with pkg-config --cflags kcmux" \
		build_helper "$stage" "$work/guest/kcm_autoload"
	check "$rel: the installed kcmux.7 renders" \
		man_page_renders "$stage$PREFIX/share/man/man7/kcmux.7"

	cp "$HERE/guest-check.sh" "$work/guest/"
	"$TOP/selftests/vm/vm-run" --kernel "$rel" --timeout 240 \
		--add "$stage/lib/modules/$rel:/lib/modules/$rel" \
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
	if make --no-print-directory -C "$TOP" "${INSTALL_PARTS[@]/#install/uninstall}" \
		DESTDIR="$stage" PREFIX=$PREFIX KERNELRELEASE="$rel" >"$work/uninstall.log" 2>&1 &&
	   diff <(printf '%s\n' "${DISTRO_FILES[@]}" | LC_ALL=C sort) \
		<(stage_files "$stage") >"$work/uninstall.diff"; then
		ok "$rel: make uninstall leaves exactly the distribution's files"
	else
		not_ok "$rel: make uninstall leaves exactly the distribution's files"
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
