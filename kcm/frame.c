// SPDX-License-Identifier: GPL-2.0
/*
 * Framing: cuts the byte stream of an attached TCP socket into messages.
 *
 * The BPF parser always sees a message starting at offset 0: the bytes
 * of the message head are copied into a small linear "view" skb, so the
 * program never has to know where in a TCP skb the message begins.  When
 * the parser asks for more (returns 0) the view grows, first from the
 * bytes at hand and then from later segments.
 *
 * Once the length is known the message is built the cheap way for its
 * size: up to KCMUX_PACK_MSG_MAX bytes it is copied (usually straight into
 * a KCM socket's pack).  Up to KCMUX_COPYBREAK it is a clone of the TCP
 * skb it lies whole in, if that skb pins at most KCMUX_SHARE_MAX_PIN times
 * what the message is charged (kcmux_clone_whole()); else it shares the
 * pages of its TCP skbs when it lies in at most two fragments of them (in
 * one skb or across two) and they pin at most KCMUX_SHARE_MAX_PIN times
 * its length (kcmux_share_frags()); else it is copied into page
 * fragments.  Larger messages are clones of the TCP skbs, chained on
 * frag_list.  A clone records where the message starts in
 * kcmux_msg_cb::offset.
 *
 * A small message is not taken from TCP until all of its bytes are there:
 * the parser runs on a copy made across the queued skbs, and if the message
 * is incomplete we stop until tcp_inq() covers it.  Until then the bytes
 * belong to TCP, so an unattach hands them back intact.  This is done only
 * while TCP's queue is far from its receive buffer (kcmux_frame_may_wait),
 * so the TCP window stays open and the rest of the message can arrive;
 * otherwise, and for large messages, bytes are assembled as they arrive.
 *
 * Everything here runs with the TCP socket locked, either from
 * sk_data_ready in softirq or from the psock's rx_work.
 */
#include <linux/skbuff.h>
#include <net/tcp.h>

#include "kcmux.h"
#include "kcmux_trace.h"

#define KCMUX_VIEW_MIN		256
/*
 * What a new message's first peek copies, unless the previous message
 * was a small one that a bigger peek takes whole: enough for the header
 * of every protocol in bpf/; a parser that wants more returns 0 and is
 * shown all there is at hand.
 */
#define KCMUX_PEEK_MIN		64
/* A parser needing more than this to find a length is broken. */
#define KCMUX_VIEW_MAX		(64 * 1024)
/* Most page fragments of TCP skbs one message may share (and pin). */
#define KCMUX_SHARE_FRAGS	2
/*
 * A message shares pages only if they add up to at most this many times
 * its length: what a queued message pins beyond what it is charged stays
 * bounded (a 4 KiB message across two of TCP's 32 KiB page fragments is
 * the limit).  Smaller messages are copied.
 */
#define KCMUX_SHARE_MAX_PIN	16
#define KCMUX_MEM_RETRY		(HZ / 10)
/* kcmux_frame_header() found a message that is not all in TCP yet. */
#define KCMUX_FRAME_WAIT	1
/* kcmux_frame_header() delivered a whole small message from the view. */
#define KCMUX_FRAME_DONE	2

/*
 * The view is linear and nothing is put into it beyond its tailroom, so
 * it is handled with __skb_put()/__skb_trim(): this is per message.
 */
static struct sk_buff *kcmux_view_alloc(struct kcmux_psock *psock,
					unsigned int size)
{
	struct sk_buff *view = alloc_skb(size, GFP_ATOMIC);

	if (!view)
		return NULL;
	view->protocol = psock->sk->sk_family == AF_INET6 ?
			 htons(ETH_P_IPV6) : htons(ETH_P_IP);
	skb_reset_mac_header(view);
	skb_reset_network_header(view);
	return view;
}

/* Replaces the view by one that can hold size bytes, keeping its data. */
static int kcmux_view_grow(struct kcmux_psock *psock, unsigned int size)
{
	struct kcmux_frame *f = &psock->frame;
	struct sk_buff *view;

	view = kcmux_view_alloc(psock, size);
	if (!view)
		return -ENOMEM;
	if (f->view) {
		skb_copy_bits(f->view, 0, __skb_put(view, f->view->len),
			      f->view->len);
		consume_skb(f->view);
	}
	f->view = view;
	return 0;
}

