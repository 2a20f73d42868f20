/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kcmux private definitions.
 *
 * Objects
 *   kcmux_mux    one multiplexor; lives while at least one KCM socket does.
 *   kcmux_sock   a KCM socket (struct sock first); holds a mux reference.
 *   kcmux_psock  an attached TCP socket; owned by its mux.
 *
 * Locks, in the order they nest:
 *   0. kcmux_sock::tx_mutex             one sendmsg at a time per socket
 *      kcmux_sock::rx_mutex             one reader at a time per socket;
 *                                       never held with the KCM socket lock
 *   1. KCM socket lock (lock_sock)      tx state of that KCM socket
 *   2. TCP socket lock (lock_sock, or   rx framing state of its psock
 *      bh_lock_sock in softirq)
 *   3. mux->lock (spinlock, BH)         every list in the mux, steering,
 *                                       tx reservations, parked messages
 *   4. KCM sk_receive_queue.lock        the receive queue itself
 *   mux->tx_pages.lock (spinlock) is taken by sendmsg under the KCM
 *   socket lock, by its trim work and by the shrinker inside the lock of
 *   its list of rings; nothing nests inside it, and never in softirq.
 *   kcmux_net::lock (mutex) nests outside all of them and only guards the
 *   per-netns list of muxes.  The xarray of psock ids has its own lock,
 *   taken inside mux->lock.
 *
 * Psocks are freed after an RCU grace period, so a psock found by id
 * under rcu_read_lock() can be inspected; it is usable only if, under its
 * mux->lock, it is not yet released.
 *
 * The rx path never takes a KCM socket lock, so a KCM socket lock may be
 * held while taking a TCP socket lock (tx) but never the other way round.
 */
#ifndef _KCMUX_H
#define _KCMUX_H

#include <linux/bpf.h>
#include <linux/list.h>
#include <linux/skbuff.h>
#include <linux/spinlock.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>
#include <net/sock.h>

#include "../include/uapi/linux/kcm.h"
#include "compat.h"

extern struct workqueue_struct *kcmux_wq;

/* Largest message either way: bounds what one message can pin. */
#define KCMUX_MSG_MAX		(64 << 20)

/*
 * Counters are plain integers: rx ones are written under the TCP socket
 * lock, tx ones by the KCM socket owning the psock, mux ones under
 * mux->lock.  Readers (/proc) accept a torn or stale value.
 */
struct kcmux_psock_stats {
	u64 rx_msgs;
	u64 rx_bytes;
	u64 tx_msgs;
	u64 tx_bytes;
	u32 tx_reserved;
	u32 tx_unreserved;
	u32 rx_interrupted;	/* framing restarted after a memory shortage */
	u32 rx_unrecoverable;
	u32 rx_mem_fail;
	u32 rx_need_more_hdr;
	u32 rx_bad_len;		/* parser returned an error */
	u32 rx_too_big;
	u32 rx_timeouts;
	u32 tx_aborts;
};

struct kcmux_mux_stats {
	u64 rx_msgs;
	u64 rx_bytes;
	u32 tx_retries;
	u32 psock_attach;
	u32 psock_unattach;
	u32 psock_unattach_rsvd;
	u32 rx_ready_drops;
	u32 tx_target_drops;
};

struct kcmux_sock_stats {
	u64 rx_msgs;
	u64 rx_bytes;
	u64 tx_msgs;
	u64 tx_bytes;
};

/* Per network namespace state. */
struct kcmux_net {
	struct mutex lock;		/* protects mux_list and retired stats */
	struct list_head mux_list;
	int mux_count;
	u32 next_mux_id;
	struct xarray psock_ids;	/* id -> psock, while attached */
	u32 next_psock_id;		/* under psock_ids' lock */
	struct kcmux_mux_stats retired_mux;
	struct kcmux_psock_stats retired_psock;
};

/*
 * Full send pages that TCP still held when a sender traded them in, each
 * with one reference of ours, oldest first, until TCP lets go of one and
 * a sender takes it back (kcm/tx_pages.c).  At most 512 pages, 16 MiB of
 * page_frag pages: what TCP's default limits let a few streams hold.
 */
#define KCMUX_TX_PAGES_MAX	512U

