// SPDX-License-Identifier: GPL-2.0
/*
 * The multiplexor model of kcminfo.h: containers, value names, and how a
 * mux, a KCM socket and a psock print (text and JSON alike).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include "kcmctl.h"
#include "kcminfo.h"

/* --- containers ------------------------------------------------------ */

static void *kcm_grow(void *v, size_t *cap, size_t n, size_t size)
{
	size_t new_cap = *cap ? *cap * 2 : 8;
	void *nv;

	if (n < *cap)
		return v;
	nv = reallocarray(v, new_cap, size);
	if (nv)
		*cap = new_cap;
	return nv;
}

struct kcm_mux *kcm_snapshot_add(struct kcm_snapshot *s)
{
	struct kcm_mux *v = kcm_grow(s->mux, &s->cap, s->n, sizeof(*v));

	if (!v)
		return NULL;
	s->mux = v;
	memset(&v[s->n], 0, sizeof(v[s->n]));
	return &v[s->n++];
}

struct kcm_obj *kcm_obj_list_add(struct kcm_obj_list *l)
{
	struct kcm_obj *v = kcm_grow(l->v, &l->cap, l->n, sizeof(*v));

	if (!v)
		return NULL;
	l->v = v;
	memset(&v[l->n], 0, sizeof(v[l->n]));
	return &v[l->n++];
}

struct kcm_mux *kcm_snapshot_mux_by_id(struct kcm_snapshot *s, uint32_t id)
{
	struct kcm_mux *m;
	size_t i;

	for (i = 0; i < s->n; i++)
		if (kcm_has(&s->mux[i].obj, KCMUX_A_MUX_ID) &&
		    s->mux[i].obj.attr[KCMUX_A_MUX_ID] == id)
			return &s->mux[i];
	/* Created between two dumps: it shows with what we know. */
	m = kcm_snapshot_add(s);
	if (m)
		kcm_set(&m->obj, KCMUX_A_MUX_ID, id);
	return m;
}

void kcm_snapshot_free(struct kcm_snapshot *s)
{
	size_t i;

	for (i = 0; i < s->n; i++) {
		free(s->mux[i].socks.v);
		free(s->mux[i].psocks.v);
	}
	free(s->mux);
	s->mux = NULL;
	s->n = 0;
	s->cap = 0;
}

/* --- names ----------------------------------------------------------- */

static const char *const kcm_stat_names[KCMUX_STAT_MAX + 1] = {
	[KCMUX_STAT_RX_MSGS]		= "rx_msgs",
	[KCMUX_STAT_RX_BYTES]		= "rx_bytes",
	[KCMUX_STAT_TX_MSGS]		= "tx_msgs",
	[KCMUX_STAT_TX_BYTES]		= "tx_bytes",
	[KCMUX_STAT_TX_RETRIES]		= "tx_retries",
	[KCMUX_STAT_ATTACHED]		= "attached",
	[KCMUX_STAT_UNATTACHED]		= "unattached",
	[KCMUX_STAT_UNATTACHED_RSVD]	= "unattached_rsvd",
	[KCMUX_STAT_RX_READY_DROPS]	= "rx_ready_drops",
	[KCMUX_STAT_TX_TARGET_DROPS]	= "tx_target_drops",
	[KCMUX_STAT_TX_RESERVED]	= "tx_reserved",
	[KCMUX_STAT_TX_UNRESERVED]	= "tx_unreserved",
	[KCMUX_STAT_TX_ABORTS]		= "tx_aborts",
	[KCMUX_STAT_RX_INTERRUPTED]	= "rx_interrupted",
	[KCMUX_STAT_RX_UNRECOVERABLE]	= "rx_unrecoverable",
	[KCMUX_STAT_RX_MEM_FAIL]	= "rx_mem_fail",
	[KCMUX_STAT_RX_NEED_MORE_HDR]	= "rx_need_more_hdr",
	[KCMUX_STAT_RX_BAD_LEN]		= "rx_bad_len",
	[KCMUX_STAT_RX_TOO_BIG]		= "rx_too_big",
	[KCMUX_STAT_RX_TIMEOUTS]	= "rx_timeouts",
};

const char *kcm_stat_name(unsigned int stat)
{
	return stat <= KCMUX_STAT_MAX ? kcm_stat_names[stat] : NULL;
}

const char *kcm_state_name(uint64_t state)
{
	switch (state) {
	case KCMUX_PSOCK_STATE_ACTIVE:
		return "active";
	case KCMUX_PSOCK_STATE_PAUSED:
		return "paused";
	case KCMUX_PSOCK_STATE_STOPPED:
		return "stopped";
	case KCMUX_PSOCK_STATE_UNATTACHING:
		return "unattaching";
	default:
		return "unknown";
	}
}

const char *kcm_parser_name(uint64_t parser)
{
	switch (parser) {
	case KCMUX_PARSER_BPF:
		return "bpf";
	case KCMUX_PARSER_FRAMING:
		return "framing";
	default:
		return "unknown";
	}
}

