#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# guest-bench.sh - the guest side of bench/run.sh (busybox sh, in a VM
# booted without any AF_KCM module).
#
#   guest-bench.sh [--quick | --diagnose] [--rounds N] [--secs S]
#                  [--warmup S] [--batch] [DIR]
#
# DIR (default /bench) holds kcm_bench, kcmux.ko and the kernel's own
# kcm.ko.  Every workload is measured on every variant back to back, the
# modules swapped with rmmod/insmod between them, and the whole list is
# repeated N rounds with the order of the variants rotated, so that slow
# drift of the host (TCG shares it with others) falls on all variants
# alike.  Output, one line per measurement, for bench/report.py:
#
#   R <round> <workload> <variant> <json from kcm_bench>
#
# --batch: every row but the psock series (which is measured with every
# queue full) is timed as a batch from idle buffers to idle buffers
# (kcm_bench --batch) instead of counted over a window.
#
# --diagnose: instead of the workloads of the issue, the ones where kcmux
# lost, each also with a KCM receive buffer too large to ever fill (the
# "-bigq" workloads: no psock ever waits for room), so that the CPU time
# per message and its split (application, peer, rest) show which path
# costs what.  Same output, same report.
#
# Variants:
#   kcmux     kcmux.ko, BPF length parser
#   framing   kcmux.ko, built-in length framing (SIOCKCMATTACH_EXT), if
#             the module has it
#   lenprefix kcmux.ko, the shipped generic length parser (bpf/) set up
#             like the built-in framing (frame workloads only)
#   intree    the kernel's kcm.ko, BPF parser returning the fixed size:
#             in-tree runs the program with the message at an offset the
#             program cannot see, so a length parser misframes as soon as
#             two messages share a TCP segment (shown once per run as the
#             variant intree-len, which is expected to fail)
#   user      user-space framing over plain TCP
#   raw       plain TCP bytes, no framing: the bound

set -u

dir=/bench
rounds=3
# How long each measurement counts (--quick: 1 s).  The socket buffers of
# a row hold a good part of a second of its traffic (a KCM socket's 2 MiB
# are 0.3 s of 4 KiB messages, a second of 16 B ones), and how full they
# are when the count starts and ends moves a 1 s count by several
# percent; 1 MiB rows move about 35 messages a second, so a 1 s count is
# good to one message only.
secs=
warmup=0.4
quick=0
diagnose=0
batch=

while [ $# -gt 0 ]; do
	case $1 in
	--quick)  quick=1 ;;
	--diagnose) diagnose=1 ;;
	--rounds) rounds=$2; shift ;;
	--secs)   secs=$2; shift ;;
	--warmup) warmup=$2; shift ;;
	--batch)  batch=--batch ;;
	-*)       echo "guest-bench: unknown option $1" >&2; exit 2 ;;
	*)        dir=$1 ;;
	esac
	shift
done
[ -n "$secs" ] || if [ $quick = 1 ]; then secs=1.0; else secs=3.0; fi

bench=$dir/kcm_bench
loaded=none

say() {
	echo "# $*"
}

# Unload whatever AF_KCM module is loaded.  Sockets of a finished run may
# still be on their way out (network namespaces are dismantled by a
# kernel worker), hence the retries.
unload() {
	local i=0

	[ "$loaded" = none ] && return 0
	while ! rmmod "$loaded" 2>/dev/null; do
		i=$((i + 1))
		if [ $i -ge 100 ]; then
			say "rmmod $loaded keeps failing"
			return 1
		fi
		sleep 0.1
	done
	loaded=none
}

# use MODULE: make MODULE (kcmux or kcm) the loaded AF_KCM module.
use() {
	[ "$loaded" = "$1" ] && return 0
	unload || return 1
	insmod "$dir/$1.ko" || return 1
	loaded=$1
}

# measure ROUND WORKLOAD VARIANT KCM_BENCH_ARGS...
measure() {
	local round=$1 wl=$2 var=$3 out rc limit=120
	shift 3

	# Filling and draining full queues of 1000 connections takes minutes.
	case " $* " in
	*" --prefill "*) limit=1500 ;;
	esac

	case $var in
	kcmux|framing|lenprefix) use kcmux ;;
	intree|intree-len) use kcm ;;
	*) true ;;
	esac || {
		echo "R $round $wl $var {\"ok\":false,\"error\":\"cannot load the module\"}"
		return
	}
	timeout -s KILL $limit "$bench" "$@" --label "$var" >/tmp/result 2>&1 </dev/null
	rc=$?
	out=$(tail -n 1 /tmp/result)
	case $out in
	"{"*) echo "R $round $wl $var $out" ;;
	*)    echo "R $round $wl $var {\"ok\":false,\"error\":\"no result (killed?) rc=$rc\"}" ;;
	esac
}