/* A message has begun (possibly still only in TCP): start its clock. */
static void kcmux_frame_begin(struct kcmux_psock *psock)
{
	struct kcmux_frame *f = &psock->frame;
	long timeo = READ_ONCE(psock->sk->sk_rcvtimeo);

	if (f->pending)
		return;
	f->pending = true;
	f->start = jiffies;
	if (timeo != MAX_SCHEDULE_TIMEOUT) {
		f->timer_armed = true;
		mod_delayed_work(kcmux_wq, &psock->rx_timer, timeo);
	}
}

/*
 * May a message of len bytes wait in TCP until it is whole?  Only if it
 * and everything TCP holds stay under an eighth of the receive buffer:
 * free space is then above half the buffer and TCP keeps the window open.
 */
static bool kcmux_frame_may_wait(struct sock *sk, u32 len)
{
	u32 limit = READ_ONCE(sk->sk_rcvbuf) / 8;

	return len <= limit && atomic_read(&sk->sk_rmem_alloc) < limit;
}

/* Bytes TCP holds from (skb, pos) on.  TCP socket locked. */
static u32 kcmux_tcp_bytes_from(struct sock *sk, struct sk_buff *skb,
				unsigned int pos)
{
	return tcp_sk(sk)->rcv_nxt - (TCP_SKB_CB(skb)->seq + pos);
}

/*
 * Copies up to len bytes at (skb, pos) and on into the skbs queued after
 * it; returns how many there were (a FIN counts in rcv_nxt, not here).
 */
static u32 kcmux_tcp_peek(struct sock *sk, struct sk_buff *skb,
			  unsigned int pos, u8 *to, u32 len)
{
	u32 seq = TCP_SKB_CB(skb)->seq + pos;
	u32 copied = 0;

	/* Usually a header lies whole in the skb it starts in. */
	if (likely(len <= skb->len - pos)) {
		skb_copy_bits(skb, pos, to, len);
		return len;
	}
	/* Queued skbs may overlap (retransmits): place each by sequence. */
	while (copied < len && skb) {
		u32 off = seq - TCP_SKB_CB(skb)->seq;

		if (before(seq, TCP_SKB_CB(skb)->seq))
			break;
		if (off < skb->len) {
			u32 n = min_t(u32, len - copied, skb->len - off);

			skb_copy_bits(skb, off, to + copied, n);
			copied += n;
			seq += n;
		}
		skb = skb_peek_next(skb, &sk->sk_receive_queue);
	}
	return copied;
}

static void kcmux_frame_reset(struct kcmux_frame *f)
{
	f->head = NULL;
	f->tailp = NULL;
	f->msg_len = 0;
	f->have = 0;
	f->need = 0;
	f->asked = 0;
	f->pending = false;
	if (f->view)
		__skb_trim(f->view, 0);
}

/* A message of len bytes is complete: its assembly clock stops. */
static void kcmux_frame_account(struct kcmux_psock *psock, u32 len)
{
	/* Not per message: cancelling an idle work item costs atomics. */
	if (psock->frame.timer_armed) {
		psock->frame.timer_armed = false;
		cancel_delayed_work(&psock->rx_timer);
	}
	psock->stats.rx_msgs++;
	psock->stats.rx_bytes += len;
	trace_kcmux_msg_rx(psock, len);
}

/*
 * An skb with no data of its own, for page fragments or a frag_list: its
 * head (the shared info alone) comes from the per-CPU frag cache too, not
 * from a kmalloc of a small head that init_on_alloc would zero whole.
 */
static struct sk_buff *kcmux_alloc_empty(void)
{
	unsigned int size = SKB_HEAD_ALIGN(0);
	void *data = netdev_alloc_frag(size);
	struct sk_buff *skb;

	if (!data)
		return NULL;
	skb = build_skb(data, size);
	if (!skb)
		skb_free_frag(data);
	return skb;
}

/*
 * An skb with room for a message of len bytes in page fragments of the
 * per-CPU frag cache, as drivers build received packets: only the bytes
 * asked for are taken (and zeroed by init_on_alloc), and allocating is
 * cheap, unlike a kmalloc'ed head of the next power of two.  skb->len is
 * the whole message from the start; framing fills it in place.
 */