const char *kcm_sock_type_name(uint64_t type)
{
	switch (type) {
	case SOCK_DGRAM:
		return "dgram";
	case SOCK_SEQPACKET:
		return "seqpacket";
	default:
		return "unknown";
	}
}

/* --- printing -------------------------------------------------------- */

#define KCM_STATS_PER_LINE	6

void kcm_print_stats(struct printer *p, const struct kcm_stats *s,
		     const char *indent)
{
	unsigned int i, shown = 0;
	const char *name;

	if (!s->have)
		return;
	pr_open_object(p, "stats");
	for (i = 0; i <= KCMUX_STAT_MAX; i++) {
		name = kcm_stat_names[i];
		if (!name || !(s->have & (1ULL << i)))
			continue;
		if (shown % KCM_STATS_PER_LINE == 0)
			pr_text(p, "%s%s", shown ? "\n" : "", indent);
		pr_text(p, " %s ", name);
		pr_u64(p, PR_ANY, name, "%llu", s->val[i]);
		shown++;
	}
	pr_text(p, "\n");
	pr_close_object(p);
}

static void kcm_print_u64_attr(struct printer *p, const struct kcm_obj *o,
			       unsigned int attr, const char *key,
			       const char *fmt)
{
	if (kcm_has(o, attr))
		pr_u64(p, PR_ANY, key, fmt, o->attr[attr]);
}

/* The status words of /proc/net/kcm: an array in JSON. */
static void kcm_print_status(struct printer *p, const char *status)
{
	char copy[KCM_STATUS_MAX], *save = NULL, *w;

	if (!*status)
		return;
	snprintf(copy, sizeof(copy), "%s", status);
	pr_text(p, " status");
	pr_open_array(p, "status");
	for (w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save))
		pr_str(p, PR_ANY, NULL, " %s", w);
	pr_close_array(p);
}

static void kcm_print_proc_cols(struct printer *p,
				const struct kcm_proc_cols *c)
{
	static const char *const keys[KCM_PROC_NCOLS] = {
		"recv_q", "rmem", "send_q", "smem",
	};
	static const char *const fmts[KCM_PROC_NCOLS] = {
		" recv_q %llu", " rmem %llu", " send_q %llu", " smem %llu",
	};
	unsigned int i;

	if (!c->valid)
		return;
	for (i = 0; i < KCM_PROC_NCOLS; i++)
		if (c->have & (1U << i))
			pr_u64(p, PR_ANY, keys[i], fmts[i], c->col[i]);
	kcm_print_status(p, c->status);
}

static void kcm_print_sock_flags(struct printer *p, uint64_t flags)
{
	static const struct {
		uint64_t bit;
		const char *name;
	} names[] = {
		{ KCMUX_SOCK_F_RECV_DISABLED,	"recv_disabled" },
		{ KCMUX_SOCK_F_ORIGIN,		"origin" },
	};
	uint64_t known = 0;
	char other[32];
	bool first = true;
	size_t i;

	pr_text(p, " flags");
	pr_open_array(p, "flags");
	for (i = 0; i < KC_ARRAY_SIZE(names); i++) {
		known |= names[i].bit;
		if (!(flags & names[i].bit))
			continue;
		pr_str(p, PR_ANY, NULL, first ? " %s" : ",%s", names[i].name);
		first = false;
	}
	if (flags & ~known) {
		snprintf(other, sizeof(other), "0x%llx",
			 (unsigned long long)(flags & ~known));
		pr_str(p, PR_ANY, NULL, first ? " %s" : ",%s", other);
		first = false;
	}
	pr_close_array(p);
	if (first)
		pr_text(p, " none");
}

void kcm_print_sock(struct printer *p, const struct kcm_obj *o)
{
	pr_open_object(p, NULL);
	pr_text(p, "    sock");
	if (o->proc.has_index)
		pr_u64(p, PR_ANY, "index", " kcm-%llu", o->proc.index);
	/* Under its mux in text, so only JSON repeats the mux. */
	if (kcm_has(o, KCMUX_A_MUX_ID))
		pr_u64(p, PR_JSON, "mux_id", NULL, o->attr[KCMUX_A_MUX_ID]);
	kcm_print_u64_attr(p, o, KCMUX_A_SOCK_INO, "ino", " ino %llu");
	if (kcm_has(o, KCMUX_A_SOCK_TYPE))
		pr_str(p, PR_ANY, "type", " type %s",
		       kcm_sock_type_name(o->attr[KCMUX_A_SOCK_TYPE]));
	if (kcm_has(o, KCMUX_A_SOCK_FLAGS))
		kcm_print_sock_flags(p, o->attr[KCMUX_A_SOCK_FLAGS]);
	kcm_print_u64_attr(p, o, KCMUX_A_RX_QUEUE, "rx_queue", " rx_queue %llu");
	kcm_print_u64_attr(p, o, KCMUX_A_TX_QUEUE, "tx_queue", " tx_queue %llu");
	kcm_print_proc_cols(p, &o->proc);
	pr_text(p, "\n");
	kcm_print_stats(p, &o->stats, "       ");
	pr_close_object(p);
}