# args_of VARIANT: the kcm_bench options that select it.
args_of() {
	case $1 in
	kcmux)      echo "--impl kcm --parser len --expect kcmux" ;;
	framing)    echo "--impl framing --expect kcmux" ;;
	lenprefix)  echo "--impl kcm --parser pinned:$lenprefix --expect kcmux" ;;
	intree)     echo "--impl kcm --parser fixed --expect kcm" ;;
	intree-len) echo "--impl kcm --parser len --expect kcm" ;;
	user)       echo "--impl user" ;;
	raw)        echo "--impl raw" ;;
	esac
}

# mem_msgs VARIANT: messages queued to measure memory.  As many as fit
# in one socket: in-tree charges each message a whole TCP skb (64 KiB),
# so 20000 already need 1.2 GB of rcvbuf; the others take 100000, which
# makes the free-memory figure more precise.
mem_msgs() {
	case $1 in
	intree*) echo "--msgs 20000" ;;
	*)       echo "--msgs 100000" ;;
	esac
}

# rotate N WORDS...: the words, starting with the (N mod count)th.
rotate() {
	local n=$1 i=0 count head="" tail=""
	shift
	count=$#
	n=$((n % count))
	for w in "$@"; do
		if [ $i -lt $n ]; then
			tail="$tail $w"
		else
			head="$head $w"
		fi
		i=$((i + 1))
	done
	echo $head $tail
}

# The workloads: ID, variants, options.  RX/TX, 1 psock x 1 KCM socket
# and 4 psocks x 2 KCM sockets on 2 threads, psock scaling, recvmmsg,
# the raw TCP bound and memory per queued message.
# Where kcmux lost in the full run, with and without a receive queue that
# can fill up.
diagnose_workloads() {
	local bigq="--kcm-rcvbuf 536870912"
	local ps="--size 64 --bufsize 131072 --chunk 4096"
	local full="--prefill --drain 900"

	echo "rx-1x1-64|kcmux intree|run --dir rx --size 64"
	echo "rx-1x1-64-bigq|kcmux intree|run --dir rx --size 64 $bigq"
	echo "rx-1x1-4096|kcmux intree|run --dir rx --size 4096"
	echo "rx-1x1-4096-bigq|kcmux intree|run --dir rx --size 4096 $bigq"
	echo "rx-psocks-1|kcmux intree|run --dir rx --psocks 1 $ps $full"
	echo "rx-psocks-1000|kcmux intree|run --dir rx --psocks 1000 $ps $full"
	echo "rx-psocks-1000-bigq|kcmux intree|run --dir rx --psocks 1000 $ps $bigq"
	echo "tx-1x1-65536|kcmux intree|run --dir tx --size 65536"
}

workloads() {
	local sizes="16 64 512 4096 65536 1048576"
	local mxn="64 4096 65536"
	local s scale

	if [ $quick = 1 ]; then
		sizes="64 65536"
		mxn="64"
	fi
	echo "raw-stream|raw|run --dir rx --size 65536"
	for s in $sizes; do
		echo "rx-1x1-$s|kcmux framing intree user|run --dir rx --size $s"
		echo "tx-1x1-$s|kcmux intree user|run --dir tx --size $s"
	done
	for s in $mxn; do
		echo "rx-4x2-$s|kcmux framing intree user|run --dir rx --size $s --psocks 4 --socks 2"
		[ $quick = 1 ] ||
			echo "tx-4x2-$s|kcmux intree user|run --dir tx --size $s --psocks 4 --socks 2"
	done
	# The same buffers and chunks for every count of the series, measured
	# with every queue full (--prefill): at 1000 psocks the queues hold
	# some 7 million messages, which take minutes to fill and to drain.
	scale="--bufsize 131072 --chunk 4096 --prefill --drain 900"
	if [ $quick = 1 ]; then
		echo "rx-psocks-100|kcmux intree user|run --dir rx --size 64 --psocks 100 $scale"
		echo "rx-mmsg-64|kcmux intree|run --dir rx --size 64 --recvmmsg"
	else
		for s in 1 10 100 1000; do
			echo "rx-psocks-$s|kcmux intree user|run --dir rx --size 64 --psocks $s $scale"
		done
		for s in 16 64 512; do
			echo "rx-mmsg-$s|kcmux framing intree|run --dir rx --size $s --recvmmsg"
		done
	fi
	echo "mem-64|kcmux framing intree user|mem"
	for s in 16 64 512 4096; do
		echo "frame-$s|kcmux framing lenprefix intree|frame --size $s"
	done
}

