#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# run-all.sh - run every selftest binary in a VM per configuration.
#
#   run-all.sh [--config NAME]... [--tests DIR] [--timeout SECS] [--verbose]
#
# A configuration is MODULE@KERNEL:
#   kcmux@REL   our module, build/REL/kcmux.ko (relative to the repo root)
#   kcm@REL     the in-tree reference kcm.ko of kernel REL
# REL is a Debian kernel release, or a directory with a vmlinuz (then
# kcmux@DIR takes build/$(basename DIR)/kcmux.ko).
# Default: kcmux@<6.1>, kcmux@<6.12>, kcm@<6.1> (scripts/kernels.sh list).
#
# One VM boot per configuration runs all binaries of DIR (default
# selftests/out) in sequence.  The TAP of each configuration is kept in
# build/check/CONFIG.tap, its kernel log in build/check/CONFIG.log.
#
# Counting: "ok" is passed, "ok ... # SKIP" is skipped, "not ok" is failed.
# A binary without a plan, with fewer results than planned, or that
# exits non-zero without a failed test, counts one more failure; so does
# a VM that times out, crashes or shows a kernel splat.  The last line is
# "N passed, N failed, N skipped" and the exit status 1 if anything
# failed.  Bad arguments, a missing kcmux.ko or no test binaries stop us
# with exit status 2 before any VM boots.
#
# Environment: KCMUX_VM_TIMEOUT (per VM, default 900 s), KCMUX_TEST_TIMEOUT
# (per binary, default 300 s), KCMUX_CACHE.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PROG=${0##*/}
CHECK_DIR=$ROOT/build/check

configs=()
tests_dir=$ROOT/selftests/out
vm_timeout=${KCMUX_VM_TIMEOUT:-900}
test_timeout=${KCMUX_TEST_TIMEOUT:-300}
verbose=0
vm_rc=0
total_pass=0
total_fail=0
total_skip=0

die() {
	echo "$PROG: $*" >&2
	exit 2
}

usage() {
	sed -n '4,/^[^#]/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}" >&2
	exit 2
}

parse_args() {
	while (($#)); do
		case $1 in
		--config)  configs+=("${2:?}"); shift ;;
		--tests)   tests_dir=${2:?}; shift ;;
		--timeout) vm_timeout=${2:?}; shift ;;
		-v|--verbose) verbose=1 ;;
		-h|--help) usage ;;
		*)         echo "$PROG: unknown argument: $1" >&2; usage ;;
		esac
		shift
	done
	[[ $vm_timeout =~ ^[1-9][0-9]*$ ]] || die "bad --timeout: $vm_timeout"
	return 0
}

