// SPDX-License-Identifier: GPL-2.0
/* The multiplexor: creation, membership of KCM sockets, clone, teardown. */
#include <linux/file.h>
#include <linux/net.h>
#include <linux/slab.h>
#include <net/sock.h>

#include "kcmux.h"

void kcmux_psock_stats_add(struct kcmux_psock_stats *to,
			   const struct kcmux_psock_stats *from)
{
	to->rx_msgs += from->rx_msgs;
	to->rx_bytes += from->rx_bytes;
	to->tx_msgs += from->tx_msgs;
	to->tx_bytes += from->tx_bytes;
	to->tx_reserved += from->tx_reserved;
	to->tx_unreserved += from->tx_unreserved;
	to->rx_interrupted += from->rx_interrupted;
	to->rx_unrecoverable += from->rx_unrecoverable;
	to->rx_mem_fail += from->rx_mem_fail;
	to->rx_need_more_hdr += from->rx_need_more_hdr;
	to->rx_bad_len += from->rx_bad_len;
	to->rx_too_big += from->rx_too_big;
	to->rx_timeouts += from->rx_timeouts;
	to->tx_aborts += from->tx_aborts;
}

static void kcmux_stats_add_mux(struct kcmux_mux_stats *to,
				const struct kcmux_mux_stats *from)
{
	to->rx_msgs += from->rx_msgs;
	to->rx_bytes += from->rx_bytes;
	to->tx_retries += from->tx_retries;
	to->psock_attach += from->psock_attach;
	to->psock_unattach += from->psock_unattach;
	to->psock_unattach_rsvd += from->psock_unattach_rsvd;
	to->rx_ready_drops += from->rx_ready_drops;
	to->tx_target_drops += from->tx_target_drops;
}

/* Folds a psock's counters into its mux before the psock is freed. */
void kcmux_mux_retire_psock(struct kcmux_mux *mux, struct kcmux_psock *psock)
{
	lockdep_assert_held(&mux->lock);
	kcmux_psock_stats_add(&mux->retired_psock, &psock->stats);
}

struct kcmux_mux *kcmux_mux_create(struct net *net)
{
	struct kcmux_net *knet = kcmux_net(net);
	struct kcmux_mux *mux;

	mux = kzalloc(sizeof(*mux), GFP_KERNEL);
	if (!mux)
		return NULL;

	mux->net = net;
	refcount_set(&mux->refcnt, 1);
	spin_lock_init(&mux->lock);
	INIT_LIST_HEAD(&mux->socks);
	INIT_LIST_HEAD(&mux->psocks);
	INIT_LIST_HEAD(&mux->rx_socks);
	INIT_LIST_HEAD(&mux->rx_psocks);
	INIT_LIST_HEAD(&mux->rx_waiting);
	INIT_LIST_HEAD(&mux->rx_wake);
	INIT_LIST_HEAD(&mux->tx_psocks);
	INIT_LIST_HEAD(&mux->tx_socks);
	__skb_queue_head_init(&mux->rx_hold);
	kcmux_tx_pages_init(mux);

	mutex_lock(&knet->lock);
	/* Ids are for people: 0 is skipped, reuse takes 2^32 muxes. */
	mux->id = ++knet->next_mux_id ? : ++knet->next_mux_id;
	list_add(&mux->net_node, &knet->mux_list);
	knet->mux_count++;
	mutex_unlock(&knet->lock);
	return mux;
}

/* Makes a freshly created KCM socket a member of mux; takes no reference. */
void kcmux_mux_add_sock(struct kcmux_mux *mux, struct kcmux_sock *kcm)
{
	kcm->mux = mux;
	INIT_LIST_HEAD(&kcm->rx_node);
	INIT_LIST_HEAD(&kcm->wake_node);
	INIT_LIST_HEAD(&kcm->tx_node);

	spin_lock_bh(&mux->lock);
	kcm->index = mux->next_sock_index++;
	list_add_tail(&kcm->mux_node, &mux->socks);
	mux->nr_socks++;
	/* A new socket has room: let it take held or parked messages. */
	kcmux_rx_sock_ready(kcm);
	spin_unlock_bh(&mux->lock);
}

static void kcmux_mux_destroy(struct kcmux_mux *mux)
{
	struct kcmux_net *knet = kcmux_net(mux->net);

	/* No KCM socket is left, so nothing can attach or reserve. */
	kcmux_psock_unattach_all(mux);

	mux->stats.rx_ready_drops += skb_queue_len(&mux->rx_hold);
	__skb_queue_purge(&mux->rx_hold);

	mutex_lock(&knet->lock);
	list_del(&mux->net_node);
	knet->mux_count--;
	kcmux_stats_add_mux(&knet->retired_mux, &mux->stats);
	kcmux_psock_stats_add(&knet->retired_psock, &mux->retired_psock);
	mutex_unlock(&knet->lock);

	WARN_ON_ONCE(!list_empty(&mux->psocks));
	kcmux_tx_pages_uninit(mux);
	kfree(mux);
}

void kcmux_mux_put(struct kcmux_mux *mux)
{
	if (refcount_dec_and_test(&mux->refcnt))
		kcmux_mux_destroy(mux);
}

/*
 * SIOCKCMCLONE.  The new socket is made through the regular socket
 * creation path, so LSM hooks see it like any other socket, and then
 * moved from the mux it was born with to ours before anyone can see it.
 */
int kcmux_clone(struct socket *sock, struct kcm_clone __user *uinfo)
{
	struct kcmux_mux *mux = kcmux_sk(sock->sk)->mux;
	struct kcmux_sock *newkcm;
	struct kcmux_mux *newmux;
	struct socket *newsock;
	struct kcm_clone info;
	struct file *file;
	int err, fd;

	err = __sock_create(sock_net(sock->sk), PF_KCM, sock->type,
			    KCMPROTO_CONNECTED, &newsock, 0);
	if (err)
		return err;

	newkcm = kcmux_sk(newsock->sk);
	newmux = newkcm->mux;
	spin_lock_bh(&newmux->lock);
	list_del(&newkcm->mux_node);
	newmux->nr_socks--;
	if (newkcm->rx_ready) {
		list_del(&newkcm->rx_node);
		newkcm->rx_ready = false;
	}
	list_del_init(&newkcm->wake_node);
	spin_unlock_bh(&newmux->lock);
	kcmux_mux_put(newmux);

	refcount_inc(&mux->refcnt);
	kcmux_mux_add_sock(mux, newkcm);

	fd = get_unused_fd_flags(0);
	if (fd < 0) {
		sock_release(newsock);
		return fd;
	}

	file = sock_alloc_file(newsock, 0, NULL);
	if (IS_ERR(file)) {
		/* sock_alloc_file() released newsock already. */
		put_unused_fd(fd);
		return PTR_ERR(file);
	}

	info.fd = fd;
	if (copy_to_user(uinfo, &info, sizeof(info))) {
		fput(file);
		put_unused_fd(fd);
		return -EFAULT;
	}

	fd_install(fd, file);
	return 0;
}
