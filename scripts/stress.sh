#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# stress.sh - the randomized stress test on the debug kernel.
#
#   scripts/stress.sh [--duration SECS] [--seed N] [--faults [PCT]]
#                     [--module kcmux|kcm] [--workers N] [--kernel DIR]
#                     [--log FILE] [--no-build]
#
# Boots the debug kernel (KASAN, UBSAN, lockdep, kmemleak, fault
# injection; scripts/debug-kernel.sh) once under QEMU and runs
# selftests/stress/run-stress.sh in it: kcm_stress for SECS (default 60)
# and, with --faults, a second run with allocations in the module's
# paths failing with probability PCT % (default 2) and the fail-nth
# sweep.  --module kcm runs the same against the in-tree kcm.ko.
#
# Prints the figures of every phase and a verdict.  Exit status 0 only
# if every phase ran to the end with no invariant failure or unexpected
# errno, and the kernel log is clean (no KASAN/UBSAN/lockdep/WARN/hung
# task/soft lockup report, no kmemleak leak, kcmux unloaded): vm-run's
# scanner decides that.  Anything else exits 1 (2: usage).
#
# Replay: the seed is printed; --seed N --duration SECS replays each
# thread's sequence of operations (which objects they hit depends on the
# interleaving, so a replay reproduces the mix, not the exact schedule).

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PROG=${0##*/}

duration=60
seed=
faults=0
pct=2
module=kcmux
workers=4
kernel=
log=
build=1

die() {
	echo "$PROG: $*" >&2
	exit 2
}

usage() {
	sed -n '4,8s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
	exit 2
}

while (($#)); do
	case $1 in
	--duration) duration=${2:?}; shift ;;
	--seed)     seed=${2:?}; shift ;;
	--faults)
		faults=1
		if [[ ${2:-} =~ ^[0-9]+$ ]]; then
			pct=$2
			shift
		fi
		;;
	--module)   module=${2:?}; shift ;;
	--workers)  workers=${2:?}; shift ;;
	--kernel)   kernel=${2:?}; shift ;;
	--log)      log=${2:?}; shift ;;
	--no-build) build=0 ;;
	-h|--help)  usage ;;
	*)          echo "$PROG: unknown argument: $1" >&2; usage ;;
	esac
	shift
done

[[ $duration =~ ^[1-9][0-9]*$ ]] || die "bad --duration: $duration"
[[ $workers =~ ^[1-9][0-9]*$ ]] || die "bad --workers: $workers"
if ! [[ $pct =~ ^[0-9]+$ ]] || ((pct < 1 || pct > 100)); then
	die "bad fault percentage: $pct"
fi
[[ $module == kcmux || $module == kcm ]] || die "bad --module: $module (kcmux or kcm)"
if [[ -z $seed ]]; then
	seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
fi
[[ $seed =~ ^[0-9]+$ ]] || die "bad --seed: $seed"
((faults)) || pct=0

if [[ -z $kernel ]]; then
	kernel=$("$ROOT/scripts/debug-kernel.sh" dir) ||
		die "no debug kernel: run scripts/debug-kernel.sh build (about 40 min)"
fi
[[ -f $kernel/vmlinuz ]] || die "$kernel has no vmlinuz"
name=$(basename "$kernel")
ko=$ROOT/build/$name/kcmux.ko
out=$ROOT/selftests/out/stress

if ((build)); then
	if [[ $module == kcmux ]]; then
		nice make -C "$ROOT" --no-print-directory "build/$name/kcmux.ko" \
			KERNEL_KDIR="$kernel/build" >&2
	fi
	nice make -C "$ROOT/selftests" --no-print-directory \
		"$out/kcm_stress" "$out/run-stress.sh" >&2
fi
[[ -x $out/kcm_stress && -f $out/run-stress.sh ]] ||
	die "$out/kcm_stress missing: make -C selftests"
if [[ $module == kcmux ]]; then
	[[ -f $ko ]] || die "$ko missing"
	modarg=kcmux=$ko
else
	modarg=kcm
fi

# Boot (a minute or two under emulation), each phase (its duration, up
# to 2 min of draining and teardown), the fail-nth sweep, kmemleak.
timeout=$((300 + (duration + 240) * (faults ? 2 : 1) + (faults ? 600 : 0)))
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kcmux-stress.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
klog=${log:-$tmp/kernel.log}

echo "$PROG: $module on $(basename "$kernel"), seed $seed, ${duration} s per run," \
	"$workers workers$( ((faults)) && echo ", faults $pct % + fail-nth")"
echo "$PROG: replay: scripts/stress.sh --module $module --seed $seed" \
	"--duration $duration --workers $workers$( ((faults)) && echo " --faults $pct")"
start=$SECONDS
rc=0
"$ROOT/selftests/vm/vm-run" --kernel "$kernel" --module "$modarg" \
	--timeout "$timeout" --add "$out:/stress" --log "$klog" -- \
	sh /stress/run-stress.sh "$duration" "$seed" "$pct" "$workers" \
	>"$tmp/output" 2>&1 || rc=$?
elapsed=$((SECONDS - start))

# The figures, without the per-failure lines beyond the first few.
grep -v '^FAIL ' "$tmp/output" || true
if grep -q '^FAIL ' "$tmp/output"; then
	echo "--- first failures:"
	grep '^FAIL ' "$tmp/output" | head -n 20
fi

phases=$(grep -c '^RESULT ' "$tmp/output" || true)
bad=$(grep -c '^RESULT FAIL' "$tmp/output" || true)
want=$(( faults ? 3 : 1 ))
leaks=$(grep -c 'unreferenced object 0x' "$klog" || true)

echo "==================================================================="
echo "$PROG: $module, seed $seed, ${elapsed} s in all"
echo "$PROG: phases finished $phases of $want, failed $bad; vm-run status $rc;" \
	"kmemleak reports $leaks"
verdict=ok
case $rc in
0) ;;
1) verdict="invariant or errno failures (see FAIL lines)" ;;
124) verdict="timeout: the VM was killed (a hang?)" ;;
125) verdict="the guest crashed or did not finish" ;;
126) verdict="kernel splat (KASAN/UBSAN/lockdep/WARN/hung task/kmemleak)" ;;
*) verdict="exit status $rc" ;;
esac
if [[ $verdict == ok ]] && ((phases != want || bad || leaks)); then
	verdict="phases incomplete or failed"
fi
if [[ $rc == 126 || $leaks != 0 ]]; then
	echo "--- kernel log findings ($klog):"
	KCMUX_SPLAT_IGNORE=${KCMUX_SPLAT_IGNORE:-} \
		"$ROOT/selftests/vm/scan-splats" "$klog" | head -n 60 || true
fi
if [[ $verdict == ok ]]; then
	echo "$PROG: PASS"
	exit 0
fi
echo "$PROG: FAIL: $verdict"
[[ -n $log ]] || { cp "$klog" "${TMPDIR:-/tmp}/kcmux-stress-$seed.log"; echo "$PROG: kernel log kept in ${TMPDIR:-/tmp}/kcmux-stress-$seed.log"; }
exit 1
