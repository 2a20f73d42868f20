// SPDX-License-Identifier: GPL-2.0
/*
 * Client of the kcmux generic netlink family (see the uapi header for
 * the commands and attributes).
 */
#include <errno.h>
#include <string.h>

#include "genl.h"

enum kcm_nla_type { NLT_NONE, NLT_U16, NLT_U32, NLT_U64, NLT_ADDR, NLT_NEST };

/* What each attribute must look like; anything else is -EBADMSG. */
static const uint8_t kcm_attr_type[KCMUX_A_MAX + 1] = {
	[KCMUX_A_MUX_ID]	= NLT_U32,
	[KCMUX_A_SOCK_INO]	= NLT_U64,
	[KCMUX_A_SOCK_TYPE]	= NLT_U32,
	[KCMUX_A_SOCK_FLAGS]	= NLT_U32,
	[KCMUX_A_PSOCK_ID]	= NLT_U32,
	[KCMUX_A_TCP_INO]	= NLT_U64,
	[KCMUX_A_FAMILY]	= NLT_U16,
	[KCMUX_A_SADDR]		= NLT_ADDR,
	[KCMUX_A_DADDR]		= NLT_ADDR,
	[KCMUX_A_SPORT]		= NLT_U16,
	[KCMUX_A_DPORT]		= NLT_U16,
	[KCMUX_A_STATE]		= NLT_U32,
	[KCMUX_A_ERROR]		= NLT_U32,
	[KCMUX_A_PARSER]	= NLT_U32,
	[KCMUX_A_BPF_PROG_ID]	= NLT_U32,
	[KCMUX_A_RX_QUEUE]	= NLT_U32,
	[KCMUX_A_TX_QUEUE]	= NLT_U32,
	[KCMUX_A_NR_SOCKS]	= NLT_U32,
	[KCMUX_A_NR_PSOCKS]	= NLT_U32,
	[KCMUX_A_STATS]		= NLT_NEST,
	[KCMUX_A_TX_PAGE_CACHE]	= NLT_U32,
};

int kcm_genl_open(struct kcm_genl *g, bool events)
{
	int err;

	err = nl_open(&g->nl, NETLINK_GENERIC);
	if (err)
		return err;
	err = genl_resolve(&g->nl, KCMUX_GENL_NAME, &g->family,
			   events ? KCMUX_GENL_MCGRP_EVENTS : NULL,
			   &g->events_group);
	if (err)
		nl_close(&g->nl);
	return err;
}

void kcm_genl_close(struct kcm_genl *g)
{
	nl_close(&g->nl);
}

static int kcm_parse_stats(const struct nlattr *nest, struct kcm_stats *s)
{
	const struct nlattr *tb[KCMUX_STAT_MAX + 1];
	unsigned int i;
	uint64_t v;
	int err;

	err = nl_parse_nested(nest, tb, KCMUX_STAT_MAX);
	if (err)
		return err;
	for (i = KCMUX_STAT_PAD + 1; i <= KCMUX_STAT_MAX; i++) {
		if (!tb[i])
			continue;
		err = nla_get_u64(tb[i], &v);
		if (err)
			return err;
		kcm_set_stat(s, i, v);
	}
	return 0;
}

static int kcm_parse_addr(const struct nlattr *a, uint8_t *addr)
{
	size_t len = nla_payload_len(a);

	if (len != 4 && len != 16)
		return -EBADMSG;
	memcpy(addr, nla_payload(a), len);
	return (int)len;
}

static int kcm_parse_attr(const struct nlattr *a, unsigned int type,
			  struct kcm_obj *o)
{
	uint16_t v16;
	uint32_t v32;
	uint64_t v64;
	int err;

	switch (kcm_attr_type[type]) {
	case NLT_U16:
		err = nla_get_u16(a, &v16);
		v64 = v16;
		break;
	case NLT_U32:
		err = nla_get_u32(a, &v32);
		v64 = v32;
		break;
	case NLT_U64:
		err = nla_get_u64(a, &v64);
		break;
	case NLT_ADDR:
		err = kcm_parse_addr(a, type == KCMUX_A_SADDR ? o->saddr :
					 o->daddr);
		v64 = err;	/* the address length */
		break;
	case NLT_NEST:
		return kcm_parse_stats(a, &o->stats);
	default:
		return 0;	/* padding, or nothing we know */
	}
	if (err < 0)
		return err;
	kcm_set(o, type, v64);
	return 0;
}

/* The attributes of a kcmux message into o. */
static int kcm_parse_obj(const struct nlmsghdr *nlh, struct kcm_obj *o,
			 uint8_t *cmd)
{
	const struct nlattr *tb[KCMUX_A_MAX + 1];
	const struct genlmsghdr *gh;
	const void *attrs;
	unsigned int i;
	size_t len;
	int err;

	err = genl_msg_attrs(nlh, &gh, &attrs, &len);
	if (!err)
		err = nl_parse_attrs(attrs, len, tb, KCMUX_A_MAX);
	if (err)
		return err;
	if (cmd)
		*cmd = gh->cmd;
	for (i = 0; i <= KCMUX_A_MAX; i++) {
		if (!tb[i])
			continue;
		err = kcm_parse_attr(tb[i], i, o);
		if (err)
			return err;
	}
	return 0;
}

