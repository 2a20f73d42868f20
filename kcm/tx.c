// SPDX-License-Identifier: GPL-2.0
/*
 * Transmit side.  sendmsg builds a message as a chain of skbs (head plus
 * frag_list) charged to the KCM socket; once complete (no MSG_MORE on
 * DGRAM, MSG_EOR on SEQPACKET) it joins sk_write_queue.  The KCM socket
 * then reserves a psock and hands it one message after another until the
 * queue is empty, so a message is never interleaved with another on a
 * stream.  If TCP has no room, the psock's write_space restarts tx_work.
 */
#include <linux/net.h>
#include <linux/sched/signal.h>
#include <linux/skbuff.h>
#include <net/sock.h>
#include <net/tcp_states.h>

#include "kcmux.h"
#include "kcmux_trace.h"

/* Room a page_frag must have left to be worth a fragment slot. */
#define KCMUX_TX_FRAG_MIN	32U

/*
 * Room for more: below sndbuf, or nothing queued that could drain.  The
 * message being written may exceed sndbuf on its own, as in-tree KCM
 * allows: waiting for it to drain would wait forever.  poll's POLLOUT and
 * the wakeups use the same test.
 */
bool kcmux_tx_writable(struct sock *sk)
{
	return sk_wmem_alloc_get(sk) < READ_ONCE(sk->sk_sndbuf) ||
	       skb_queue_empty_lockless(&sk->sk_write_queue);
}

/* sk_write_space of KCM sockets: runs each time a tx skb is freed. */
static void kcmux_tx_write_space(struct sock *sk)
{
	struct socket_wq *wq;

	if (!kcmux_tx_writable(sk))
		return;

	rcu_read_lock();
	wq = rcu_dereference(sk->sk_wq);
	if (skwq_has_sleeper(wq))
		wake_up_interruptible_sync_poll(&wq->wait, EPOLLOUT |
						EPOLLWRNORM | EPOLLWRBAND);
	sk_wake_async(sk, SOCK_WAKE_SPACE, POLL_OUT);
	rcu_read_unlock();
}

void kcmux_tx_sock_init(struct kcmux_sock *kcm)
{
	mutex_init(&kcm->tx_mutex);
	INIT_WORK(&kcm->tx_work, kcmux_tx_work);
	kcm->sk.sk_write_space = kcmux_tx_write_space;
}

/* KCM socket locked; sleeps with it released. */
static int kcmux_tx_wait_mem(struct sock *sk, long *timeo)
{
	DEFINE_WAIT_FUNC(wait, woken_wake_function);
	int err = 0;

	add_wait_queue(sk_sleep(sk), &wait);
	while (!kcmux_tx_writable(sk)) {
		if (sk->sk_err) {
			err = sock_error(sk);
			break;
		}
		if (!*timeo) {
			err = -EAGAIN;
			break;
		}
		if (signal_pending(current)) {
			err = sock_intr_errno(*timeo);
			break;
		}
		sk_set_bit(SOCKWQ_ASYNC_NOSPACE, sk);
		set_bit(SOCK_NOSPACE, &sk->sk_socket->flags);
		sk_wait_event(sk, timeo, kcmux_tx_writable(sk) || sk->sk_err,
			      &wait);
	}
	remove_wait_queue(sk_sleep(sk), &wait);
	return err;
}

/* skb_page_frag_refill() that first looks for a page TCP is done with. */
static bool kcmux_tx_refill(struct kcmux_mux *mux, struct page_frag *pfrag,
			    gfp_t gfp)
{
	if (pfrag->page && pfrag->offset + KCMUX_TX_FRAG_MIN > pfrag->size &&
	    page_ref_count(pfrag->page) != 1)
		kcmux_tx_pages_trade(mux, pfrag, gfp);
	/* New pages go to the sender's memcg, as the skb does. */
	return skb_page_frag_refill(KCMUX_TX_FRAG_MIN, pfrag,
				    gfp | __GFP_ACCOUNT);
}

/*
 * Copies up to size bytes of the message into page fragments of the
 * task's page_frag, as TCP does for its own sends: the psock's TCP socket
 * then takes the pages by reference instead of copying them again, and
 * a page TCP is done with is refilled rather than allocated (and zeroed)
 * anew, in place or from the mux's (kcmux_tx_pages_trade()).  Returns
 * the bytes copied, fewer than size when skb ran out of fragment slots.
 */
