// SPDX-License-Identifier: GPL-2.0
/*
 * Receive side: steering complete messages to KCM sockets, parking them
 * when no socket has room, requeueing, and recvmsg/splice_read.
 *
 * A KCM socket is on mux->rx_socks while it can take a message (receive
 * enabled and rmem below rcvbuf).  Messages go to the first socket on the
 * list, which moves to the tail after a turn: KCMUX_RX_STEER_BATCH of
 * them, or fewer if whoever queued them is done first.  Busy readers share
 * the load turn by turn, and one read of TCP, which may frame a segment of
 * messages, wakes one reader rather than each.  When the list is empty,
 * the psock parks its message and stops reading from TCP, which pushes
 * back on the peer through the TCP window.
 *
 * Small messages are not queued one skb each: they are copied into the
 * "pack" at the tail of the receive queue (see struct kcmux_msg_cb), so a
 * queued 64-byte message costs about a hundred bytes instead of an skb.
 *
 * Readers are woken once per batch, not once per message: a socket that
 * was given messages goes on mux->rx_wake, and whoever queued them calls
 * kcmux_rx_wake() before it lets go (framing at the end of a read of the
 * TCP socket, which may frame dozens of messages).  A reader woken at the
 * first message would take it and sleep again, an IPI per message.
 */
#include <linux/net.h>
#include <linux/skbuff.h>
#include <linux/splice.h>
#include <net/sock.h>

#include "kcmux.h"
#include "kcmux_trace.h"

static void kcmux_rfree(struct sk_buff *skb)
{
	atomic_sub(skb->truesize, &skb->sk->sk_rmem_alloc);
}

/* A pack's data area fills a 2 KiB allocation with its shared info. */
#define KCMUX_PACK_SIZE		SKB_WITH_OVERHEAD(2048)
/* Paused psocks a socket that gets room again resumes at once. */
#define KCMUX_RX_RESUME_BATCH	4
/* Messages a socket takes in a row while it has room (see top). */
#define KCMUX_RX_STEER_BATCH	16

static bool kcmux_rx_has_room(struct sock *sk)
{
	return atomic_read(&sk->sk_rmem_alloc) < READ_ONCE(sk->sk_rcvbuf);
}

/* A message skb that is better copied into a pack. */
static bool kcmux_rx_packable(struct sk_buff *skb)
{
	const struct kcmux_msg_cb *cb = kcmux_msg_cb(skb);

	return !cb->packed && cb->len <= KCMUX_PACK_MSG_MAX && !cb->offset &&
	       !cb->sent && cb->len == skb->len && !skb_is_nonlinear(skb) &&
	       !skb_cloned(skb);
}

/* The pack at the tail of queue if len more bytes fit in it.  Queue lock. */
static struct sk_buff *kcmux_rx_tail_pack(struct sk_buff_head *queue, u32 len)
{
	struct sk_buff *pack = skb_peek_tail(queue);

	lockdep_assert_held(&queue->lock);
	if (pack && kcmux_msg_cb(pack)->packed &&
	    skb_tailroom(pack) >= sizeof(struct kcmux_pack_rec) + len)
		return pack;
	return NULL;
}

static struct sk_buff *kcmux_rx_pack_alloc(void)
{
	struct sk_buff *pack = alloc_skb(KCMUX_PACK_SIZE, GFP_ATOMIC);

	if (pack)
		kcmux_msg_cb(pack)->packed = true;
	return pack;
}

/* Appends a record; a new pack's cb describes its first record. */
static void kcmux_rx_pack_put(struct sk_buff *pack, const void *data, u32 len,
			      u32 psock_id)
{
	struct kcmux_msg_cb *cb = kcmux_msg_cb(pack);
	struct kcmux_pack_rec rec = { .len = len, .psock_id = psock_id };

	if (!pack->len) {
		cb->offset = sizeof(rec);
		cb->len = rec.len;
		cb->sent = 0;
		cb->psock_id = rec.psock_id;
	}
	skb_put_data(pack, &rec, sizeof(rec));
	skb_put_data(pack, data, len);
}