static struct sk_buff *kcmux_alloc_frags(u32 len)
{
	struct sk_buff *skb = kcmux_alloc_empty();
	int i = 0;

	/* The longest message built here is a whole view. */
	BUILD_BUG_ON(DIV_ROUND_UP(KCMUX_VIEW_MAX, PAGE_SIZE) > MAX_SKB_FRAGS);
	if (!skb)
		return NULL;
	while (len) {
		u32 chunk = min_t(u32, len, PAGE_SIZE);
		void *data = netdev_alloc_frag(chunk);
		struct page *page;

		if (!data) {
			kfree_skb(skb);
			return NULL;
		}
		page = virt_to_head_page(data);
		skb_add_rx_frag(skb, i++, page, data - page_address(page),
				chunk, SKB_DATA_ALIGN(chunk));
		len -= chunk;
	}
	return skb;
}

/* Copies n bytes at (skb, pos) to offset at of a kcmux_alloc_frags() skb. */
static void kcmux_frags_store(struct sk_buff *msg, u32 at,
			      const struct sk_buff *skb, unsigned int pos,
			      u32 n)
{
	int i;

	for (i = 0; n && i < skb_shinfo(msg)->nr_frags; i++) {
		skb_frag_t *frag = &skb_shinfo(msg)->frags[i];
		u32 size = skb_frag_size(frag), chunk;

		if (at >= size) {
			at -= size;
			continue;
		}
		chunk = min(n, size - at);
		skb_copy_bits(skb, pos, skb_frag_address(frag) + at, chunk);
		pos += chunk;
		n -= chunk;
		at = 0;
	}
}

/*
 * Bytes a reader must not share: zerocopy frags the sender may rewrite,
 * page cache spliced into the stream.
 */
static bool kcmux_bytes_may_change(struct sk_buff *skb)
{
	return skb_zcopy(skb) || skb_has_shared_frag(skb);
}

/*
 * Adds the n bytes at (skb, pos) of a message of msg_len bytes to msg as
 * references to the pages they lie in, nothing copied.  A message may
 * use at most KCMUX_SHARE_FRAGS fragments (bytes that continue its last
 * one in the same page extend it), in pages that add up to at most
 * KCMUX_SHARE_MAX_PIN times msg_len.  As with any receive skb built on
 * page frags, the bytes are charged and the pages they lie in are pinned
 * until the message is read; the bounds keep what it pins within 16
 * times what it is charged, however a peer cuts its stream.
 * Returns false, msg unchanged, if the bytes are not in such fragments,
 * or might change under us (zerocopy, splice of page cache) or belong to
 * a page pool: copy them then.
 */
static bool kcmux_share_frags(struct sk_buff *msg, struct sk_buff *skb,
			      unsigned int pos, u32 n, u32 msg_len)
{
	const struct skb_shared_info *from = skb_shinfo(skb);
	struct skb_shared_info *to = skb_shinfo(msg);
	unsigned int start = skb_headlen(skb);
	int nr = to->nr_frags, i;
	u32 last = nr ? skb_frag_size(&to->frags[nr - 1]) : 0;
	unsigned int len = msg->len, truesize = msg->truesize;
	size_t pinned = 0;
	u32 left = n;

	if (pos < start || skb->pp_recycle || kcmux_bytes_may_change(skb))
		return false;
	for (i = 0; i < nr; i++)
		pinned += page_size(compound_head(skb_frag_page(&to->frags[i])));
	for (i = 0; left && i < from->nr_frags; i++) {
		const skb_frag_t *frag = &from->frags[i];
		u32 size = skb_frag_size(frag), off, chunk;
		struct page *page;

		if (pos >= start + size) {
			start += size;
			continue;
		}
		page = skb_frag_page(frag);
		/* Not a page: device memory, which only its owner may read. */
		if (!page)
			break;
		off = skb_frag_off(frag) + pos - start;
		chunk = min(left, start + size - pos);
		if (skb_can_coalesce(msg, to->nr_frags, page, off)) {
			skb_coalesce_rx_frag(msg, to->nr_frags - 1, chunk, chunk);
		} else {
			if (to->nr_frags == KCMUX_SHARE_FRAGS)
				break;
			pinned += page_size(compound_head(page));
			if (pinned > (size_t)msg_len * KCMUX_SHARE_MAX_PIN)
				break;
			get_page(page);
			skb_add_rx_frag(msg, to->nr_frags, page, off, chunk,
					chunk);
		}
		pos += chunk;
		left -= chunk;
		start += size;
	}
	if (!left)
		return true;

	/* Runs past what we may share: undo. */
	for (i = nr; i < to->nr_frags; i++)
		put_page(skb_frag_page(&to->frags[i]));
	to->nr_frags = nr;
	if (nr)
		skb_frag_size_set(&to->frags[nr - 1], last);
	msg->data_len -= msg->len - len;
	msg->len = len;
	msg->truesize = truesize;
	return false;
}