/* "addr" and "port" in JSON, "addr:port" ("[v6]:port") in text. */
static void kcm_print_endpoint(struct printer *p, const struct kcm_obj *o,
			       bool local)
{
	unsigned int addr_attr = local ? KCMUX_A_SADDR : KCMUX_A_DADDR;
	unsigned int port_attr = local ? KCMUX_A_SPORT : KCMUX_A_DPORT;
	const uint8_t *addr = local ? o->saddr : o->daddr;
	char str[INET6_ADDRSTRLEN] = "?";
	int family;

	if (!kcm_has(o, addr_attr) || !kcm_has(o, port_attr))
		return;
	family = o->attr[addr_attr] == 16 ? AF_INET6 : AF_INET;
	inet_ntop(family, addr, str, sizeof(str));
	pr_str(p, PR_JSON, local ? "saddr" : "daddr", NULL, str);
	pr_u64(p, PR_JSON, local ? "sport" : "dport", NULL, o->attr[port_attr]);
	pr_text(p, family == AF_INET6 ? " %s [%s]:%llu" : " %s %s:%llu",
		local ? "local" : "peer", str,
		(unsigned long long)o->attr[port_attr]);
}

void kcm_print_psock_fields(struct printer *p, const struct kcm_obj *o,
			    bool nested)
{
	uint64_t err;

	if (o->proc.has_index)
		pr_u64(p, PR_ANY, "index", " psock-%llu", o->proc.index);
	kcm_print_u64_attr(p, o, KCMUX_A_PSOCK_ID, "id", " %llu");
	if (kcm_has(o, KCMUX_A_MUX_ID))
		pr_u64(p, nested ? PR_JSON : PR_ANY, "mux_id", " mux %llu",
		       o->attr[KCMUX_A_MUX_ID]);
	kcm_print_u64_attr(p, o, KCMUX_A_TCP_INO, "tcp_ino", " tcp_ino %llu");
	kcm_print_endpoint(p, o, true);
	kcm_print_endpoint(p, o, false);
	if (kcm_has(o, KCMUX_A_STATE))
		pr_str(p, PR_ANY, "state", " state %s",
		       kcm_state_name(o->attr[KCMUX_A_STATE]));
	if (kcm_has(o, KCMUX_A_ERROR) && o->attr[KCMUX_A_ERROR]) {
		err = o->attr[KCMUX_A_ERROR];
		pr_u64(p, PR_JSON, "error", NULL, err);
		pr_text(p, " error %s", err < 4096 ?
			kc_errno_name((int)err) : "unknown");
	}
	if (kcm_has(o, KCMUX_A_PARSER))
		pr_str(p, PR_ANY, "parser", " parser %s",
		       kcm_parser_name(o->attr[KCMUX_A_PARSER]));
	kcm_print_u64_attr(p, o, KCMUX_A_BPF_PROG_ID, "prog_id", " prog_id %llu");
	kcm_print_u64_attr(p, o, KCMUX_A_RX_QUEUE, "rx_queue", " rx_queue %llu");
	kcm_print_u64_attr(p, o, KCMUX_A_TX_QUEUE, "tx_queue", " tx_queue %llu");
	kcm_print_proc_cols(p, &o->proc);
}

static void kcm_print_psock(struct printer *p, const struct kcm_obj *o)
{
	pr_open_object(p, NULL);
	pr_text(p, "    psock");
	kcm_print_psock_fields(p, o, true);
	pr_text(p, "\n");
	kcm_print_stats(p, &o->stats, "       ");
	pr_close_object(p);
}

void kcm_print_mux(struct printer *p, const struct kcm_mux *m)
{
	const struct kcm_obj *o = &m->obj;
	size_t i;

	pr_open_object(p, NULL);
	pr_text(p, "mux");
	kcm_print_u64_attr(p, o, KCMUX_A_MUX_ID, "id", " %llu");
	kcm_print_u64_attr(p, o, KCMUX_A_NR_SOCKS, "nr_socks", " socks %llu");
	kcm_print_u64_attr(p, o, KCMUX_A_NR_PSOCKS, "nr_psocks", " psocks %llu");
	kcm_print_u64_attr(p, o, KCMUX_A_TX_PAGE_CACHE, "tx_page_cache",
			   " tx_page_cache %llu");
	pr_text(p, "\n");
	kcm_print_stats(p, &o->stats, "   ");
	pr_open_array(p, "socks");
	for (i = 0; i < m->socks.n; i++)
		kcm_print_sock(p, &m->socks.v[i]);
	pr_close_array(p);
	pr_open_array(p, "psocks");
	for (i = 0; i < m->psocks.n; i++)
		kcm_print_psock(p, &m->psocks.v[i]);
	pr_close_array(p);
	pr_close_object(p);
}