/*
 * Makes the next record of a pack current; false if there is none.  The
 * caller excludes appends (queue lock, or the pack is off every queue).
 */
static bool kcmux_rx_pack_advance(struct sk_buff *pack)
{
	struct kcmux_msg_cb *cb = kcmux_msg_cb(pack);
	u32 next = cb->offset + cb->len;
	struct kcmux_pack_rec rec;

	if (next + sizeof(rec) > pack->len)
		return false;
	memcpy(&rec, pack->data + next, sizeof(rec));
	cb->offset = next + sizeof(rec);
	cb->len = rec.len;
	cb->sent = 0;
	cb->psock_id = rec.psock_id;
	return true;
}

/* Messages queued on kcm, packed ones one by one.  Any context. */
u32 kcmux_rx_queued(struct kcmux_sock *kcm)
{
	struct sk_buff_head *queue = &kcm->sk.sk_receive_queue;
	const struct kcmux_msg_cb *cb;
	struct kcmux_pack_rec rec;
	struct sk_buff *skb;
	unsigned long flags;
	u32 n = 0, pos;

	spin_lock_irqsave(&queue->lock, flags);
	skb_queue_walk(queue, skb) {
		n++;
		cb = kcmux_msg_cb(skb);
		if (!cb->packed)
			continue;
		for (pos = cb->offset + cb->len; pos + sizeof(rec) <= skb->len;
		     pos += sizeof(rec) + rec.len) {
			memcpy(&rec, skb->data + pos, sizeof(rec));
			n++;
		}
	}
	spin_unlock_irqrestore(&queue->lock, flags);
	return n;
}

/* kcm had its turn: the next message goes to the socket after it. */
static void kcmux_rx_rotate(struct kcmux_sock *kcm)
{
	struct list_head *socks = &kcm->mux->rx_socks;

	lockdep_assert_held(&kcm->mux->lock);
	kcm->rx_given = 0;
	/* Already last (a lone reader always is): spare the list a rewrite. */
	if (!list_is_last(&kcm->rx_node, socks))
		list_move_tail(&kcm->rx_node, socks);
}

/* kcm took a message: its turn ends after a batch of them. */
static void kcmux_rx_given(struct kcmux_sock *kcm)
{
	if (++kcm->rx_given >= KCMUX_RX_STEER_BATCH)
		kcmux_rx_rotate(kcm);
}

/*
 * Charges skb to kcm and updates steering.  Leave the steering list before
 * the skb is visible: the reader that takes it then sees rx_ready false
 * and puts us back (rx_refill).  The queue lock, held by the caller until
 * the skb is queued, orders the store against that reader.
 */
static void kcmux_rx_charge(struct kcmux_sock *kcm, struct sk_buff *skb)
{
	struct sock *sk = &kcm->sk;

	skb->sk = sk;
	skb->destructor = kcmux_rfree;
	atomic_add(skb->truesize, &sk->sk_rmem_alloc);
	if (kcmux_rx_has_room(sk)) {
		kcmux_rx_given(kcm);
	} else {
		list_del_init(&kcm->rx_node);
		WRITE_ONCE(kcm->rx_ready, false);
	}
}

/* kcm has new messages; its reader is woken by kcmux_rx_wake(). */
static void kcmux_rx_wake_later(struct kcmux_sock *kcm)
{
	lockdep_assert_held(&kcm->mux->lock);
	if (list_empty(&kcm->wake_node))
		list_add_tail(&kcm->wake_node, &kcm->mux->rx_wake);
}

/*
 * Wakes the readers of sockets given messages since the last call, and
 * ends those sockets' turns.  Under mux->lock, which a closing socket
 * takes to leave rx_wake: no socket here is being freed.
 */
