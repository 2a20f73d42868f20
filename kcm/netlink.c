// SPDX-License-Identifier: GPL-2.0
/*
 * Generic netlink family "kcmux": dumps of the muxes, KCM sockets and
 * psocks of a network namespace, and events when a psock is attached,
 * unattached or fails.  /proc/net/kcm stays for in-tree compatibility;
 * this is the structured interface (kcmctl show, kcmctl monitor).
 *
 * Dumps emit one message per object, so no mux is too big for a reply.
 * A dump resumes by id and index, not by position, so objects created
 * or removed between two parts do not shift what the next part sends.
 */
#include <linux/bpf.h>
#include <net/genetlink.h>
#include <net/inet_sock.h>
#include <net/ipv6.h>
#include <net/sock.h>

#include "kcmux.h"

enum {
	KCMUX_MCGRP_EVENTS_ID,
};

static const struct genl_multicast_group kcmux_mcgrps[] = {
	[KCMUX_MCGRP_EVENTS_ID] = { .name = KCMUX_GENL_MCGRP_EVENTS },
};

static struct genl_family kcmux_genl_family;

struct kcmux_nl_stat {
	u16 attr;
	u64 value;
};

static int kcmux_nl_put_stats(struct sk_buff *skb,
			      const struct kcmux_nl_stat *stats, int n)
{
	struct nlattr *nest;
	int i;

	nest = nla_nest_start(skb, KCMUX_A_STATS);
	if (!nest)
		return -EMSGSIZE;
	for (i = 0; i < n; i++) {
		if (nla_put_u64_64bit(skb, stats[i].attr, stats[i].value,
				      KCMUX_STAT_PAD)) {
			nla_nest_cancel(skb, nest);
			return -EMSGSIZE;
		}
	}
	nla_nest_end(skb, nest);
	return 0;
}

static int kcmux_nl_fill_mux(struct sk_buff *skb, struct kcmux_mux *mux)
{
	const struct kcmux_mux_stats *st = &mux->stats;
	const struct kcmux_nl_stat stats[] = {
		{ KCMUX_STAT_RX_MSGS, st->rx_msgs },
		{ KCMUX_STAT_RX_BYTES, st->rx_bytes },
		{ KCMUX_STAT_TX_RETRIES, st->tx_retries },
		{ KCMUX_STAT_ATTACHED, st->psock_attach },
		{ KCMUX_STAT_UNATTACHED, st->psock_unattach },
		{ KCMUX_STAT_UNATTACHED_RSVD, st->psock_unattach_rsvd },
		{ KCMUX_STAT_RX_READY_DROPS, st->rx_ready_drops },
		{ KCMUX_STAT_TX_TARGET_DROPS, st->tx_target_drops },
	};

	lockdep_assert_held(&mux->lock);
	if (nla_put_u32(skb, KCMUX_A_MUX_ID, mux->id) ||
	    nla_put_u32(skb, KCMUX_A_NR_SOCKS, mux->nr_socks) ||
	    nla_put_u32(skb, KCMUX_A_NR_PSOCKS, mux->nr_psocks) ||
	    nla_put_u32(skb, KCMUX_A_TX_PAGE_CACHE,
			READ_ONCE(mux->tx_pages.bytes)))
		return -EMSGSIZE;
	return kcmux_nl_put_stats(skb, stats, ARRAY_SIZE(stats));
}

/* Counters are read without the KCM socket lock: a stale value is fine. */
static int kcmux_nl_fill_sock(struct sk_buff *skb, struct kcmux_sock *kcm)
{
	struct sock *sk = &kcm->sk;
	const struct kcmux_nl_stat stats[] = {
		{ KCMUX_STAT_RX_MSGS, READ_ONCE(kcm->stats.rx_msgs) },
		{ KCMUX_STAT_RX_BYTES, READ_ONCE(kcm->stats.rx_bytes) },
		{ KCMUX_STAT_TX_MSGS, READ_ONCE(kcm->stats.tx_msgs) },
		{ KCMUX_STAT_TX_BYTES, READ_ONCE(kcm->stats.tx_bytes) },
	};
	u32 flags = 0;

	lockdep_assert_held(&kcm->mux->lock);
	if (kcm->rx_disabled)
		flags |= KCMUX_SOCK_F_RECV_DISABLED;
	if (READ_ONCE(kcm->origin))
		flags |= KCMUX_SOCK_F_ORIGIN;

	if (nla_put_u32(skb, KCMUX_A_MUX_ID, kcm->mux->id) ||
	    nla_put_u64_64bit(skb, KCMUX_A_SOCK_INO, kcm->ino, KCMUX_A_PAD) ||
	    nla_put_u32(skb, KCMUX_A_SOCK_TYPE, sk->sk_type) ||
	    nla_put_u32(skb, KCMUX_A_SOCK_FLAGS, flags) ||
	    nla_put_u32(skb, KCMUX_A_RX_QUEUE,
			atomic_read(&sk->sk_rmem_alloc)) ||
	    nla_put_u32(skb, KCMUX_A_TX_QUEUE, sk_wmem_alloc_get(sk)))
		return -EMSGSIZE;
	return kcmux_nl_put_stats(skb, stats, ARRAY_SIZE(stats));
}