static int kcm_mux_cb(const struct nlmsghdr *nlh, void *arg)
{
	struct kcm_snapshot *s = arg;
	struct kcm_obj o = { 0 };
	struct kcm_mux *m;
	int err;

	err = kcm_parse_obj(nlh, &o, NULL);
	if (err)
		return err;
	if (!kcm_has(&o, KCMUX_A_MUX_ID))
		return -EBADMSG;
	m = kcm_snapshot_mux_by_id(s, (uint32_t)o.attr[KCMUX_A_MUX_ID]);
	if (!m)
		return -ENOMEM;
	m->obj = o;
	return 0;
}

/* A KCM socket or psock message, filed under its mux. */
static int kcm_member_cb(const struct nlmsghdr *nlh, struct kcm_snapshot *s,
			 bool psock)
{
	struct kcm_obj o = { 0 }, *slot;
	struct kcm_mux *m;
	int err;

	err = kcm_parse_obj(nlh, &o, NULL);
	if (err)
		return err;
	if (!kcm_has(&o, KCMUX_A_MUX_ID))
		return -EBADMSG;
	m = kcm_snapshot_mux_by_id(s, (uint32_t)o.attr[KCMUX_A_MUX_ID]);
	if (!m)
		return -ENOMEM;
	slot = kcm_obj_list_add(psock ? &m->psocks : &m->socks);
	if (!slot)
		return -ENOMEM;
	*slot = o;
	return 0;
}

static int kcm_sock_cb(const struct nlmsghdr *nlh, void *arg)
{
	return kcm_member_cb(nlh, arg, false);
}

static int kcm_psock_cb(const struct nlmsghdr *nlh, void *arg)
{
	return kcm_member_cb(nlh, arg, true);
}

static int kcm_genl_dump(struct kcm_genl *g, uint8_t cmd, nl_msg_cb cb,
			 void *arg)
{
	char buf[64];
	struct nl_req r;
	int err;

	nl_req_init(&r, buf, sizeof(buf), g->family, NLM_F_DUMP);
	err = nl_req_genl(&r, cmd, KCMUX_GENL_VERSION);
	if (err)
		return err;
	return nl_transact(&g->nl, &r, cb, arg);
}

/*
 * Three dumps, not one atomic view: a mux or socket that comes or goes
 * in between shows as it was seen by the dump that saw it.
 */
int kcm_genl_snapshot(struct kcm_genl *g, struct kcm_snapshot *s)
{
	int err;

	s->source = KCM_SOURCE_NETLINK;
	err = kcm_genl_dump(g, KCMUX_CMD_GET_MUX, kcm_mux_cb, s);
	if (!err)
		err = kcm_genl_dump(g, KCMUX_CMD_GET_SOCK, kcm_sock_cb, s);
	if (!err)
		err = kcm_genl_dump(g, KCMUX_CMD_GET_PSOCK, kcm_psock_cb, s);
	return err;
}

struct kcm_prog_ids {
	uint32_t *ids;
	size_t max, n;
};

static int kcm_prog_id_cb(const struct nlmsghdr *nlh, void *arg)
{
	struct kcm_prog_ids *p = arg;
	struct kcm_obj o = { 0 };
	int err;

	err = kcm_parse_obj(nlh, &o, NULL);
	if (err)
		return err;
	if (kcm_has(&o, KCMUX_A_PARSER) && kcm_has(&o, KCMUX_A_BPF_PROG_ID) &&
	    o.attr[KCMUX_A_PARSER] == KCMUX_PARSER_BPF && p->n < p->max)
		p->ids[p->n++] = (uint32_t)o.attr[KCMUX_A_BPF_PROG_ID];
	return 0;
}

int kcm_genl_parser_prog_ids(struct kcm_genl *g, uint32_t *ids, size_t max,
			     size_t *n)
{
	struct kcm_prog_ids p = { .ids = ids, .max = max };
	int err;

	err = kcm_genl_dump(g, KCMUX_CMD_GET_PSOCK, kcm_prog_id_cb, &p);
	*n = p.n;
	return err;
}

int kcm_genl_parse_event(const struct kcm_genl *g, const struct nlmsghdr *nlh,
			 uint8_t *cmd, struct kcm_obj *o)
{
	int err;

	if (nlh->nlmsg_type != g->family)
		return -EAGAIN;
	memset(o, 0, sizeof(*o));
	err = kcm_parse_obj(nlh, o, cmd);
	if (err)
		return err;
	switch (*cmd) {
	case KCMUX_CMD_PSOCK_ATTACHED:
	case KCMUX_CMD_PSOCK_UNATTACHED:
	case KCMUX_CMD_PSOCK_ERROR:
		return 0;
	default:
		return -EAGAIN;
	}
}