void kcmux_rx_wake(struct kcmux_mux *mux)
{
	struct kcmux_sock *kcm, *tmp;

	lockdep_assert_held(&mux->lock);
	list_for_each_entry_safe(kcm, tmp, &mux->rx_wake, wake_node) {
		list_del_init(&kcm->wake_node);
		if (kcm->rx_ready && kcm->rx_given)
			kcmux_rx_rotate(kcm);
		kcm->sk.sk_data_ready(&kcm->sk);
	}
}

/*
 * Queues a small message on kcm as a record of its tail pack (of a new
 * one if it does not fit) and wakes the reader; false, with nothing done,
 * if a new pack cannot be allocated.  mux->lock held.
 */
static bool kcmux_rx_enqueue_data(struct kcmux_sock *kcm, const void *data,
				  u32 len, u32 psock_id)
{
	struct sk_buff_head *queue = &kcm->sk.sk_receive_queue;
	struct sk_buff *pack;
	unsigned long flags;

	lockdep_assert_held(&kcm->mux->lock);

	spin_lock_irqsave(&queue->lock, flags);
	pack = kcmux_rx_tail_pack(queue, len);
	if (pack) {
		/* No new memory: the socket's turn goes on. */
		kcmux_rx_given(kcm);
		kcmux_rx_pack_put(pack, data, len, psock_id);
	} else {
		pack = kcmux_rx_pack_alloc();
		if (!pack) {
			spin_unlock_irqrestore(&queue->lock, flags);
			return false;
		}
		/* Whole before it is queued: readers peek under this lock. */
		kcmux_rx_pack_put(pack, data, len, psock_id);
		kcmux_rx_charge(kcm, pack);
		__skb_queue_tail(queue, pack);
	}
	spin_unlock_irqrestore(&queue->lock, flags);
	kcmux_rx_wake_later(kcm);
	return true;
}

/* Queues one message on kcm and wakes its reader.  mux->lock held. */
static void kcmux_rx_enqueue(struct kcmux_sock *kcm, struct sk_buff *skb)
{
	struct sk_buff_head *queue = &kcm->sk.sk_receive_queue;
	unsigned long flags;

	lockdep_assert_held(&kcm->mux->lock);

	if (kcmux_rx_packable(skb) &&
	    kcmux_rx_enqueue_data(kcm, skb->data, skb->len,
				  kcmux_msg_cb(skb)->psock_id)) {
		consume_skb(skb);
		return;
	}

	spin_lock_irqsave(&queue->lock, flags);
	kcmux_rx_charge(kcm, skb);
	__skb_queue_tail(queue, skb);
	spin_unlock_irqrestore(&queue->lock, flags);
	kcmux_rx_wake_later(kcm);
}

/* Gives a message to any socket with room, else holds it.  mux->lock. */
static void kcmux_rx_requeue_one(struct kcmux_mux *mux, struct sk_buff *skb)
{
	struct kcmux_sock *kcm;

	lockdep_assert_held(&mux->lock);
	kcm = list_first_entry_or_null(&mux->rx_socks, struct kcmux_sock,
				       rx_node);
	if (kcm)
		kcmux_rx_enqueue(kcm, skb);
	else
		__skb_queue_tail(&mux->rx_hold, skb);
}

/*
 * Called by framing with a small complete message still in its parser
 * view: copies it straight into a KCM socket's pack.  Returns false, with
 * nothing done, if no socket has room now or memory is short; framing
 * then makes an skb of it and calls kcmux_rx_deliver().  TCP socket locked.
 */
bool kcmux_rx_deliver_data(struct kcmux_psock *psock, const void *data,
			   u32 len)
{
	struct kcmux_mux *mux = psock->mux;
	struct kcmux_sock *kcm;
	bool delivered;

	spin_lock_bh(&mux->lock);
	kcm = list_first_entry_or_null(&mux->rx_socks, struct kcmux_sock,
				       rx_node);
	delivered = kcm && kcmux_rx_enqueue_data(kcm, data, len, psock->id);
	if (delivered) {
		mux->stats.rx_msgs++;
		mux->stats.rx_bytes += len;
		psock->rx_delivered = true;
	}
	spin_unlock_bh(&mux->lock);
	return delivered;
}