# frame-SIZE: messages framed and queued with nobody reading.  Fewer for
# in-tree, which charges each message the whole TCP skb it clones.
frame_msgs() {
	local n=50000

	case $2 in
	4096) n=10000 ;;
	esac
	case $1 in
	intree*) n=$((n / 5)) ;;
	esac
	echo "--msgs $n"
}

# cpu_ticks: busy and total jiffies of all CPUs so far ("BUSY TOTAL").
cpu_ticks() {
	awk '$1 == "cpu" {
		for (i = 2; i <= NF; i++)
			total += $i
		print total - $5 - $6, total
	}' /proc/stat
}

# settle: wait (at most 60 s) until the CPUs were at least 95 % idle over
# a second.  Right after boot the kernel still tests its crypto
# algorithms in a kthread (cryptomgr_test: one vCPU busy for the first
# 6 s or so of guest time here), and whatever is measured then shares
# the machine with it.
settle() {
	local i=0 t0 t1

	t0=$(cpu_ticks)
	while [ $i -lt 60 ]; do
		sleep 1
		t1=$(cpu_ticks)
		if echo "$t0 $t1" |
		   awk '{ exit !(($3 - $1) * 20 < $4 - $2) }'; then
			say "settled: idle after $i s"
			return 0
		fi
		t0=$t1
		i=$((i + 1))
	done
	say "settle: still busy after $i s, measuring anyway"
}

# --- main ------------------------------------------------------------------

say "kernel $(uname -r), $(nproc) CPUs, $(grep MemTotal /proc/meminfo)"
say "rounds $rounds, measure $secs s after $warmup s warm-up, quick $quick${batch:+, as batches}"
# 1000 connections with full queues must not push TCP into memory
# pressure, which would measure the pressure instead of the module.
echo "2000000 3000000 4000000" >/proc/sys/net/ipv4/tcp_mem

use kcmux || { say "insmod kcmux.ko failed"; exit 1; }
probe=$("$bench" probe)
say "probe: $probe"
case $probe in
*'"framing":true'*) framing=1 ;;
*) framing=0 ;;
esac
# The shipped generic length parser set up like the built-in framing
# (bpf/lenprefix.bpf.c), for the frame workloads.
lenprefix=/sys/fs/bpf/kcm_bench_lenprefix
mkdir -p /sys/fs/bpf
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
if [ -x "$dir/kcmctl" ] &&
   "$dir/kcmctl" -P "$dir/parsers" parser load lenprefix \
	includes_header 1 pin "$lenprefix"; then
	say "lenprefix parser pinned at $lenprefix"
else
	say "no lenprefix parser: frame workloads without it"
	lenprefix=
fi
if [ -r /sys/module/kcmux/srcversion ]; then
	say "kcmux srcversion $(cat /sys/module/kcmux/srcversion)"
fi

# A file, not a pipe: the loop must run in this shell, which tracks
# the loaded module.
if [ $diagnose = 1 ]; then
	diagnose_workloads >/tmp/workloads
else
	workloads >/tmp/workloads
fi
settle
start=$(date +%s)
round=1
while [ $round -le "$rounds" ]; do
	say "round $round"
	idx=0
	while IFS='|' read -r wl vars opts; do
		[ $framing = 1 ] || vars=$(echo $vars | sed 's/framing//')
		[ -n "$lenprefix" ] || vars=$(echo $vars | sed 's/lenprefix//')
		for var in $(rotate $((round + idx)) $vars); do
			case $opts in
			mem) measure $round "$wl" "$var" mem $(args_of "$var") \
					$(mem_msgs "$var") ;;
			frame*) measure $round "$wl" "$var" $opts \
					$(args_of "$var") \
					$(frame_msgs "$var" "${wl#frame-}") ;;
			*" --prefill"*)
			     measure $round "$wl" "$var" $opts \
					$(args_of "$var") \
					--secs "$secs" --warmup "$warmup" ;;
			*)   measure $round "$wl" "$var" $opts $(args_of "$var") \
					--secs "$secs" --warmup "$warmup" $batch ;;
			esac
		done
		idx=$((idx + 1))
	done </tmp/workloads
	round=$((round + 1))
done

# Why the in-tree variant uses a fixed-size parser: the length parser
# misframes on the in-tree module once messages share TCP segments.
if [ $quick = 0 ] && [ $diagnose = 0 ]; then
	measure 1 rx-1x1-64 intree-len run --dir rx --size 64 --secs 1 \
		--warmup 0.2 --drain 3 $(args_of intree-len)
fi
unload
say "done in $(( $(date +%s) - start )) s"
