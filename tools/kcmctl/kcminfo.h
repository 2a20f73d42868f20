/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What kcmctl knows about the multiplexors of a network namespace, filled
 * from either source: the "kcmux" generic netlink family, or the
 * /proc/net/kcm files every kcm module has.  The model is the netlink
 * one (values indexed by KCMUX_A_* and KCMUX_STAT_*, each with a "known"
 * bit); what only /proc shows is kept aside in kcm_proc_cols.
 */
#ifndef KCMCTL_KCMINFO_H
#define KCMCTL_KCMINFO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>
#include <linux/kcm.h>

#include "json_print.h"

struct kcm_stats {
	uint64_t val[KCMUX_STAT_MAX + 1];
	uint64_t have;			/* bit i: val[i] is known */
};

#define KCM_PROC_NCOLS	4		/* Recv-Q, Rmem, Send-Q, Smem */
#define KCM_STATUS_MAX	160

/* Columns of /proc/net/kcm that netlink has no attribute for. */
struct kcm_proc_cols {
	bool valid;
	bool has_index;
	uint32_t index;			/* kcm-N, psock-N */
	uint64_t col[KCM_PROC_NCOLS];
	unsigned int have;		/* bit i: col[i] is a number, not "-" */
	char status[KCM_STATUS_MAX];	/* the status words, blank-separated */
};

struct kcm_obj {
	uint64_t attr[KCMUX_A_MAX + 1];
	uint64_t have;			/* bit i: attr[i] (or address i) known */
	uint8_t saddr[16];
	uint8_t daddr[16];
	struct kcm_stats stats;
	struct kcm_proc_cols proc;
};

struct kcm_obj_list {
	struct kcm_obj *v;
	size_t n, cap;
};

struct kcm_mux {
	struct kcm_obj obj;
	struct kcm_obj_list socks;
	struct kcm_obj_list psocks;
};

enum kcm_source {
	KCM_SOURCE_AUTO,
	KCM_SOURCE_NETLINK,
	KCM_SOURCE_PROC,
};

struct kcm_snapshot {
	enum kcm_source source;
	struct kcm_mux *mux;
	size_t n, cap;
};

static inline bool kcm_has(const struct kcm_obj *o, unsigned int attr)
{
	return o->have & (1ULL << attr);
}

static inline void kcm_set(struct kcm_obj *o, unsigned int attr, uint64_t v)
{
	o->attr[attr] = v;
	o->have |= 1ULL << attr;
}

static inline void kcm_set_stat(struct kcm_stats *s, unsigned int stat,
				uint64_t v)
{
	s->val[stat] = v;
	s->have |= 1ULL << stat;
}

/* kcminfo.c: the containers.  NULL (out of memory) or a zeroed entry. */
struct kcm_mux *kcm_snapshot_add(struct kcm_snapshot *s);
struct kcm_obj *kcm_obj_list_add(struct kcm_obj_list *l);
/* The mux with that KCMUX_A_MUX_ID, added if new; NULL on ENOMEM. */
struct kcm_mux *kcm_snapshot_mux_by_id(struct kcm_snapshot *s, uint32_t id);
void kcm_snapshot_free(struct kcm_snapshot *s);

/* kcminfo.c: names of values, for printing. */
const char *kcm_stat_name(unsigned int stat);	/* NULL if unknown */
const char *kcm_state_name(uint64_t state);
const char *kcm_parser_name(uint64_t parser);
const char *kcm_sock_type_name(uint64_t type);

/* Prints a mux, a KCM socket, a psock (also a monitor event's body). */
void kcm_print_mux(struct printer *p, const struct kcm_mux *m);
void kcm_print_sock(struct printer *p, const struct kcm_obj *o);
/* nested: printed under its mux, whose id text need not repeat. */
void kcm_print_psock_fields(struct printer *p, const struct kcm_obj *o,
			    bool nested);
void kcm_print_stats(struct printer *p, const struct kcm_stats *s,
		     const char *indent);

/* procfs.c: /proc/net/kcm into a snapshot.  0 or -errno (-EBADMSG). */
int kcm_proc_read(FILE *f, struct kcm_snapshot *s);

/* A table of /proc/net/kcm_stats: sections of named counters. */
#define KCM_STATS_MAX_SECT	4
#define KCM_STATS_MAX_COLS	24

struct kcm_stats_section {
	char name[16];			/* "MUX", "Psock" */
	unsigned int ncols;
	char col[KCM_STATS_MAX_COLS][24];
	uint64_t val[KCM_STATS_MAX_COLS];
};

struct kcm_stats_table {
	unsigned int nsect;
	struct kcm_stats_section sect[KCM_STATS_MAX_SECT];
};

int kcm_proc_read_stats(FILE *f, struct kcm_stats_table *t);
/* The JSON key of a kcm_stats column: "RX-Msgs" -> "rx_msgs". */
void kcm_stats_col_key(const char *col, char *key, size_t size);

#endif /* KCMCTL_KCMINFO_H */