/*
 * Called by framing with a complete message.  Returns false if no socket
 * could take it: the message is then parked on the psock, which must
 * stop reading until a socket takes it.  TCP socket locked.
 */
bool kcmux_rx_deliver(struct kcmux_psock *psock, struct sk_buff *skb)
{
	struct kcmux_mux *mux = psock->mux;
	struct kcmux_sock *kcm;
	bool delivered = true;

	spin_lock_bh(&mux->lock);
	mux->stats.rx_msgs++;
	mux->stats.rx_bytes += kcmux_msg_cb(skb)->len;
	kcm = list_first_entry_or_null(&mux->rx_socks, struct kcmux_sock,
				       rx_node);
	if (kcm) {
		kcmux_rx_enqueue(kcm, skb);
		psock->rx_delivered = true;
	} else {
		psock->rx_ready = skb;
		WRITE_ONCE(psock->rx_paused, true);
		list_add_tail(&psock->rx_node, &mux->rx_psocks);
		delivered = false;
	}
	spin_unlock_bh(&mux->lock);
	return delivered;
}

/*
 * Lets paused psocks whose parked message a socket has taken read again,
 * at most n of them, in the order they stopped.  Not all at once: with
 * more psocks than the sockets have room for, every resumed psock would
 * deliver one message and park again, a worker round trip per message.
 * A psock that is done reading without parking while the sockets still
 * have room resumes the next (kcmux_rx_deliver_done()), so while a socket
 * has room and psocks wait, one is on its way.  mux->lock held.
 */
static void kcmux_rx_resume(struct kcmux_mux *mux, unsigned int n)
{
	struct kcmux_psock *psock;

	lockdep_assert_held(&mux->lock);
	while (n-- && !list_empty(&mux->rx_socks) &&
	       !list_empty(&mux->rx_waiting)) {
		psock = list_first_entry(&mux->rx_waiting, struct kcmux_psock,
					 rx_node);
		list_del_init(&psock->rx_node);
		WRITE_ONCE(psock->rx_paused, false);
		queue_delayed_work(kcmux_wq, &psock->rx_work, 0);
	}
}

/*
 * Framing is done for now: wake the readers of what it delivered and, if
 * the psock did not park (it drained TCP, waits for bytes or is stopped),
 * let the next paused psock read while the sockets have room (see
 * kcmux_rx_resume()).  TCP socket locked.
 */
void kcmux_rx_deliver_done(struct kcmux_psock *psock)
{
	struct kcmux_mux *mux = psock->mux;
	/* A racy look first: this runs after every read of a TCP socket. */
	bool pass = !READ_ONCE(psock->rx_paused) &&
		    !list_empty(&mux->rx_waiting);

	if (!psock->rx_delivered && !pass)
		return;
	psock->rx_delivered = false;
	spin_lock_bh(&mux->lock);
	if (!psock->rx_paused)
		kcmux_rx_resume(mux, 1);
	kcmux_rx_wake(mux);
	spin_unlock_bh(&mux->lock);
}

/*
 * kcm may have room again: put it back on rx_socks and feed it held
 * messages, then parked ones, then resume some of the paused psocks.
 * mux->lock held.
 */
void kcmux_rx_sock_ready(struct kcmux_sock *kcm)
{
	struct kcmux_mux *mux = kcm->mux;
	struct kcmux_psock *psock;
	struct sk_buff *skb;

	lockdep_assert_held(&mux->lock);
	if (kcm->rx_ready || kcm->rx_disabled || kcm->closing ||
	    !kcmux_rx_has_room(&kcm->sk))
		return;

	kcm->rx_ready = true;
	kcm->rx_given = 0;
	list_add_tail(&kcm->rx_node, &mux->rx_socks);

	while (kcm->rx_ready && (skb = __skb_dequeue(&mux->rx_hold)))
		kcmux_rx_enqueue(kcm, skb);

	/* Parked messages cost no worker: take all there is room for. */
	while (kcm->rx_ready && !list_empty(&mux->rx_psocks)) {
		psock = list_first_entry(&mux->rx_psocks, struct kcmux_psock,
					 rx_node);
		kcmux_rx_enqueue(kcm, psock->rx_ready);
		psock->rx_ready = NULL;
		list_move_tail(&psock->rx_node, &mux->rx_waiting);
	}
	kcmux_rx_resume(mux, KCMUX_RX_RESUME_BATCH);
	kcmux_rx_wake(mux);
}