/* A head for a message of len bytes sharing the n of them at (skb, pos). */
static struct sk_buff *kcmux_share_head(struct sk_buff *skb, unsigned int pos,
					u32 n, u32 len)
{
	struct sk_buff *head = kcmux_alloc_empty();

	if (head && !kcmux_share_frags(head, skb, pos, n, len)) {
		consume_skb(head);
		head = NULL;
	}
	return head;
}

/*
 * A message of len bytes lying whole in the left bytes of skb from where
 * it starts.  If the skb pins at most KCMUX_SHARE_MAX_PIN times what the
 * message is charged, a clone of it is the message, charged as an skb of
 * its own holding len bytes.  That is cheaper than sharing its pages (no
 * head to allocate, no fragments to set up) and bounded the same way;
 * the skb is freed with the last clone of it.  Bytes that may change
 * under us are not taken this way either.
 */
static struct sk_buff *kcmux_clone_whole(struct sk_buff *skb, u32 len,
					 size_t left)
{
	unsigned int charge = SKB_TRUESIZE(len);
	struct sk_buff *clone;

	if (len > left ||
	    skb->truesize > (size_t)charge * KCMUX_SHARE_MAX_PIN ||
	    kcmux_bytes_may_change(skb))
		return NULL;
	clone = skb_clone(skb, GFP_ATOMIC);
	if (clone)
		clone->truesize = charge;
	return clone;
}

/*
 * Makes the skb of a message of msg_len bytes, holding the first len
 * bytes of the view: linear for a message that could go in a pack, in
 * page fragments otherwise.
 */
static struct sk_buff *kcmux_copy_head(struct kcmux_frame *f, u32 len,
				       u32 msg_len)
{
	struct sk_buff *head;

	if (msg_len > KCMUX_PACK_MSG_MAX) {
		head = kcmux_alloc_frags(msg_len);
		if (head)
			kcmux_frags_store(head, 0, f->view, 0, len);
	} else {
		head = alloc_skb(msg_len, GFP_ATOMIC);
		if (head)
			skb_copy_bits(f->view, 0, skb_put(head, len), len);
	}
	return head;
}

/*
 * A message head that shares a TCP skb.  A clone shares skb_shared_info
 * with the original, so if more parts will follow, the clone goes under a
 * new empty skb whose frag_list is ours to extend (one without a kmalloc'ed
 * head: it never holds bytes of its own).
 */
static struct sk_buff *kcmux_clone_head(struct sk_buff *skb, bool more,
					struct sk_buff ***tailp)
{
	struct sk_buff *clone, *head;

	clone = skb_clone(skb, GFP_ATOMIC);
	if (!clone || !more)
		return clone;

	head = kcmux_alloc_empty();
	if (!head) {
		kfree_skb(clone);
		return NULL;
	}
	skb_shinfo(head)->frag_list = clone;
	head->len = clone->len;
	head->data_len = clone->len;
	head->truesize += clone->truesize;
	*tailp = &clone->next;
	return head;
}

/*
 * Finds the length of the message that starts with the f->have bytes
 * already in the view, followed by the bytes at (skb, pos).  On return
 * *used says how many stream bytes now belong to the frame; if the
 * length is known f->head holds the first f->have bytes of the message.
 */
