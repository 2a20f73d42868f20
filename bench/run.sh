#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# run.sh - the kcmux benchmark (what `make bench` runs).
#
#   bench/run.sh [--kernel REL|6.1|6.12] [--quick | --diagnose] [--rounds N]
#                [--secs S] [--warmup S] [--batch] [--no-build] [--out DIR]
#
# One VM boot per run: the guest measures kcmux.ko, the kernel's own
# kcm.ko, user-space framing over TCP and raw TCP on the same kernel, one
# workload at a time with every variant back to back, the whole list
# repeated --rounds times (default 3; --quick: 1 round, a few workloads).
# Each measurement counts --secs (default 3 s; --quick: 1 s) after a
# --warmup of 0.4 s; the guest first waits until its CPUs are idle.
# Default kernel: the newest supported 6.12.
#
# Results in build/bench/ (DIR):
#   REL-DATE.raw   the guest's lines, one per measurement
#   REL-DATE.json  every measurement, medians, spreads, ratios, targets
#   REL-DATE.md    the same as Markdown tables
#   REL-DATE.svg   ratios kcmux/in-tree and kcmux/raw TCP per workload
#   REL-DATE.log   the guest kernel's log
# and REL-latest.{json,md,svg} pointing at the newest full run.
#
# --batch: time every row but the psock series as a batch of messages
# moved from idle buffers to idle buffers (kcm_bench --batch) instead of
# counting a window of the steady stream; results in REL-DATE-batch.*
# (see Documentation/performance.md, "Counting a window, timing a
# batch").
#
# --diagnose: the workloads where kcmux lost, also with a KCM receive
# buffer that never fills, for the CPU-per-message split (application,
# peer, rest); 2 rounds; results in REL-DATE-diagnose.* (no perf in the
# guest, and perf_event sampling gets almost no samples under TCG).
#
# TCG (software emulation) distorts absolute numbers; the ratios between
# variants measured in the same boot are what count.  The guest runs with
# QEMU's instruction counting (KCMUX_ICOUNT, default shift=3,sleep=off;
# not on 6.1, which does not boot with it):
# its clock then follows the instructions it executed, not the host's
# clock, so other load on the host no longer leaks into the figures and
# a "second" is a fixed budget of guest instructions.  With plain TCG a
# busy host made the same measurement vary by 2-3x.
#
# Environment: KCMUX_ICOUNT (QEMU -icount value; "off" for plain TCG),
# KCMUX_VM_RUN (another vm-run, for testing).

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PROG=${0##*/}

cmdline="bench/run.sh $*"
kernel=
quick=0
diagnose=0
batch=0
rounds=
secs=
warmup=
build=1
out=$ROOT/build/bench

die() {
	echo "$PROG: $*" >&2
	exit 1
}

usage() {
	sed -n '4,7s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
	exit 2
}

while (($#)); do
	case $1 in
	--kernel)   kernel=${2:?}; shift ;;
	--quick)    quick=1 ;;
	--diagnose) diagnose=1 ;;
	--rounds)   rounds=${2:?}; shift ;;
	--secs)     secs=${2:?}; shift ;;
	--warmup)   warmup=${2:?}; shift ;;
	--batch)    batch=1 ;;
	--no-build) build=0 ;;
	--out)      out=${2:?}; shift ;;
	-h|--help)  usage ;;
	*)          echo "$PROG: unknown argument: $1" >&2; usage ;;
	esac
	shift
done

# --kernel 6.1 / 6.12 pick the supported release of that series.
resolve_kernel() {
	local rel

	case $kernel in
	"")
		"$ROOT/scripts/kernels.sh" newest612 ;;
	6.1|6.12)
		rel=$("$ROOT/scripts/kernels.sh" list | grep "^$kernel\." | tail -n 1)
		[[ -n $rel ]] || die "no supported $kernel kernel"
		echo "$rel" ;;
	*)
		echo "$kernel" ;;
	esac
}

"$ROOT/scripts/deps.sh" vm tests bpf bench
command -v python3 >/dev/null || die "python3 is needed for the report"
rel=$(resolve_kernel)

# Debian's 6.1 never brings up its second CPU under -icount (QEMU 7.2):
# it runs on the host's clock, and its figures follow the host's load.
vmrun=${KCMUX_VM_RUN:-$ROOT/selftests/vm/vm-run}
case $rel in
6.1.*) icount=${KCMUX_ICOUNT:-off} ;;
*)     icount=${KCMUX_ICOUNT:-shift=3,sleep=off} ;;
esac
[[ $icount != off ]] || icount=
if [[ -z $icount ]]; then
	echo "$PROG: plain TCG: the guest clock follows the host, whose load shows in the figures" >&2