/*
 * Moves the records after the current one of a pack that is off every
 * queue into a new pack, which it returns; NULL if there are none, or no
 * memory (they then stay).  The pack keeps its charge: it is freed when
 * its reader is done with the current record.  mux->lock held.
 */
static struct sk_buff *kcmux_rx_pack_split(struct sk_buff *pack)
{
	const struct kcmux_msg_cb *cb = kcmux_msg_cb(pack);
	u32 end = cb->offset + cb->len;
	struct sk_buff *rest;

	if (end + sizeof(struct kcmux_pack_rec) > pack->len)
		return NULL;
	rest = kcmux_rx_pack_alloc();
	if (!rest)
		return NULL;
	/* The records as they are; the first is made current. */
	skb_put_data(rest, pack->data + end, pack->len - end);
	kcmux_msg_cb(rest)->offset = 0;
	kcmux_msg_cb(rest)->len = 0;
	kcmux_rx_pack_advance(rest);
	skb_trim(pack, end);
	return rest;
}

/*
 * Moves the messages queued on kcm to its siblings (or the hold queue).
 * A message the application has begun to read stays where it is, alone:
 * the messages packed after it move too.  mux->lock held; kcm is off
 * rx_socks.
 */
void kcmux_rx_requeue_queue(struct kcmux_sock *kcm)
{
	struct sk_buff_head *queue = &kcm->sk.sk_receive_queue;
	struct sk_buff *skb, *partial = NULL;

	lockdep_assert_held(&kcm->mux->lock);
	while ((skb = skb_dequeue(queue))) {
		if (kcmux_msg_cb(skb)->sent && !kcm->closing) {
			partial = skb;
			skb = kcmux_msg_cb(skb)->packed ?
			      kcmux_rx_pack_split(partial) : NULL;
			if (!skb)
				continue;
		}
		skb_orphan(skb);
		if (kcmux_msg_cb(skb)->sent) {
			/* Half read by a socket that is closing. */
			kcm->mux->stats.rx_ready_drops++;
			/* Off the queue, the pack gets no appends. */
			if (!kcmux_msg_cb(skb)->packed ||
			    !kcmux_rx_pack_advance(skb)) {
				kfree_skb(skb);
				continue;
			}
		}
		trace_kcmux_requeue(kcm->mux, kcmux_msg_cb(skb)->psock_id,
				    kcmux_msg_cb(skb)->len);
		kcmux_rx_requeue_one(kcm->mux, skb);
	}
	if (partial)
		skb_queue_head(queue, partial);
	kcmux_rx_wake(kcm->mux);
}

/*
 * Takes back a message parked on a psock that is going away; if it had
 * the turn to read (kcmux_rx_resume()), the next paused psock gets it.
 */
void kcmux_rx_unpark(struct kcmux_psock *psock)
{
	struct kcmux_mux *mux = psock->mux;

	spin_lock_bh(&mux->lock);
	list_del_init(&psock->rx_node);
	if (psock->rx_ready) {
		kcmux_rx_requeue_one(mux, psock->rx_ready);
		psock->rx_ready = NULL;
		kcmux_rx_wake(mux);
	}
	WRITE_ONCE(psock->rx_paused, false);
	kcmux_rx_resume(mux, 1);
	spin_unlock_bh(&mux->lock);
}

/*
 * After a read freed memory: rejoin the steering list, once the queue is
 * down to half the buffer.  Rejoining as soon as one message fits would
 * resume a parked psock for a single message per read, a worker round
 * trip each; from half empty one resumption refills half.
 */