static u32 kcmux_nl_psock_state(const struct kcmux_psock *psock)
{
	if (psock->unattaching)
		return KCMUX_PSOCK_STATE_UNATTACHING;
	if (psock->tx_stopped)
		return KCMUX_PSOCK_STATE_STOPPED;
	if (psock->rx_ready)
		return KCMUX_PSOCK_STATE_PAUSED;
	return KCMUX_PSOCK_STATE_ACTIVE;
}

/* The TCP endpoints, read unlocked: they are fixed once connected. */
static int kcmux_nl_put_endpoints(struct sk_buff *skb, struct sock *sk)
{
	const struct inet_sock *inet = inet_sk(sk);
	u16 family = sk->sk_family;

	if (nla_put_u16(skb, KCMUX_A_FAMILY, family) ||
	    nla_put_u16(skb, KCMUX_A_SPORT, ntohs(inet->inet_sport)) ||
	    nla_put_u16(skb, KCMUX_A_DPORT, ntohs(inet->inet_dport)))
		return -EMSGSIZE;
#if IS_ENABLED(CONFIG_IPV6)
	if (family == AF_INET6)
		return nla_put_in6_addr(skb, KCMUX_A_SADDR,
					&sk->sk_v6_rcv_saddr) ||
		       nla_put_in6_addr(skb, KCMUX_A_DADDR, &sk->sk_v6_daddr) ?
		       -EMSGSIZE : 0;
#endif
	return nla_put_in_addr(skb, KCMUX_A_SADDR, inet->inet_saddr) ||
	       nla_put_in_addr(skb, KCMUX_A_DADDR, inet->inet_daddr) ?
	       -EMSGSIZE : 0;
}

static int kcmux_nl_fill_psock(struct sk_buff *skb, struct kcmux_psock *psock)
{
	const struct kcmux_psock_stats *st = &psock->stats;
	const struct kcmux_parser *parser = &psock->parser;
	struct sock *sk = psock->sk;
	const struct kcmux_nl_stat stats[] = {
		{ KCMUX_STAT_RX_MSGS, st->rx_msgs },
		{ KCMUX_STAT_RX_BYTES, st->rx_bytes },
		{ KCMUX_STAT_TX_MSGS, st->tx_msgs },
		{ KCMUX_STAT_TX_BYTES, st->tx_bytes },
		{ KCMUX_STAT_TX_RESERVED, st->tx_reserved },
		{ KCMUX_STAT_TX_UNRESERVED, st->tx_unreserved },
		{ KCMUX_STAT_TX_ABORTS, st->tx_aborts },
		{ KCMUX_STAT_RX_INTERRUPTED, st->rx_interrupted },
		{ KCMUX_STAT_RX_UNRECOVERABLE, st->rx_unrecoverable },
		{ KCMUX_STAT_RX_MEM_FAIL, st->rx_mem_fail },
		{ KCMUX_STAT_RX_NEED_MORE_HDR, st->rx_need_more_hdr },
		{ KCMUX_STAT_RX_BAD_LEN, st->rx_bad_len },
		{ KCMUX_STAT_RX_TOO_BIG, st->rx_too_big },
		{ KCMUX_STAT_RX_TIMEOUTS, st->rx_timeouts },
	};

	lockdep_assert_held(&psock->mux->lock);
	if (nla_put_u32(skb, KCMUX_A_MUX_ID, psock->mux->id) ||
	    nla_put_u32(skb, KCMUX_A_PSOCK_ID, psock->id) ||
	    nla_put_u64_64bit(skb, KCMUX_A_TCP_INO, psock->tcp_ino,
			      KCMUX_A_PAD) ||
	    nla_put_u32(skb, KCMUX_A_STATE, kcmux_nl_psock_state(psock)) ||
	    nla_put_u32(skb, KCMUX_A_PARSER, parser->prog ?
			KCMUX_PARSER_BPF : KCMUX_PARSER_FRAMING) ||
	    nla_put_u32(skb, KCMUX_A_RX_QUEUE,
			atomic_read(&sk->sk_rmem_alloc)) ||
	    nla_put_u32(skb, KCMUX_A_TX_QUEUE, READ_ONCE(sk->sk_wmem_queued)))
		return -EMSGSIZE;
	if (parser->prog &&
	    nla_put_u32(skb, KCMUX_A_BPF_PROG_ID, parser->prog->aux->id))
		return -EMSGSIZE;
	if (psock->error && nla_put_u32(skb, KCMUX_A_ERROR, psock->error))
		return -EMSGSIZE;
	if (kcmux_nl_put_endpoints(skb, sk))
		return -EMSGSIZE;
	return kcmux_nl_put_stats(skb, stats, ARRAY_SIZE(stats));
}