static int kcmux_frame_header(struct kcmux_psock *psock, struct sk_buff *skb,
			      unsigned int pos, size_t left, size_t *used)
{
	struct kcmux_frame *f = &psock->frame;
	struct sock *sk = psock->sk;
	u32 rcvbuf = READ_ONCE(sk->sk_rcvbuf);
	u32 prev = f->have;
	struct sk_buff *head;
	size_t take, seen, want, peek;
	u8 fill = KCMUX_FILL_CHAIN;
	unsigned int offset;
	size_t here;
	int len;

	*used = 0;
	f->need = 0;
	if (!f->view && kcmux_view_grow(psock, KCMUX_VIEW_MIN))
		return -ENOMEM;

	/* A new message may be parsed from all TCP holds, unconsumed. */
	seen = prev ? left : max_t(size_t, left,
				   kcmux_tcp_bytes_from(sk, skb, pos));
	/*
	 * Bytes of a message bigger than a pack are not read from the view:
	 * peek no more of them than a header needs.
	 */
	peek = f->last_len > KCMUX_PACK_MSG_MAX ? KCMUX_PEEK_MIN :
	       max_t(u32, f->last_len, KCMUX_PEEK_MIN);
	for (;;) {
		__skb_trim(f->view, prev);
		want = min3(seen, (size_t)skb_tailroom(f->view), peek);
		if (prev) {
			take = want;
			skb_copy_bits(skb, pos, __skb_put(f->view, take), take);
		} else {
			take = kcmux_tcp_peek(sk, skb, pos,
					      skb_tail_pointer(f->view), want);
			__skb_put(f->view, take);
			/* rcv_nxt also counts a FIN. */
			if (take < want)
				seen = take;
		}

		len = kcmux_parse(&psock->parser, f->view);
		if (len < 0) {
			if (len == -EMSGSIZE)
				psock->stats.rx_too_big++;
			else
				psock->stats.rx_bad_len++;
			/* Its errno is posted; our own retry code is not its. */
			return len < -MAX_ERRNO || len == -ENOMEM ? -EPROTO : len;
		}
		if (len > 0)
			break;
		/* Its answer must later lie beyond what it has seen. */
		f->asked = max_t(u32, f->asked, prev + take);
		if (take == peek && take < seen) {
			/* Show it all there is at hand. */
			peek = SIZE_MAX;
			continue;
		}
		if (take == seen) {
			/* Everything at hand is header. */
			psock->stats.rx_need_more_hdr++;
			kcmux_frame_begin(psock);
			if (!prev && kcmux_frame_may_wait(sk, seen + 1)) {
				f->need = seen + 1;
				return KCMUX_FRAME_WAIT;
			}
			/* Too big to leave in TCP: keep what this skb has. */
			take = min_t(size_t, left, take);
			__skb_trim(f->view, prev + take);
			f->have = prev + take;
			*used = take;
			return 0;
		}
		if (f->view->len >= min_t(u32, rcvbuf, KCMUX_VIEW_MAX)) {
			psock->stats.rx_too_big++;
			return -EMSGSIZE;
		}
		__skb_trim(f->view, prev);
		if (kcmux_view_grow(psock, min3(rcvbuf, (u32)KCMUX_VIEW_MAX,
						(u32)(2 * (prev + take)))))
			return -ENOMEM;
	}

	f->last_len = len;
	if (len > rcvbuf) {
		psock->stats.rx_too_big++;
		return -EMSGSIZE;
	}
	if (len <= f->asked) {
		psock->stats.rx_bad_len++;
		return -EPROTO;
	}
	if (!prev && len > seen && kcmux_frame_may_wait(sk, len)) {
		kcmux_frame_begin(psock);
		f->need = len;
		return KCMUX_FRAME_WAIT;
	}
	/* From here on only the bytes of this skb are taken from TCP. */
	take = min_t(size_t, left, f->view->len - prev);

	/*
	 * A small message this skb holds the rest of: complete the view
	 * rather than build an skb only to copy it into a pack.  The view
	 * keeps its size, so the next peek takes such a message whole.
	 */
	if (len <= KCMUX_PACK_MSG_MAX && len > prev + take &&
	    len - prev <= left && f->view->len - prev <= left &&
	    (skb_tailroom(f->view) >= len - f->view->len ||
	     !kcmux_view_grow(psock, KCMUX_PACK_MSG_MAX))) {
		unsigned int from = pos + f->view->len - prev;
		u32 more = len - f->view->len;

		skb_copy_bits(skb, from, __skb_put(f->view, more), more);
		take = len - prev;
	}

	/* Small and whole: no skb of its own, straight into a pack. */
	if (len <= KCMUX_PACK_MSG_MAX && len <= prev + take &&
	    kcmux_rx_deliver_data(psock, f->view->data, len)) {
		kcmux_frame_account(psock, len);
		*used = len - prev;
		kcmux_frame_reset(f);
		return KCMUX_FRAME_DONE;
	}

	head = NULL;
	offset = 0;
	here = min_t(size_t, len, left);
	if (!prev && len > KCMUX_PACK_MSG_MAX && len <= KCMUX_COPYBREAK) {
		/* A clone is whole: nothing is ever shared into it. */
		head = kcmux_clone_whole(skb, len, left);
		if (head)
			offset = pos;
		else
			head = kcmux_share_head(skb, pos, here, len);
	}
	if (head) {
		/* What this skb has of it, without a copy. */
		fill = KCMUX_FILL_SHARE;
		kcmux_msg_cb(head)->offset = offset;
		*used = here;
		f->have = here;
	} else if (len <= KCMUX_COPYBREAK || len <= prev + take) {
		u32 in_view = min_t(u32, len, prev + take);

		head = kcmux_copy_head(f, in_view, len);
		if (!head)
			return -ENOMEM;
		if (len > KCMUX_PACK_MSG_MAX)
			fill = KCMUX_FILL_COPY;
		kcmux_msg_cb(head)->offset = 0;
		*used = in_view - prev;
		f->have = in_view;
	} else if (!prev) {
		/* A large message starts here: share the TCP skb. */
		head = kcmux_clone_head(skb, len > left, &f->tailp);
		if (!head)
			return -ENOMEM;
		kcmux_msg_cb(head)->offset = pos;
		*used = min_t(size_t, len, left);
		f->have = *used;
	} else {
		/* A large message whose head came in pieces: keep the view. */
		head = f->view;
		f->view = NULL;
		kcmux_msg_cb(head)->offset = 0;
		*used = take;
		f->have = prev + take;
	}

	if (!skb_has_frag_list(head))
		f->tailp = &skb_shinfo(head)->frag_list;
	f->head = head;
	f->msg_len = len;
	kcmux_msg_cb(head)->len = len;
	kcmux_msg_cb(head)->sent = 0;
	/* A clone head carries TCP's cb: clear what rx reads. */
	kcmux_msg_cb(head)->packed = false;
	kcmux_msg_cb(head)->fill = fill;
	if (f->have < len)
		kcmux_frame_begin(psock);
	return 0;
}