static void kcmux_rx_refill(struct kcmux_sock *kcm)
{
	struct sock *sk = &kcm->sk;

	lockdep_assert_held(&kcm->rx_mutex);
	if (READ_ONCE(kcm->rx_ready) || READ_ONCE(kcm->rx_disabled) ||
	    atomic_read(&sk->sk_rmem_alloc) > READ_ONCE(sk->sk_rcvbuf) / 2)
		return;
	spin_lock_bh(&kcm->mux->lock);
	kcmux_rx_sock_ready(kcm);
	spin_unlock_bh(&kcm->mux->lock);
}

int kcmux_set_recv_disable(struct kcmux_sock *kcm, bool disable)
{
	struct kcmux_mux *mux = kcm->mux;

	/* The message being read stays; a reader must not see it move. */
	mutex_lock(&kcm->rx_mutex);
	spin_lock_bh(&mux->lock);
	if (disable && !kcm->rx_disabled) {
		kcm->rx_disabled = true;
		if (kcm->rx_ready) {
			list_del_init(&kcm->rx_node);
			kcm->rx_ready = false;
		}
		kcmux_rx_requeue_queue(kcm);
	} else if (!disable && kcm->rx_disabled) {
		kcm->rx_disabled = false;
		kcmux_rx_sock_ready(kcm);
	}
	spin_unlock_bh(&mux->lock);
	mutex_unlock(&kcm->rx_mutex);
	return 0;
}

/*
 * The message at the head of the receive queue, taken under the queue
 * lock so that everything its enqueuer wrote (its cb, a pack's records)
 * is visible.  It stays queued; only the rx_mutex holder unlinks it.
 */
struct sk_buff *kcmux_rx_peek(struct sock *sk)
{
	struct sk_buff_head *queue = &sk->sk_receive_queue;
	struct sk_buff *skb;
	unsigned long flags;

	spin_lock_irqsave(&queue->lock, flags);
	skb = skb_peek(queue);
	spin_unlock_irqrestore(&queue->lock, flags);
	return skb;
}

void kcmux_rx_sock_init(struct kcmux_sock *kcm)
{
	mutex_init(&kcm->rx_mutex);
}

/*
 * Sleeps until a message may be queued, an error is posted, a signal
 * comes or *timeo runs out, without rx_mutex (as sk_wait_data() sleeps
 * without the socket lock).
 */
static void kcmux_rx_sleep(struct kcmux_sock *kcm, long *timeo)
{
	DEFINE_WAIT_FUNC(wait, woken_wake_function);
	struct sock *sk = &kcm->sk;

	add_wait_queue(sk_sleep(sk), &wait);
	sk_set_bit(SOCKWQ_ASYNC_WAITDATA, sk);
	mutex_unlock(&kcm->rx_mutex);
	/* Looked at once on the wait queue: a wakeup after it is not lost. */
	if (skb_queue_empty_lockless(&sk->sk_receive_queue) &&
	    !READ_ONCE(sk->sk_err))
		*timeo = wait_woken(&wait, TASK_INTERRUPTIBLE, *timeo);
	mutex_lock(&kcm->rx_mutex);
	sk_clear_bit(SOCKWQ_ASYNC_WAITDATA, sk);
	remove_wait_queue(sk_sleep(sk), &wait);
}

/* Waits for a message; returns it still queued.  rx_mutex held. */
static struct sk_buff *kcmux_rx_wait(struct kcmux_sock *kcm, long timeo,
				     int *err)
{
	struct sock *sk = &kcm->sk;
	struct sk_buff *skb;

	lockdep_assert_held(&kcm->rx_mutex);
	while (!(skb = kcmux_rx_peek(sk))) {
		if (sk->sk_err) {
			*err = sock_error(sk);
			return NULL;
		}
		if (!timeo) {
			*err = -EAGAIN;
			return NULL;
		}
		if (signal_pending(current)) {
			*err = sock_intr_errno(timeo);
			return NULL;
		}
		kcmux_rx_sleep(kcm, &timeo);
	}
	return skb;
}

