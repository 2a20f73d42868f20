#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# guest-check.sh REL - guest side of test-installed-tree.sh (busybox sh).
#
# /lib/modules/REL and /etc/modprobe.d are those of a tree `make install
# DESTDIR=...` produced, with the kernel's own kcm.ko in it as well, and
# nothing is loaded.  Checks that modprobe finds kcmux there and that the
# kernel loads it, and not kcm, on its own for socket(AF_KCM) and for the
# generic netlink family, through the aliases depmod indexed.
#
# Prints "PASS text", "FAIL text" and "# diagnostics" lines; the host
# numbers them as TAP.  Exits 1 if a check failed.

rel=$1
here=$(dirname "$0")
autoload=$here/kcm_autoload
failed=0

pass() {
	echo "PASS $*"
}

fail() {
	echo "FAIL $*"
	failed=1
}

loaded() {
	[ -d /sys/module/kcmux ]
}

# Expect kcm_autoload MODE to print a line starting with WANT.
# shellcheck disable=SC3043 # busybox sh has local
expect() {
	local mode="$1" want="$2" text="$3" out

	out=$("$autoload" "$mode" 2>&1)
	case $out in
	"$want"*) pass "$text" ;;
	*) fail "$text"; echo "# kcm_autoload $mode: $out" ;;
	esac
}

if [ "$(uname -r)" = "$rel" ]; then
	pass "guest runs $rel"
else
	fail "guest runs $rel"
	echo "# uname -r: $(uname -r)"
fi

# guest-init points the kernel's modprobe at /bin/false: nothing can be
# loaded behind the test's back, and nothing is loaded yet.
if loaded; then
	fail "kcmux is not loaded at boot"
else
	pass "kcmux is not loaded at boot"
fi
expect socket EAFNOSUPPORT "socket(AF_KCM) fails while the kernel cannot load modules"

if out=$(modprobe kcmux 2>&1) && loaded; then
	pass "modprobe kcmux loads it from /lib/modules/$rel/updates"
else
	fail "modprobe kcmux loads it from /lib/modules/$rel/updates"
	echo "# modprobe: $out"
	find "/lib/modules/$rel" | sed 's/^/# /'
fi
if out=$(modprobe -r kcmux 2>&1) && ! loaded; then
	pass "modprobe -r kcmux unloads it"
else
	fail "modprobe -r kcmux unloads it"
	echo "# modprobe -r: $out"
fi

# What request_module() runs: busybox modprobe, which reads modules.dep
# and modules.alias of the installed tree.
echo /sbin/modprobe >/proc/sys/kernel/modprobe

expect socket "ok:" "socket(AF_KCM) autoloads kcmux (alias net-pf-41)"
if loaded; then
	pass "kcmux is loaded after socket(AF_KCM)"
else
	fail "kcmux is loaded after socket(AF_KCM)"
fi
# The tree has the kernel's kcm.ko too, with the same alias.
if [ -d /sys/module/kcm ]; then
	fail "the in-tree kcm was not loaded"
	dmesg | grep -i kcm | tail -n 5 | sed 's/^/# /'
else
	pass "the in-tree kcm was not loaded"
fi
if out=$(rmmod kcmux 2>&1) && ! loaded; then
	pass "rmmod kcmux once the socket is closed"
else
	fail "rmmod kcmux once the socket is closed"
	echo "# rmmod: $out"
fi

expect genl "ok:" "resolving generic netlink family kcmux autoloads kcmux"
if loaded; then
	pass "kcmux is loaded after the family lookup"
else
	fail "kcmux is loaded after the family lookup"
fi

exit $failed
