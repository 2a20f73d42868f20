# SPDX-License-Identifier: GPL-2.0
#
# kcmux: the Makefile for humans.  Kbuild holds the kbuild description.
#
#   make                 module for KDIR (running kernel, else newest headers)
#   make modules-all     module for every supported kernel: build/<rel>/kcmux.ko
#   make lint            W=1, sparse (C=2) and checkpatch --strict, all kernels
#   make check           everything above, host tests, all selftests in QEMU,
#                        check-debug, dkms-check and install-check
#   make check-debug     all selftests on a KASAN+lockdep+kmemleak kernel
#   make demo            boot a VM, load kcmux, show it working
#   make stress          randomized stress + fault injection on the debug
#                        kernel (DURATION=secs, SEED=n, STRESS_MODULE=kcm)
#   make bench           kcmux vs in-tree kcm vs user space vs raw TCP
#                        (BENCH_ARGS="--kernel 6.1 --quick" ...)
#   make install         module, kcmctl, parsers, header, man pages (DESTDIR, PREFIX)
#   make uninstall       remove what make install put (same variables)
#   make dkms-install    register with DKMS (DKMS_KERNELS); make dkms-uninstall
#   make dkms-check      DKMS build+install for every kernel, in private trees
#   make install-check   make install DESTDIR=tmp, then autoload it in a VM
#   make man             render the man pages into build/man
#   make clean

SHELL		:= /bin/bash
TOP		:= $(CURDIR)
KERNELS_SH	:= $(TOP)/scripts/kernels.sh
DEPS_SH		:= $(TOP)/scripts/deps.sh
CHECK_STEP	:= $(TOP)/scripts/check-step.sh
CACHE		?= $(or $(KCMUX_CACHE),$(HOME)/.cache/kcmux)
# The running kernel's build tree if there is one, else the newest headers.
KDIR		?= $(or $(wildcard /lib/modules/$(shell uname -r)/build),\
		   $(shell ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n1))