struct kcmux_tx_pages {
	spinlock_t lock;		/* leaf; process context only */
	/* All below under lock. */
	struct page **ring;		/* KCMUX_TX_PAGES_MAX, once needed */
	unsigned int head;		/* oldest page */
	unsigned int count;
	unsigned int bytes;		/* in the count pages (netlink) */
	unsigned int trades;		/* since the last trim */
	struct delayed_work trim;
	/* On the shrinker's list once ring is set; under its lock. */
	struct list_head shrink_node;
};

struct kcmux_mux {
	struct net *net;
	u32 id;				/* unique in the netns (netlink) */
	struct list_head net_node;	/* kcmux_net::mux_list */
	refcount_t refcnt;		/* one per KCM socket */

	spinlock_t lock;		/* order 3 in the list at the top */
	/* All below under lock. */
	struct list_head socks;		/* every KCM socket */
	struct list_head psocks;	/* every psock, until it is freed */
	struct list_head rx_socks;	/* KCM sockets that can take a message */
	struct list_head rx_psocks;	/* psocks parked on a ready message */
	struct list_head rx_waiting;	/* paused, message taken: to resume */
	struct list_head rx_wake;	/* KCM sockets owed a wakeup */
	struct sk_buff_head rx_hold;	/* messages waiting for any socket */
	struct list_head tx_psocks;	/* psocks free to carry a message */
	struct list_head tx_socks;	/* KCM sockets waiting for a psock */
	int nr_socks;
	int nr_psocks;
	u32 next_sock_index;
	u32 next_psock_index;
	struct kcmux_mux_stats stats;
	struct kcmux_psock_stats retired_psock;	/* from freed psocks */

	struct kcmux_tx_pages tx_pages;
};

/*
 * Framing state of one psock: which bytes of the TCP stream belong to the
 * message being assembled.  Owned by whoever holds the TCP socket lock.
 */
struct kcmux_frame {
	struct sk_buff *head;	/* message being assembled, or NULL */
	struct sk_buff **tailp;	/* where the next continuation goes */
	struct sk_buff *view;	/* linear copy the parser reads */
	u32 msg_len;		/* full length, 0 while still unknown */
	u32 have;		/* message bytes consumed from TCP so far */
	u32 need;		/* tcp_inq() worth parsing again, or 0 */
	u32 asked;		/* bytes the parser saw and wanted more */
	u32 last_len;		/* of the previous message: how much to peek */
	bool pending;		/* a message has begun; start is valid */
	bool timer_armed;	/* rx_timer may be queued for it */
	unsigned long start;	/* jiffies when the first byte arrived */
	bool stopped;		/* error posted or unattaching: read no more */
};

/* How a psock finds message lengths: a BPF program or a length field. */
struct kcmux_parser {
	struct bpf_prog *prog;		/* NULL: use framing */
	struct kcmux_framing framing;
};

struct kcmux_psock {
	struct kcmux_mux *mux;
	struct sock *sk;		/* the TCP socket */
	struct file *file;		/* pins sk while attached */
	struct kcmux_parser parser;
	u32 id;				/* unique in the netns, never 0 */
	unsigned long tcp_ino;		/* of the TCP socket, for netlink */
	u32 index;
	struct list_head mux_node;	/* mux->psocks */

	void (*saved_data_ready)(struct sock *sk);
	void (*saved_write_space)(struct sock *sk);
	void (*saved_state_change)(struct sock *sk);

	struct kcmux_frame frame;	/* under the TCP socket lock */
	struct delayed_work rx_work;	/* reads when softirq could not */
	struct delayed_work rx_timer;	/* assembly timeout */
	bool peer_closed;		/* set by state_change; TCP lock */
	bool rx_delivered;		/* since the last wakeups; TCP lock */

	/* Under mux->lock. */
	struct sk_buff *rx_ready;	/* message no KCM socket could take */
	struct list_head rx_node;	/* rx_psocks, then rx_waiting: paused */
	bool rx_paused;			/* not reading until resumed */
	struct kcmux_sock *tx_owner;	/* KCM socket transmitting on us */
	struct list_head tx_node;	/* mux->tx_psocks while free */
	bool tx_stopped;		/* never reserve again */
	bool unattaching;
	bool owner_releases;		/* tx_owner calls kcmux_psock_release() */
	bool released;			/* off every list; memory freed by RCU */
	int error;			/* errno posted by kcmux_psock_stop() */

	struct kcmux_psock_stats stats;
	struct rcu_head rcu;
};