/* Adds n message bytes found at (skb, pos) to the message in progress. */
static int kcmux_frame_append(struct kcmux_psock *psock, struct sk_buff *skb,
			      unsigned int pos, u32 n)
{
	struct kcmux_frame *f = &psock->frame;
	struct sk_buff *head = f->head;
	struct sk_buff *part;

	if (kcmux_msg_cb(head)->fill == KCMUX_FILL_COPY) {
		kcmux_frags_store(head, f->have, skb, pos, n);
		return 0;
	}
	if (kcmux_msg_cb(head)->fill == KCMUX_FILL_SHARE) {
		if (kcmux_share_frags(head, skb, pos, n, f->msg_len))
			return 0;
		/* Later bytes go on frag_list, after these: share no more. */
		kcmux_msg_cb(head)->fill = KCMUX_FILL_CHAIN;
	}
	if (!skb_cloned(head) && !skb_has_frag_list(head) &&
	    skb_tailroom(head) >= n) {
		skb_copy_bits(skb, pos, skb_put(head, n), n);
		return 0;
	}

	if (pos == 0) {
		/* Trailing bytes of the clone past the message are ignored. */
		part = skb_clone(skb, GFP_ATOMIC);
	} else {
		part = alloc_skb(n, GFP_ATOMIC);
		if (part)
			skb_copy_bits(skb, pos, skb_put(part, n), n);
	}
	if (!part)
		return -ENOMEM;

	*f->tailp = part;
	f->tailp = &part->next;
	head->len += part->len;
	head->data_len += part->len;
	head->truesize += part->truesize;
	return 0;
}

