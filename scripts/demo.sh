#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# demo.sh - boot a VM, load kcmux, show it working (`make demo`).
#
#   scripts/demo.sh [--kernel REL] [--reference] [-- KCM-DEMO-ARGS...]
#
#   --kernel REL   Debian kernel release to boot (default: the newest one
#                  scripts/kernels.sh supports)
#   --reference    load the kernel's own kcm.ko instead of kcmux, to
#                  compare (the pipelined run is skipped: see
#                  examples/kcm-demo.c, "Pipelining")
#   KCM-DEMO-ARGS  arguments for the main examples/kcm-demo run
#
# Builds examples/ (and build/REL/kcmux.ko if it is missing or stale),
# boots REL under QEMU with selftests/vm/vm-run and, inside the guest,
# shows the module loaded, its kernel log line and the AF_KCM protocol
# registration, then runs the echo demo.  Exits non-zero if any step
# fails; the guest's kernel log is kept in build/demo/.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROG=${0##*/}

rel=
reference=0
demo_args=()

if [[ -t 1 ]]; then
	BOLD=$'\e[1m' GREEN=$'\e[32m' RED=$'\e[31m' RESET=$'\e[0m'
else
	BOLD='' GREEN='' RED='' RESET=''
fi

say() {
	printf '%s==> %s%s\n' "$BOLD" "$*" "$RESET"
}

die() {
	printf '%s%s: %s%s\n' "$RED" "$PROG" "$*" "$RESET" >&2
	exit 1
}

usage() {
	sed -n '6,13s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
	exit "${1:-2}"
}

while (($#)); do
	case $1 in
	--kernel)    rel=${2:?--kernel needs a release}; shift ;;
	--reference) reference=1 ;;
	-h|--help)   usage 0 ;;
	--)          shift; demo_args=("$@"); break ;;
	*)           echo "$PROG: unknown argument: $1" >&2; usage >&2 ;;
	esac
	shift
done

if [[ -z $rel ]]; then
	rel=$("$ROOT/scripts/kernels.sh" list | tail -n 1)
	[[ -n $rel ]] || die "scripts/kernels.sh knows no kernel"
fi

# --- host: build ---------------------------------------------------------

say "Building examples/kcm-demo"
make -s -C "$ROOT/examples" || die "building the examples failed"

if ((reference)); then
	modname=kcm
	module=(--module kcm)
	what="the in-tree kcm.ko"
	log=$ROOT/build/demo/console-$rel-reference.log
else
	say "Checking build/$rel/kcmux.ko"
	make -s -C "$ROOT" --no-print-directory "build/$rel/kcmux.ko" ||
		die "building kcmux for $rel failed"
	modname=kcmux
	module=(--module "kcmux=$ROOT/build/$rel/kcmux.ko")
	what="kcmux"
	log=$ROOT/build/demo/console-$rel.log
fi

# --- guest: what runs inside the VM --------------------------------------

work=$(mktemp -d "${TMPDIR:-/tmp}/kcmux-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Runs under busybox sh in the guest: $1 is kcmux or kcm, the rest are
# the arguments of the main kcm-demo run.
cat >"$work/guest.sh" <<'GUEST'
mod=$1
shift
failed=0

section() {
	printf '\n==== %s ====\n' "$*"
}

# Show a command like a shell session would, then run it.
run() {
	echo "\$ $1"
	if ! eval "$1"; then
		echo "!!! FAILED: $1"
		failed=$((failed + 1))
	fi
}

section "1. The module is loaded"
run "lsmod | grep -w '^$mod'"

section "2. Its kernel log"
if [ "$mod" = kcmux ]; then
	run "dmesg | grep 'kcmux:'"
else
	run "dmesg | grep 'PF_KCM'"
fi

section "3. AF_KCM is registered"
run "grep KCM /proc/net/protocols"

section "4. Echo service: TCP connections multiplexed onto KCM sockets"
run "kcm-demo $*"

if [ "$mod" = kcmux ]; then
	section "5. Pipelined, SOCK_DGRAM, 4 KCM sockets (kcmux only)"
	run "kcm-demo -d -m 4 -w 16 -c 1000"

	section "6. kcmux extensions: replies on the client's own connection, framing without BPF"
	run "kcm-echo-origin -n 8 -c 300"
	run "kcm-framing-demo"
fi

section "Summary"
if [ "$failed" -eq 0 ]; then
	echo "All steps passed."
else
	echo "$failed step(s) failed."
fi
[ "$failed" -eq 0 ]
GUEST

# --- host: boot ------------------------------------------------------------

mkdir -p "$ROOT/build/demo"

say "Booting Linux $rel in QEMU (TCG, no KVM) with $what"
echo "    (the guest's kernel log goes to ${log#"$ROOT"/})"
start=$SECONDS
rc=0
"$ROOT/selftests/vm/vm-run" --kernel "$rel" "${module[@]}" --timeout 240 \
	--log "$log" \
	--add "$ROOT/examples/out/kcm-demo:/bin/kcm-demo" \
	--add "$ROOT/examples/out/kcm-echo-origin:/bin/kcm-echo-origin" \
	--add "$ROOT/examples/out/kcm-framing-demo:/bin/kcm-framing-demo" \
	--add "$work/guest.sh:/demo/guest.sh" \
	-- sh /demo/guest.sh "$modname" "${demo_args[@]}" || rc=$?
elapsed=$((SECONDS - start))

echo
case $rc in
0)
	printf '%s==> Demo passed on %s with %s (%d s including boot)%s\n' \
		"$GREEN$BOLD" "$rel" "$what" "$elapsed" "$RESET"
	;;
124)
	die "the VM timed out after $elapsed s; kernel log: $log"
	;;
125)
	die "the VM crashed or did not boot; kernel log: $log"
	;;
126)
	die "the kernel reported a BUG/WARNING (see above); kernel log: $log"
	;;
*)
	die "the demo failed (status $rc); kernel log: $log"
	;;
esac