static int kcmux_tx_copy_frags(struct sock *sk, struct sk_buff *skb,
			       struct iov_iter *from, size_t size)
{
	struct skb_shared_info *shinfo = skb_shinfo(skb);
	struct page_frag *pfrag = sk_page_frag(sk);
	size_t copied = 0;

	while (copied < size) {
		int i = shinfo->nr_frags;
		size_t copy;

		if (!kcmux_tx_refill(kcmux_sk(sk)->mux, pfrag,
				     sk->sk_allocation))
			return -ENOMEM;
		if (!skb_can_coalesce(skb, i, pfrag->page, pfrag->offset)) {
			if (i == MAX_SKB_FRAGS)
				break;
			get_page(pfrag->page);
			skb_fill_page_desc(skb, i++, pfrag->page,
					   pfrag->offset, 0);
		}
		copy = min_t(size_t, size - copied,
			     pfrag->size - pfrag->offset);
		/*
		 * In one go, as TCP copies into these pages: they are never
		 * highmem (sk_allocation), and copy_page_from_iter() would
		 * cut a compound page into a call per 4 KiB.
		 */
		if (copy_from_iter(page_address(pfrag->page) + pfrag->offset,
				   copy, from) != copy)
			return -EFAULT;
		skb_frag_size_add(&shinfo->frags[i - 1], copy);
		pfrag->offset += copy;
		skb->len += copy;
		skb->data_len += copy;
		skb->truesize += copy;
		copied += copy;
	}
	return copied;
}

/*
 * Allocates an skb holding the next at most size bytes of the message, all
 * in page fragments, whatever the size: for small messages TCP coalesces
 * neighbouring fragments of a page, so they cost less than a second copy.
 * Sets *copied to what the skb holds.
 */
static struct sk_buff *kcmux_tx_alloc(struct sock *sk, struct iov_iter *from,
				      size_t size, size_t *copied, int *err)
{
	struct sk_buff *skb;
	int ret;

	/* Charged to the sender's memcg: user data, held as long as it likes. */
	skb = alloc_skb(0, sk->sk_allocation | __GFP_ACCOUNT);
	if (!skb) {
		*err = -ENOBUFS;
		return NULL;
	}
	ret = kcmux_tx_copy_frags(sk, skb, from, size);
	if (ret < 0) {
		kfree_skb(skb);
		*err = ret;
		return NULL;
	}
	skb_set_owner_w(skb, sk);
	*copied = ret;
	return skb;
}

/* Appends skb to the message being written.  KCM socket locked. */
static void kcmux_tx_link(struct kcmux_sock *kcm, struct sk_buff *skb)
{
	struct sk_buff *head = kcm->tx_partial;
	struct kcmux_msg_cb *cb;

	if (!head) {
		cb = kcmux_msg_cb(skb);
		cb->offset = 0;
		cb->len = skb->len;
		cb->sent = 0;
		cb->psock_id = 0;
		cb->tail = skb;
		kcm->tx_partial = skb;
		return;
	}

	cb = kcmux_msg_cb(head);
	if (cb->tail == head)
		skb_shinfo(head)->frag_list = skb;
	else
		cb->tail->next = skb;
	cb->tail = skb;
	cb->len += skb->len;
	head->len += skb->len;
	head->data_len += skb->len;
}

/* Undoes what one failed sendmsg call added.  KCM socket locked. */
static void kcmux_tx_unlink_after(struct kcmux_sock *kcm,
				  struct sk_buff *old_tail, u32 old_len)
{
	struct sk_buff *head = kcm->tx_partial;
	struct kcmux_msg_cb *cb;
	struct sk_buff **cut;
	u32 removed;

	if (!head)
		return;
	if (!old_tail) {
		kfree_skb(head);
		kcm->tx_partial = NULL;
		return;
	}

	cb = kcmux_msg_cb(head);
	cut = old_tail == head ? &skb_shinfo(head)->frag_list : &old_tail->next;
	removed = cb->len - old_len;
	kfree_skb_list(*cut);
	*cut = NULL;
	cb->tail = old_tail;
	cb->len = old_len;
	head->len -= removed;
	head->data_len -= removed;
}