static void kcmux_frame_error(struct kcmux_psock *psock, int err)
{
	if (err == -ENOMEM) {
		/* Nothing was consumed that is not accounted for: retry. */
		psock->stats.rx_mem_fail++;
		queue_delayed_work(kcmux_wq, &psock->rx_work, KCMUX_MEM_RETRY);
		return;
	}
	kcmux_psock_stop(psock, -err);
}

/* tcp_read_sock() actor: frames bytes [off, off + avail) of skb. */
static int kcmux_frame_actor(read_descriptor_t *desc, struct sk_buff *skb,
			     unsigned int off, size_t avail)
{
	struct kcmux_psock *psock = desc->arg.data;
	struct kcmux_frame *f = &psock->frame;
	size_t used = 0;
	int err = 0;

	/* tcp_read_sock() offers the rest of a partly used skb again. */
	if (!desc->count)
		return 0;

	while (used < avail) {
		size_t n;

		if (!f->msg_len) {
			err = kcmux_frame_header(psock, skb, off + used,
						 avail - used, &n);
			if (err == KCMUX_FRAME_WAIT) {
				/* Leave the message in TCP until it is whole. */
				desc->count = 0;
				err = 0;
				break;
			}
			if (err == KCMUX_FRAME_DONE) {
				used += n;
				err = 0;
				continue;
			}
			if (err)
				break;
			used += n;
			if (!f->msg_len)
				continue;
		} else {
			n = min_t(size_t, avail - used, f->msg_len - f->have);
			err = kcmux_frame_append(psock, skb, off + used, n);
			if (err)
				break;
			used += n;
			f->have += n;
		}

		if (f->have == f->msg_len) {
			struct sk_buff *msg = f->head;

			kcmux_frame_account(psock, f->msg_len);
			kcmux_msg_cb(msg)->psock_id = psock->id;
			kcmux_frame_reset(f);
			if (!kcmux_rx_deliver(psock, msg)) {
				/* Parked: leave the rest in TCP (backpressure). */
				desc->count = 0;
				desc->error = -EAGAIN;
				break;
			}
		}
	}

	if (err) {
		desc->count = 0;
		desc->error = err;
		kcmux_frame_error(psock, err);
	}
	return used;
}

/*
 * Still waiting in TCP for a known number of bytes: do not reparse the
 * message at every segment.  TCP socket locked.
 */
static bool kcmux_frame_short(struct kcmux_psock *psock)
{
	u32 need = psock->frame.need;

	return need && tcp_inq(psock->sk) < need &&
	       kcmux_frame_may_wait(psock->sk, need);
}

/*
 * Frames what TCP holds.  Returns false if it left whole messages in TCP
 * and will be called again for them: when the parked message is taken,
 * or when the allocation that failed is retried.
 */
bool kcmux_frame_read(struct kcmux_psock *psock)
{
	read_descriptor_t desc = {
		.arg.data = psock,
		.count = 1,
	};

	if (READ_ONCE(psock->rx_paused) && !psock->frame.stopped)
		return false;
	/* tcp_read_sock() leaves desc.error to the actor. */
	if (!psock->frame.stopped && !kcmux_frame_short(psock))
		tcp_read_sock(psock->sk, &desc, kcmux_frame_actor);
	kcmux_rx_deliver_done(psock);
	return !desc.error;
}

/* Drops partial state; no more reading.  TCP socket locked. */
void kcmux_frame_stop(struct kcmux_psock *psock)
{
	struct kcmux_frame *f = &psock->frame;

	f->stopped = true;
	cancel_delayed_work(&psock->rx_timer);
	kfree_skb(f->head);
	consume_skb(f->view);
	f->view = NULL;
	kcmux_frame_reset(f);
}

/* The assembly timer fired.  TCP socket locked. */
void kcmux_frame_timeout(struct kcmux_psock *psock)
{
	struct kcmux_frame *f = &psock->frame;
	long timeo = READ_ONCE(psock->sk->sk_rcvtimeo);

	if (f->stopped || !f->pending)
		return;
	if (timeo == MAX_SCHEDULE_TIMEOUT)
		return;
	if (time_before(jiffies, f->start + timeo)) {
		/* A newer message started since; wait for its deadline. */
		mod_delayed_work(kcmux_wq, &psock->rx_timer,
				 f->start + timeo - jiffies);
		return;
	}
	psock->stats.rx_timeouts++;
	kcmux_psock_stop(psock, ETIMEDOUT);
}
