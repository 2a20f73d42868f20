#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Guest side of scripts/stress.sh (busybox sh, inside the test VM):
#
#   run-stress.sh DURATION SEED FAULT_PCT WORKERS
#
# FAULT_PCT 0: one run of kcm_stress.  Otherwise three phases: a plain
# run, a run with allocations in the module's paths failing with
# probability FAULT_PCT %, and the fail-nth sweep (every allocation of
# each operation failed once).  Every phase prints its summary and a
# RESULT line; the exit status is 1 if any phase failed.

dir=$(dirname "$0")
dur=$1
seed=$2
pct=$3
workers=$4
rc=0

phase() {
	name=$1
	shift
	echo "=== phase $name: kcm_stress $*"
	"$dir/kcm_stress" "$@"
	prc=$?
	echo "=== phase $name: exit $prc"
	[ "$prc" -eq 0 ] || rc=1
}

phase plain --duration "$dur" --seed "$seed" --workers "$workers"
if [ "$pct" -gt 0 ]; then
	phase faults --duration "$dur" --seed "$seed" --workers "$workers" \
		--faults "$pct"
	phase fail-nth --seed "$seed" --fail-nth
fi
exit $rc
