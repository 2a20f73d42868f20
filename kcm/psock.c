// SPDX-License-Identifier: GPL-2.0
/*
 * psocks: TCP sockets attached to a mux.  Attach, unattach, the TCP
 * callbacks we install, and posting errors on the TCP socket.
 */
#include <linux/bpf.h>
#include <linux/file.h>
#include <linux/filter.h>
#include <linux/net.h>
#include <linux/slab.h>
#include <net/inet_connection_sock.h>
#include <net/sock.h>
#include <net/tcp.h>
#include <net/tcp_states.h>

#include "kcmux.h"
#include "kcmux_trace.h"

static void kcmux_psock_data_ready(struct sock *sk);
static void kcmux_psock_write_space(struct sock *sk);
static void kcmux_psock_state_change(struct sock *sk);

/*
 * TCP's own callbacks, read off a kernel socket at load time.  A callback
 * of ours can run on a socket without a psock when it raced with release;
 * the socket then gets TCP's behaviour.  (No listener's child inherits our
 * callbacks: an attached socket cannot listen, see kcmux_ulp_ops, and
 * SK_USER_DATA_NOCOPY would keep the psock pointer from being copied.)
 */
static struct {
	void (*data_ready)(struct sock *sk);
	void (*write_space)(struct sock *sk);
	void (*state_change)(struct sock *sk);
} kcmux_tcp_default;

/* User space cannot install it: only attach does (see kcmux_ulp_ops). */
static int kcmux_ulp_init(struct sock *sk)
{
	return -EOPNOTSUPP;
}

/*
 * Attached TCP sockets carry this upper layer protocol, as kTLS sockets
 * carry "tls": TCP then refuses another one on them (setsockopt(TCP_ULP)
 * fails with EEXIST, where kTLS would take over the receive queue under
 * the framing), refuses listen(), and getsockopt(TCP_ULP) and ss -i show
 * "kcmux".  Attach sets it and unattach clears it, both under the socket
 * lock, while the mux holds the socket's file: TCP never releases it.
 */
static struct tcp_ulp_ops kcmux_ulp_ops __read_mostly = {
	.name	= "kcmux",
	.owner	= THIS_MODULE,
	.init	= kcmux_ulp_init,
};

int kcmux_psock_init(void)
{
	struct socket *sock;
	int err;

	err = sock_create_kern(&init_net, AF_INET, SOCK_STREAM, IPPROTO_TCP,
			       &sock);
	if (err)
		return err;
	kcmux_tcp_default.data_ready = sock->sk->sk_data_ready;
	kcmux_tcp_default.write_space = sock->sk->sk_write_space;
	kcmux_tcp_default.state_change = sock->sk->sk_state_change;
	sock_release(sock);
	return tcp_register_ulp(&kcmux_ulp_ops);
}

void kcmux_psock_uninit(void)
{
	tcp_unregister_ulp(&kcmux_ulp_ops);
}

/* Callbacks hold sk_callback_lock for reading; release takes it to write. */
static struct kcmux_psock *kcmux_psock_of(struct sock *sk)
{
	return __locked_read_sk_user_data_with_flags(sk, SK_USER_DATA_NOCOPY);
}

/* TCP socket locked (bh or owner), as TCP calls sk_data_ready. */
static void kcmux_psock_data_ready(struct sock *sk)
{
	struct kcmux_psock *psock;

	read_lock_bh(&sk->sk_callback_lock);
	psock = kcmux_psock_of(sk);
	if (unlikely(!psock)) {
		void (*ready)(struct sock *sk) = READ_ONCE(sk->sk_data_ready);

		if (ready == kcmux_psock_data_ready)
			ready = kcmux_tcp_default.data_ready;
		ready(sk);
	} else if (psock->frame.stopped) {
		/* We no longer read; whoever else waits on the socket may. */
		psock->saved_data_ready(sk);
	} else if (sock_owned_by_user_nocheck(sk)) {
		queue_delayed_work(kcmux_wq, &psock->rx_work, 0);
	} else {
		kcmux_frame_read(psock);
	}
	read_unlock_bh(&sk->sk_callback_lock);
}

static void kcmux_psock_write_space(struct sock *sk)
{
	struct kcmux_psock *psock;

	read_lock_bh(&sk->sk_callback_lock);
	psock = kcmux_psock_of(sk);
	if (likely(psock)) {
		kcmux_tx_wake_owner(psock);
	} else {
		void (*space)(struct sock *sk) = READ_ONCE(sk->sk_write_space);

		if (space == kcmux_psock_write_space)
			space = kcmux_tcp_default.write_space;
		space(sk);
	}
	read_unlock_bh(&sk->sk_callback_lock);
}

