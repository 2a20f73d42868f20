#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# check-step.sh - count the results of each step of `make check`.
#
#   check-step.sh NAME COMMAND [ARG...]   run one step, record its counts
#   check-step.sh --totals                print every step's counts and,
#                                         last, "N passed, N failed, N skipped"
#   check-step.sh --reset                 forget the steps recorded so far
#
# The output of COMMAND goes to the terminal as it comes and is kept in
# build/check/steps/NAME.out, its counts appended to build/check/steps/counts
# in the order the steps ran.  Its counts are, in this order of choice:
#   - the last "N passed, N failed, N skipped" line it printed (run-all.sh
#     sums its configurations that way);
#   - its top-level TAP lines: "ok" passed, "ok ... # SKIP" skipped,
#     "not ok" failed;
#   - for a step that prints no TAP (a man page lint, the stress run),
#     the step itself: one passed or one failed.
# A step that exits non-zero without a failure counted gets one, so a
# crash can never pass for a clean run.  When a step fails, the totals so
# far are printed before its exit status is passed on, so the last line
# of a failed `make check` is a totals line too.

set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STEPS_DIR=${KCMUX_CHECK_STEPS:-$(cd "$HERE/.." && pwd)/build/check/steps}

totals() {
	local name pass fail skip tp=0 tf=0 ts=0 list=$STEPS_DIR/counts

	[[ -e $list ]] || list=/dev/null
	while read -r name pass fail skip; do
		printf '  %-16s %d passed, %d failed, %d skipped\n' \
			"$name" "$pass" "$fail" "$skip"
		tp=$((tp + pass))
		tf=$((tf + fail))
		ts=$((ts + skip))
	done <"$list"
	echo "$tp passed, $tf failed, $ts skipped"
}

count() {
	local out=$1 rc=$2 summary pass fail skip

	summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$out" |
		  tail -n 1)
	if [[ -n $summary ]]; then
		read -r pass _ fail _ skip _ <<<"$summary"
	else
		pass=$(grep -Ec '^ok ' "$out")
		skip=$(grep -Ec '^ok .*# SKIP' "$out")
		fail=$(grep -Ec '^not ok ' "$out")
		pass=$((pass - skip))
		if ((pass + fail + skip == 0)); then
			((rc == 0)) && pass=1
		fi
	fi
	((rc != 0 && fail == 0)) && fail=1
	echo "$pass $fail $skip"
}

case ${1:-} in
--totals)
	totals
	exit 0
	;;
--reset)
	rm -rf "$STEPS_DIR"
	exit 0
	;;
''|-*)
	echo "usage: ${0##*/} NAME COMMAND [ARG...] | --totals | --reset" >&2
	exit 2
	;;
esac

name=$1
shift
(($#)) || { echo "${0##*/}: $name: no command" >&2; exit 2; }
mkdir -p "$STEPS_DIR"
out=$STEPS_DIR/$name.out

"$@" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
echo "$name $(count "$out" "$rc")" >>"$STEPS_DIR/counts"
if ((rc != 0)); then
	echo "### step $name failed (exit status $rc); results so far:"
	totals
fi
exit "$rc"