static void kcmux_tx_claim(struct kcmux_sock *kcm, struct kcmux_psock *psock)
{
	list_del_init(&psock->tx_node);
	psock->tx_owner = kcm;
	psock->stats.tx_reserved++;
	kcm->tx_psock = psock;
}

/*
 * Hands psock to the first KCM socket waiting for any psock or for this
 * one, or lists it free.  mux->lock held.
 */
void kcmux_tx_psock_available(struct kcmux_mux *mux, struct kcmux_psock *psock)
{
	struct kcmux_sock *kcm;

	lockdep_assert_held(&mux->lock);
	if (psock->tx_stopped)
		return;

	list_for_each_entry(kcm, &mux->tx_socks, tx_node) {
		if (kcm->tx_want && kcm->tx_want != psock->id)
			continue;
		list_del_init(&kcm->tx_node);
		kcm->tx_waiting = false;
		kcmux_tx_claim(kcm, psock);
		queue_work(kcmux_wq, &kcm->tx_work);
		return;
	}
	list_add_tail(&psock->tx_node, &mux->tx_psocks);
}

/*
 * psock will never carry a message again: sockets waiting for it in
 * particular must come and drop their targeted message.  mux->lock held.
 */
void kcmux_tx_wake_waiters(struct kcmux_mux *mux, struct kcmux_psock *psock)
{
	struct kcmux_sock *kcm, *tmp;

	lockdep_assert_held(&mux->lock);
	list_for_each_entry_safe(kcm, tmp, &mux->tx_socks, tx_node) {
		if (kcm->tx_want != psock->id)
			continue;
		list_del_init(&kcm->tx_node);
		kcm->tx_waiting = false;
		queue_work(kcmux_wq, &kcm->tx_work);
	}
}

static void kcmux_tx_wait_for(struct kcmux_sock *kcm, u32 want)
{
	lockdep_assert_held(&kcm->mux->lock);
	kcm->tx_want = want;
	if (!kcm->tx_waiting) {
		kcm->tx_waiting = true;
		list_add_tail(&kcm->tx_node, &kcm->mux->tx_socks);
	}
}

/*
 * Returns the psock kcm transmits on, reserving one if it can: any psock,
 * or the one with id want.  Sets *gone if that one can never carry the
 * message.  The caller already gave back a reservation of the wrong psock.
 */
static struct kcmux_psock *kcmux_tx_reserve(struct kcmux_sock *kcm, u32 want,
					    bool *gone)
{
	struct kcmux_mux *mux = kcm->mux;
	struct kcmux_psock *psock;

	*gone = false;
	spin_lock_bh(&mux->lock);
	psock = kcm->tx_psock;
	if (psock)
		goto out;

	if (want) {
		psock = kcmux_psock_lookup(mux, want);
		if (!psock || psock->tx_stopped) {
			*gone = true;
			psock = NULL;
		} else if (!list_empty(&psock->tx_node)) {
			/* On tx_psocks: nobody transmits on it. */
			kcmux_tx_claim(kcm, psock);
		} else {
			psock = NULL;
			kcmux_tx_wait_for(kcm, want);
		}
		goto out;
	}

	psock = list_first_entry_or_null(&mux->tx_psocks, struct kcmux_psock,
					 tx_node);
	if (psock)
		kcmux_tx_claim(kcm, psock);
	else
		kcmux_tx_wait_for(kcm, 0);
out:
	spin_unlock_bh(&mux->lock);
	return psock;
}

static void kcmux_tx_unreserve(struct kcmux_sock *kcm)
{
	struct kcmux_mux *mux = kcm->mux;
	struct kcmux_psock *psock;
	bool release = false;

	spin_lock_bh(&mux->lock);
	psock = kcm->tx_psock;
	if (psock) {
		kcm->tx_psock = NULL;
		psock->tx_owner = NULL;
		psock->stats.tx_unreserved++;
		if (psock->owner_releases)
			release = true;
		else if (!psock->unattaching)
			kcmux_tx_psock_available(mux, psock);
	}
	spin_unlock_bh(&mux->lock);

	if (release)
		kcmux_psock_release(psock);
}