/* TCP socket locked. */
static void kcmux_psock_state_change(struct sock *sk)
{
	struct kcmux_psock *psock;

	read_lock_bh(&sk->sk_callback_lock);
	psock = kcmux_psock_of(sk);
	if (unlikely(!psock)) {
		void (*change)(struct sock *sk) = READ_ONCE(sk->sk_state_change);

		if (change == kcmux_psock_state_change)
			change = kcmux_tcp_default.state_change;
		change(sk);
	} else if (sk->sk_state != TCP_ESTABLISHED) {
		/* Deliver what is already framed first, then post the error. */
		psock->peer_closed = true;
		queue_delayed_work(kcmux_wq, &psock->rx_work, 0);
	}
	read_unlock_bh(&sk->sk_callback_lock);
}

static void kcmux_psock_rx_work(struct work_struct *work)
{
	struct kcmux_psock *psock = container_of(to_delayed_work(work),
						 struct kcmux_psock, rx_work);
	struct sock *sk = psock->sk;
	bool drained;

	lock_sock(sk);
	/*
	 * Not rx_paused: a reader may unpark us just after the read parked a
	 * message, and the rest must wait for the run that queues.
	 */
	drained = kcmux_frame_read(psock);
	if (psock->peer_closed && drained && !psock->frame.stopped)
		kcmux_psock_stop(psock, EPIPE);
	release_sock(sk);
}

static void kcmux_psock_rx_timer(struct work_struct *work)
{
	struct kcmux_psock *psock = container_of(to_delayed_work(work),
						 struct kcmux_psock, rx_timer);

	lock_sock(psock->sk);
	kcmux_frame_timeout(psock);
	release_sock(psock->sk);
}

/*
 * Posts err on the TCP socket (POLLERR, SO_ERROR) and stops using the
 * psock in both directions.  A message in flight on it still completes,
 * so the stream stays well formed.  TCP socket locked.
 */
void kcmux_psock_stop(struct kcmux_psock *psock, int err)
{
	struct kcmux_mux *mux = psock->mux;
	struct sock *sk = psock->sk;

	kcmux_frame_stop(psock);
	trace_kcmux_psock_error(psock, err);

	/* Stopped before anyone can see the error: a targeted send agrees. */
	spin_lock_bh(&mux->lock);
	if (!psock->error)
		psock->error = err;
	psock->tx_stopped = true;
	list_del_init(&psock->tx_node);
	/*
	 * A dead TCP socket never reports write space: let the transmitter
	 * find out now and move its message to another psock.
	 */
	if (psock->tx_owner)
		queue_work(kcmux_wq, &psock->tx_owner->tx_work);
	kcmux_tx_wake_waiters(mux, psock);
	spin_unlock_bh(&mux->lock);

	WRITE_ONCE(sk->sk_err, err);
	sk_error_report(sk);

	kcmux_netlink_psock_event(psock, KCMUX_CMD_PSOCK_ERROR);
}

static int kcmux_psock_check(struct sock *csk)
{
	if ((csk->sk_family != AF_INET && csk->sk_family != AF_INET6) ||
	    csk->sk_type != SOCK_STREAM || csk->sk_protocol != IPPROTO_TCP)
		return -EOPNOTSUPP;
	if (csk->sk_state == TCP_LISTEN || csk->sk_state == TCP_CLOSE)
		return -EOPNOTSUPP;
	/* Ours: attached already.  kTLS and other ULPs own the socket too. */
	if (inet_csk(csk)->icsk_ulp_ops == &kcmux_ulp_ops)
		return -EALREADY;
	if (inet_csk(csk)->icsk_ulp_ops)
		return -EBUSY;
	return 0;
}

static int kcmux_psock_install(struct kcmux_psock *psock, struct sock *csk)
{
	write_lock_bh(&csk->sk_callback_lock);
	if (rcu_access_pointer(__sk_user_data(csk))) {
		write_unlock_bh(&csk->sk_callback_lock);
		return -EALREADY;
	}
	psock->saved_data_ready = csk->sk_data_ready;
	psock->saved_write_space = csk->sk_write_space;
	psock->saved_state_change = csk->sk_state_change;
	__rcu_assign_sk_user_data_with_flags(csk, psock, SK_USER_DATA_NOCOPY);
	/* Read locklessly by diag, like any ULP pointer. */
	WRITE_ONCE(inet_csk(csk)->icsk_ulp_ops, &kcmux_ulp_ops);
	WRITE_ONCE(csk->sk_data_ready, kcmux_psock_data_ready);
	WRITE_ONCE(csk->sk_write_space, kcmux_psock_write_space);
	WRITE_ONCE(csk->sk_state_change, kcmux_psock_state_change);
	write_unlock_bh(&csk->sk_callback_lock);
	return 0;
}