default_configs() {
	local rels

	mapfile -t rels < <("$ROOT/scripts/kernels.sh" list)
	((${#rels[@]} == 2)) || die "scripts/kernels.sh list did not give two releases"
	configs=("kcmux@${rels[0]}" "kcmux@${rels[1]}" "kcm@${rels[0]}")
}

config_module() {
	echo "${1%%@*}"
}

config_kernel() {
	echo "${1#*@}"
}

# build/REL/kcmux.ko for kcmux@REL.
kcmux_path() {
	local kernel=$1

	[[ -d $kernel ]] && kernel=$(basename "$kernel")
	echo "$ROOT/build/$kernel/kcmux.ko"
}

# File name for a configuration (a kernel directory has slashes).
config_file() {
	local name=${1//\//_}

	echo "$CHECK_DIR/${name#_}"
}

# Everything that can be checked before booting anything.
preflight() {
	local c mod path

	for c in "${configs[@]}"; do
		[[ $c == *@?* ]] || die "bad configuration $c (want kcmux@REL or kcm@REL)"
		mod=$(config_module "$c")
		case $mod in
		kcm) ;;
		kcmux)
			path=$(kcmux_path "$(config_kernel "$c")")
			[[ -f $path ]] || die "$c: ${path#"$ROOT"/} is missing: build it first (make modules-all)"
			;;
		*) die "bad configuration $c: module must be kcmux or kcm" ;;
		esac
	done
	[[ -d $tests_dir ]] || die "no test directory $tests_dir: run make -C selftests"
	[[ -n $(find "$tests_dir" -maxdepth 1 -type f -perm -u+x -print -quit) ]] ||
		die "no test binaries in $tests_dir: run make -C selftests"
}

# What we echo while a VM runs: all of it with --verbose, else without
# the harness's "RUN"/"OK" chatter (FILE.tap always has everything).
live_filter() {
	if ((verbose)); then
		cat
	else
		grep --line-buffered -Ev '^#  RUN |^#            OK  ' || true
	fi
}

# Boot one configuration; its TAP goes to FILE.tap and, live, to our
# stdout.  vm-run's exit status in $vm_rc.
run_config() {
	local c=$1 file=$2 mod kernel modarg
	local -a st

	mod=$(config_module "$c")
	kernel=$(config_kernel "$c")
	if [[ $mod == kcmux ]]; then
		modarg=kcmux=$(kcmux_path "$kernel")
	else
		modarg=kcm
	fi
	set +e
	"$HERE/vm/vm-run" --kernel "$kernel" --module "$modarg" \
		--timeout "$vm_timeout" --log "$file.log" \
		--add "$tests_dir:/tests" \
		--add "$HERE/vm/guest-run-tests:/bin/kcmux-run-tests" \
		-- /bin/kcmux-run-tests /tests "$test_timeout" \
		2>"$file.err" | tee "$file.tap" | live_filter
	st=("${PIPESTATUS[@]}")
	set -e
	vm_rc=${st[0]}
}

# Count results in a TAP file of guest-run-tests.  Prints
# "pass fail skip" on the last line, diagnostics before it.
count_tap() {
	awk '
	function close_binary(why) {
		bfail += extra(why)
		printf "  %-24s %d passed, %d failed, %d skipped%s\n", \
			name, bpass, bfail, bskip, note
		pass += bpass; fail += bfail; skip += bskip
		inside = 0
	}
	# Failures that are not "not ok" lines.
	function extra(why,   n) {
		note = ""
		if (why != "") {
			note = " (" why ")"
			return 1
		}
		if (plan < 0) {
			note = " (no test plan)"
			return 1
		}
		if (plan == 0 && results == 0 && (rc == 0 || rc == 4)) {
			bskip++		# "1..0 # SKIP": the whole binary skipped
			return 0
		}
		if (results < plan) {
			n = plan - results
			note = " (" n " planned test(s) missing)"
			return n
		}
		if (rc != 0 && rc != 4 && bfail == 0) {
			note = " (exit status " rc " without a failed test)"
			return 1
		}
		if (rc != 0 && rc != 4)
			note = " (exit status " rc ")"
		return 0
	}
	/^# kcmux-run: begin / {
		if (inside)
			close_binary("no end marker")
		inside = 1; name = $4; plan = -1; results = 0; rc = -1
		bpass = 0; bfail = 0; bskip = 0
		next
	}
	!inside { next }
	/^# kcmux-run: end / {
		rc = $5; sub(/^rc=/, "", rc); rc += 0
		close_binary("")
		next
	}
	/^1\.\.[0-9]+/ && plan < 0 {
		plan = substr($1, 4) + 0
		next
	}
	/^ok( |$)/ {
		results++
		if ($0 ~ /#[ \t]*[Ss][Kk][Ii][Pp]/) bskip++; else bpass++
		next
	}
	/^not ok/ {
		results++; bfail++
		next
	}
	END {
		if (inside)
			close_binary("did not finish")
		print pass + 0, fail + 0, skip + 0
	}' "$1"
}

describe_vm_status() {
	case $1 in
	0|1) ;;
	124) echo "VM timeout after $vm_timeout s" ;;
	125) echo "VM crashed, panicked or failed to set up" ;;
	126) echo "kernel splat" ;;
	*)   echo "vm-run exit status $1" ;;
	esac
}

check_config() {
	local c=$1 file counts pass fail skip vmfail t0

	file=$(config_file "$c")
	echo "### $c"
	t0=$SECONDS
	run_config "$c" "$file"
	counts=$(count_tap "$file.tap")
	sed -n '$!p' <<<"$counts"
	read -r pass fail skip < <(tail -n 1 <<<"$counts")

	vmfail=$(describe_vm_status "$vm_rc")
	if [[ -z $vmfail && $vm_rc -ne 0 && $fail -eq 0 ]]; then
		vmfail="guest runner failed without a failed test"
	fi
	if [[ -n $vmfail ]]; then
		fail=$((fail + 1))
		echo "  $vmfail"
	fi
	if [[ -n $vmfail || $fail -gt 0 ]]; then
		# vm-run's stderr: splat reports, timeouts, insmod errors.
		sed 's/^/  | /' "$file.err"
		grep -E '^(not ok|# .*:[0-9]+:)' "$file.tap" | sed 's/^/  | /' || true
	fi
	echo "=== $c: $pass passed, $fail failed, $skip skipped ($((SECONDS - t0)) s; ${file#"$ROOT"/}.tap)"
	total_pass=$((total_pass + pass))
	total_fail=$((total_fail + fail))
	total_skip=$((total_skip + skip))
}

main() {
	local c

	parse_args "$@"
	((${#configs[@]})) || default_configs
	tests_dir=$(cd "$tests_dir" 2>/dev/null && pwd) || die "no test directory $tests_dir: run make -C selftests"
	preflight
	mkdir -p "$CHECK_DIR"
	for c in "${configs[@]}"; do
		check_config "$c"
	done
	echo "$total_pass passed, $total_fail failed, $total_skip skipped"
	((total_fail == 0))
}

main "$@"