MODULE_SRCS	:= Kbuild $(wildcard kcm/*.c kcm/*.h) include/uapi/linux/kcm.h

.PHONY: all module modules-all lint checkpatch check check-debug demo deps clean help \
	stress bench
DURATION	?= 600
STRESS_MODULE	?= kcmux
# What make check runs on the debug kernel after the suite (a few minutes).
CHECK_STRESS_SECS ?= 60

all: module
	$(MAKE) -C examples

help:
	@sed -n '/^#   make/p' Makefile

module:
	@test -d "$(KDIR)" || { echo "no kernel headers: run 'make deps' or set KDIR"; exit 1; }
	$(MAKE) -C $(KDIR) M=$(TOP) modules

# Each kernel gets its own object directory of symlinks to the sources,
# so builds for different kernels never share an object file.
build/%/kcmux.ko: $(MODULE_SRCS)
	@mkdir -p build/$*/kcm build/$*/include
	@ln -sfn $(TOP)/Kbuild build/$*/Kbuild
	@ln -sfn $(TOP)/include/uapi build/$*/include/uapi
	@for f in kcm/*.c kcm/*.h; do ln -sfn $(TOP)/$$f build/$*/$$f; done
	$(MAKE) -C $${KERNEL_KDIR:-$$($(KERNELS_SH) kdir $*)} M=$(TOP)/build/$* \
		W=$(W) C=$(C) modules

modules-all:
	@$(DEPS_SH) build
	@set -e; for rel in $$($(KERNELS_SH) list); do \
		$(MAKE) --no-print-directory build/$$rel/kcmux.ko; done

# W=1 and sparse over a clean rebuild of every kernel, then checkpatch.
lint: checkpatch
	@$(DEPS_SH) build source
	@set -e; for rel in $$($(KERNELS_SH) list); do \
		rm -rf build/lint-$$rel; \
		mkdir -p build/lint-$$rel/kcm build/lint-$$rel/include; \
		ln -sfn $(TOP)/Kbuild build/lint-$$rel/Kbuild; \
		ln -sfn $(TOP)/include/uapi build/lint-$$rel/include/uapi; \
		for f in kcm/*.c kcm/*.h; do ln -sfn $(TOP)/$$f build/lint-$$rel/$$f; done; \
		echo "lint: W=1 C=2 on $$rel"; \
		$(MAKE) -s -C $$($(KERNELS_SH) kdir $$rel) M=$(TOP)/build/lint-$$rel \
			W=1 C=2 modules 2>&1 | tee build/lint-$$rel.log; \
		if grep -E 'warning|error' build/lint-$$rel.log; then \
			echo "lint: $$rel is not clean"; exit 1; fi; \
	done

checkpatch:
	@$(DEPS_SH) source
	@$(TOP)/scripts/checkpatch.sh kcm/*.c kcm/*.h include/uapi/linux/kcm.h

# Host tests first (fast), then every selftest in QEMU on the stock
# kernels and the in-tree reference, then the debug kernel, then packaging.
# Each step's results are counted (scripts/check-step.sh); the last line
# is the sum over all of them: "N passed, N failed, N skipped".
check: modules-all
	@$(CHECK_STEP) --reset
	@$(CHECK_STEP) lint $(MAKE) --no-print-directory lint
	@$(DEPS_SH) vm tests source bpf install
	$(MAKE) -C selftests
	@$(CHECK_STEP) parsers $(MAKE) -C bpf check
	@$(CHECK_STEP) kcmctl $(MAKE) -C tools/kcmctl check
	@$(CHECK_STEP) man-pages $(MAKE) -s -C Documentation/man check
	@$(CHECK_STEP) splat-scan selftests/vm/test-scan-splats
	@$(CHECK_STEP) selftests selftests/run-all.sh
	@$(CHECK_STEP) debug-kernel $(MAKE) --no-print-directory check-debug
	@$(CHECK_STEP) dkms $(MAKE) --no-print-directory dkms-check
	@$(CHECK_STEP) install $(MAKE) --no-print-directory install-check
	@echo "### make check:"
	@$(CHECK_STEP) --totals

# The whole suite on a KASAN/lockdep/kmemleak kernel built from Debian's
# linux-source (first run: ~40 min, then cached under $(CACHE)).
check-debug:
	@$(DEPS_SH) build vm tests source bpf
	@set -e; dir=$$(scripts/debug-kernel.sh build); \
		name=$$(basename $$dir); \
		$(MAKE) --no-print-directory build/$$name/kcmux.ko \
			KERNEL_KDIR=$$(scripts/debug-kernel.sh kdir); \
		$(MAKE) -C selftests; \
		selftests/run-all.sh --config kcmux@$$dir; \
		scripts/stress.sh --no-build --duration $(CHECK_STRESS_SECS) --faults

# A long soak: make stress DURATION=3600 [SEED=n] [STRESS_MODULE=kcm]
stress: modules-all
	@$(DEPS_SH) build vm tests source bpf
	@set -e; dir=$$(scripts/debug-kernel.sh build); \
		$(MAKE) --no-print-directory build/$$(basename $$dir)/kcmux.ko \
			KERNEL_KDIR=$$(scripts/debug-kernel.sh kdir); \
		$(MAKE) -C selftests; \
		scripts/stress.sh --no-build --duration $(DURATION) --faults \
			--module $(STRESS_MODULE) $(if $(SEED),--seed $(SEED))

bench: modules-all
	@$(DEPS_SH) build vm tests bench
	bench/run.sh $(BENCH_ARGS)

demo: modules-all
	@$(DEPS_SH) vm tests source bpf
	$(MAKE) -C selftests
	scripts/demo.sh

deps:
	$(DEPS_SH) build vm tests source bpf install

clean:
	rm -rf build
	-$(MAKE) -C selftests clean
	-$(MAKE) -C examples clean
	-$(MAKE) -C bpf clean
	-$(MAKE) -C tools/kcmctl clean
	-$(MAKE) -C bench clean
	rm -f *.o *.ko *.mod *.mod.c modules.order Module.symvers .*.cmd kcm/*.o kcm/.*.cmd

# install, uninstall, dkms-*, install-check, man (last: adds no default goal)
include $(TOP)/scripts/Makefile.install