static void kcmux_psock_uninstall(struct kcmux_psock *psock)
{
	struct sock *csk = psock->sk;

	write_lock_bh(&csk->sk_callback_lock);
	WRITE_ONCE(csk->sk_data_ready, psock->saved_data_ready);
	WRITE_ONCE(csk->sk_write_space, psock->saved_write_space);
	WRITE_ONCE(csk->sk_state_change, psock->saved_state_change);
	rcu_assign_sk_user_data(csk, NULL);
	WRITE_ONCE(inet_csk(csk)->icsk_ulp_ops, NULL);
	write_unlock_bh(&csk->sk_callback_lock);
}

/*
 * Attaches TCP socket fd with the parser info describes (validated here,
 * after the socket, so SIOCKCMATTACH reports errors in in-tree order).
 */
int kcmux_attach(struct socket *sock, const struct kcmux_attach *info,
		 u32 *psock_id)
{
	struct kcmux_mux *mux = kcmux_sk(sock->sk)->mux;
	struct kcmux_net *knet = kcmux_net(mux->net);
	struct kcmux_psock *psock;
	struct socket *csock;
	struct sock *csk;
	int err;

	csock = sockfd_lookup(info->fd, &err);
	if (!csock)
		return -ENOENT;
	csk = csock->sk;
	if (!csk) {
		err = -EINVAL;
		goto out_put_sock;
	}

	psock = kzalloc(sizeof(*psock), GFP_KERNEL_ACCOUNT);
	if (!psock) {
		err = -ENOMEM;
		goto out_put_sock;
	}
	err = kcmux_parser_from_attach(&psock->parser, info);
	if (err)
		goto out_free;
	/* Reserved, not yet visible: lookups find it once it is linked. */
	err = xa_alloc_cyclic_bh(&knet->psock_ids, &psock->id, NULL,
				 XA_LIMIT(1, U32_MAX), &knet->next_psock_id,
				 GFP_KERNEL);
	if (err < 0)
		goto out_put_parser;
	psock->mux = mux;
	psock->sk = csk;
	psock->tcp_ino = SOCK_INODE(csock)->i_ino;
	INIT_LIST_HEAD(&psock->rx_node);
	INIT_LIST_HEAD(&psock->tx_node);
	INIT_DELAYED_WORK(&psock->rx_work, kcmux_psock_rx_work);
	INIT_DELAYED_WORK(&psock->rx_timer, kcmux_psock_rx_timer);

	lock_sock(csk);
	err = kcmux_psock_check(csk);
	if (!err)
		err = kcmux_psock_install(psock, csk);
	if (err) {
		release_sock(csk);
		goto out_free_id;
	}
	/* The mux keeps the TCP socket alive even if the application closes it. */
	psock->file = get_file(csock->file);

	spin_lock_bh(&mux->lock);
	psock->index = mux->next_psock_index++;
	list_add_tail(&psock->mux_node, &mux->psocks);
	mux->nr_psocks++;
	mux->stats.psock_attach++;
	/* Fills the reserved slot: no allocation. */
	xa_store_bh(&knet->psock_ids, psock->id, psock, GFP_ATOMIC);
	kcmux_tx_psock_available(mux, psock);
	spin_unlock_bh(&mux->lock);

	/* Bytes that arrived before the attach are messages too. */
	kcmux_frame_read(psock);
	release_sock(csk);

	*psock_id = psock->id;
	kcmux_netlink_psock_event(psock, KCMUX_CMD_PSOCK_ATTACHED);
	sockfd_put(csock);
	return 0;

out_free_id:
	xa_erase_bh(&knet->psock_ids, psock->id);
out_put_parser:
	kcmux_parser_release(&psock->parser);
out_free:
	kfree(psock);
out_put_sock:
	sockfd_put(csock);
	return err;
}

/*
 * The psock of mux with this id, or NULL if there is none or it is being
 * released.  Valid while mux->lock stays held.
 */
struct kcmux_psock *kcmux_psock_lookup(struct kcmux_mux *mux, u32 id)
{
	struct kcmux_psock *psock;

	lockdep_assert_held(&mux->lock);
	rcu_read_lock();
	psock = xa_load(&kcmux_net(mux->net)->psock_ids, id);
	/* Another mux's psock may be freed under us: only compare its mux. */
	if (psock && (psock->mux != mux || psock->released))
		psock = NULL;
	rcu_read_unlock();
	return psock;
}

/* SIOCKCMPSOCKID: the id of TCP socket fd's psock in our mux. */
int kcmux_psock_id_of(struct socket *sock, int fd, u32 *psock_id)
{
	struct kcmux_mux *mux = kcmux_sk(sock->sk)->mux;
	struct kcmux_psock *psock;
	struct socket *csock;
	int err;

	csock = sockfd_lookup(fd, &err);
	if (!csock)
		return err;

	err = -ENOENT;
	spin_lock_bh(&mux->lock);
	list_for_each_entry(psock, &mux->psocks, mux_node) {
		if (psock->sk == csock->sk && !psock->unattaching) {
			*psock_id = psock->id;
			err = 0;
			break;
		}
	}
	spin_unlock_bh(&mux->lock);
	sockfd_put(csock);
	return err;
}