/* The application has taken n bytes of the message at the queue head. */
static void kcmux_rx_consume(struct kcmux_sock *kcm, struct sk_buff *skb,
			     u32 n, bool whole)
{
	struct kcmux_msg_cb *cb = kcmux_msg_cb(skb);

	if (!whole) {
		cb->offset += n;
		cb->len -= n;
		cb->sent += n;
		kcm->stats.rx_bytes += n;
		return;
	}
	kcm->stats.rx_msgs++;
	kcm->stats.rx_bytes += cb->len;
	if (cb->packed) {
		struct sk_buff_head *queue = &kcm->sk.sk_receive_queue;
		unsigned long flags;
		bool more;

		spin_lock_irqsave(&queue->lock, flags);
		more = kcmux_rx_pack_advance(skb);
		if (!more)
			__skb_unlink(skb, queue);
		spin_unlock_irqrestore(&queue->lock, flags);
		if (more)
			return;
	} else {
		skb_unlink(skb, &kcm->sk.sk_receive_queue);
	}
	/* Read, not dropped: drop monitors must not count it. */
	consume_skb(skb);
	kcmux_rx_refill(kcm);
}

int kcmux_recvmsg(struct socket *sock, struct msghdr *msg, size_t len,
		  int flags)
{
	struct sock *sk = sock->sk;
	struct kcmux_sock *kcm = kcmux_sk(sk);
	struct kcmux_msg_cb *cb;
	struct sk_buff *skb;
	int err = 0;
	size_t copied;

	if (flags & MSG_OOB)
		return -EOPNOTSUPP;

	mutex_lock(&kcm->rx_mutex);
	skb = kcmux_rx_wait(kcm, sock_rcvtimeo(sk, flags & MSG_DONTWAIT), &err);
	if (!skb)
		goto out;

	cb = kcmux_msg_cb(skb);
	copied = min_t(size_t, len, cb->len);
	err = skb_copy_datagram_msg(skb, cb->offset, msg, copied);
	if (err)
		goto out;
	if (READ_ONCE(kcm->origin))
		put_cmsg(msg, SOL_KCM, KCMUX_ORIGIN, sizeof(cb->psock_id),
			 &cb->psock_id);
	err = copied;

	if (copied == cb->len) {
		msg->msg_flags |= MSG_EOR;
	} else if (sock->type == SOCK_DGRAM) {
		/* Datagram semantics: the rest of the message is dropped. */
		msg->msg_flags |= MSG_TRUNC;
		if (flags & MSG_TRUNC)
			err = cb->len;
		copied = cb->len;
	}
	if (!(flags & MSG_PEEK))
		kcmux_rx_consume(kcm, skb, copied, copied == cb->len);
out:
	mutex_unlock(&kcm->rx_mutex);
	return err;
}

ssize_t kcmux_splice_read(struct socket *sock, loff_t *ppos,
			  struct pipe_inode_info *pipe, size_t len,
			  unsigned int flags)
{
	struct sock *sk = sock->sk;
	struct kcmux_sock *kcm = kcmux_sk(sk);
	struct kcmux_msg_cb *cb;
	struct sk_buff *skb;
	int err = 0;
	ssize_t copied;
	long timeo;

	mutex_lock(&kcm->rx_mutex);
	timeo = sock_rcvtimeo(sk, flags & SPLICE_F_NONBLOCK);
	skb = kcmux_rx_wait(kcm, timeo, &err);
	if (!skb) {
		copied = err;
		goto out;
	}

	cb = kcmux_msg_cb(skb);
	copied = skb_splice_bits(skb, sk, cb->offset, pipe,
				 min_t(size_t, len, cb->len), flags);
	if (copied > 0)
		kcmux_rx_consume(kcm, skb, copied, copied == cb->len);
out:
	mutex_unlock(&kcm->rx_mutex);
	return copied;
}
