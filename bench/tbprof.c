// SPDX-License-Identifier: GPL-2.0
/*
 * tbprof - a QEMU TCG plugin counting the guest instructions executed in
 * each kernel translation block, for profiling under -icount, where the
 * guest's clock is its instruction count and perf has no samples.
 *
 *   KCMUX_QEMU_ARGS="-plugin bench/out/tbprof.so,arg=out=FILE" \
 *   KCMUX_ICOUNT=shift=3,sleep=off selftests/vm/vm-run --append nokaslr ...
 *
 * At exit, FILE gets one line per kernel block, "vaddr insns executions",
 * and "user N" for all user-space instructions.  bench/tbprof-report
 * names the blocks' functions and subtracts a shorter run from a longer
 * one, which leaves the instructions per message of the difference.
 *
 * The plugin API is declared here (QEMU_PLUGIN_VERSION 1, QEMU 7.2 to
 * 8.x): Debian ships QEMU with plugin support but without the header.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id,
					       struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id,
					   qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb,
					      enum qemu_plugin_op op,
					      void *ptr, uint64_t imm);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id,
				    qemu_plugin_udata_cb_t cb, void *userdata);

#define EXPORT __attribute__((visibility("default")))

EXPORT int qemu_plugin_version = 1;

/* x86-64: the kernel lives in the upper half. */
#define KERNEL_START	0xffff800000000000ull

struct block {
	uint64_t vaddr;
	uint64_t insns;
	uint64_t runs;		/* bumped by the translated code itself */
};

/* Open addressing; a kernel has far fewer distinct blocks than this. */
#define NBLOCKS		(1u << 22)
static struct block *blocks;
static uint64_t user_insns;
static const char *out_path = "tbprof.out";

/*
 * A block is retranslated at the same address with the same length, so
 * (vaddr, insns) names it; one with a different length gets its own.
 */
static struct block *block_of(uint64_t vaddr, uint64_t insns)
{
	uint64_t h = (vaddr * 0x9e3779b97f4a7c15ull) >> 40;
	struct block *b;
	uint32_t probes;

	for (probes = 0; probes < NBLOCKS; probes++, h++) {
		b = &blocks[h & (NBLOCKS - 1)];
		if (b->vaddr == vaddr && b->insns == insns)
			return b;
		if (!b->vaddr) {
			b->vaddr = vaddr;
			b->insns = insns;
			return b;
		}
	}
	return NULL;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	uint64_t vaddr = qemu_plugin_tb_vaddr(tb);
	uint64_t insns = qemu_plugin_tb_n_insns(tb);
	struct block *b;

	(void)id;
	if (vaddr < KERNEL_START) {
		qemu_plugin_register_vcpu_tb_exec_inline(tb,
			QEMU_PLUGIN_INLINE_ADD_U64, &user_insns, insns);
		return;
	}
	b = block_of(vaddr, insns);
	if (b)
		qemu_plugin_register_vcpu_tb_exec_inline(tb,
			QEMU_PLUGIN_INLINE_ADD_U64, &b->runs, 1);
}

static void on_qemu_exit(qemu_plugin_id_t id, void *userdata)
{
	FILE *f = fopen(out_path, "w");
	uint32_t i;

	(void)id;
	(void)userdata;
	if (!f) {
		perror(out_path);
		return;
	}
	fprintf(f, "user %llu\n", (unsigned long long)user_insns);
	for (i = 0; i < NBLOCKS; i++)
		if (blocks[i].runs)
			fprintf(f, "%llx %llu %llu\n",
				(unsigned long long)blocks[i].vaddr,
				(unsigned long long)blocks[i].insns,
				(unsigned long long)blocks[i].runs);
	fclose(f);
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
			       int argc, char **argv)
{
	int i;

	(void)info;
	for (i = 0; i < argc; i++) {
		if (!strncmp(argv[i], "out=", 4)) {
			out_path = argv[i] + 4;
		} else {
			fprintf(stderr, "tbprof: unknown argument %s\n", argv[i]);
			return -1;
		}
	}
	/*
	 * Counters are bumped without atomics: with -icount, TCG runs the
	 * vCPUs in turn on one thread.
	 */
	blocks = calloc(NBLOCKS, sizeof(*blocks));
	if (!blocks)
		return -1;
	qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
	qemu_plugin_register_atexit_cb(id, on_qemu_exit, NULL);
	return 0;
}