struct kcmux_sock {
	struct sock sk;
	struct kcmux_mux *mux;
	u32 index;
	unsigned long ino;		/* of the socket, for netlink */
	bool origin;			/* KCMUX_ORIGIN: report sources */
	struct list_head mux_node;	/* mux->socks */

	/* Under mux->lock. */
	struct list_head rx_node;	/* mux->rx_socks while rx_ready */
	struct list_head wake_node;	/* mux->rx_wake while owed a wakeup */
	u32 rx_given;			/* of its turn; 0 when it joins */
	bool rx_ready;
	bool rx_disabled;
	bool closing;
	struct kcmux_psock *tx_psock;	/* reserved for our write queue */
	struct list_head tx_node;	/* mux->tx_socks while tx_waiting */
	bool tx_waiting;
	u32 tx_want;			/* psock id waited for; 0: any */

	/*
	 * sendmsg holds tx_mutex for the whole call, so a message being built
	 * never takes bytes from two callers even while the socket lock is
	 * dropped to wait for memory.  Taken outside the KCM socket lock.
	 */
	struct mutex tx_mutex;
	/* Under tx_mutex and the KCM socket lock. */
	struct sk_buff *tx_partial;	/* message still being written */
	/* Under the KCM socket lock. */
	struct work_struct tx_work;

	/*
	 * Held by whoever uses the message at the head of the receive queue
	 * (recvmsg, splice_read, SIOCINQ, KCM_RECV_DISABLE), which only its
	 * holder may unlink or move.  Not the socket lock: a reader and a
	 * writer of one socket do not wait for each other, and a read costs
	 * no BH toggling.
	 */
	struct mutex rx_mutex;

	struct kcmux_sock_stats stats;
};

/* How framing adds the later bytes of a received message to its skb. */
enum kcmux_fill {
	KCMUX_FILL_CHAIN,	/* into tail room, else skbs on frag_list */
	KCMUX_FILL_COPY,	/* into page frags sized for all of it */
	KCMUX_FILL_SHARE,	/* as more references to TCP's pages */
};

/*
 * Per-message metadata in skb->cb of a message skb: the message occupies
 * [offset, offset + len) of the skb and its frag_list.
 *
 * A received "pack" (packed set) is a linear skb holding several small
 * messages, each after a struct kcmux_pack_rec; cb then describes the one
 * being read, and the next record starts at offset + len.  Records are
 * only appended, at the tail of a receive queue, under its lock.
 */
struct kcmux_msg_cb {
	u32 offset;
	u32 len;
	u32 sent;		/* bytes already sent (tx) or read (rx) */
	u32 psock_id;		/* rx: where it came from; tx: target, or 0 */
	bool packed;		/* rx: a pack of small messages */
	u8 fill;		/* rx, while framed: enum kcmux_fill */
	struct sk_buff *tail;	/* tx: last skb of the chain */
};

struct kcmux_pack_rec {
	u32 len;
	u32 psock_id;
};

/*
 * Received messages up to KCMUX_COPYBREAK bytes are charged what an skb
 * of their own would be, not the truesize of the TCP skbs they came in,
 * which can be many times the message.  Those up to KCMUX_PACK_MSG_MAX
 * are packed several to an skb.  Larger ones are clones of the TCP skb
 * they lie whole in, or share at most two of TCP's pages (either way
 * pinning at most 16 times their charge, see frame.c), or are copied
 * into page fragments rather than a kmalloc'ed head (whose power-of-two
 * size would be allocated, and zeroed, for nothing).
 */
#define KCMUX_COPYBREAK		SKB_WITH_OVERHEAD(8192)
#define KCMUX_PACK_MSG_MAX	512

static inline struct kcmux_msg_cb *kcmux_msg_cb(struct sk_buff *skb)
{
	BUILD_BUG_ON(sizeof(struct kcmux_msg_cb) > sizeof(skb->cb));
	return (struct kcmux_msg_cb *)skb->cb;
}

static inline struct kcmux_sock *kcmux_sk(struct sock *sk)
{
	return container_of(sk, struct kcmux_sock, sk);
}

/* netns.c */
extern unsigned int kcmux_net_id;
struct kcmux_net *kcmux_net(struct net *net);
int kcmux_netns_init(void);
void kcmux_netns_uninit(void);

/* socket.c */
int kcmux_socket_init(void);
void kcmux_socket_uninit(void);

