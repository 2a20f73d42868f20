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
 * With arg=mark=ADDR (the guest address of a kernel function, from a
 * "nokaslr" kallsyms), only what runs between the first two executions of
 * the block at ADDR is counted: kcm_bench calls
 * sched_get_priority_max(KCM_BENCH_MARK) as it starts and as it ends its
 * measured window, so mark=<__x64_sys_sched_get_priority_max> profiles
 * exactly the messages the result counts.
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
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index,
					    void *userdata);
enum qemu_plugin_cb_flags {
	QEMU_PLUGIN_CB_NO_REGS,
	QEMU_PLUGIN_CB_R_REGS,
	QEMU_PLUGIN_CB_RW_REGS,
};

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id,
					   qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb,
					      enum qemu_plugin_op op,
					      void *ptr, uint64_t imm);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb,
					  qemu_plugin_vcpu_udata_cb_t cb,
					  enum qemu_plugin_cb_flags flags,
					  void *userdata);
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
	uint64_t at_mark[2];	/* runs at the first and second mark */
};

/* Open addressing; a kernel has far fewer distinct blocks than this. */
#define NBLOCKS		(1u << 22)
static struct block *blocks;
static uint64_t user_insns, user_at_mark[2];
static const char *out_path = "tbprof.out";
static uint64_t mark_vaddr;
static unsigned int marks;

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

/* The block at mark_vaddr ran: note every counter (first two times). */
static void on_mark(unsigned int vcpu_index, void *userdata)
{
	uint32_t i;

	(void)vcpu_index;
	(void)userdata;
	if (marks >= 2)
		return;
	user_at_mark[marks] = user_insns;
	for (i = 0; i < NBLOCKS; i++)
		blocks[i].at_mark[marks] = blocks[i].runs;
	marks++;
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
	/* Before the block's own count: a mark counts in neither window. */
	if (vaddr == mark_vaddr)
		qemu_plugin_register_vcpu_tb_exec_cb(tb, on_mark,
			QEMU_PLUGIN_CB_NO_REGS, NULL);
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
	if (mark_vaddr && marks < 2)
		fprintf(stderr, "tbprof: %u of 2 marks seen, counting it all\n",
			marks);
	/* Without both marks, everything: a window starting at 0. */
	if (marks < 2) {
		user_at_mark[0] = 0;
		user_at_mark[1] = user_insns;
		for (i = 0; i < NBLOCKS; i++) {
			blocks[i].at_mark[0] = 0;
			blocks[i].at_mark[1] = blocks[i].runs;
		}
	}
	fprintf(f, "user %llu\n",
		(unsigned long long)(user_at_mark[1] - user_at_mark[0]));
	for (i = 0; i < NBLOCKS; i++) {
		uint64_t runs = blocks[i].at_mark[1] - blocks[i].at_mark[0];

		if (runs)
			fprintf(f, "%llx %llu %llu\n",
				(unsigned long long)blocks[i].vaddr,
				(unsigned long long)blocks[i].insns,
				(unsigned long long)runs);
	}
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
		} else if (!strncmp(argv[i], "mark=", 5)) {
			mark_vaddr = strtoull(argv[i] + 5, NULL, 16);
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