/* One object as one message; on -EMSGSIZE the skb is left as it was. */
static int kcmux_nl_put(struct sk_buff *skb, struct netlink_callback *cb,
			u8 cmd, void *obj)
{
	void *hdr;
	int err;

	hdr = genlmsg_put(skb, NETLINK_CB(cb->skb).portid, cb->nlh->nlmsg_seq,
			  &kcmux_genl_family, NLM_F_MULTI, cmd);
	if (!hdr)
		return -EMSGSIZE;
	switch (cmd) {
	case KCMUX_CMD_GET_MUX:
		err = kcmux_nl_fill_mux(skb, obj);
		break;
	case KCMUX_CMD_GET_SOCK:
		err = kcmux_nl_fill_sock(skb, obj);
		break;
	default:
		err = kcmux_nl_fill_psock(skb, obj);
		break;
	}
	if (err) {
		genlmsg_cancel(skb, hdr);
		return err;
	}
	genlmsg_end(skb, hdr);
	return 0;
}

/*
 * The objects of one mux with an index at least *next, in index order
 * (lists grow at the tail).  On a full skb, *next is where to resume.
 */
static int kcmux_nl_dump_mux_objects(struct sk_buff *skb,
				     struct netlink_callback *cb, u8 cmd,
				     struct kcmux_mux *mux, u32 *next)
{
	struct kcmux_psock *psock;
	struct kcmux_sock *kcm;
	int err;

	lockdep_assert_held(&mux->lock);
	switch (cmd) {
	case KCMUX_CMD_GET_MUX:
		if (*next)
			return 0;
		err = kcmux_nl_put(skb, cb, cmd, mux);
		if (!err)
			*next = 1;
		return err;
	case KCMUX_CMD_GET_SOCK:
		list_for_each_entry(kcm, &mux->socks, mux_node) {
			if (kcm->index < *next)
				continue;
			err = kcmux_nl_put(skb, cb, cmd, kcm);
			if (err)
				return err;
			*next = kcm->index + 1;
		}
		return 0;
	default:
		list_for_each_entry(psock, &mux->psocks, mux_node) {
			if (psock->index < *next || psock->released)
				continue;
			err = kcmux_nl_put(skb, cb, cmd, psock);
			if (err)
				return err;
			*next = psock->index + 1;
		}
		return 0;
	}
}

/*
 * cb->args[0]: id of the mux being dumped (0: none yet); muxes are listed
 * newest first, so ids decrease along the list.  cb->args[1]: the next
 * object index within that mux.  cb->args[2]: set once all was sent.
 */