elif ! grep -q KCMUX_ICOUNT "$vmrun"; then
	echo "$PROG: $vmrun cannot pass -icount to QEMU: guest timings will follow the host's load" >&2
	icount=
fi

kdir=$("$ROOT/scripts/kernels.sh" image "$rel")
[[ -f $kdir/kcm.ko ]] || die "no in-tree kcm.ko in $kdir"
# The in-tree module must load on its own in the guest: it has no
# dependencies on the supported kernels (CONFIG_STREAM_PARSER=y).
deps=$(modinfo -F depends "$kdir/kcm.ko" 2>/dev/null || true)
[[ -z $deps ]] || die "kcm.ko of $rel depends on '$deps': guest-bench.sh loads kcm.ko alone"

# The frame workloads also time the shipped generic length parser,
# loaded and pinned in the guest by a static kcmctl.
if ((build)); then
	make -C "$ROOT" --no-print-directory "build/$rel/kcmux.ko"
	make -C "$HERE" --no-print-directory
	make -C "$ROOT/tools/kcmctl" --no-print-directory static OUT="$HERE/out"
	make -C "$ROOT/bpf" --no-print-directory OUT="$HERE/out/parsers"
fi
module=$ROOT/build/$rel/kcmux.ko
[[ -f $module ]] || die "$module missing (make modules-all)"
[[ -x $HERE/out/kcm_bench ]] || die "bench/out/kcm_bench missing (make -C bench)"

mkdir -p "$out"
stamp=$(date -u +%Y%m%d-%H%M%S)
base=$out/$rel-$stamp
stage=$(mktemp -d "${TMPDIR:-/tmp}/kcmux-bench.XXXXXX")
trap 'rm -rf "$stage"' EXIT
cp "$HERE/out/kcm_bench" "$HERE/guest-bench.sh" "$stage/"
if [[ -x $HERE/out/kcmctl && -f $HERE/out/parsers/lenprefix.bpf.o ]]; then
	mkdir "$stage/parsers"
	cp "$HERE/out/kcmctl" "$stage/"
	cp "$HERE/out/parsers/lenprefix.bpf.o" "$stage/parsers/"
fi
cp "$module" "$stage/kcmux.ko"
cp "$kdir/kcm.ko" "$stage/kcm.ko"

gargs=()
((quick)) && gargs+=(--quick)
if ((diagnose)); then
	gargs+=(--diagnose)
	base=$base-diagnose
fi
if ((batch)); then
	gargs+=(--batch)
	base=$base-batch
fi
if [[ -n $rounds ]]; then
	gargs+=(--rounds "$rounds")
elif ((quick)); then
	gargs+=(--rounds 1)
elif ((diagnose)); then
	gargs+=(--rounds 2)
fi
[[ -z $secs ]] || gargs+=(--secs "$secs")
[[ -z $warmup ]] || gargs+=(--warmup "$warmup")

echo "$PROG: $rel, results in $base.*" >&2
t0=$(date +%s)
rc=0
KCMUX_ICOUNT=$icount "$vmrun" --kernel "$rel" --cpus 2 --mem 2048 \
	--timeout 5400 --add "$stage:/bench" --log "$base.log" \
	-- sh /bench/guest-bench.sh "${gargs[@]}" /bench | tee "$base.raw" || rc=$?
echo "$PROG: VM finished in $(( $(date +%s) - t0 )) s, status $rc" >&2
((rc == 0)) || die "the VM run failed (status $rc); see $base.log"

python3 "$HERE/report.py" --raw "$base.raw" --kernel "$rel" \
	--date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --command "${cmdline% }" \
	--clock "${icount:+icount $icount}" \
	--commit "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)" \
	--module "$(md5sum <"$stage/kcmux.ko" | cut -c1-12), built $(date -u -r "$module" +%FT%H:%MZ)" \
	--out "$base"
if command -v gnuplot >/dev/null; then
	gnuplot -e "datafile='$base.dat'; outfile='$base.svg'; title='kcmux on $rel ($stamp)'" \
		"$HERE/ratios.gp"
else
	echo "$PROG: gnuplot missing (scripts/deps.sh bench): no plot" >&2
fi
# Only a full run of the usual kind is the "latest" result.
if ((!diagnose && !quick && !batch)); then
	for ext in json md svg; do
		[[ -f $base.$ext ]] && ln -sfn "${base##*/}.$ext" "$out/$rel-latest.$ext"
	done
fi
cat "$base.md"
