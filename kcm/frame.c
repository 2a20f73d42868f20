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
 * size: up to KCMUX_COPYBREAK bytes are copied into an exact-size linear
 * skb (small truesize, no pinning of large TCP buffers); larger messages
 * are clones of the TCP skbs, chained on frag_list, with the start of the
 * message recorded in kcmux_msg_cb::offset.
 *
 * Everything here runs with the TCP socket locked, either from
 * sk_data_ready in softirq or from the psock's rx_work.
 */
#include <linux/filter.h>
#include <linux/skbuff.h>
#include <net/tcp.h>

#include "kcmux.h"

#define KCMUX_VIEW_MIN		256
#define KCMUX_COPYBREAK		512
#define KCMUX_MEM_RETRY		(HZ / 10)

static int kcmux_frame_parse(struct kcmux_psock *psock, struct sk_buff *view)
{
	/* Socket filter programs return a u32; lengths and errnos fit. */
	return (int)bpf_prog_run_pin_on_cpu(psock->prog, view);
}

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
		skb_copy_bits(f->view, 0, skb_put(view, f->view->len),
			      f->view->len);
		kfree_skb(f->view);
	}
	f->view = view;
	return 0;
}

static void kcmux_frame_arm_timer(struct kcmux_psock *psock)
{
	long timeo = READ_ONCE(psock->sk->sk_rcvtimeo);

	psock->frame.start = jiffies;
	if (timeo != MAX_SCHEDULE_TIMEOUT)
		mod_delayed_work(kcmux_wq, &psock->rx_timer, timeo);
}

static void kcmux_frame_reset(struct kcmux_frame *f)
{
	f->head = NULL;
	f->tailp = NULL;
	f->msg_len = 0;
	f->have = 0;
	if (f->view)
		skb_trim(f->view, 0);
}

/* Makes a linear message skb from the first len bytes of the view. */
static struct sk_buff *kcmux_copy_head(struct kcmux_frame *f, u32 len,
				       u32 capacity)
{
	struct sk_buff *head = alloc_skb(capacity, GFP_ATOMIC);

	if (!head)
		return NULL;
	skb_copy_bits(f->view, 0, skb_put(head, len), len);
	return head;
}

/*
 * A message head that shares a TCP skb.  A clone shares skb_shared_info
 * with the original, so if more parts will follow, the clone goes under a
 * new empty skb whose frag_list is ours to extend.
 */
static struct sk_buff *kcmux_clone_head(struct sk_buff *skb, bool more,
					struct sk_buff ***tailp)
{
	struct sk_buff *clone, *head;

	clone = skb_clone(skb, GFP_ATOMIC);
	if (!clone || !more)
		return clone;

	head = alloc_skb(0, GFP_ATOMIC);
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
	u32 rcvbuf = READ_ONCE(psock->sk->sk_rcvbuf);
	u32 prev = f->have;
	struct sk_buff *head;
	size_t take;
	int len;

	*used = 0;
	if (!f->view && kcmux_view_grow(psock, KCMUX_VIEW_MIN))
		return -ENOMEM;

	for (;;) {
		skb_trim(f->view, prev);
		take = min_t(size_t, left, skb_tailroom(f->view));
		skb_copy_bits(skb, pos, skb_put(f->view, take), take);

		len = kcmux_frame_parse(psock, f->view);
		if (len < 0) {
			psock->stats.rx_bad_len++;
			return len;
		}
		if (len > 0)
			break;
		if (take == left) {
			/* Everything at hand is header; keep it and wait. */
			psock->stats.rx_need_more_hdr++;
			if (!prev)
				kcmux_frame_arm_timer(psock);
			f->have = prev + take;
			*used = take;
			return 0;
		}
		if (f->view->len >= rcvbuf) {
			psock->stats.rx_too_big++;
			return -EMSGSIZE;
		}
		skb_trim(f->view, prev);
		if (kcmux_view_grow(psock, min_t(u32, rcvbuf,
						 2 * (prev + take))))
			return -ENOMEM;
	}

	if (len > rcvbuf) {
		psock->stats.rx_too_big++;
		return -EMSGSIZE;
	}
	/* It asked for more bytes, so the message cannot end before them. */
	if (len <= prev) {
		psock->stats.rx_bad_len++;
		return -EPROTO;
	}

	if (len <= KCMUX_COPYBREAK || len <= prev + take) {
		u32 in_view = min_t(u32, len, prev + take);

		head = kcmux_copy_head(f, in_view, len);
		if (!head)
			return -ENOMEM;
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
	if (!prev && f->have < len)
		kcmux_frame_arm_timer(psock);
	return 0;
}

/* Adds n message bytes found at (skb, pos) to the message in progress. */
static int kcmux_frame_append(struct kcmux_psock *psock, struct sk_buff *skb,
			      unsigned int pos, u32 n)
{
	struct kcmux_frame *f = &psock->frame;
	struct sk_buff *head = f->head;
	struct sk_buff *part;

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

			cancel_delayed_work(&psock->rx_timer);
			psock->stats.rx_msgs++;
			psock->stats.rx_bytes += f->msg_len;
			kcmux_frame_reset(f);
			if (!kcmux_rx_deliver(psock, msg)) {
				/* Parked: leave the rest in TCP (backpressure). */
				desc->count = 0;
				break;
			}
		}
	}

	if (err) {
		desc->count = 0;
		kcmux_frame_error(psock, err);
	}
	return used;
}

void kcmux_frame_read(struct kcmux_psock *psock)
{
	read_descriptor_t desc = {
		.arg.data = psock,
		.count = 1,
	};

	if (psock->frame.stopped || READ_ONCE(psock->rx_paused))
		return;
	tcp_read_sock(psock->sk, &desc, kcmux_frame_actor);
}

/* Drops partial state; no more reading.  TCP socket locked. */
void kcmux_frame_stop(struct kcmux_psock *psock)
{
	struct kcmux_frame *f = &psock->frame;

	f->stopped = true;
	cancel_delayed_work(&psock->rx_timer);
	kfree_skb(f->head);
	kfree_skb(f->view);
	f->view = NULL;
	kcmux_frame_reset(f);
}

/* The assembly timer fired.  TCP socket locked. */
void kcmux_frame_timeout(struct kcmux_psock *psock)
{
	struct kcmux_frame *f = &psock->frame;
	long timeo = READ_ONCE(psock->sk->sk_rcvtimeo);

	if (f->stopped || (!f->have && !f->msg_len))
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