static int kcmux_nl_dump(struct sk_buff *skb, struct netlink_callback *cb,
			 u8 cmd)
{
	struct kcmux_net *knet = kcmux_net(sock_net(skb->sk));
	u32 resume_id = cb->args[0];
	u32 next = cb->args[1];
	struct kcmux_mux *mux;
	int err = 0;

	if (cb->args[2])
		return 0;
	mutex_lock(&knet->lock);
	list_for_each_entry(mux, &knet->mux_list, net_node) {
		if (resume_id && mux->id > resume_id)
			continue;
		if (mux->id != resume_id)
			next = 0;
		spin_lock_bh(&mux->lock);
		err = kcmux_nl_dump_mux_objects(skb, cb, cmd, mux, &next);
		spin_unlock_bh(&mux->lock);
		cb->args[0] = mux->id;
		cb->args[1] = next;
		if (err)
			break;
	}
	if (!err)
		cb->args[2] = 1;
	mutex_unlock(&knet->lock);

	/* A full skb ends this part; an empty one means no progress. */
	if (err == -EMSGSIZE && skb->len)
		return skb->len;
	return err ? : skb->len;
}

static int kcmux_nl_dump_muxes(struct sk_buff *skb, struct netlink_callback *cb)
{
	return kcmux_nl_dump(skb, cb, KCMUX_CMD_GET_MUX);
}

static int kcmux_nl_dump_socks(struct sk_buff *skb, struct netlink_callback *cb)
{
	return kcmux_nl_dump(skb, cb, KCMUX_CMD_GET_SOCK);
}

static int kcmux_nl_dump_psocks(struct sk_buff *skb,
				struct netlink_callback *cb)
{
	return kcmux_nl_dump(skb, cb, KCMUX_CMD_GET_PSOCK);
}

static const struct genl_small_ops kcmux_genl_ops[] = {
	{
		.cmd		= KCMUX_CMD_GET_MUX,
		.validate	= GENL_DONT_VALIDATE_STRICT |
				  GENL_DONT_VALIDATE_DUMP,
		.dumpit		= kcmux_nl_dump_muxes,
	},
	{
		.cmd		= KCMUX_CMD_GET_SOCK,
		.validate	= GENL_DONT_VALIDATE_STRICT |
				  GENL_DONT_VALIDATE_DUMP,
		.dumpit		= kcmux_nl_dump_socks,
	},
	{
		.cmd		= KCMUX_CMD_GET_PSOCK,
		.validate	= GENL_DONT_VALIDATE_STRICT |
				  GENL_DONT_VALIDATE_DUMP,
		.dumpit		= kcmux_nl_dump_psocks,
	},
};

static struct genl_family kcmux_genl_family __ro_after_init = {
	.name		= KCMUX_GENL_NAME,
	.version	= KCMUX_GENL_VERSION,
	.netnsok	= true,
	.module		= THIS_MODULE,
	.small_ops	= kcmux_genl_ops,
	.n_small_ops	= ARRAY_SIZE(kcmux_genl_ops),
	.resv_start_op	= KCMUX_CMD_MAX + 1,
	.mcgrps		= kcmux_mcgrps,
	.n_mcgrps	= ARRAY_SIZE(kcmux_mcgrps),
};

/*
 * Tells listeners of the events group about psock.  Any context, without
 * mux->lock; cheap when nobody listens.
 */
void kcmux_netlink_psock_event(struct kcmux_psock *psock, u8 cmd)
{
	struct kcmux_mux *mux = psock->mux;
	struct net *net = mux->net;
	struct sk_buff *skb;
	void *hdr;
	int err;

	if (!genl_has_listeners(&kcmux_genl_family, net,
				KCMUX_MCGRP_EVENTS_ID))
		return;

	skb = genlmsg_new(NLMSG_GOODSIZE, GFP_ATOMIC);
	if (!skb)
		return;
	hdr = genlmsg_put(skb, 0, 0, &kcmux_genl_family, 0, cmd);
	if (!hdr) {
		nlmsg_free(skb);
		return;
	}
	spin_lock_bh(&mux->lock);
	err = kcmux_nl_fill_psock(skb, psock);
	spin_unlock_bh(&mux->lock);
	if (err) {
		nlmsg_free(skb);
		return;
	}
	genlmsg_end(skb, hdr);
	genlmsg_multicast_netns(&kcmux_genl_family, net, skb, 0,
				KCMUX_MCGRP_EVENTS_ID, GFP_ATOMIC);
}

int kcmux_netlink_init(void)
{
	return genl_register_family(&kcmux_genl_family);
}

void kcmux_netlink_uninit(void)
{
	genl_unregister_family(&kcmux_genl_family);
}