/* mux.c */
struct kcmux_mux *kcmux_mux_create(struct net *net);
void kcmux_mux_add_sock(struct kcmux_mux *mux, struct kcmux_sock *kcm);
void kcmux_mux_put(struct kcmux_mux *mux);
void kcmux_psock_stats_add(struct kcmux_psock_stats *to,
			   const struct kcmux_psock_stats *from);
void kcmux_mux_retire_psock(struct kcmux_mux *mux, struct kcmux_psock *psock);
int kcmux_clone(struct socket *sock, struct kcm_clone __user *uinfo);

/* parser.c */
int kcmux_parser_from_attach(struct kcmux_parser *parser,
			     const struct kcmux_attach *info);
void kcmux_parser_release(struct kcmux_parser *parser);
int kcmux_parse(const struct kcmux_parser *parser, struct sk_buff *view);

/* psock.c */
int kcmux_psock_init(void);
void kcmux_psock_uninit(void);
int kcmux_attach(struct socket *sock, const struct kcmux_attach *info,
		 u32 *psock_id);
int kcmux_psock_id_of(struct socket *sock, int fd, u32 *psock_id);
struct kcmux_psock *kcmux_psock_lookup(struct kcmux_mux *mux, u32 id);
int kcmux_unattach(struct socket *sock, const struct kcm_unattach *info);
void kcmux_psock_stop(struct kcmux_psock *psock, int err);
void kcmux_psock_release(struct kcmux_psock *psock);
void kcmux_psock_unattach_all(struct kcmux_mux *mux);

/* frame.c */
bool kcmux_frame_read(struct kcmux_psock *psock);
void kcmux_frame_stop(struct kcmux_psock *psock);
void kcmux_frame_timeout(struct kcmux_psock *psock);

/* rx.c */
bool kcmux_rx_deliver(struct kcmux_psock *psock, struct sk_buff *skb);
bool kcmux_rx_deliver_data(struct kcmux_psock *psock, const void *data,
			   u32 len);
void kcmux_rx_deliver_done(struct kcmux_psock *psock);
void kcmux_rx_wake(struct kcmux_mux *mux);
void kcmux_rx_sock_ready(struct kcmux_sock *kcm);
void kcmux_rx_requeue_queue(struct kcmux_sock *kcm);
void kcmux_rx_unpark(struct kcmux_psock *psock);
u32 kcmux_rx_queued(struct kcmux_sock *kcm);
struct sk_buff *kcmux_rx_peek(struct sock *sk);
void kcmux_rx_sock_init(struct kcmux_sock *kcm);
int kcmux_recvmsg(struct socket *sock, struct msghdr *msg, size_t len,
		  int flags);
ssize_t kcmux_splice_read(struct socket *sock, loff_t *ppos,
			  struct pipe_inode_info *pipe, size_t len,
			  unsigned int flags);
int kcmux_set_recv_disable(struct kcmux_sock *kcm, bool disable);

/* tx.c */
int kcmux_sendmsg(struct socket *sock, struct msghdr *msg, size_t len);
void kcmux_tx_work(struct work_struct *work);
void kcmux_tx_psock_available(struct kcmux_mux *mux,
			      struct kcmux_psock *psock);
void kcmux_tx_wake_owner(struct kcmux_psock *psock);
void kcmux_tx_wake_waiters(struct kcmux_mux *mux, struct kcmux_psock *psock);
void kcmux_tx_release(struct kcmux_sock *kcm);
void kcmux_tx_sock_init(struct kcmux_sock *kcm);
int kcmux_tx_pages_shrinker_init(void);
void kcmux_tx_pages_shrinker_uninit(void);
void kcmux_tx_pages_init(struct kcmux_mux *mux);
void kcmux_tx_pages_uninit(struct kcmux_mux *mux);
void kcmux_tx_pages_trade(struct kcmux_mux *mux, struct page_frag *pfrag,
			  gfp_t gfp);
bool kcmux_tx_writable(struct sock *sk);

/* netlink.c */
int kcmux_netlink_init(void);
void kcmux_netlink_uninit(void);
void kcmux_netlink_psock_event(struct kcmux_psock *psock, u8 cmd);

/* proc.c */
int kcmux_proc_init_net(struct net *net);
void kcmux_proc_exit_net(struct net *net);

#endif /* _KCMUX_H */