/*
 * Sends up to len bytes of a message from offset on.  Its skbs hold page
 * fragments only (kcmux_tx_alloc()); each goes to TCP in one call with
 * all its fragments, so TCP pushes once per skb of the chain rather than
 * once per fragment (skb_send_sock_locked() sends a fragment at a time).
 * Returns the bytes sent, fewer when TCP ran out of room, or -errno.
 * TCP socket locked.
 */
static int kcmux_tx_send_chain(struct sock *csk, struct sk_buff *head,
			       u32 offset, u32 len)
{
	struct bio_vec bvec[MAX_SKB_FRAGS];
	struct sk_buff *skb = head;
	u32 sent = 0;

	while (skb && sent < len) {
		const struct skb_shared_info *shinfo = skb_shinfo(skb);
		u32 bytes = 0;
		int i, n = 0, ret;

		for (i = 0; i < shinfo->nr_frags && sent + bytes < len; i++) {
			const skb_frag_t *frag = &shinfo->frags[i];
			u32 size = skb_frag_size(frag);

			if (offset >= size) {
				offset -= size;
				continue;
			}
			size = min(size - offset, len - sent - bytes);
			bvec_set_page(&bvec[n++], skb_frag_page(frag), size,
				      skb_frag_off(frag) + offset);
			bytes += size;
			offset = 0;
		}
		skb = skb == head ? skb_shinfo(head)->frag_list : skb->next;
		if (!n)
			continue;
		ret = kcmux_tcp_send_pages(csk, bvec, n, bytes);
		if (ret <= 0)
			return sent ? sent : ret;
		sent += ret;
		if (ret < bytes)
			break;
	}
	return sent;
}

/* Sends what is left of one message.  KCM socket locked. */
static int kcmux_tx_send_msg(struct kcmux_psock *psock, struct sk_buff *skb)
{
	struct kcmux_msg_cb *cb = kcmux_msg_cb(skb);
	struct sock *csk = psock->sk;
	int ret = 0;

	lock_sock(csk);
	/*
	 * A socket that can no longer send gets none of the message.  Owning
	 * the socket lock parks incoming segments in the backlog, so the
	 * state cannot change between this test and the send.
	 */
	if (csk->sk_err || (csk->sk_shutdown & SEND_SHUTDOWN) ||
	    !((1 << csk->sk_state) & (TCPF_ESTABLISHED | TCPF_CLOSE_WAIT)))
		ret = -EPIPE;
	while (!ret && cb->sent < cb->len) {
		ret = kcmux_tx_send_chain(csk, skb, cb->sent,
					  cb->len - cb->sent);
		if (ret <= 0) {
			ret = ret ? : -EAGAIN;
			break;
		}
		cb->sent += ret;
		ret = 0;
	}
	release_sock(csk);
	return ret;
}

/* The TCP socket failed under a message: stop it, retry elsewhere. */
static void kcmux_tx_abort_psock(struct kcmux_sock *kcm,
				 struct kcmux_psock *psock, struct sk_buff *skb)
{
	kcmux_msg_cb(skb)->sent = 0;
	lock_sock(psock->sk);
	kcmux_psock_stop(psock, EPIPE);
	release_sock(psock->sk);

	spin_lock_bh(&kcm->mux->lock);
	psock->stats.tx_aborts++;
	kcm->mux->stats.tx_retries++;
	spin_unlock_bh(&kcm->mux->lock);
	kcmux_tx_unreserve(kcm);
}

/* Is the psock we hold the wrong one for a message targeted at want? */
static bool kcmux_tx_holds_other(struct kcmux_sock *kcm, u32 want)
{
	bool other;

	spin_lock_bh(&kcm->mux->lock);
	other = want && kcm->tx_psock && kcm->tx_psock->id != want;
	spin_unlock_bh(&kcm->mux->lock);
	return other;
}

/* A targeted message whose psock is gone: never sent anywhere else. */
static void kcmux_tx_drop_targeted(struct kcmux_sock *kcm, struct sk_buff *skb)
{
	__skb_unlink(skb, &kcm->sk.sk_write_queue);
	kfree_skb(skb);
	spin_lock_bh(&kcm->mux->lock);
	kcm->mux->stats.tx_target_drops++;
	spin_unlock_bh(&kcm->mux->lock);
}