/*
 * Gives the TCP socket back: callbacks restored, framing state dropped,
 * a parked message handed to the mux, the socket unpinned.  Called once
 * the psock carries no message (tx_owner == NULL).  Process context.
 */
void kcmux_psock_release(struct kcmux_psock *psock)
{
	struct kcmux_mux *mux = psock->mux;
	struct sock *csk = psock->sk;

	lock_sock(csk);
	kcmux_psock_uninstall(psock);
	kcmux_frame_stop(psock);
	release_sock(csk);

	/* After this nobody can queue rx_work for us again. */
	kcmux_rx_unpark(psock);
	cancel_delayed_work_sync(&psock->rx_work);
	cancel_delayed_work_sync(&psock->rx_timer);

	kcmux_netlink_psock_event(psock, KCMUX_CMD_PSOCK_UNATTACHED);

	spin_lock_bh(&mux->lock);
	list_del(&psock->tx_node);
	list_del(&psock->mux_node);
	mux->nr_psocks--;
	kcmux_mux_retire_psock(mux, psock);
	psock->released = true;
	xa_erase_bh(&kcmux_net(mux->net)->psock_ids, psock->id);
	spin_unlock_bh(&mux->lock);

	kcmux_parser_release(&psock->parser);
	fput(psock->file);
	/* kcmux_psock_lookup() may still be looking at it. */
	kfree_rcu(psock, rcu);
}

/*
 * Starts an unattach: no new message will be assigned to the psock.
 * It stays allocated at least until kcmux_psock_finish_unattach().
 */
static void kcmux_psock_begin_unattach(struct kcmux_psock *psock)
{
	struct kcmux_mux *mux = psock->mux;

	lockdep_assert_held(&mux->lock);
	psock->unattaching = true;
	psock->tx_stopped = true;
	list_del_init(&psock->tx_node);
	mux->stats.psock_unattach++;
	kcmux_tx_wake_waiters(mux, psock);
}

/*
 * Returns true if the caller must call kcmux_psock_release() now, false
 * if the KCM socket transmitting on it will, once its message is out.
 */
static bool kcmux_psock_finish_unattach(struct kcmux_psock *psock)
{
	struct kcmux_mux *mux = psock->mux;
	bool release_now;

	spin_lock_bh(&mux->lock);
	release_now = !psock->tx_owner;
	if (!release_now) {
		psock->owner_releases = true;
		mux->stats.psock_unattach_rsvd++;
	}
	spin_unlock_bh(&mux->lock);
	return release_now;
}

int kcmux_unattach(struct socket *sock, const struct kcm_unattach *info)
{
	struct kcmux_mux *mux = kcmux_sk(sock->sk)->mux;
	struct kcmux_psock *psock, *found = NULL;
	struct socket *csock;
	int err;

	csock = sockfd_lookup(info->fd, &err);
	if (!csock)
		return -ENOENT;
	if (!csock->sk) {
		err = -EINVAL;
		goto out;
	}

	err = -ENOENT;
	spin_lock_bh(&mux->lock);
	list_for_each_entry(psock, &mux->psocks, mux_node) {
		if (psock->sk != csock->sk)
			continue;
		if (psock->unattaching) {
			err = -EALREADY;
		} else {
			found = psock;
			kcmux_psock_begin_unattach(psock);
			err = 0;
		}
		break;
	}
	spin_unlock_bh(&mux->lock);

	if (found) {
		/* Receiving stops now, whoever releases the psock. */
		lock_sock(found->sk);
		kcmux_frame_stop(found);
		release_sock(found->sk);
		if (kcmux_psock_finish_unattach(found))
			kcmux_psock_release(found);
	}
out:
	sockfd_put(csock);
	return err;
}

/* The last KCM socket is gone: give every TCP socket back. */
void kcmux_psock_unattach_all(struct kcmux_mux *mux)
{
	struct kcmux_psock *psock;

	for (;;) {
		spin_lock_bh(&mux->lock);
		psock = list_first_entry_or_null(&mux->psocks,
						 struct kcmux_psock, mux_node);
		/* With no KCM socket left, no unattach or owner is running. */
		if (psock && !psock->unattaching)
			kcmux_psock_begin_unattach(psock);
		spin_unlock_bh(&mux->lock);

		if (!psock)
			break;
		if (WARN_ON_ONCE(!kcmux_psock_finish_unattach(psock)))
			break;
		kcmux_psock_release(psock);
	}
}