/* Transmits queued messages as far as TCP lets us.  KCM socket locked. */
static void kcmux_tx_push(struct kcmux_sock *kcm)
{
	struct sock *sk = &kcm->sk;
	struct kcmux_psock *psock;
	struct sk_buff *skb;
	bool gone;
	u32 want;
	int err;

	while ((skb = skb_peek(&sk->sk_write_queue))) {
		want = kcmux_msg_cb(skb)->psock_id;
		/* Nothing of skb is out yet: sent messages leave the queue. */
		if (kcmux_tx_holds_other(kcm, want))
			kcmux_tx_unreserve(kcm);
		psock = kcmux_tx_reserve(kcm, want, &gone);
		if (gone) {
			kcmux_tx_drop_targeted(kcm, skb);
			continue;
		}
		if (!psock)
			return;

		err = kcmux_tx_send_msg(psock, skb);
		if (err == -EAGAIN)
			return;
		if (err) {
			kcmux_tx_abort_psock(kcm, psock, skb);
			continue;
		}

		psock->stats.tx_msgs++;
		psock->stats.tx_bytes += kcmux_msg_cb(skb)->len;
		trace_kcmux_msg_tx(psock, kcmux_msg_cb(skb)->len);
		__skb_unlink(skb, &sk->sk_write_queue);
		/* Sent (TCP holds its pages): not a drop. */
		consume_skb(skb);
		if (READ_ONCE(psock->unattaching) || READ_ONCE(psock->tx_stopped))
			kcmux_tx_unreserve(kcm);
	}
	kcmux_tx_unreserve(kcm);
}

void kcmux_tx_work(struct work_struct *work)
{
	struct kcmux_sock *kcm = container_of(work, struct kcmux_sock,
					      tx_work);

	lock_sock(&kcm->sk);
	kcmux_tx_push(kcm);
	release_sock(&kcm->sk);
}

/* TCP made room: let the KCM socket transmitting on psock continue. */
void kcmux_tx_wake_owner(struct kcmux_psock *psock)
{
	struct kcmux_mux *mux = psock->mux;

	spin_lock_bh(&mux->lock);
	if (psock->tx_owner)
		queue_work(kcmux_wq, &psock->tx_owner->tx_work);
	spin_unlock_bh(&mux->lock);
}

/*
 * Finds a KCMUX_ORIGIN control message: returns 1 and the psock id it
 * names, 0 if there is none, or -EINVAL.
 */
static int kcmux_tx_parse_target(struct msghdr *msg, u32 *psock_id)
{
	struct cmsghdr *cmsg;
	int found = 0;

	*psock_id = 0;
	if (!msg->msg_controllen)
		return 0;
	for_each_cmsghdr(cmsg, msg) {
		if (!CMSG_OK(msg, cmsg))
			return -EINVAL;
		if (cmsg->cmsg_level != SOL_KCM)
			continue;
		if (cmsg->cmsg_type != KCMUX_ORIGIN ||
		    cmsg->cmsg_len != CMSG_LEN(sizeof(u32)))
			return -EINVAL;
		memcpy(psock_id, CMSG_DATA(cmsg), sizeof(u32));
		found = 1;
	}
	return found;
}

/*
 * May a message be sent to psock_id?  The answer can change before it is
 * sent; kcmux_tx_push() drops it then.  KCM socket locked.
 */
static int kcmux_tx_check_target(struct kcmux_sock *kcm, u32 psock_id)
{
	struct kcmux_mux *mux = kcm->mux;
	struct kcmux_psock *psock;
	int err = 0;

	if (kcm->tx_partial) {
		u32 already = kcmux_msg_cb(kcm->tx_partial)->psock_id;

		if (already && already != psock_id)
			return -EINVAL;
	}

	spin_lock_bh(&mux->lock);
	psock = kcmux_psock_lookup(mux, psock_id);
	if (!psock || psock->unattaching)
		err = -ENOENT;
	/*
	 * TCP reports a reset or FIN before rx_work stops the psock: once
	 * the application can see POLLERR or EOF, so must a sender.
	 */
	else if (psock->tx_stopped || READ_ONCE(psock->sk->sk_err) ||
		 READ_ONCE(psock->sk->sk_state) != TCP_ESTABLISHED)
		err = -EPIPE;
	spin_unlock_bh(&mux->lock);
	return err;
}

int kcmux_sendmsg(struct socket *sock, struct msghdr *msg, size_t len)
{
	struct sock *sk = sock->sk;
	struct kcmux_sock *kcm = kcmux_sk(sk);
	bool eor = sock->type == SOCK_DGRAM ? !(msg->msg_flags & MSG_MORE) :
					      !!(msg->msg_flags & MSG_EOR);
	long timeo = sock_sndtimeo(sk, msg->msg_flags & MSG_DONTWAIT);
	struct sk_buff *old_tail = NULL;
	size_t copied = 0;
	u32 old_len = 0;
	int targeted;
	u32 target;
	int err = 0;

	if (msg->msg_flags & MSG_OOB)
		return -EOPNOTSUPP;
	targeted = kcmux_tx_parse_target(msg, &target);
	if (targeted < 0)
		return targeted;

	mutex_lock(&kcm->tx_mutex);
	lock_sock(sk);
	if (sk->sk_err) {
		err = sock_error(sk) ? : -EPIPE;
		goto out_err;
	}
	if (targeted) {
		/* Not a stream error: no SIGPIPE, the KCM socket is fine. */
		err = kcmux_tx_check_target(kcm, target);
		if (err)
			goto out_unlock;
	}
	if (kcm->tx_partial) {
		old_tail = kcmux_msg_cb(kcm->tx_partial)->tail;
		old_len = kcmux_msg_cb(kcm->tx_partial)->len;
	}
	/* Bounds the memory one socket can pin while a message is built. */
	if ((u64)old_len + len > KCMUX_MSG_MAX) {
		err = -EMSGSIZE;
		goto out_err;
	}

	while (copied < len) {
		struct sk_buff *skb;
		size_t size;

		if (!kcmux_tx_writable(sk)) {
			err = kcmux_tx_wait_mem(sk, &timeo);
			if (err)
				goto out_rollback;
		}
		skb = kcmux_tx_alloc(sk, &msg->msg_iter, len - copied, &size,
				     &err);
		if (!skb)
			goto out_rollback;
		kcmux_tx_link(kcm, skb);
		copied += size;
	}

	if (targeted && kcm->tx_partial)
		kcmux_msg_cb(kcm->tx_partial)->psock_id = target;
	if (eor && kcm->tx_partial) {
		__skb_queue_tail(&sk->sk_write_queue, kcm->tx_partial);
		kcm->tx_partial = NULL;
		kcm->stats.tx_msgs++;
		/* sendmmsg() marks all but its last message MSG_BATCH. */
		if (msg->msg_flags & MSG_BATCH)
			queue_work(kcmux_wq, &kcm->tx_work);
		else
			kcmux_tx_push(kcm);
	}
	kcm->stats.tx_bytes += copied;
	release_sock(sk);
	mutex_unlock(&kcm->tx_mutex);
	return copied;

out_rollback:
	kcmux_tx_unlink_after(kcm, old_tail, old_len);
out_err:
	err = sk_stream_error(sk, msg->msg_flags, err);
out_unlock:
	release_sock(sk);
	mutex_unlock(&kcm->tx_mutex);
	return err;
}

/*
 * The KCM socket is closing: drop what it has not sent.  A message that
 * is partly on the wire leaves a stream nobody can parse, so its TCP
 * socket gets an error.
 */
void kcmux_tx_release(struct kcmux_sock *kcm)
{
	struct sock *sk = &kcm->sk;
	struct kcmux_mux *mux = kcm->mux;
	struct kcmux_psock *psock;
	struct sk_buff *skb;

	lock_sock(sk);
	kfree_skb(kcm->tx_partial);
	kcm->tx_partial = NULL;

	spin_lock_bh(&mux->lock);
	if (kcm->tx_waiting) {
		list_del_init(&kcm->tx_node);
		kcm->tx_waiting = false;
	}
	psock = kcm->tx_psock;
	spin_unlock_bh(&mux->lock);

	skb = skb_peek(&sk->sk_write_queue);
	if (psock && skb && kcmux_msg_cb(skb)->sent) {
		lock_sock(psock->sk);
		kcmux_psock_stop(psock, EPIPE);
		release_sock(psock->sk);
		psock->stats.tx_aborts++;
	}
	kcmux_tx_unreserve(kcm);
	__skb_queue_purge(&sk->sk_write_queue);
	release_sock(sk);

	cancel_work_sync(&kcm->tx_work);
}
