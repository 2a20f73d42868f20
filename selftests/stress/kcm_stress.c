// SPDX-License-Identifier: GPL-2.0
/*
 * kcm_stress: randomized, multi-threaded stress of AF_KCM with every
 * message verified.
 *
 *   kcm_stress [--duration SECS] [--seed N] [--workers N] [--faults PCT]
 *              [--fail-nth] [--max-socks N] [--max-psocks N] [--quiet]
 *
 * Worker threads run random operations (socket, clone, attach, unattach,
 * close in any order from any thread, send/recv in every flavour, poll,
 * epoll, socket options, peer FIN/RST, network namespaces) on a shared
 * set of multiplexors.  Each worker draws its operations from its own
 * PRNG, seeded from --seed and its index, so a seed replays the same
 * sequence of operations and parameters per thread (which objects they
 * land on depends on the interleaving).
 *
 * Every message carries a header (stream id, sequence number, length,
 * checksums) and a body derived from (stream, seq).  Receivers check
 * that nothing is corrupted, duplicated or reordered and, at the end,
 * that nothing was lost unless an event that may lose it happened (the
 * rules are in Documentation/reliability.rst).  Every syscall result is
 * checked against an allow-list per operation.
 *
 * With --faults PCT, allocations whose call stack goes through the
 * module under test fail with probability PCT % (failslab and
 * fail_page_alloc, stack-trace filtered); with --fail-nth, each
 * operation is run once per allocation it makes, that allocation failing.
 *
 * Exit status: 0 clean, 1 invariant or errno failures, 2 usage/setup.
 */
#include <dirent.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/sockios.h>

#include "kcm_test.h"

#ifndef SPLICE_F_NONBLOCK
#define SPLICE_F_NONBLOCK	0x02
#endif
#ifndef SPLICE_F_MORE
#define SPLICE_F_MORE		0x04
#endif
#ifndef SO_SNDBUFFORCE
#define SO_SNDBUFFORCE		32
#endif

/* --- limits and tunables ------------------------------------------------ */

#define MAX_THREADS	32
#define MAX_KSOCKS	64
#define MAX_PSOCKS	64
#define MAX_PEERS	128
#define MAX_MSG		(256 * 1024)	/* largest message we send */
#define HDR_LEN		32
#define MAGIC		0x4b434d73u	/* "KCMs" */
#define MAX_STREAMS	(1u << 20)
#define DRAIN_QUIET_MS	3000
#define DRAIN_MAX_MS	120000
#define FAIL_PRINT_MAX	60

enum dir { DIR_RX = 1, DIR_TX = 2 };

/* How many messages of a stream may go missing (only grows). */
enum loss_policy {
	LOSS_NONE,	/* strict: every message sent is received */
	LOSS_ONE,	/* one message (being assembled at unattach) */
	LOSS_ANY,	/* the stream was cut: anything after may be lost */
};

static const char *const loss_names[] = { "none", "one", "any" };

/* --- configuration -------------------------------------------------------- */

static struct {
	uint64_t seed;
	double duration;
	int workers;
	int receivers;
	int peers;
	int fault_pct;
	bool fail_nth;
	bool quiet;
	int max_ksocks;
	int max_muxes;
	int max_psocks;
	bool reference;		/* the in-tree kcm.ko is under test */
	const char *module;
	/* extensions found by probing */
	bool ext_attach;
	bool ext_origin;
	bool ext_psockid;
	bool ext_inq;
	int genl_family;	/* "kcmux" generic netlink family, 0: none */
	uint64_t skip_ops;	/* bit per op: never run */
} cfg = {
	.duration = 30,
	.workers = 4,
	.receivers = 2,
	.peers = 2,
	.max_ksocks = 16,
	.max_muxes = 6,
	.max_psocks = 16,
};

/* --- time, PRNG ---------------------------------------------------------- */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static uint64_t now_ms(void)
{
	return now_ns() / 1000000;
}

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* xorshift64*: one per thread, seeded from the run seed and the thread. */
static uint64_t rnd(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dull;
}

static uint32_t rnd_below(uint64_t *s, uint32_t n)
{
	return n ? (uint32_t)((rnd(s) >> 32) % n) : 0;
}

static bool rnd_pct(uint64_t *s, unsigned int pct)
{
	return rnd_below(s, 100) < pct;
}

static uint64_t thread_seed(uint64_t seed, unsigned int idx)
{
	return mix64(seed ^ mix64(0x6b636d7374726573ull + idx)) | 1;
}

/* --- failures and statistics --------------------------------------------- */

enum op {
	OP_SOCKET, OP_CLONE, OP_CLOSE_KCM, OP_ATTACH, OP_ATTACH_EXT,
	OP_ATTACH_AGAIN, OP_UNATTACH, OP_CLOSE_TCP, OP_PEER_FIN, OP_PEER_RST,
	OP_SEND, OP_SENDMMSG, OP_SEND_MORE, OP_SEND_SPLICE, OP_SEND_TARGETED,
	OP_RECV, OP_RECVMMSG, OP_RECV_PEEK, OP_RECV_TRUNC, OP_RECV_PARTIAL,
	OP_RECV_SPLICE, OP_POLL, OP_EPOLL, OP_RECV_DISABLE, OP_SOCKOPT,
	OP_ORIGIN, OP_INQ, OP_PSOCKID, OP_NETNS, OP_PROC, OP_HOSTILE,
	OP_GENL, OP_PSOCK_ERROR, OP_PEER_IO, OP_DRAIN,
	OP_MAX
};

static const char *const op_names[OP_MAX] = {
	[OP_SOCKET] = "socket", [OP_CLONE] = "clone",
	[OP_CLOSE_KCM] = "close-kcm", [OP_ATTACH] = "attach",
	[OP_ATTACH_EXT] = "attach-ext", [OP_ATTACH_AGAIN] = "attach-again",
	[OP_UNATTACH] = "unattach", [OP_CLOSE_TCP] = "close-tcp",
	[OP_PEER_FIN] = "peer-fin", [OP_PEER_RST] = "peer-rst",
	[OP_SEND] = "send", [OP_SENDMMSG] = "sendmmsg",
	[OP_SEND_MORE] = "send-more", [OP_SEND_SPLICE] = "send-splice",
	[OP_SEND_TARGETED] = "send-targeted", [OP_RECV] = "recv",
	[OP_RECVMMSG] = "recvmmsg", [OP_RECV_PEEK] = "recv-peek",
	[OP_RECV_TRUNC] = "recv-trunc", [OP_RECV_PARTIAL] = "recv-partial",
	[OP_RECV_SPLICE] = "recv-splice", [OP_POLL] = "poll",
	[OP_EPOLL] = "epoll", [OP_RECV_DISABLE] = "recv-disable",
	[OP_SOCKOPT] = "sockopt", [OP_ORIGIN] = "origin", [OP_INQ] = "fionread",
	[OP_PSOCKID] = "psock-id", [OP_NETNS] = "netns", [OP_PROC] = "proc",
	[OP_HOSTILE] = "hostile", [OP_GENL] = "genl-dump",
	[OP_PSOCK_ERROR] = "psock-error",
	[OP_PEER_IO] = "peer-io", [OP_DRAIN] = "drain",
};

#define ERRNO_MAX	160

static struct {
	atomic_ulong runs[OP_MAX];
	atomic_ulong ok[OP_MAX];
	atomic_ulong err[OP_MAX][ERRNO_MAX];
	atomic_ulong failures;
	atomic_ulong rx_sent, rx_verified, rx_returned, rx_peeked;
	atomic_ulong tx_sent, tx_verified, tx_cut;
	atomic_ulong lost_allowed, truncated;
	atomic_ulong sigpipes, sigpipes_live;
	atomic_ulong netns_made;
	atomic_ulong order_checks;
	atomic_ulong partial_sends;	/* in-tree SEQPACKET short sends */
} st;

static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;
static __thread int my_idx = -1;
static __thread const char *my_role = "main";
static __thread unsigned long my_sigpipes;

static void __attribute__((format(printf, 2, 3)))
fail(enum op op, const char *fmt, ...)
{
	unsigned long n = atomic_fetch_add(&st.failures, 1);
	va_list ap;

	if (n >= FAIL_PRINT_MAX)
		return;
	pthread_mutex_lock(&fail_lock);
	fprintf(stderr, "FAIL [seed %llu %s %d op %s] ",
		(unsigned long long)cfg.seed, my_role, my_idx, op_names[op]);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (n + 1 == FAIL_PRINT_MAX)
		fprintf(stderr, "FAIL: further failures are counted, not printed\n");
	pthread_mutex_unlock(&fail_lock);
}

static void __attribute__((format(printf, 1, 2))) note(const char *fmt, ...)
{
	va_list ap;

	if (cfg.quiet)
		return;
	pthread_mutex_lock(&fail_lock);
	va_start(ap, fmt);
	fputs("# ", stdout);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
	pthread_mutex_unlock(&fail_lock);
}

/* Allowed errnos: a bit set. */
struct errset {
	uint64_t w[(ERRNO_MAX + 63) / 64];
};

static struct errset errs_of(int n, ...)
{
	struct errset s = { { 0 } };
	va_list ap;
	int e;

	va_start(ap, n);
	while (n--) {
		e = va_arg(ap, int);
		if (e > 0 && e < ERRNO_MAX)
			s.w[e / 64] |= 1ull << (e % 64);
	}
	va_end(ap);
	return s;
}

#define ERRS(...) errs_of(sizeof((int[]){ __VA_ARGS__ }) / sizeof(int), __VA_ARGS__)
#define NOERRS ((struct errset){ { 0 } })

static bool errset_has(const struct errset *s, int e)
{
	return e > 0 && e < ERRNO_MAX && (s->w[e / 64] >> (e % 64)) & 1;
}

static bool faults_on;	/* probabilistic fault injection active now */
static bool faults_used;	/* ... at some point of the run */

/*
 * Errors an allocation failure may surface as, when faults are
 * injected: on every operation that allocates in the module's path.
 */
static bool fault_errno(int e)
{
	/* ENFILE: sock_alloc() failed, what socket() says then too. */
	return faults_on && (e == ENOMEM || e == ENOBUFS || e == ENFILE);
}

/*
 * Accounts the result of one syscall of op: rc >= 0 is success, else
 * -errno, judged against allowed.  ignore: the object was closed under
 * us, its result means nothing.  Returns rc >= 0.
 */
static bool judge(enum op op, long rc, struct errset allowed, bool ignore,
		  const char *what)
{
	int e = rc < 0 ? (int)-rc : 0;

	atomic_fetch_add(&st.runs[op], 1);
	if (rc >= 0) {
		atomic_fetch_add(&st.ok[op], 1);
		return true;
	}
	atomic_fetch_add(&st.err[op][e < ERRNO_MAX ? e : 0], 1);
	if (ignore || errset_has(&allowed, e) || fault_errno(e))
		return false;
	fail(op, "%s: unexpected errno %d (%s)", what, e, strerror(e));
	return false;
}

/* --- message format ------------------------------------------------------- */

/*
 * Every message: this header, then a body derived from (stream, seq).
 * len is big-endian at offset 0, so the usual 4-byte length parsers and
 * the built-in framing {offset 0, width 4} both frame it.
 */
struct wire_hdr {
	uint32_t len_be;	/* whole message, header included */
	uint32_t magic;
	uint32_t stream;
	uint32_t target;	/* psock id the sender aimed at, 0: any */
	uint64_t seq;
	uint32_t body_sum;
	uint32_t hdr_sum;	/* over the 28 bytes above */
};

_Static_assert(sizeof(struct wire_hdr) == HDR_LEN, "header size");

static uint32_t hdr_sum(const struct wire_hdr *h)
{
	const uint32_t *w = (const uint32_t *)h;
	uint64_t x = 0x9e3779b97f4a7c15ull;
	int i;

	for (i = 0; i < 7; i++)
		x = mix64(x ^ w[i]);
	return (uint32_t)x;
}

static uint64_t body_key(uint32_t stream, uint64_t seq)
{
	return mix64(((uint64_t)stream << 40) ^ seq ^ 0x5deece66dull);
}

/* The n first body bytes of message (stream, seq). */
static void body_fill(uint8_t *p, size_t n, uint32_t stream, uint64_t seq)
{
	uint64_t key = body_key(stream, seq), w;
	size_t i;

	for (i = 0; i + 8 <= n; i += 8) {
		w = mix64(key + i);
		memcpy(p + i, &w, 8);
	}
	if (i < n) {
		w = mix64(key + i);
		memcpy(p + i, &w, n - i);
	}
}

/* Offset of the first body byte that differs, or n. */
static size_t body_check(const uint8_t *p, size_t n, uint32_t stream,
			 uint64_t seq)
{
	uint64_t key = body_key(stream, seq), w;
	size_t i, j;

	for (i = 0; i < n; i += 8) {
		w = mix64(key + i);
		for (j = 0; j < 8 && i + j < n; j++)
			if (p[i + j] != ((const uint8_t *)&w)[j])
				return i + j;
	}
	return n;
}

static uint32_t body_sum(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull ^ n, w;
	size_t i;

	for (i = 0; i + 8 <= n; i += 8) {
		memcpy(&w, p + i, 8);
		h = (h ^ w) * 0x100000001b3ull;
		h ^= h >> 29;
	}
	for (; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return (uint32_t)(h ^ (h >> 32));
}

static void msg_build(uint8_t *buf, size_t len, uint32_t stream, uint64_t seq,
		      uint32_t target)
{
	struct wire_hdr h;

	body_fill(buf + HDR_LEN, len - HDR_LEN, stream, seq);
	h.len_be = htonl((uint32_t)len);
	h.magic = MAGIC;
	h.stream = stream;
	h.target = target;
	h.seq = seq;
	h.body_sum = body_sum(buf + HDR_LEN, len - HDR_LEN);
	h.hdr_sum = hdr_sum(&h);
	memcpy(buf, &h, HDR_LEN);
}

/* A header we sent?  Fills *h. */
static bool hdr_ok(const uint8_t *buf, struct wire_hdr *h)
{
	memcpy(h, buf, HDR_LEN);
	return h->magic == MAGIC && h->hdr_sum == hdr_sum(h) &&
	       ntohl(h->len_be) >= HDR_LEN && ntohl(h->len_be) <= MAX_MSG;
}

/* --- streams: who sent what, who saw what -------------------------------- */

/*
 * A bit per sequence number, in chunks that double in size (level k holds
 * BM_BASE << k bits) so that a stream of any length costs what it uses.
 */
#define BM_BASE		4096ull
#define BM_LEVELS	28

struct bitmap {
	_Atomic(atomic_ullong *) chunk[BM_LEVELS];
};

static atomic_ullong *bm_word(struct bitmap *bm, uint64_t bit, uint64_t *mask,
			      bool create)
{
	uint64_t x = bit / BM_BASE + 1, off;
	int lvl = 63 - __builtin_clzll(x);
	atomic_ullong *c, *fresh = NULL;

	if (lvl >= BM_LEVELS)
		return NULL;
	off = bit - BM_BASE * ((1ull << lvl) - 1);
	c = atomic_load(&bm->chunk[lvl]);
	if (!c) {
		if (!create)
			return NULL;
		fresh = calloc((BM_BASE << lvl) / 64, sizeof(*fresh));
		if (!fresh)
			abort();
		if (atomic_compare_exchange_strong(&bm->chunk[lvl], &c, fresh))
			c = fresh;
		else
			free(fresh);
	}
	*mask = 1ull << (off % 64);
	return &c[off / 64];
}

/* Sets bit; returns its previous value. */
static bool bm_set(struct bitmap *bm, uint64_t bit)
{
	uint64_t mask;
	atomic_ullong *w = bm_word(bm, bit, &mask, true);

	return w ? atomic_fetch_or(w, mask) & mask : true;
}

static bool bm_test(struct bitmap *bm, uint64_t bit)
{
	uint64_t mask;
	atomic_ullong *w = bm_word(bm, bit, &mask, false);

	return w && (atomic_load(w) & mask);
}

struct stream {
	uint32_t id;
	uint8_t dir;
	bool targeted;		/* tx: messages aimed at one psock */
	uint32_t mux_serial;
	uint32_t owner;		/* psock serial (rx) or ksock serial (tx) */
	_Atomic uint32_t psock_id;	/* rx: the kernel's id of the psock */
	atomic_ullong next_seq;	/* sequence numbers handed out */
	atomic_ullong lossable_upto;	/* seqs below may be lost */
	atomic_ullong reorder_below;	/* seqs below may have been requeued */
	atomic_int policy;	/* enum loss_policy */
	/*
	 * rx: the psock may have stopped while we could not see it (fd
	 * closed); decided at the end from the kernel's view (genetlink).
	 */
	atomic_bool unobserved;
	const char *unobserved_why;
	int netns;
	atomic_ullong nsent, nseen;
	struct bitmap sent, seen;
	const char *why;	/* first reason the policy was raised */
};

static _Atomic(struct stream *) *streams;
static atomic_uint next_stream_id = 1;

static struct stream *stream_new(uint8_t dir, uint32_t mux_serial,
				 uint32_t owner)
{
	uint32_t id = atomic_fetch_add(&next_stream_id, 1);
	struct stream *s;

	if (id >= MAX_STREAMS) {
		fprintf(stderr, "kcm_stress: out of stream ids\n");
		exit(2);
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		abort();
	s->id = id;
	s->dir = dir;
	s->mux_serial = mux_serial;
	s->owner = owner;
	atomic_store(&streams[id], s);
	return s;
}

static struct stream *stream_get(uint32_t id)
{
	return id && id < MAX_STREAMS ? atomic_load(&streams[id]) : NULL;
}

static void stream_raise(struct stream *s, enum loss_policy p, const char *why)
{
	int cur = atomic_load(&s->policy);

	while (cur < (int)p)
		if (atomic_compare_exchange_weak(&s->policy, &cur, p)) {
			s->why = why;
			break;
		}
}

/* Every message handed out so far may be lost. */
static void stream_lossable_now(struct stream *s)
{
	uint64_t n = atomic_load(&s->next_seq), cur;

	cur = atomic_load(&s->lossable_upto);
	while (cur < n && !atomic_compare_exchange_weak(&s->lossable_upto,
							&cur, n))
		;
}

static void stream_unobserved(struct stream *s, const char *why)
{
	if (!atomic_exchange(&s->unobserved, true))
		s->unobserved_why = why;
}

static void stream_mark_sent(struct stream *s, uint64_t seq)
{
	if (!bm_set(&s->sent, seq))
		atomic_fetch_add(&s->nsent, 1);
	atomic_fetch_add(s->dir == DIR_RX ? &st.rx_sent : &st.tx_sent, 1);
}

/* --- objects: multiplexors, KCM sockets, psocks -------------------------- */

struct mux {
	uint32_t serial;
	int type;
	uint32_t fixed_len;	/* 0: lengths vary, the parser reads them */
	int refs;		/* tbl: ksocks + psocks pointing here */
	int nsocks;		/* tbl: live KCM sockets */
	bool destroyed;		/* tbl: the last KCM socket was closed */
	atomic_int sock_closes;	/* KCM sockets of it closed so far */
	atomic_int requeues;	/* requeue_begin() calls, for reports */
	atomic_int requeuing;	/* requeues under way */
	int netns;		/* 0: initial namespace */
	pthread_mutex_t lock;	/* the stream list */
	uint32_t *stream_ids;
	int nstreams, cap;
};

struct ksock {
	int fd;
	atomic_int refs;	/* the table's + users' */
	atomic_bool dead;	/* closed: results on it mean nothing */
	uint32_t serial;
	int type;
	struct mux *mux;
	/*
	 * Whole-message senders and readers share these; a message built
	 * or read over several calls needs the socket to itself.
	 */
	pthread_rwlock_t rx_lock, tx_lock;
	uint32_t tx_stream[MAX_THREADS];	/* per sending thread */
	uint32_t tx_tstream[MAX_THREADS];	/* targeted sends */
	atomic_bool origin;
	bool rx_disabled;	/* tbl */
};

enum ps_state { PS_ATTACHED, PS_FDCLOSED, PS_UNATTACHED };

enum peer_req { PEER_NONE, PEER_STOP, PEER_FIN, PEER_RST };

#define PEER_BATCH	4

struct psock {
	int fd;			/* our end of the TCP connection */
	atomic_int refs;
	atomic_bool dead;	/* fd closed */
	uint32_t serial;
	struct mux *mux;
	bool on_peers;		/* tbl: in peertab */
	pthread_mutex_t lock;	/* state transitions */
	int state;
	_Atomic uint32_t psock_id;
	struct stream *rx;	/* what the peer writes */
	atomic_bool stopped;	/* an error was posted on the TCP socket */
	atomic_int stop_err;
	atomic_bool kcm_gone;	/* our end is closing: peer errors allowed */
	atomic_bool may_cut;	/* a message to the peer may end short */
	atomic_ullong fin_at;	/* ms when the peer's FIN went out */
	atomic_int peer_req;
	atomic_bool writer_stopped;
	atomic_bool rst_sent;	/* the peer reset the connection */
	int closes_at_attach;	/* mux->sock_closes when attached */
	/* Peer side: touched only by the peer thread (after setup). */
	int peer_fd;
	bool peer_done;
	bool peer_fin;
	bool peer_rd_done;
	uint8_t *wbuf;
	size_t wlen, woff;
	int wn, wdone;
	size_t wend[PEER_BATCH];
	uint64_t wseq[PEER_BATCH];
	uint8_t *rbuf;
	size_t rlen, roff;
	bool rcorrupt;
	struct { uint32_t stream; uint64_t last; } order[32];
	int norder;
	uint64_t wrng;
	int chunk_mode;
};

static pthread_mutex_t tbl = PTHREAD_MUTEX_INITIALIZER;
static struct ksock *ktab[MAX_KSOCKS];
static int nk;
static struct psock *ptab[MAX_PSOCKS];	/* our TCP end still open */
static int np;
static struct psock *peertab[MAX_PEERS];	/* peer end still open */
static int npeer;
static struct mux *mtab[MAX_KSOCKS + MAX_PEERS];
static int nm;
static int live_muxes;		/* with at least one KCM socket */
static atomic_uint next_serial = 1;
static int placeholder = -1;	/* what a closed fd number points to */
static int bpf_var[2] = { -1, -1 };	/* length parsers */
#define NFIXED 8
static const uint32_t fixed_lens[NFIXED] = {
	32, 100, 512, 1460, 4096, 9000, 65536, 200000
};
static int bpf_fixed[NFIXED];

static uint32_t serial_new(void)
{
	return atomic_fetch_add(&next_serial, 1);
}

static void mux_add_stream(struct mux *m, struct stream *s)
{
	pthread_mutex_lock(&m->lock);
	if (m->nstreams == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 16;
		m->stream_ids = realloc(m->stream_ids,
					m->cap * sizeof(*m->stream_ids));
		if (!m->stream_ids)
			abort();
	}
	m->stream_ids[m->nstreams++] = s->id;
	pthread_mutex_unlock(&m->lock);
}

/* Applies fn to every stream of m with direction dir (0: all). */
static void mux_each_stream(struct mux *m, int dir, bool targeted_only,
			    void (*fn)(struct stream *, const char *),
			    const char *why)
{
	struct stream *s;
	int i;

	pthread_mutex_lock(&m->lock);
	for (i = 0; i < m->nstreams; i++) {
		s = stream_get(m->stream_ids[i]);
		if (!s || (dir && s->dir != dir) ||
		    (targeted_only && !s->targeted))
			continue;
		fn(s, why);
	}
	pthread_mutex_unlock(&m->lock);
}

static void fn_lossable(struct stream *s, const char *why)
{
	(void)why;
	stream_lossable_now(s);
}

static void fn_any(struct stream *s, const char *why)
{
	stream_raise(s, LOSS_ANY, why);
}

static void fn_reorder_mark(struct stream *s, const char *why)
{
	uint64_t n = atomic_load(&s->next_seq), cur;

	(void)why;
	cur = atomic_load(&s->reorder_below);
	while (cur < n && !atomic_compare_exchange_weak(&s->reorder_below,
							&cur, n))
		;
}

/*
 * A KCM socket hands its queue to its siblings (receive disable, close):
 * those messages may arrive after later ones, at any time (the mux holds
 * them until a socket has room).  While that is under way no order is
 * checked on the mux (the socket still takes messages until the kernel
 * releases it, which may be after the close, when a call in flight on it
 * returns); once it is over, every message sent until then is exempt.
 */
static void requeue_begin(struct mux *m)
{
	atomic_fetch_add(&m->requeues, 1);
	atomic_fetch_add(&m->requeuing, 1);
	mux_each_stream(m, DIR_RX, false, fn_reorder_mark, NULL);
}

static void requeue_end(struct mux *m)
{
	mux_each_stream(m, DIR_RX, false, fn_reorder_mark, NULL);
	atomic_fetch_sub(&m->requeuing, 1);
}

static struct mux *mux_new(int type, uint32_t fixed_len, int netns)
{
	struct mux *m = calloc(1, sizeof(*m));

	if (!m)
		abort();
	m->serial = serial_new();
	m->type = type;
	m->fixed_len = fixed_len;
	m->netns = netns;
	pthread_mutex_init(&m->lock, NULL);
	return m;
}

/* tbl held. */
static void mux_put_locked(struct mux *m)
{
	int i;

	if (--m->refs)
		return;
	for (i = 0; i < nm; i++)
		if (mtab[i] == m) {
			mtab[i] = mtab[--nm];
			break;
		}
	free(m->stream_ids);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

static void unobservable_lossy_locked(struct mux *m);

static void ksock_put(struct ksock *k)
{
	struct mux *m = k->mux;

	if (atomic_fetch_sub(&k->refs, 1) != 1)
		return;
	/*
	 * Nobody is in a syscall on the fd any more: the kernel socket is
	 * released, its requeue is over.
	 */
	close(k->fd);
	requeue_end(m);
	pthread_rwlock_destroy(&k->rx_lock);
	pthread_rwlock_destroy(&k->tx_lock);
	pthread_mutex_lock(&tbl);
	unobservable_lossy_locked(m);
	mux_put_locked(m);
	pthread_mutex_unlock(&tbl);
	free(k);
}

/* A random live KCM socket, referenced; NULL if none.  not: skip this mux. */
static struct ksock *ksock_pick(uint64_t *rng, struct mux *only)
{
	struct ksock *k = NULL, *c;
	int i, n = 0;

	pthread_mutex_lock(&tbl);
	if (nk) {
		i = rnd_below(rng, nk);
		for (n = 0; n < nk; n++) {
			c = ktab[(i + n) % nk];
			if (!only || c->mux == only) {
				k = c;
				break;
			}
		}
	}
	if (k)
		atomic_fetch_add(&k->refs, 1);
	pthread_mutex_unlock(&tbl);
	return k;
}

static struct psock *psock_pick(uint64_t *rng, int state)
{
	struct psock *p = NULL, *c;
	int i, n;

	pthread_mutex_lock(&tbl);
	if (np) {
		i = rnd_below(rng, np);
		for (n = 0; n < np; n++) {
			c = ptab[(i + n) % np];
			if (state < 0 || c->state == state) {
				p = c;
				break;
			}
		}
	}
	if (p)
		atomic_fetch_add(&p->refs, 1);
	pthread_mutex_unlock(&tbl);
	return p;
}

static void psock_put(struct psock *p)
{
	if (atomic_fetch_sub(&p->refs, 1) != 1)
		return;
	if (p->fd >= 0)
		close(p->fd);
	if (p->peer_fd >= 0)
		close(p->peer_fd);
	pthread_mutex_destroy(&p->lock);
	free(p->wbuf);
	free(p->rbuf);
	pthread_mutex_lock(&tbl);
	mux_put_locked(p->mux);
	pthread_mutex_unlock(&tbl);
	free(p);
}

/*
 * A psock that was carrying a message of a KCM socket being closed gets
 * EPIPE and stops, in both directions.  We see that on the psocks we
 * still hold an fd of (the monitor, and a last look before closing one),
 * not on the others, whose received messages may then stay in TCP: from
 * the start of a close to the kernel's release of the socket (which may
 * come later, when a call in flight on it returns).  tbl held.
 */
static void unobservable_lossy_locked(struct mux *m)
{
	int i;

	for (i = 0; i < npeer; i++)
		if (peertab[i]->mux == m && peertab[i]->state == PS_FDCLOSED &&
		    peertab[i]->rx)
			stream_unobserved(peertab[i]->rx,
					  "KCM socket closed while its psock was unobservable");
}

/*
 * The last KCM socket of m is gone: the kernel unattaches every psock and
 * frees whatever is queued.  tbl held.
 */
static void mux_destroyed_locked(struct mux *m)
{
	int i;

	m->destroyed = true;
	live_muxes--;
	for (i = 0; i < npeer; i++)
		if (peertab[i]->mux == m) {
			atomic_store(&peertab[i]->kcm_gone, true);
			atomic_store(&peertab[i]->may_cut, true);
		}
	for (i = 0; i < np; i++)
		if (ptab[i]->mux == m)
			atomic_store(&ptab[i]->kcm_gone, true);
}

/*
 * Closes a KCM socket, from whatever thread, while others may be using
 * it: the fd number is pointed at a placeholder at once (so it cannot be
 * reused under them) and really closed when the last user is done.
 */
static bool ksock_kill(struct ksock *k)
{
	struct mux *m = k->mux;
	bool last;
	int i;

	pthread_mutex_lock(&tbl);
	if (atomic_exchange(&k->dead, true)) {
		pthread_mutex_unlock(&tbl);
		return false;
	}
	for (i = 0; i < nk; i++)
		if (ktab[i] == k) {
			ktab[i] = ktab[--nk];
			break;
		}
	last = --m->nsocks == 0;
	atomic_fetch_add(&m->sock_closes, 1);
	requeue_begin(m);
	/* Its unsent messages are dropped; a message it was writing is cut. */
	for (i = 0; i < MAX_THREADS; i++) {
		struct stream *s = stream_get(k->tx_stream[i]);
		struct stream *t = stream_get(k->tx_tstream[i]);

		if (s)
			stream_raise(s, LOSS_ANY, "its KCM socket was closed");
		if (t)
			stream_raise(t, LOSS_ANY, "its KCM socket was closed");
	}
	for (i = 0; i < npeer; i++)
		if (peertab[i]->mux == m)
			atomic_store(&peertab[i]->may_cut, true);
	unobservable_lossy_locked(m);
	if (last) {
		mux_destroyed_locked(m);
		pthread_mutex_unlock(&tbl);
		mux_each_stream(m, 0, false, fn_any, "multiplexor destroyed");
	} else {
		pthread_mutex_unlock(&tbl);
	}
	if (dup2(placeholder, k->fd) < 0)
		fail(OP_CLOSE_KCM, "dup2 over fd %d: %s", k->fd, strerror(errno));
	ksock_put(k);	/* the table's reference */
	return true;
}

/* Closes our end of a psock's TCP connection (see ksock_kill). */
static void psock_kill_fd(struct psock *p)
{
	int i;

	pthread_mutex_lock(&tbl);
	if (atomic_exchange(&p->dead, true)) {
		pthread_mutex_unlock(&tbl);
		return;
	}
	for (i = 0; i < np; i++)
		if (ptab[i] == p) {
			ptab[i] = ptab[--np];
			break;
		}
	pthread_mutex_unlock(&tbl);
	if (dup2(placeholder, p->fd) < 0)
		fail(OP_CLOSE_TCP, "dup2 over fd %d: %s", p->fd, strerror(errno));
	psock_put(p);
}

static bool ksock_register(struct ksock *k, struct mux *m, bool new_mux)
{
	bool ok = false;

	pthread_mutex_lock(&tbl);
	if (nk < MAX_KSOCKS && (new_mux || !m->destroyed)) {
		if (new_mux) {
			mtab[nm++] = m;
			live_muxes++;
		}
		k->mux = m;
		m->refs++;
		m->nsocks++;
		atomic_store(&k->refs, 1);
		ktab[nk++] = k;
		ok = true;
	}
	pthread_mutex_unlock(&tbl);
	return ok;
}

static struct ksock *ksock_alloc(int fd, int type)
{
	struct ksock *k = calloc(1, sizeof(*k));
	pthread_rwlockattr_t a;

	if (!k)
		abort();
	k->fd = fd;
	k->type = type;
	k->serial = serial_new();
	pthread_rwlockattr_init(&a);
	pthread_rwlockattr_setkind_np(&a,
		PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&k->rx_lock, &a);
	pthread_rwlock_init(&k->tx_lock, &a);
	pthread_rwlockattr_destroy(&a);
	return k;
}

/* --- per-thread context --------------------------------------------------- */

#define ORDER_SLOTS	4096

/* Last message a thread took from (KCM socket, stream), for ordering. */
struct order_slot {
	uint64_t key;		/* ksock serial << 32 | stream id; 0 free */
	uint64_t seq;
	bool valid;
};

struct wctx {
	int idx;
	uint64_t rng;
	uint8_t *buf;		/* MAX_MSG + slack: one message */
	uint8_t *buf2;
	int pipe[2];		/* for splice */
	int epfd;
	struct order_slot *order;
};

static void wctx_init(struct wctx *w, int idx, uint64_t seed)
{
	memset(w, 0, sizeof(*w));
	w->idx = idx;
	w->rng = thread_seed(seed, idx);
	w->buf = malloc(MAX_MSG + 4096);
	w->buf2 = malloc(MAX_MSG + 4096);
	w->order = calloc(ORDER_SLOTS, sizeof(*w->order));
	if (!w->buf || !w->buf2 || !w->order)
		abort();
	if (pipe2(w->pipe, O_CLOEXEC))
		abort();
	/* A whole message fits: splice never has to wait for the reader. */
	fcntl(w->pipe[0], F_SETPIPE_SZ, 1 << 20);
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	my_idx = idx;
}

static void wctx_fini(struct wctx *w)
{
	free(w->buf);
	free(w->buf2);
	free(w->order);
	close(w->pipe[0]);
	close(w->pipe[1]);
	if (w->epfd >= 0)
		close(w->epfd);
}

static struct order_slot *order_slot(struct wctx *w, uint32_t ks,
				     uint32_t stream)
{
	uint64_t key = (uint64_t)ks << 32 | stream;
	uint32_t h = (uint32_t)mix64(key) % ORDER_SLOTS, i;
	struct order_slot *o;

	for (i = 0; i < 8; i++) {
		o = &w->order[(h + i) % ORDER_SLOTS];
		if (o->key == key || !o->key)
			break;
	}
	if (o->key != key) {
		o->key = key;
		o->valid = false;
	}
	return o;
}

/* --- verifying what a KCM socket gave us -------------------------------- */

struct rx_info {
	enum op op;
	size_t n;		/* bytes we got, from the message start */
	size_t full;		/* the message's length if known (truncation) */
	bool peek;
	bool truncated;		/* only a prefix was delivered, rest dropped */
	uint32_t origin;	/* psock id from the control message, 0 none */
	int msg_flags;
	bool flags_known;
};

static bool all_zero(const uint8_t *p, size_t n)
{
	while (n--)
		if (*p++)
			return false;
	return true;
}

/*
 * Checks one message (or its prefix) read from KCM socket k and records
 * it as seen.  False if it was bad (already reported).
 */
static bool rx_verify(struct wctx *w, struct ksock *k, const uint8_t *buf,
		      const struct rx_info *ri)
{
	struct wire_hdr h;
	struct stream *s;
	size_t len, body, bad;
	struct order_slot *o;

	if (ri->n < HDR_LEN) {
		fail(ri->op, "ksock %u: %zu bytes, shorter than any message",
		     k->serial, ri->n);
		return false;
	}
	if (!hdr_ok(buf, &h)) {
		const uint32_t *w32 = (const uint32_t *)buf;

		fail(ri->op, "ksock %u (mux %u, %s, %s%u): corrupt header (%zu bytes%s): %08x %08x %08x %08x %08x %08x %08x %08x",
		     k->serial, k->mux->serial,
		     k->type == SOCK_DGRAM ? "DGRAM" : "SEQPACKET",
		     k->mux->fixed_len ? "fixed length " : "length header",
		     k->mux->fixed_len, ri->n,
		     all_zero(buf, ri->n) ? ", all zero" : "", ntohl(w32[0]),
		     ntohl(w32[1]), ntohl(w32[2]), ntohl(w32[3]), ntohl(w32[4]),
		     ntohl(w32[5]), ntohl(w32[6]), ntohl(w32[7]));
		return false;
	}
	len = ntohl(h.len_be);
	s = stream_get(h.stream);
	if (!s || s->dir != DIR_RX) {
		fail(ri->op, "ksock %u: message of unknown stream %u seq %llu",
		     k->serial, h.stream, (unsigned long long)h.seq);
		return false;
	}
	if (s->mux_serial != k->mux->serial) {
		fail(ri->op, "ksock %u of mux %u got a message of mux %u (stream %u seq %llu)",
		     k->serial, k->mux->serial, s->mux_serial, h.stream,
		     (unsigned long long)h.seq);
		return false;
	}
	if (h.seq >= atomic_load(&s->next_seq)) {
		fail(ri->op, "stream %u: seq %llu never sent", s->id,
		     (unsigned long long)h.seq);
		return false;
	}
	if (ri->truncated ? len <= ri->n : len != ri->n) {
		fail(ri->op, "stream %u seq %llu: %zu bytes for a %zu-byte message%s",
		     s->id, (unsigned long long)h.seq, ri->n, len,
		     ri->truncated ? " (truncated read)" : "");
		return false;
	}
	if (ri->full && ri->full != len) {
		fail(ri->op, "stream %u seq %llu: reported length %zu, message has %zu",
		     s->id, (unsigned long long)h.seq, ri->full, len);
		return false;
	}
	if (k->mux->fixed_len && len != k->mux->fixed_len) {
		fail(ri->op, "stream %u seq %llu: %zu bytes on a mux framing %u",
		     s->id, (unsigned long long)h.seq, len, k->mux->fixed_len);
		return false;
	}
	body = ri->n - HDR_LEN;
	bad = body_check(buf + HDR_LEN, body, s->id, h.seq);
	if (bad != body) {
		fail(ri->op, "stream %u seq %llu: body corrupt at byte %zu of %zu",
		     s->id, (unsigned long long)h.seq, bad + HDR_LEN, len);
		return false;
	}
	if (!ri->truncated && body_sum(buf + HDR_LEN, body) != h.body_sum) {
		fail(ri->op, "stream %u seq %llu: body checksum", s->id,
		     (unsigned long long)h.seq);
		return false;
	}
	if (ri->origin && atomic_load(&s->psock_id) &&
	    ri->origin != atomic_load(&s->psock_id)) {
		fail(ri->op, "stream %u seq %llu: origin psock %u, sent on psock %u",
		     s->id, (unsigned long long)h.seq, ri->origin,
		     atomic_load(&s->psock_id));
		return false;
	}
	if (ri->flags_known && !cfg.reference && !ri->truncated &&
	    !(ri->msg_flags & MSG_EOR)) {
		fail(ri->op, "stream %u seq %llu: whole message without MSG_EOR",
		     s->id, (unsigned long long)h.seq);
		return false;
	}
	if (ri->peek) {
		atomic_fetch_add(&st.rx_peeked, 1);
		return true;
	}
	if (bm_set(&s->seen, h.seq)) {
		fail(ri->op, "stream %u seq %llu: delivered twice (now on ksock %u)",
		     s->id, (unsigned long long)h.seq, k->serial);
		return false;
	}
	atomic_fetch_add(&s->nseen, 1);
	atomic_fetch_add(&st.rx_verified, 1);
	if (ri->truncated)
		atomic_fetch_add(&st.truncated, 1);

	/*
	 * One thread's successive reads of one socket come off its queue in
	 * order, and a stream's messages enter it in order, except those a
	 * requeue moved (requeue_mark).
	 */
	o = order_slot(w, k->serial, s->id);
	if (o->valid && h.seq >= atomic_load(&s->reorder_below) &&
	    !atomic_load(&k->mux->requeuing)) {
		atomic_fetch_add(&st.order_checks, 1);
		if (h.seq <= o->seq)
			fail(ri->op, "stream %u (psock %u, mux %u): seq %llu after seq %llu on ksock %u (requeues on the mux %d, none since seq %llu)",
			     s->id, s->owner, s->mux_serial,
			     (unsigned long long)h.seq, (unsigned long long)o->seq,
			     k->serial, atomic_load(&k->mux->requeues),
			     (unsigned long long)atomic_load(&s->reorder_below));
	}
	if (!o->valid || h.seq > o->seq)
		o->seq = h.seq;
	o->valid = true;
	return true;
}

/* --- small syscall helpers ------------------------------------------------ */

#define SYS(expr) ({ long __r = (long)(expr); __r < 0 ? -(long)errno : __r; })

static int set_timeo_ms(int fd, int name, int ms)
{
	return kcm_set_timeo(fd, name, ms);
}

/* The number of open fds of this process. */
static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1;	/* the directory itself */
}

/* Length of the next message a thread sends on mux m. */
static uint32_t msg_len_for(uint64_t *rng, const struct mux *m)
{
	uint32_t r;

	if (m->fixed_len)
		return m->fixed_len;
	r = rnd_below(rng, 100);
	if (r < 55)
		return HDR_LEN + rnd_below(rng, 225);
	if (r < 85)
		return 256 + rnd_below(rng, 3841);
	if (r < 97)
		return 4096 + rnd_below(rng, 60 * 1024);
	return 64 * 1024 + rnd_below(rng, MAX_MSG - 64 * 1024 + 1);
}

static uint32_t fixed_len_pick(uint64_t *rng)
{
	/* Mostly small: large fixed lengths make every message large. */
	static const uint8_t weight[NFIXED] = { 20, 20, 20, 15, 10, 8, 5, 2 };
	uint32_t r = rnd_below(rng, 100), acc = 0;
	int i;

	for (i = 0; i < NFIXED; i++) {
		acc += weight[i];
		if (r < acc)
			return i;
	}
	return 0;
}

static int fixed_index(uint32_t len)
{
	int i;

	for (i = 0; i < NFIXED; i++)
		if (fixed_lens[i] == len)
			return i;
	return 0;
}

/* --- attaching psocks ------------------------------------------------------ */

enum phase { PH_RUN, PH_DRAIN, PH_TEARDOWN, PH_DONE };
static atomic_int phase;
static atomic_bool writers_off;	/* drain: peers write no new messages */

static struct psock *psock_alloc(struct mux *m)
{
	struct psock *p = calloc(1, sizeof(*p));

	if (!p)
		abort();
	p->serial = serial_new();
	p->mux = m;
	p->fd = -1;
	p->peer_fd = -1;
	pthread_mutex_init(&p->lock, NULL);
	return p;
}

/*
 * Blocking write of a whole message on the peer before it is attached:
 * bytes queued before SIOCKCMATTACH must be framed too.
 */
static bool peer_prewrite(struct psock *p, uint64_t *rng, uint8_t *buf)
{
	uint32_t len = p->mux->fixed_len ? p->mux->fixed_len :
		       HDR_LEN + rnd_below(rng, 2000);
	uint64_t seq = atomic_fetch_add(&p->rx->next_seq, 1);

	if (len > 16384)
		return false;
	msg_build(buf, len, p->rx->id, seq, 0);
	if (kcm_send_all(p->peer_fd, buf, len))
		return false;
	stream_mark_sent(p->rx, seq);
	return true;
}

/* Variants of built-in framing that all decode our big-endian length. */
static void framing_pick(uint64_t *rng, struct kcmux_framing *f)
{
	memset(f, 0, sizeof(*f));
	f->offset = 0;
	f->width = 4;
	switch (rnd_below(rng, 3)) {
	case 0:
		break;
	case 1:
		/* Value counts from the field's end: adjust back by 4. */
		f->flags = KCMUX_FRAMING_EXCLUDES_HEADER;
		f->adjust = -4;
		break;
	case 2:
		/* A 3-byte field at offset 1: lengths stay below 16 MiB. */
		f->offset = 1;
		f->width = 3;
		break;
	}
	f->max_size = rnd_pct(rng, 50) ? 0 : MAX_MSG + rnd_below(rng, 4096);
}

/*
 * Attaches a fresh TCP connection to k's mux.  ext: SIOCKCMATTACH_EXT
 * (BPF or built-in framing).  The new psock is registered and its peer
 * starts writing; NULL if nothing was attached.
 */
static struct psock *attach_new(struct wctx *w, struct ksock *k, enum op op)
{
	struct kcm_tcp_opts o = { .rcvbuf = 4 << 20 };
	struct mux *m = k->mux;
	struct kcmux_attach xa;
	struct kcm_attach a;
	struct psock *p;
	int fds[2], bpf, pre, i;
	bool ext = op == OP_ATTACH_EXT && cfg.ext_attach;
	bool registered = false;
	long rc;

	o.nodelay = rnd_pct(&w->rng, 50);
	if (rnd_pct(&w->rng, 30))
		o.sndbuf = 4096 << rnd_below(&w->rng, 8);
	rc = kcm_tcp_pair_opts(rnd_pct(&w->rng, 60) ? AF_INET : AF_INET6, fds,
			       &o);
	if (rc) {
		/* Ports or memory of the test machine, not the module. */
		judge(op, rc, ERRS(EADDRNOTAVAIL, EADDRINUSE, EMFILE, ENFILE,
				   ENOMEM, ENOBUFS), false, "TCP connection");
		return NULL;
	}
	/* fds[1] (accepted) has the big receive buffer: it is ours. */
	p = psock_alloc(m);
	p->fd = fds[1];
	p->peer_fd = fds[0];
	p->wrng = mix64(w->rng ^ p->serial) | 1;
	p->closes_at_attach = atomic_load(&m->sock_closes);
	p->chunk_mode = rnd_below(&w->rng, 4);
	p->rx = stream_new(DIR_RX, m->serial, p->serial);
	p->rx->netns = m->netns;
	mux_add_stream(m, p->rx);

	pre = rnd_pct(&w->rng, 30) ? 1 + rnd_below(&w->rng, 2) : 0;
	for (i = 0; i < pre; i++)
		if (!peer_prewrite(p, &w->rng, w->buf2))
			break;

	if (m->fixed_len)
		bpf = bpf_fixed[fixed_index(m->fixed_len)];
	else
		bpf = bpf_var[rnd_below(&w->rng, 2)];

	if (ext) {
		memset(&xa, 0, sizeof(xa));
		xa.size = sizeof(xa);
		xa.fd = p->fd;
		if (!m->fixed_len && rnd_pct(&w->rng, 60)) {
			xa.flags = KCMUX_ATTACH_FRAMING;
			framing_pick(&w->rng, &xa.framing);
		} else {
			xa.flags = KCMUX_ATTACH_BPF;
			xa.bpf_fd = bpf;
		}
		rc = SYS(ioctl(k->fd, SIOCKCMATTACH_EXT, &xa));
		if (rc >= 0)
			atomic_store(&p->psock_id, xa.psock_id);
	} else {
		a.fd = p->fd;
		a.bpf_fd = bpf;
		rc = SYS(ioctl(k->fd, SIOCKCMATTACH, &a));
	}
	if (!judge(op, rc, NOERRS, atomic_load(&k->dead), "SIOCKCMATTACH")) {
		/* Messages written before the attach die with the connection. */
		stream_raise(p->rx, LOSS_ANY, "attach failed");
		close(p->fd);
		close(p->peer_fd);
		p->fd = p->peer_fd = -1;
		atomic_store(&p->refs, 1);
		pthread_mutex_lock(&tbl);
		m->refs++;
		pthread_mutex_unlock(&tbl);
		psock_put(p);
		return NULL;
	}
	if (ext && !xa.psock_id)
		fail(op, "SIOCKCMATTACH_EXT returned psock id 0");
	if (!ext && cfg.ext_psockid) {
		struct kcmux_psock_id q = { .fd = p->fd };

		rc = SYS(ioctl(k->fd, SIOCKCMPSOCKID, &q));
		/* The psock may already be gone with a mux closed under us. */
		if (judge(OP_PSOCKID, rc, ERRS(ENOENT), atomic_load(&k->dead),
			  "SIOCKCMPSOCKID after attach"))
			atomic_store(&p->psock_id, q.psock_id);
	}
	atomic_store(&p->rx->psock_id, atomic_load(&p->psock_id));
	p->state = PS_ATTACHED;

	pthread_mutex_lock(&tbl);
	if (np < MAX_PSOCKS && npeer < MAX_PEERS) {
		m->refs++;
		atomic_store(&p->refs, 2);	/* ptab + peertab */
		ptab[np++] = p;
		peertab[npeer++] = p;
		p->on_peers = true;
		registered = true;
		if (m->destroyed) {
			atomic_store(&p->kcm_gone, true);
			atomic_store(&p->may_cut, true);
		}
	}
	pthread_mutex_unlock(&tbl);
	if (m->destroyed)
		stream_raise(p->rx, LOSS_ANY, "attached to a dying multiplexor");
	if (!registered) {
		/* Table full (cannot happen with the caps): give it back. */
		stream_raise(p->rx, LOSS_ANY, "no room in the tables");
		atomic_store(&p->kcm_gone, true);
		kcm_unattach(k->fd, p->fd);
		close(p->fd);
		close(p->peer_fd);
		p->fd = p->peer_fd = -1;
		atomic_store(&p->refs, 1);
		pthread_mutex_lock(&tbl);
		m->refs++;
		pthread_mutex_unlock(&tbl);
		psock_put(p);
		return NULL;
	}
	return p;
}

/* --- KCM socket operations --------------------------------------------------- */

/* Sockets get bounded timeouts: no call may block for long. */
static void ksock_setup_fd(struct wctx *w, int fd)
{
	set_timeo_ms(fd, SO_RCVTIMEO, 20 + rnd_below(&w->rng, 150));
	set_timeo_ms(fd, SO_SNDTIMEO, 20 + rnd_below(&w->rng, 150));
}

static void op_close_kcm(struct wctx *w)
{
	struct ksock *k = ksock_pick(&w->rng, NULL);

	if (!k)
		return;
	atomic_fetch_add(&st.runs[OP_CLOSE_KCM], 1);
	if (ksock_kill(k))
		atomic_fetch_add(&st.ok[OP_CLOSE_KCM], 1);
	ksock_put(k);
}

static struct ksock *ksock_create(struct wctx *w, int netns)
{
	int type = rnd_pct(&w->rng, 50) ? SOCK_DGRAM : SOCK_SEQPACKET;
	int flags = rnd_pct(&w->rng, 15) ? SOCK_NONBLOCK : 0;
	struct ksock *k;
	struct mux *m;
	uint32_t fixed = 0;
	long fd;

	fd = SYS(socket(AF_KCM, type | SOCK_CLOEXEC | flags, KCMPROTO_CONNECTED));
	if (!judge(OP_SOCKET, fd, ERRS(EMFILE, ENFILE), false, "socket(AF_KCM)"))
		return NULL;
	ksock_setup_fd(w, fd);
	/*
	 * In-tree KCM runs the parser on the TCP skb from its start, not the
	 * message's (Documentation/kcmux.rst): only a parser that ignores
	 * the bytes frames any stream there.
	 */
	if (cfg.reference || rnd_pct(&w->rng, 35))
		fixed = fixed_lens[fixed_len_pick(&w->rng)];
	m = mux_new(type, fixed, netns);
	k = ksock_alloc(fd, type);
	if (!ksock_register(k, m, true)) {
		close(fd);
		pthread_rwlock_destroy(&k->rx_lock);
		pthread_rwlock_destroy(&k->tx_lock);
		free(k);
		pthread_mutex_destroy(&m->lock);
		free(m);
		return NULL;
	}
	return k;
}

static void op_socket(struct wctx *w)
{
	bool full;

	pthread_mutex_lock(&tbl);
	full = live_muxes >= cfg.max_muxes || nk >= cfg.max_ksocks;
	pthread_mutex_unlock(&tbl);
	if (full) {
		if (!(cfg.skip_ops & (1ull << OP_CLOSE_KCM)))
			op_close_kcm(w);
		return;
	}
	ksock_create(w, 0);
}

static void op_clone(struct wctx *w)
{
	struct ksock *k, *c;
	struct kcm_clone cl = { .fd = -1 };
	bool full;
	long rc;

	pthread_mutex_lock(&tbl);
	full = nk >= cfg.max_ksocks;
	pthread_mutex_unlock(&tbl);
	if (full) {
		if (!(cfg.skip_ops & (1ull << OP_CLOSE_KCM)))
			op_close_kcm(w);
		return;
	}
	k = ksock_pick(&w->rng, NULL);
	if (!k)
		return;
	rc = SYS(ioctl(k->fd, SIOCKCMCLONE, &cl));
	if (judge(OP_CLONE, rc, ERRS(EMFILE, ENFILE), atomic_load(&k->dead),
		  "SIOCKCMCLONE") && cl.fd >= 0) {
		fcntl(cl.fd, F_SETFD, FD_CLOEXEC);
		ksock_setup_fd(w, cl.fd);
		c = ksock_alloc(cl.fd, k->type);
		if (!ksock_register(c, k->mux, false)) {
			/* The mux died under us: the clone goes with it. */
			close(cl.fd);
			pthread_rwlock_destroy(&c->rx_lock);
			pthread_rwlock_destroy(&c->tx_lock);
			free(c);
		}
	}
	ksock_put(k);
}

/* --- sending ---------------------------------------------------------------- */

static struct stream *tx_stream(struct wctx *w, struct ksock *k, bool targeted)
{
	uint32_t *slot = targeted ? &k->tx_tstream[w->idx] :
				    &k->tx_stream[w->idx];
	struct stream *s;

	if (*slot)
		return stream_get(*slot);
	s = stream_new(DIR_TX, k->mux->serial, k->serial);
	s->targeted = targeted;
	mux_add_stream(k->mux, s);
	pthread_mutex_lock(&tbl);
	*slot = s->id;
	/* Closed before we registered: ksock_kill did not see the stream. */
	if (atomic_load(&k->dead))
		stream_raise(s, LOSS_ANY, "its KCM socket was closed");
	pthread_mutex_unlock(&tbl);
	return s;
}

/* Flags that end a message on this socket type. */
static int eor_flags(const struct ksock *k)
{
	return k->type == SOCK_SEQPACKET ? MSG_EOR : 0;
}

static int rand_send_flags(struct wctx *w)
{
	int f = 0;

	if (rnd_pct(&w->rng, 30))
		f |= MSG_DONTWAIT;
	if (rnd_pct(&w->rng, 70))
		f |= MSG_NOSIGNAL;
	return f;
}

/* iov over buf, cut at random points. */
static int iov_split(struct wctx *w, struct iovec *iov, int max, uint8_t *buf,
		     size_t len)
{
	int n = 1 + rnd_below(&w->rng, max), i;
	size_t off = 0, piece;

	for (i = 0; i < n - 1 && off < len; i++) {
		piece = rnd_below(&w->rng, (uint32_t)(len - off) + 1);
		iov[i].iov_base = buf + off;
		iov[i].iov_len = piece;
		off += piece;
	}
	iov[i].iov_base = buf + off;
	iov[i].iov_len = len - off;
	return i + 1;
}

static void sigpipe_check(enum op op, unsigned long before, struct ksock *k,
			  int flags)
{
	if (my_sigpipes == before)
		return;
	atomic_fetch_add(&st.sigpipes, my_sigpipes - before);
	if (atomic_load(&k->dead))
		return;
	atomic_fetch_add(&st.sigpipes_live, 1);
	if (!cfg.reference && (flags & MSG_NOSIGNAL))
		fail(op, "SIGPIPE on a send with MSG_NOSIGNAL on live ksock %u",
		     k->serial);
}

/* One whole message in one call: send, sendto, write or sendmsg. */
static void op_send(struct wctx *w, struct ksock *k)
{
	struct stream *s = tx_stream(w, k, false);
	uint32_t len = msg_len_for(&w->rng, k->mux);
	uint64_t seq = atomic_fetch_add(&s->next_seq, 1);
	unsigned long pipes = my_sigpipes;
	int flags = rand_send_flags(w) | eor_flags(k), how, niov;
	bool excl = cfg.reference && k->type == SOCK_SEQPACKET;
	struct iovec iov[8];
	struct msghdr mh = { 0 };
	long rc;

	msg_build(w->buf, len, s->id, seq, 0);
	if (excl)
		pthread_rwlock_wrlock(&k->tx_lock);
	else
		pthread_rwlock_rdlock(&k->tx_lock);
	how = rnd_below(&w->rng, 4);
	switch (how) {
	case 0:
		rc = SYS(send(k->fd, w->buf, len, flags));
		break;
	case 1:
		rc = SYS(sendto(k->fd, w->buf, len, flags, NULL, 0));
		break;
	case 2:
		flags = 0;	/* write() ends a message on both types */
		rc = SYS(write(k->fd, w->buf, len));
		break;
	default:
		niov = iov_split(w, iov, 8, w->buf, len);
		mh.msg_iov = iov;
		mh.msg_iovlen = niov;
		rc = SYS(sendmsg(k->fd, &mh, flags));
		break;
	}
	if (judge(OP_SEND, rc, ERRS(EAGAIN), atomic_load(&k->dead), "send")) {
		if ((uint32_t)rc == len) {
			stream_mark_sent(s, seq);
		} else if (!atomic_load(&k->dead)) {
			/*
			 * Some bytes are in a message we cannot finish.  In-tree
			 * KCM returns a short count when a SEQPACKET send fails
			 * after copying some bytes; kcmux adds nothing then.
			 */
			if (cfg.reference && k->type == SOCK_SEQPACKET)
				atomic_fetch_add(&st.partial_sends, 1);
			else
				fail(OP_SEND, "ksock %u: sent %ld of %u bytes",
				     k->serial, rc, len);
			stream_raise(s, LOSS_ANY, "partial send");
			pthread_rwlock_unlock(&k->tx_lock);
			ksock_kill(k);
			return;
		}
	}
	pthread_rwlock_unlock(&k->tx_lock);
	sigpipe_check(OP_SEND, pipes, k, how == 2 ? 0 : flags);
}

static void op_sendmmsg(struct wctx *w, struct ksock *k)
{
	struct stream *s = tx_stream(w, k, false);
	int n = 2 + rnd_below(&w->rng, 7), i;
	int flags = rand_send_flags(w) | eor_flags(k);
	unsigned long pipes = my_sigpipes;
	struct mmsghdr mm[8];
	struct iovec iov[8];
	uint64_t seq0;
	size_t off = 0;
	uint32_t len;
	long rc;

	memset(mm, 0, sizeof(mm));
	seq0 = atomic_fetch_add(&s->next_seq, n);
	for (i = 0; i < n; i++) {
		len = msg_len_for(&w->rng, k->mux);
		if (off + len > MAX_MSG) {
			n = i;
			break;
		}
		msg_build(w->buf + off, len, s->id, seq0 + i, 0);
		iov[i].iov_base = w->buf + off;
		iov[i].iov_len = len;
		mm[i].msg_hdr.msg_iov = &iov[i];
		mm[i].msg_hdr.msg_iovlen = 1;
		off += len;
	}
	if (!n)
		return;
	pthread_rwlock_rdlock(&k->tx_lock);
	rc = SYS(sendmmsg(k->fd, mm, n, flags));
	if (judge(OP_SENDMMSG, rc, ERRS(EAGAIN), atomic_load(&k->dead),
		  "sendmmsg")) {
		for (i = 0; i < rc; i++) {
			if (mm[i].msg_len != iov[i].iov_len &&
			    !atomic_load(&k->dead))
				fail(OP_SENDMMSG, "message %d: %u of %zu bytes",
				     i, mm[i].msg_len, iov[i].iov_len);
			else
				stream_mark_sent(s, seq0 + i);
		}
	}
	pthread_rwlock_unlock(&k->tx_lock);
	sigpipe_check(OP_SENDMMSG, pipes, k, flags);
}

/*
 * Keeps trying one part of a message built over several calls: the
 * earlier parts are in the socket, so giving up means closing it.
 */
static bool send_part(struct wctx *w, struct ksock *k, enum op op,
		      const void *buf, size_t len, int flags, uint64_t deadline)
{
	unsigned long pipes = my_sigpipes;
	long rc;

	(void)w;
	for (;;) {
		rc = SYS(send(k->fd, buf, len, flags));
		sigpipe_check(op, pipes, k, flags);
		if (atomic_load(&k->dead))
			return false;
		if (rc == (long)len)
			return true;
		if (rc >= 0) {
			fail(op, "ksock %u: part of %zu bytes, %ld sent",
			     k->serial, len, rc);
			return false;
		}
		if (!judge(op, rc, ERRS(EAGAIN), false, "send part") &&
		    rc != -EAGAIN && !fault_errno((int)-rc))
			return false;
		if (now_ms() > deadline || atomic_load(&phase) != PH_RUN)
			return false;
		kcm_poll(k->fd, POLLOUT, 20);
	}
}

/* A message in 2-5 calls: MSG_MORE (DGRAM) or without MSG_EOR (SEQPACKET). */
static void op_send_more(struct wctx *w, struct ksock *k)
{
	struct stream *s = tx_stream(w, k, false);
	uint32_t len = msg_len_for(&w->rng, k->mux);
	uint64_t seq = atomic_fetch_add(&s->next_seq, 1);
	uint64_t deadline = now_ms() + 3000;
	int parts = 2 + rnd_below(&w->rng, 4), i;
	int more = k->type == SOCK_DGRAM ? MSG_MORE : 0;
	size_t off = 0, piece;
	bool ok = true;

	msg_build(w->buf, len, s->id, seq, 0);
	if (pthread_rwlock_wrlock(&k->tx_lock))
		return;
	atomic_fetch_add(&st.runs[OP_SEND_MORE], 1);
	for (i = 0; i < parts - 1 && ok; i++) {
		piece = rnd_below(&w->rng, (uint32_t)(len - off) + 1);
		ok = send_part(w, k, OP_SEND_MORE, w->buf + off, piece,
			       more | MSG_NOSIGNAL, deadline);
		off += piece;
	}
	/* The last part may be empty: it only ends the message. */
	if (ok)
		ok = send_part(w, k, OP_SEND_MORE, w->buf + off, len - off,
			       eor_flags(k) | MSG_NOSIGNAL, deadline);
	if (ok) {
		atomic_fetch_add(&st.ok[OP_SEND_MORE], 1);
		stream_mark_sent(s, seq);
	}
	pthread_rwlock_unlock(&k->tx_lock);
	if (!ok && !atomic_load(&k->dead)) {
		/* A half-built message would corrupt the next one. */
		stream_raise(s, LOSS_ANY, "abandoned a partial message");
		ksock_kill(k);
	}
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len) {
		n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

/* Reads exactly n bytes from a pipe; how many it got within timeout_ms. */
static ssize_t pipe_read_exact(int fd, void *buf, size_t n, int timeout_ms)
{
	uint64_t end = now_ms() + timeout_ms;
	size_t got = 0;
	ssize_t r;

	while (got < n && now_ms() < end) {
		r = read(fd, (char *)buf + got, n - got);
		if (r > 0)
			got += r;
		else if (r < 0 && errno == EAGAIN)
			kcm_poll(fd, POLLIN, 10);
		else if (r < 0 && errno == EINTR)
			continue;
		else
			break;
	}
	return got;
}

static void pipe_drain(int fd)
{
	char tmp[4096];

	while (read(fd, tmp, sizeof(tmp)) > 0)
		;
}

/* A whole message spliced from a pipe; SEQPACKET ends it with MSG_EOR. */
static void op_send_splice(struct wctx *w, struct ksock *k)
{
	struct stream *s = tx_stream(w, k, false);
	uint32_t len = msg_len_for(&w->rng, k->mux);
	uint64_t seq, deadline = now_ms() + 3000;
	unsigned long pipes = my_sigpipes;
	size_t left;
	bool ok = true;
	long rc;

	if (len > (1 << 20) - 4096)
		return;
	seq = atomic_fetch_add(&s->next_seq, 1);
	msg_build(w->buf, len, s->id, seq, 0);
	fcntl(w->pipe[0], F_SETFL, O_NONBLOCK);
	pipe_drain(w->pipe[0]);
	if (write_all(w->pipe[1], w->buf, len))
		return;
	if (pthread_rwlock_wrlock(&k->tx_lock)) {
		pipe_drain(w->pipe[0]);
		return;
	}
	left = len;
	while (left) {
		rc = SYS(splice(w->pipe[0], NULL, k->fd, NULL, left,
				rnd_pct(&w->rng, 50) ? SPLICE_F_NONBLOCK : 0));
		if (atomic_load(&k->dead)) {
			ok = false;
			break;
		}
		if (rc > 0) {
			left -= rc;
			continue;
		}
		if (!judge(OP_SEND_SPLICE, rc == 0 ? -EPIPE : rc, ERRS(EAGAIN),
			   false, "splice to KCM") && rc != -EAGAIN &&
		    !fault_errno((int)-rc)) {
			ok = false;
			break;
		}
		if (now_ms() > deadline || atomic_load(&phase) != PH_RUN) {
			ok = false;
			break;
		}
		kcm_poll(k->fd, POLLOUT, 20);
	}
	if (ok && k->type == SOCK_SEQPACKET)
		ok = send_part(w, k, OP_SEND_SPLICE, w->buf, 0,
			       MSG_EOR | MSG_NOSIGNAL, deadline);
	if (ok) {
		atomic_fetch_add(&st.runs[OP_SEND_SPLICE], 1);
		atomic_fetch_add(&st.ok[OP_SEND_SPLICE], 1);
		stream_mark_sent(s, seq);
	}
	pthread_rwlock_unlock(&k->tx_lock);
	pipe_drain(w->pipe[0]);
	sigpipe_check(OP_SEND_SPLICE, pipes, k, MSG_NOSIGNAL);
	if (!ok && !atomic_load(&k->dead)) {
		stream_raise(s, LOSS_ANY, "abandoned a spliced message");
		ksock_kill(k);
	}
}

/* A psock id of mux m we know of, or 0. */
static uint32_t psock_id_of_mux(uint64_t *rng, struct mux *m)
{
	uint32_t ids[MAX_PEERS], id;
	int i, n = 0;

	pthread_mutex_lock(&tbl);
	for (i = 0; i < npeer; i++)
		if (peertab[i]->mux == m && (id = atomic_load(&peertab[i]->psock_id)))
			ids[n++] = id;
	pthread_mutex_unlock(&tbl);
	return n ? ids[rnd_below(rng, n)] : 0;
}

/* sendmsg with a KCMUX_ORIGIN control message: that psock only. */
static void op_send_targeted(struct wctx *w, struct ksock *k)
{
	struct stream *s = tx_stream(w, k, true);
	uint32_t len = msg_len_for(&w->rng, k->mux), id;
	uint64_t seq;
	union {
		char buf[CMSG_SPACE(sizeof(uint32_t))];
		struct cmsghdr align;
	} cm;
	struct iovec iov;
	struct msghdr mh = { 0 };
	struct cmsghdr *c;
	bool bogus = false;
	int flags = rand_send_flags(w) | MSG_NOSIGNAL | eor_flags(k);
	long rc;

	id = psock_id_of_mux(&w->rng, k->mux);
	if (!id || rnd_pct(&w->rng, 10)) {
		/* Ids are allocated upwards from 1: this one is nobody's. */
		id = 0xfffffff0u + rnd_below(&w->rng, 15);
		bogus = true;
	}
	seq = atomic_fetch_add(&s->next_seq, 1);
	msg_build(w->buf, len, s->id, seq, id);
	iov.iov_base = w->buf;
	iov.iov_len = len;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cm.buf;
	mh.msg_controllen = sizeof(cm.buf);
	c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_KCM;
	c->cmsg_type = KCMUX_ORIGIN;
	c->cmsg_len = CMSG_LEN(sizeof(uint32_t));
	memcpy(CMSG_DATA(c), &id, sizeof(id));
	pthread_rwlock_rdlock(&k->tx_lock);
	rc = SYS(sendmsg(k->fd, &mh, flags));
	pthread_rwlock_unlock(&k->tx_lock);
	if (bogus && rc >= 0 && !atomic_load(&k->dead)) {
		fail(OP_SEND_TARGETED, "ksock %u: targeted send to unknown psock id %u succeeded",
		     k->serial, id);
		return;
	}
	if (judge(OP_SEND_TARGETED, rc, ERRS(EAGAIN, ENOENT, EPIPE),
		  atomic_load(&k->dead), "targeted sendmsg")) {
		if (rc == (long)len)
			stream_mark_sent(s, seq);
		else if (!atomic_load(&k->dead))
			fail(OP_SEND_TARGETED, "sent %ld of %u bytes", rc, len);
	}
}

/* --- receiving ----------------------------------------------------------------- */

static bool rx_lock(struct ksock *k, bool excl)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 1;
	return !(excl ? pthread_rwlock_timedwrlock(&k->rx_lock, &ts) :
			pthread_rwlock_timedrdlock(&k->rx_lock, &ts));
}

static uint32_t origin_of(struct msghdr *mh)
{
	struct cmsghdr *c;
	uint32_t id = 0;

	for (c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c))
		if (c->cmsg_level == SOL_KCM && c->cmsg_type == KCMUX_ORIGIN &&
		    c->cmsg_len >= CMSG_LEN(sizeof(id)))
			memcpy(&id, CMSG_DATA(c), sizeof(id));
	return id;
}

/* A recv that returned rc into buf (full-size buffer, whole message). */
static void rx_whole(struct wctx *w, struct ksock *k, enum op op, long rc,
		     const uint8_t *buf, struct rx_info *ri, struct errset ok)
{
	if (rc > 0) {
		atomic_fetch_add(&st.runs[op], 1);
		atomic_fetch_add(&st.ok[op], 1);
		ri->op = op;
		ri->n = (size_t)rc;
		rx_verify(w, k, buf, ri);
		return;
	}
	if (rc == 0) {
		atomic_fetch_add(&st.runs[op], 1);
		if (!atomic_load(&k->dead))
			fail(op, "ksock %u: recv returned 0", k->serial);
		return;
	}
	judge(op, rc, ok, atomic_load(&k->dead), "recv");
}

static void op_recv(struct wctx *w, struct ksock *k, bool nonblock)
{
	union {
		char buf[CMSG_SPACE(sizeof(uint32_t)) + 64];
		struct cmsghdr align;
	} cm;
	struct rx_info ri = { 0 };
	struct msghdr mh = { 0 };
	struct iovec iov[8];
	int flags = 0, how = rnd_below(&w->rng, 4);
	long rc;

	if (how == 2 && rnd_pct(&w->rng, 80))
		how = 0;	/* read() always blocks */
	/* Blocking reads wait up to SO_RCVTIMEO: a few, not most. */
	if (nonblock || rnd_pct(&w->rng, 85))
		flags |= MSG_DONTWAIT;
	if (rnd_pct(&w->rng, 10))
		flags |= MSG_WAITALL;
	if (rnd_pct(&w->rng, 10))
		flags |= MSG_TRUNC;
	if (!rx_lock(k, false))
		return;
	switch (how) {
	case 0:
		rc = SYS(recv(k->fd, w->buf, MAX_MSG, flags));
		break;
	case 1:
		rc = SYS(recvfrom(k->fd, w->buf, MAX_MSG, flags, NULL, NULL));
		break;
	case 2:
		rc = SYS(read(k->fd, w->buf, MAX_MSG));
		break;
	default:
		mh.msg_iov = iov;
		mh.msg_iovlen = iov_split(w, iov, 8, w->buf, MAX_MSG);
		mh.msg_control = cm.buf;
		mh.msg_controllen = sizeof(cm.buf);
		rc = SYS(recvmsg(k->fd, &mh, flags));
		if (rc > 0) {
			ri.origin = origin_of(&mh);
			ri.msg_flags = mh.msg_flags;
			ri.flags_known = true;
		}
		break;
	}
	pthread_rwlock_unlock(&k->rx_lock);
	rx_whole(w, k, OP_RECV, rc, w->buf, &ri, ERRS(EAGAIN));
}

static uint8_t *mmsg_buf(void)
{
	static __thread uint8_t *b;

	if (!b) {
		b = malloc(8 * (size_t)MAX_MSG);
		if (!b)
			abort();
	}
	return b;
}

static void op_recvmmsg(struct wctx *w, struct ksock *k)
{
	uint8_t *b = mmsg_buf();
	struct mmsghdr mm[8];
	struct iovec iov[8];
	union {
		char buf[CMSG_SPACE(sizeof(uint32_t)) + 64];
		struct cmsghdr align;
	} cm[8];
	struct rx_info ri = { 0 };
	int n = 2 + rnd_below(&w->rng, 7), i;
	int flags = rnd_pct(&w->rng, 50) ? MSG_DONTWAIT : MSG_WAITFORONE;
	long rc;

	memset(mm, 0, sizeof(mm));
	for (i = 0; i < n; i++) {
		iov[i].iov_base = b + (size_t)i * MAX_MSG;
		iov[i].iov_len = MAX_MSG;
		mm[i].msg_hdr.msg_iov = &iov[i];
		mm[i].msg_hdr.msg_iovlen = 1;
		mm[i].msg_hdr.msg_control = cm[i].buf;
		mm[i].msg_hdr.msg_controllen = sizeof(cm[i].buf);
	}
	if (!rx_lock(k, false))
		return;
	rc = SYS(recvmmsg(k->fd, mm, n, flags, NULL));
	pthread_rwlock_unlock(&k->rx_lock);
	if (!judge(OP_RECVMMSG, rc, ERRS(EAGAIN), atomic_load(&k->dead),
		   "recvmmsg"))
		return;
	if (rc == 0 && !atomic_load(&k->dead))
		fail(OP_RECVMMSG, "ksock %u: recvmmsg returned 0 messages", k->serial);
	for (i = 0; i < rc; i++) {
		/* A closed socket's placeholder reads as end of file. */
		if (!mm[i].msg_len && atomic_load(&k->dead))
			continue;
		ri.op = OP_RECVMMSG;
		ri.n = mm[i].msg_len;
		ri.origin = origin_of(&mm[i].msg_hdr);
		ri.msg_flags = mm[i].msg_hdr.msg_flags;
		ri.flags_known = true;
		rx_verify(w, k, iov[i].iov_base, &ri);
	}
}

/* MSG_PEEK with a buffer of any size: a prefix, not consumed. */
static void op_recv_peek(struct wctx *w, struct ksock *k)
{
	struct rx_info ri = { .peek = true, .op = OP_RECV_PEEK };
	size_t b = HDR_LEN + rnd_below(&w->rng, rnd_pct(&w->rng, 50) ? 512 :
				       MAX_MSG - HDR_LEN + 1);
	int flags = MSG_PEEK | MSG_DONTWAIT;
	struct wire_hdr h;
	long rc;

	if (rnd_pct(&w->rng, 30))
		flags |= MSG_TRUNC;
	if (!rx_lock(k, false))
		return;
	rc = SYS(recv(k->fd, w->buf, b, flags));
	pthread_rwlock_unlock(&k->rx_lock);
	if (!judge(OP_RECV_PEEK, rc, ERRS(EAGAIN), atomic_load(&k->dead),
		   "recv(MSG_PEEK)") || rc == 0)
		return;
	ri.n = (size_t)rc < b ? (size_t)rc : b;
	if (ri.n >= HDR_LEN && hdr_ok(w->buf, &h) && ntohl(h.len_be) > ri.n) {
		ri.truncated = true;
		/* MSG_TRUNC: the message's length (kcmux, DGRAM). */
		if ((size_t)rc > b)
			ri.full = rc;
	}
	rx_verify(w, k, w->buf, &ri);
}

/* DGRAM: a short buffer, the rest of the message is dropped. */
static void op_recv_trunc(struct wctx *w, struct ksock *k)
{
	struct rx_info ri = { .op = OP_RECV_TRUNC };
	size_t b = HDR_LEN + rnd_below(&w->rng, 2048);
	int flags = MSG_DONTWAIT | (rnd_pct(&w->rng, 50) ? MSG_TRUNC : 0);
	struct msghdr mh = { 0 };
	struct iovec iov = { .iov_base = w->buf, .iov_len = b };
	struct wire_hdr h;
	size_t len;
	long rc;

	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	if (!rx_lock(k, false))
		return;
	rc = SYS(recvmsg(k->fd, &mh, flags));
	pthread_rwlock_unlock(&k->rx_lock);
	if (!judge(OP_RECV_TRUNC, rc, ERRS(EAGAIN), atomic_load(&k->dead),
		   "short recvmsg") || rc == 0)
		return;
	ri.n = (size_t)rc < b ? (size_t)rc : b;
	if (ri.n < HDR_LEN || !hdr_ok(w->buf, &h)) {
		rx_verify(w, k, w->buf, &ri);	/* reports it */
		return;
	}
	len = ntohl(h.len_be);
	if (len > b) {
		ri.truncated = true;
		if (!(mh.msg_flags & MSG_TRUNC))
			fail(OP_RECV_TRUNC, "truncated read of %zu of %zu bytes without MSG_TRUNC",
			     b, len);
		if ((flags & MSG_TRUNC) && (size_t)rc != len &&
		    !(cfg.reference && (size_t)rc == b))
			fail(OP_RECV_TRUNC, "MSG_TRUNC: returned %ld for a %zu-byte message",
			     rc, len);
		if (!(flags & MSG_TRUNC) && (size_t)rc != b)
			fail(OP_RECV_TRUNC, "returned %ld, copied %zu", rc, b);
	}
	rx_verify(w, k, w->buf, &ri);
}

/*
 * The rest of a message whose first got bytes (header included) are in
 * buf: by reads of random sizes, or splices.  Socket held exclusively.
 */
static bool rx_rest(struct wctx *w, struct ksock *k, enum op op, uint8_t *buf,
		    size_t got, size_t len, int *last_flags)
{
	struct msghdr mh = { 0 };
	struct iovec iov;
	size_t c;
	long rc;

	while (got < len) {
		c = 1 + rnd_below(&w->rng, (uint32_t)(len - got));
		if (rnd_pct(&w->rng, 20) && !cfg.reference) {
			fcntl(w->pipe[0], F_SETFL, O_NONBLOCK);
			rc = SYS(splice(k->fd, NULL, w->pipe[1], NULL, c,
					SPLICE_F_NONBLOCK));
			if (rc > 0 && pipe_read_exact(w->pipe[0], buf + got, rc,
						     KCM_WAIT_MS) != rc) {
				fail(op, "pipe lost spliced bytes");
				return false;
			}
			*last_flags = got + rc == len ? MSG_EOR : 0;
		} else {
			/* A short DGRAM read would drop the rest. */
			if (k->type == SOCK_DGRAM)
				c = len - got;
			iov.iov_base = buf + got;
			iov.iov_len = c;
			mh.msg_iov = &iov;
			mh.msg_iovlen = 1;
			mh.msg_flags = 0;
			rc = SYS(recvmsg(k->fd, &mh, MSG_DONTWAIT));
			if (rc > 0)
				*last_flags = mh.msg_flags;
		}
		/*
		 * A socket another thread is closing is still open until its
		 * fd is replaced: keep reading, or the next reader would take
		 * the rest for a message of its own.
		 */
		if (rc <= 0 && atomic_load(&k->dead))
			return false;
		if (rc <= 0) {
			fail(op, "ksock %u: rest of a %zu-byte message gone after %zu bytes (%s)",
			     k->serial, len, got, rc ? strerror((int)-rc) : "EOF");
			return false;
		}
		if ((size_t)rc > c) {
			fail(op, "asked %zu bytes, got %ld", c, rc);
			return false;
		}
		got += rc;
	}
	return true;
}

/*
 * We gave up on a message half read: its tail heads the queue and would
 * look corrupt to the next reader, so the socket goes (its streams'
 * loss rules account for the rest of its queue).
 */
static void rx_abandon(struct ksock *k)
{
	if (!atomic_load(&k->dead))
		ksock_kill(k);
}

/* SEQPACKET (kcmux): a message read in pieces; the rest stays queued. */
static void op_recv_partial(struct wctx *w, struct ksock *k)
{
	struct rx_info ri = { .op = OP_RECV_PARTIAL };
	size_t c = HDR_LEN + rnd_below(&w->rng, 4096);
	struct msghdr mh = { 0 };
	struct iovec iov = { .iov_base = w->buf, .iov_len = c };
	struct wire_hdr h;
	int last = 0;
	size_t len;
	long rc;

	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	if (!rx_lock(k, true))
		return;
	rc = SYS(recvmsg(k->fd, &mh, MSG_DONTWAIT));
	if (!judge(OP_RECV_PARTIAL, rc, ERRS(EAGAIN), atomic_load(&k->dead),
		   "recvmsg first piece") || rc == 0)
		goto out;
	ri.n = rc;
	if (rc < HDR_LEN || !hdr_ok(w->buf, &h)) {
		rx_verify(w, k, w->buf, &ri);
		goto out;
	}
	len = ntohl(h.len_be);
	last = mh.msg_flags;
	if ((size_t)rc < len && (last & MSG_EOR))
		fail(OP_RECV_PARTIAL, "MSG_EOR after %ld of %zu bytes", rc, len);
	if ((size_t)rc < len && !rx_rest(w, k, OP_RECV_PARTIAL, w->buf, rc, len,
					&last)) {
		/* Identified, cut off by a close: seen, not lost. */
		ri.truncated = true;
		rx_verify(w, k, w->buf, &ri);
		rx_abandon(k);
		goto out;
	}
	ri.n = len;
	ri.msg_flags = last;
	ri.flags_known = true;
	rx_verify(w, k, w->buf, &ri);
out:
	pthread_rwlock_unlock(&k->rx_lock);
}

/*
 * splice into a pipe.  kcmux keeps what a splice did not take (a splice
 * moves at most MAX_SKB_FRAGS pages), so the rest follows; in-tree drops
 * it, so there only messages that fit one splice are spliced.
 */
static void op_recv_splice(struct wctx *w, struct ksock *k)
{
	struct rx_info ri = { .op = OP_RECV_SPLICE };
	size_t want = MAX_MSG;
	struct wire_hdr h;
	int flags = 0, last = 0;
	size_t len;
	long rc;

	if (cfg.reference && (!k->mux->fixed_len || k->mux->fixed_len > 16384))
		return;
	if (!cfg.reference) {
		if (rnd_pct(&w->rng, 50))
			flags |= SPLICE_F_NONBLOCK;
		if (rnd_pct(&w->rng, 40))
			want = HDR_LEN + rnd_below(&w->rng, 8192);
	}
	fcntl(w->pipe[0], F_SETFL, O_NONBLOCK);
	pipe_drain(w->pipe[0]);
	if (!rx_lock(k, !cfg.reference))
		return;
	rc = SYS(splice(k->fd, NULL, w->pipe[1], NULL, want, flags));
	if (!judge(OP_RECV_SPLICE, rc, ERRS(EAGAIN), atomic_load(&k->dead),
		   "splice from KCM"))
		goto out;
	if (rc == 0) {
		if (!atomic_load(&k->dead))
			fail(OP_RECV_SPLICE, "ksock %u: splice returned 0", k->serial);
		goto out;
	}
	if (pipe_read_exact(w->pipe[0], w->buf, rc, KCM_WAIT_MS) != rc) {
		fail(OP_RECV_SPLICE, "pipe lost spliced bytes");
		goto out;
	}
	ri.n = rc;
	if (rc < HDR_LEN || !hdr_ok(w->buf, &h)) {
		rx_verify(w, k, w->buf, &ri);
		goto out;
	}
	len = ntohl(h.len_be);
	if ((size_t)rc < len) {
		if (cfg.reference) {
			fail(OP_RECV_SPLICE, "splice of a %zu-byte message returned %ld",
			     len, rc);
			goto out;
		}
		if (!rx_rest(w, k, OP_RECV_SPLICE, w->buf, rc, len, &last)) {
			ri.truncated = true;
			rx_verify(w, k, w->buf, &ri);
			rx_abandon(k);
			goto out;
		}
		ri.n = len;
	}
	rx_verify(w, k, w->buf, &ri);
out:
	pthread_rwlock_unlock(&k->rx_lock);
	pipe_drain(w->pipe[0]);
}

/* --- poll, epoll, options, ioctls ----------------------------------------- */

static int epfd_shared = -1;

/* Up to max fds of random objects, referenced (ks/ps hold them). */
static int pick_fds(struct wctx *w, int max, struct ksock **ks, int *nks,
		    struct psock **ps, int *nps)
{
	int i;

	*nks = *nps = 0;
	for (i = 0; i < max; i++) {
		if (rnd_pct(&w->rng, 60)) {
			ks[*nks] = ksock_pick(&w->rng, NULL);
			if (ks[*nks])
				(*nks)++;
		} else {
			ps[*nps] = psock_pick(&w->rng, -1);
			if (ps[*nps])
				(*nps)++;
		}
	}
	return *nks + *nps;
}

static void put_fds(struct ksock **ks, int nks, struct psock **ps, int nps)
{
	while (nks--)
		ksock_put(ks[nks]);
	while (nps--)
		psock_put(ps[nps]);
}

static short rand_events(struct wctx *w)
{
	static const short ev[] = { POLLIN, POLLOUT, POLLPRI, POLLRDHUP,
				    POLLRDNORM, POLLWRNORM };
	short e = 0;
	unsigned int i;

	for (i = 0; i < sizeof(ev) / sizeof(ev[0]); i++)
		if (rnd_pct(&w->rng, 40))
			e |= ev[i];
	return e;
}

static void op_poll(struct wctx *w)
{
	struct ksock *ks[6];
	struct psock *ps[6];
	struct pollfd pfd[6];
	int nks, nps, n, i;
	long rc;

	n = pick_fds(w, 1 + rnd_below(&w->rng, 6), ks, &nks, ps, &nps);
	if (!n)
		return;
	for (i = 0; i < nks; i++)
		pfd[i] = (struct pollfd){ .fd = ks[i]->fd, .events = rand_events(w) };
	for (i = 0; i < nps; i++)
		pfd[nks + i] = (struct pollfd){ .fd = ps[i]->fd,
						.events = rand_events(w) };
	rc = SYS(poll(pfd, n, rnd_below(&w->rng, 6)));
	if (judge(OP_POLL, rc, NOERRS, false, "poll"))
		for (i = 0; i < n; i++)
			if (pfd[i].revents & POLLNVAL)
				fail(OP_POLL, "POLLNVAL on fd %d we hold", pfd[i].fd);
	put_fds(ks, nks, ps, nps);
}

static void op_epoll(struct wctx *w)
{
	int ep = rnd_pct(&w->rng, 50) ? epfd_shared : w->epfd;
	struct epoll_event ev, out[8];
	struct ksock *ks[4];
	struct psock *ps[4];
	int nks, nps, i, fd, what;
	long rc;

	pick_fds(w, 1 + rnd_below(&w->rng, 4), ks, &nks, ps, &nps);
	for (i = 0; i < nks + nps; i++) {
		fd = i < nks ? ks[i]->fd : ps[i - nks]->fd;
		ev.events = (uint32_t)rand_events(w) |
			    (rnd_pct(&w->rng, 20) ? EPOLLET : 0) |
			    (rnd_pct(&w->rng, 10) ? EPOLLONESHOT : 0);
		ev.data.u64 = fd;
		what = rnd_below(&w->rng, 3);
		rc = SYS(epoll_ctl(ep, what == 0 ? EPOLL_CTL_ADD :
				   what == 1 ? EPOLL_CTL_MOD : EPOLL_CTL_DEL,
				   fd, &ev));
		/* Other threads add and remove the same fds. */
		judge(OP_EPOLL, rc, ERRS(EEXIST, ENOENT, ENOMEM), false,
		      "epoll_ctl");
	}
	rc = SYS(epoll_wait(ep, out, 8, rnd_below(&w->rng, 6)));
	judge(OP_EPOLL, rc, NOERRS, false, "epoll_wait");
	put_fds(ks, nks, ps, nps);
}

static void op_recv_disable(struct wctx *w, struct ksock *k)
{
	int val = rnd_pct(&w->rng, 40), got;
	socklen_t len = sizeof(got);
	long rc;

	requeue_begin(k->mux);
	rc = SYS(setsockopt(k->fd, SOL_KCM, KCM_RECV_DISABLE, &val, sizeof(val)));
	requeue_end(k->mux);
	if (judge(OP_RECV_DISABLE, rc, NOERRS, atomic_load(&k->dead),
		  "KCM_RECV_DISABLE")) {
		pthread_mutex_lock(&tbl);
		k->rx_disabled = val;
		pthread_mutex_unlock(&tbl);
	}
	rc = SYS(getsockopt(k->fd, SOL_KCM, KCM_RECV_DISABLE, &got, &len));
	if (judge(OP_RECV_DISABLE, rc, NOERRS, atomic_load(&k->dead),
		  "getsockopt KCM_RECV_DISABLE") &&
	    !atomic_load(&k->dead) && (len != sizeof(got) || got < 0 || got > 1))
		fail(OP_RECV_DISABLE, "getsockopt KCM_RECV_DISABLE: %d (len %u)",
		     got, len);
}

static void op_sockopt(struct wctx *w, struct ksock *k)
{
	static const int bufs[] = { 0, 1, 2048, 4096, 65536, 212992, 1 << 20 };
	int val, got, name;
	socklen_t len = sizeof(got);
	bool dead;
	long rc;

	switch (rnd_below(&w->rng, 6)) {
	case 0:
	case 1:
		name = rnd_pct(&w->rng, 50) ? SO_RCVBUF : SO_SNDBUF;
		if (rnd_pct(&w->rng, 30))
			name = name == SO_RCVBUF ? SO_RCVBUFFORCE : SO_SNDBUFFORCE;
		val = bufs[rnd_below(&w->rng, sizeof(bufs) / sizeof(bufs[0]))];
		rc = SYS(setsockopt(k->fd, SOL_SOCKET, name, &val, sizeof(val)));
		judge(OP_SOCKOPT, rc, NOERRS, atomic_load(&k->dead), "SO_*BUF");
		break;
	case 2:
		rc = SYS(set_timeo_ms(k->fd, rnd_pct(&w->rng, 50) ? SO_RCVTIMEO :
				      SO_SNDTIMEO, 1 + rnd_below(&w->rng, 300)));
		judge(OP_SOCKOPT, rc < 0 ? rc : 0, NOERRS, atomic_load(&k->dead),
		      "SO_*TIMEO");
		break;
	case 3:
		rc = SYS(getsockopt(k->fd, SOL_SOCKET, SO_TYPE, &got, &len));
		dead = atomic_load(&k->dead);
		if (judge(OP_SOCKOPT, rc, NOERRS, dead, "SO_TYPE") && !dead &&
		    got != k->type)
			fail(OP_SOCKOPT, "SO_TYPE %d, socket is %d", got, k->type);
		break;
	case 4:
		rc = SYS(getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &got, &len));
		dead = atomic_load(&k->dead);
		if (judge(OP_SOCKOPT, rc, NOERRS, dead, "SO_ERROR") && !dead &&
		    got)
			fail(OP_SOCKOPT, "SO_ERROR %d on KCM socket %u", got,
			     k->serial);
		break;
	default:
		/* Unknown option, short option: documented errors. */
		val = 1;
		rc = SYS(setsockopt(k->fd, SOL_KCM, 99, &val, sizeof(val)));
		dead = atomic_load(&k->dead);
		if (rc >= 0 && !dead)
			fail(OP_SOCKOPT, "SOL_KCM option 99 accepted");
		judge(OP_SOCKOPT, rc >= 0 ? -ENOPROTOOPT : rc, ERRS(ENOPROTOOPT),
		      dead, "SOL_KCM 99");
		rc = SYS(setsockopt(k->fd, SOL_KCM, KCM_RECV_DISABLE, &val, 2));
		dead = atomic_load(&k->dead);
		if (rc >= 0 && !dead)
			fail(OP_SOCKOPT, "KCM_RECV_DISABLE with optlen 2 accepted");
		judge(OP_SOCKOPT, rc >= 0 ? -EINVAL : rc, ERRS(EINVAL), dead,
		      "KCM_RECV_DISABLE optlen 2");
		break;
	}
}

static void op_origin(struct wctx *w, struct ksock *k)
{
	int val = rnd_pct(&w->rng, 60);
	long rc;

	rc = SYS(setsockopt(k->fd, SOL_KCM, KCMUX_ORIGIN, &val, sizeof(val)));
	if (judge(OP_ORIGIN, rc, NOERRS, atomic_load(&k->dead), "KCMUX_ORIGIN"))
		atomic_store(&k->origin, val);
}

static void op_inq(struct wctx *w, struct ksock *k)
{
	int v = -1;
	long rc;

	(void)w;
	rc = SYS(ioctl(k->fd, SIOCINQ, &v));
	if (judge(OP_INQ, rc, NOERRS, atomic_load(&k->dead), "FIONREAD") &&
	    !atomic_load(&k->dead) && (v < 0 || v > MAX_MSG))
		fail(OP_INQ, "FIONREAD %d on ksock %u", v, k->serial);
}

static void op_psockid(struct wctx *w)
{
	struct psock *p = psock_pick(&w->rng, -1);
	struct ksock *k;
	struct kcmux_psock_id q;
	bool same, expect;
	long rc;

	if (!p)
		return;
	k = ksock_pick(&w->rng, rnd_pct(&w->rng, 70) ? p->mux : NULL);
	if (!k) {
		psock_put(p);
		return;
	}
	pthread_mutex_lock(&p->lock);
	q.fd = p->fd;
	q.psock_id = 0;
	same = k->mux == p->mux;
	rc = SYS(ioctl(k->fd, SIOCKCMPSOCKID, &q));
	pthread_mutex_lock(&tbl);
	expect = same && p->state == PS_ATTACHED && !p->mux->destroyed &&
		 !atomic_load(&k->dead) && !atomic_load(&p->dead) &&
		 atomic_load(&p->psock_id);
	pthread_mutex_unlock(&tbl);
	if (expect && rc < 0)
		fail(OP_PSOCKID, "SIOCKCMPSOCKID of attached psock %u: %s",
		     p->serial, strerror((int)-rc));
	else if (expect && q.psock_id != atomic_load(&p->psock_id))
		fail(OP_PSOCKID, "SIOCKCMPSOCKID: %u, attach said %u", q.psock_id,
		     atomic_load(&p->psock_id));
	else if (!same && rc >= 0 && !atomic_load(&k->dead))
		fail(OP_PSOCKID, "SIOCKCMPSOCKID found psock %u in mux %u",
		     p->serial, k->mux->serial);
	judge(OP_PSOCKID, rc, ERRS(ENOENT), atomic_load(&k->dead), "SIOCKCMPSOCKID");
	pthread_mutex_unlock(&p->lock);
	ksock_put(k);
	psock_put(p);
}

static void op_proc(struct wctx *w)
{
	static const char *const files[] = { "/proc/net/kcm",
					      "/proc/net/kcm_stats" };
	int fd;
	long rc;

	fd = open(files[rnd_below(&w->rng, 2)], O_RDONLY | O_CLOEXEC);
	if (!judge(OP_PROC, fd < 0 ? -errno : 0, NOERRS, false, "open /proc/net/kcm*"))
		return;
	while ((rc = SYS(read(fd, w->buf2, 4096))) > 0)
		;
	judge(OP_PROC, rc, NOERRS, false, "read /proc/net/kcm*");
	close(fd);
}

/* --- hostile arguments: every one has a documented error ------------------ */

/*
 * Expects rc to be the error want (kcmux; on the reference any error, as
 * in-tree KCM reports some of these differently).  Success is a failure.
 */
static void expect_err(struct ksock *k, long rc, int want, const char *what)
{
	bool dead = k && atomic_load(&k->dead);

	atomic_fetch_add(&st.runs[OP_HOSTILE], 1);
	if (rc >= 0) {
		if (!dead)
			fail(OP_HOSTILE, "%s: succeeded, expected %s", what,
			     strerror(want));
		return;
	}
	atomic_fetch_add(&st.err[OP_HOSTILE][-rc < ERRNO_MAX ? -rc : 0], 1);
	if (dead || cfg.reference || -rc == want || fault_errno((int)-rc))
		return;
	fail(OP_HOSTILE, "%s: %s, expected %s", what, strerror((int)-rc),
	     strerror(want));
}

static void op_hostile(struct wctx *w, struct ksock *k)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sin);
	struct kcm_attach a;
	struct kcmux_attach xa;
	int fd, fds[2], p[2];
	long rc;

	switch (rnd_below(&w->rng, 12)) {
	case 0:
		rc = SYS(bind(k->fd, (struct sockaddr *)&sin, sizeof(sin)));
		expect_err(k, rc, EOPNOTSUPP, "bind");
		rc = SYS(listen(k->fd, 1));
		expect_err(k, rc, EOPNOTSUPP, "listen");
		break;
	case 1:
		rc = SYS(connect(k->fd, (struct sockaddr *)&sin, sizeof(sin)));
		expect_err(k, rc, EOPNOTSUPP, "connect");
		rc = SYS(getsockname(k->fd, (struct sockaddr *)&sin, &sl));
		expect_err(k, rc, EOPNOTSUPP, "getsockname");
		break;
	case 2:
		rc = SYS(shutdown(k->fd, SHUT_RDWR));
		expect_err(k, rc, EOPNOTSUPP, "shutdown");
		rc = SYS(accept(k->fd, NULL, NULL));
		expect_err(k, rc, EOPNOTSUPP, "accept");
		break;
	case 3:
		fd = socket(AF_KCM, SOCK_STREAM, 0);
		expect_err(NULL, fd < 0 ? -errno : fd, ESOCKTNOSUPPORT,
			   "socket(AF_KCM, SOCK_STREAM)");
		if (fd >= 0)
			close(fd);
		fd = socket(AF_KCM, SOCK_DGRAM, 1);
		expect_err(NULL, fd < 0 ? -errno : fd, EPROTONOSUPPORT,
			   "socket(AF_KCM, protocol 1)");
		if (fd >= 0)
			close(fd);
		break;
	case 4:
		/* A pipe is no socket. */
		if (pipe2(p, O_CLOEXEC))
			break;
		a.fd = p[0];
		a.bpf_fd = bpf_var[0];
		rc = SYS(ioctl(k->fd, SIOCKCMATTACH, &a));
		expect_err(k, rc, ENOENT, "attach a pipe");
		a.fd = k->fd;
		rc = SYS(ioctl(k->fd, SIOCKCMATTACH, &a));
		expect_err(k, rc, EOPNOTSUPP, "attach the KCM socket itself");
		close(p[0]);
		close(p[1]);
		break;
	case 5:
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			break;
		a.fd = fd;
		a.bpf_fd = bpf_var[0];
		rc = SYS(ioctl(k->fd, SIOCKCMATTACH, &a));
		expect_err(k, rc, EOPNOTSUPP, "attach an unconnected TCP socket");
		close(fd);
		fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			break;
		a.fd = fd;
		rc = SYS(ioctl(k->fd, SIOCKCMATTACH, &a));
		expect_err(k, rc, EOPNOTSUPP, "attach a UDP socket");
		close(fd);
		break;
	case 6:
	case 7:
		if (kcm_tcp_pair(AF_INET, fds))
			break;
		a.fd = fds[1];
		a.bpf_fd = -1;
		rc = SYS(ioctl(k->fd, SIOCKCMATTACH, &a));
		expect_err(k, rc, EBADF, "attach with bpf_fd -1");
		if (pipe2(p, O_CLOEXEC) == 0) {
			a.bpf_fd = p[0];
			rc = SYS(ioctl(k->fd, SIOCKCMATTACH, &a));
			expect_err(k, rc, EINVAL, "attach with a pipe as program");
			close(p[0]);
			close(p[1]);
		}
		rc = kcm_unattach(k->fd, fds[1]);
		expect_err(k, rc, ENOENT,
			   "unattach a socket never attached");
		if (cfg.ext_attach) {
			memset(&xa, 0, sizeof(xa));
			xa.size = 8;
			xa.fd = fds[1];
			rc = SYS(ioctl(k->fd, SIOCKCMATTACH_EXT, &xa));
			expect_err(k, rc, EINVAL, "SIOCKCMATTACH_EXT size 8");
			xa.size = sizeof(xa);
			xa.flags = KCMUX_ATTACH_BPF | KCMUX_ATTACH_FRAMING;
			rc = SYS(ioctl(k->fd, SIOCKCMATTACH_EXT, &xa));
			expect_err(k, rc, EINVAL, "SIOCKCMATTACH_EXT both kinds");
			xa.flags = KCMUX_ATTACH_FRAMING;
			xa.framing.width = 5;
			rc = SYS(ioctl(k->fd, SIOCKCMATTACH_EXT, &xa));
			expect_err(k, rc, EINVAL, "framing width 5");
			xa.framing.width = 4;
			xa.framing.offset = KCMUX_FRAMING_MAX_OFFSET;
			rc = SYS(ioctl(k->fd, SIOCKCMATTACH_EXT, &xa));
			expect_err(k, rc, EINVAL, "framing past the maximum offset");
		}
		close(fds[0]);
		close(fds[1]);
		break;
	case 8:
		if (cfg.reference)
			break;
		rc = SYS(recv(k->fd, w->buf, 64, MSG_OOB | MSG_DONTWAIT));
		expect_err(k, rc, EOPNOTSUPP, "recv(MSG_OOB)");
		rc = SYS(send(k->fd, w->buf, 64, MSG_OOB | MSG_DONTWAIT));
		expect_err(k, rc, EOPNOTSUPP, "send(MSG_OOB)");
		break;
	case 9:
		if (!cfg.ext_origin)
			break;
		{
			/* A control message too short for a psock id. */
			union {
				char buf[CMSG_SPACE(sizeof(uint16_t))];
				struct cmsghdr align;
			} cm;
			struct iovec iov = { .iov_base = w->buf, .iov_len = 64 };
			struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
					     .msg_control = cm.buf,
					     .msg_controllen = sizeof(cm.buf) };
			struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

			memset(cm.buf, 0, sizeof(cm.buf));
			c->cmsg_level = SOL_KCM;
			c->cmsg_type = KCMUX_ORIGIN;
			c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
			rc = SYS(sendmsg(k->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL |
					 eor_flags(k)));
			expect_err(k, rc, EINVAL, "KCMUX_ORIGIN cmsg of 2 bytes");
		}
		break;
	default:
		/* getsockopt of an unknown option and a negative length. */
		{
			int v;
			socklen_t l = sizeof(v);

			rc = SYS(getsockopt(k->fd, SOL_KCM, 99, &v, &l));
			expect_err(k, rc, ENOPROTOOPT, "getsockopt SOL_KCM 99");
			l = (socklen_t)-1;
			rc = SYS(getsockopt(k->fd, SOL_KCM, KCM_RECV_DISABLE, &v, &l));
			expect_err(k, rc, EINVAL, "getsockopt with optlen -1");
		}
		break;
	}
}

/* --- psock operations ------------------------------------------------------ */

static void psock_stopped(struct psock *p, int err);

static void op_unattach(struct wctx *w);

static void op_attach(struct wctx *w, enum op op)
{
	struct ksock *k;
	bool full;

	pthread_mutex_lock(&tbl);
	full = np >= cfg.max_psocks;
	pthread_mutex_unlock(&tbl);
	if (full) {
		op_unattach(w);
		return;
	}
	k = ksock_pick(&w->rng, NULL);
	if (!k)
		return;
	attach_new(w, k, op);
	ksock_put(k);
}

/* A socket attached anywhere cannot be attached again: EALREADY. */
static void op_attach_again(struct wctx *w)
{
	struct psock *p = psock_pick(&w->rng, PS_ATTACHED);
	struct ksock *k;
	struct kcm_attach a;
	long rc;

	if (!p)
		return;
	k = ksock_pick(&w->rng, NULL);
	if (k) {
		pthread_mutex_lock(&p->lock);
		/*
		 * Under the table lock: the last socket of p's mux cannot be
		 * closed meanwhile, so the kernel still has p attached (a
		 * dying mux hands its TCP sockets back, and then this attach
		 * would rightly succeed).
		 */
		pthread_mutex_lock(&tbl);
		if (p->state == PS_ATTACHED && !atomic_load(&p->dead) &&
		    !p->mux->destroyed) {
			a.fd = p->fd;
			a.bpf_fd = k->mux->fixed_len ?
				   bpf_fixed[fixed_index(k->mux->fixed_len)] :
				   bpf_var[0];
			rc = SYS(ioctl(k->fd, SIOCKCMATTACH, &a));
			if (rc >= 0)
				fail(OP_ATTACH_AGAIN, "psock %u attached twice (mux %u, then mux %u)",
				     p->serial, p->mux->serial, k->mux->serial);
			/* A reset connection is refused before anything else. */
			judge(OP_ATTACH_AGAIN, rc,
			      atomic_load(&p->rst_sent) ? ERRS(EALREADY, EOPNOTSUPP) :
							  ERRS(EALREADY),
			      atomic_load(&k->dead), "second SIOCKCMATTACH");
		}
		pthread_mutex_unlock(&tbl);
		pthread_mutex_unlock(&p->lock);
		ksock_put(k);
	}
	psock_put(p);
}

/* Waits for the peer thread to stop writing on p (bounded). */
static void peer_stop_writer(struct psock *p)
{
	uint64_t end = now_ms() + 2000;
	int none = PEER_NONE;

	atomic_compare_exchange_strong(&p->peer_req, &none, PEER_STOP);
	while (!atomic_load(&p->writer_stopped) && now_ms() < end &&
	       !p->peer_done)
		kcm_msleep(2);
}

/*
 * After an unattach the bytes the mux did not take are ours again: the
 * messages among them were not lost.  Reads them, resynchronising past
 * a message the mux had begun to take, and marks them seen.
 */
static void rx_leftovers(struct wctx *w, struct psock *p)
{
	struct stream *s = p->rx;
	size_t have = 0, off = 0, len;
	uint64_t quiet_end = now_ms() + 400, hard_end = now_ms() + 10000;
	struct wire_hdr h;
	long rc;

	for (;;) {
		if (have == MAX_MSG + 4096) {
			/* Keep the unparsed tail only. */
			memmove(w->buf2, w->buf2 + off, have - off);
			have -= off;
			off = 0;
			if (have == MAX_MSG + 4096)
				break;
		}
		rc = SYS(recv(p->fd, w->buf2 + have, MAX_MSG + 4096 - have,
			      MSG_DONTWAIT));
		if (rc > 0) {
			have += rc;
			quiet_end = now_ms() + 400;
		} else if (rc == -EAGAIN && now_ms() < quiet_end &&
			   now_ms() < hard_end) {
			kcm_poll(p->fd, POLLIN, 20);
			continue;
		} else {
			if (rc < 0 && rc != -EAGAIN)
				judge(OP_UNATTACH, rc, ERRS(ECONNRESET, EPIPE),
				      atomic_load(&p->kcm_gone), "read leftovers");
			break;
		}
		/* Whole messages of our stream, skipping a torn head. */
		while (have - off >= HDR_LEN) {
			if (!hdr_ok(w->buf2 + off, &h) || h.stream != s->id ||
			    h.seq >= atomic_load(&s->next_seq)) {
				off++;
				continue;
			}
			len = ntohl(h.len_be);
			if (have - off < len)
				break;
			if (body_check(w->buf2 + off + HDR_LEN, len - HDR_LEN,
				       s->id, h.seq) != len - HDR_LEN) {
				off++;
				continue;
			}
			if (bm_set(&s->seen, h.seq))
				fail(OP_UNATTACH, "stream %u seq %llu: delivered by the mux and handed back at unattach",
				     s->id, (unsigned long long)h.seq);
			else
				atomic_fetch_add(&s->nseen, 1);
			atomic_fetch_add(&st.rx_returned, 1);
			off += len;
		}
	}
}

/* Closes the TCP socket we got back: gracefully or with a reset. */
static void close_unattached(struct wctx *w, struct psock *p)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	/* Whatever the peer had still in flight at unattach is here now. */
	pthread_mutex_lock(&p->lock);
	if (atomic_load(&p->dead)) {
		pthread_mutex_unlock(&p->lock);
		return;
	}
	rx_leftovers(w, p);

	atomic_store(&p->kcm_gone, true);
	if (rnd_pct(&w->rng, 30)) {
		/* What the mux wrote and the peer did not read yet is gone. */
		setsockopt(p->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		mux_each_stream(p->mux, DIR_TX, false, fn_lossable, NULL);
		atomic_store(&p->may_cut, true);
	}
	psock_kill_fd(p);
	pthread_mutex_unlock(&p->lock);
}

static void op_unattach(struct wctx *w)
{
	struct psock *p = psock_pick(&w->rng, PS_ATTACHED);
	struct ksock *k;
	bool other, gone;
	long rc;

	if (!p)
		return;
	k = ksock_pick(&w->rng, rnd_pct(&w->rng, 90) ? p->mux : NULL);
	if (!k) {
		psock_put(p);
		return;
	}
	other = k->mux != p->mux;
	pthread_mutex_lock(&p->lock);
	if (p->state != PS_ATTACHED || atomic_load(&p->dead)) {
		pthread_mutex_unlock(&p->lock);
		goto out;
	}
	if (!other)
		peer_stop_writer(p);
	rc = kcm_unattach(k->fd, p->fd);
	gone = atomic_load(&k->dead) || p->mux->destroyed;
	if (other) {
		if (rc >= 0 && !atomic_load(&k->dead))
			fail(OP_UNATTACH, "psock %u of mux %u unattached through mux %u",
			     p->serial, p->mux->serial, k->mux->serial);
		judge(OP_UNATTACH, rc, ERRS(ENOENT), atomic_load(&k->dead),
		      "SIOCKCMUNATTACH via another mux");
		pthread_mutex_unlock(&p->lock);
		goto out;
	}
	if (!judge(OP_UNATTACH, rc, NOERRS, gone, "SIOCKCMUNATTACH")) {
		if (!gone || rc != -ENOENT) {
			/* Still attached: let the peer write again. */
			int stop = PEER_STOP;

			if (atomic_compare_exchange_strong(&p->peer_req, &stop,
							   PEER_NONE))
				atomic_store(&p->writer_stopped, false);
			pthread_mutex_unlock(&p->lock);
			goto out;
		}
	}
	pthread_mutex_lock(&tbl);
	p->state = PS_UNATTACHED;
	pthread_mutex_unlock(&tbl);
	/*
	 * kcmux loses at most the message it was assembling (and only a
	 * large one); in-tree drops parked and partial messages.
	 */
	stream_raise(p->rx, cfg.reference ? LOSS_ANY : LOSS_ONE, "unattached");
	mux_each_stream(p->mux, DIR_TX, true, fn_lossable, NULL);
	if (cfg.reference)
		atomic_store(&p->may_cut, true);
	rx_leftovers(w, p);
	pthread_mutex_unlock(&p->lock);
	if (rnd_pct(&w->rng, 75))
		close_unattached(w, p);
out:
	ksock_put(k);
	psock_put(p);
}

static void op_close_tcp(struct wctx *w)
{
	struct psock *p = psock_pick(&w->rng, -1);

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	atomic_fetch_add(&st.runs[OP_CLOSE_TCP], 1);
	atomic_fetch_add(&st.ok[OP_CLOSE_TCP], 1);
	if (p->state == PS_UNATTACHED) {
		pthread_mutex_unlock(&p->lock);
		close_unattached(w, p);
	} else if (p->state == PS_ATTACHED && !atomic_load(&p->dead)) {
		int err = 0;
		socklen_t len = sizeof(err);

		/*
		 * Last look at its errors (the monitor polls only now and
		 * then): an error posted before we close must be known.
		 */
		if (!atomic_load(&p->stopped) &&
		    (kcm_poll(p->fd, 0, 0) & POLLERR) &&
		    !getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &len) && err)
			psock_stopped(p, err);
		/* The mux holds the socket: nothing changes for it. */
		pthread_mutex_lock(&tbl);
		p->state = PS_FDCLOSED;
		pthread_mutex_unlock(&tbl);
		/* We cannot see its errors any more. */
		if (faults_on)
			stream_unobserved(p->rx, "fd closed under fault injection");
		pthread_mutex_unlock(&p->lock);
		psock_kill_fd(p);
	} else {
		pthread_mutex_unlock(&p->lock);
	}
	psock_put(p);
}

/* A psock whose peer still runs, referenced. */
static struct psock *peer_pick(uint64_t *rng)
{
	struct psock *p = NULL;

	pthread_mutex_lock(&tbl);
	if (npeer) {
		p = peertab[rnd_below(rng, npeer)];
		atomic_fetch_add(&p->refs, 1);
	}
	pthread_mutex_unlock(&tbl);
	return p;
}

static void op_peer_end(struct wctx *w, enum op op)
{
	struct psock *p = peer_pick(&w->rng);
	int none = PEER_NONE, stop = PEER_STOP;

	if (!p)
		return;
	atomic_fetch_add(&st.runs[op], 1);
	if (atomic_compare_exchange_strong(&p->peer_req, &none,
					   op == OP_PEER_FIN ? PEER_FIN : PEER_RST) ||
	    (op == OP_PEER_RST &&
	     atomic_compare_exchange_strong(&p->peer_req, &stop, PEER_RST)))
		atomic_fetch_add(&st.ok[op], 1);
	psock_put(p);
}

/* --- network namespaces ----------------------------------------------------- */

static atomic_int netns_serial;
static atomic_ullong netns_last_ms;

struct netns_job {
	struct wctx *w;
	int idx;
};

/*
 * In a thread of its own (unshare affects the calling thread only): a
 * new namespace, a mux in it with psocks, registered with the others.
 * Sometimes everything is closed at once, so the namespace dies while
 * the module is busy elsewhere.
 */
static void *netns_thread(void *arg)
{
	struct netns_job *j = arg;
	struct wctx *w = j->w;
	struct ksock *k;
	int ns, i, n;
	long rc;

	my_idx = j->idx;
	my_role = "netns";
	rc = SYS(unshare(CLONE_NEWNET));
	if (!judge(OP_NETNS, rc, ERRS(ENOSPC, EUSERS), false, "unshare(CLONE_NEWNET)"))
		return NULL;
	rc = kcm_lo_up();
	if (!judge(OP_NETNS, rc, NOERRS, false, "loopback up"))
		return NULL;
	atomic_fetch_add(&st.netns_made, 1);
	ns = atomic_fetch_add(&netns_serial, 1) + 1;
	k = ksock_create(w, ns);
	if (!k)
		return NULL;
	atomic_fetch_add(&k->refs, 1);
	n = rnd_below(&w->rng, 3);
	for (i = 0; i < n; i++)
		attach_new(w, k, rnd_pct(&w->rng, 50) ? OP_ATTACH : OP_ATTACH_EXT);
	if (rnd_pct(&w->rng, 30))
		ksock_kill(k);
	ksock_put(k);
	return NULL;
}

static void op_netns(struct wctx *w)
{
	struct netns_job j = { .w = w, .idx = w->idx };
	uint64_t last = atomic_load(&netns_last_ms), now = now_ms();
	pthread_t t;
	bool full;

	/* Namespaces are expensive under emulation: a few per second. */
	if (now - last < 300 ||
	    !atomic_compare_exchange_strong(&netns_last_ms, &last, now))
		return;
	pthread_mutex_lock(&tbl);
	full = live_muxes >= cfg.max_muxes || nk >= cfg.max_ksocks ||
	       np + 2 > cfg.max_psocks;
	pthread_mutex_unlock(&tbl);
	if (full)
		return;
	if (pthread_create(&t, NULL, netns_thread, &j))
		return;
	pthread_join(t, NULL);
}

/* --- the peers: the far ends of the psocks' TCP connections --------------- */

#define RBUF_SIZE	(2 * MAX_MSG + 65536)

static void peer_reset(struct psock *p)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	atomic_store(&p->rst_sent, true);
	atomic_store(&p->writer_stopped, true);
	/* What the peer had not read, and what it wrote, is gone. */
	stream_raise(p->rx, LOSS_ANY, "peer reset the connection");
	setsockopt(p->peer_fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(p->peer_fd);
	p->peer_fd = -1;
	p->peer_done = true;
	/* Messages in flight after the reset are lost as well. */
	mux_each_stream(p->mux, DIR_TX, false, fn_lossable, NULL);
}

static void peer_fin(struct psock *p)
{
	long rc;

	/* Before the FIN: on loopback its EPIPE may be posted at once. */
	atomic_store(&p->fin_at, now_ms());
	rc = SYS(shutdown(p->peer_fd, SHUT_WR));
	judge(OP_PEER_FIN, rc, ERRS(ENOTCONN), atomic_load(&p->kcm_gone),
	      "shutdown(SHUT_WR)");
	p->peer_fin = true;
	atomic_store(&p->writer_stopped, true);
	/*
	 * kcmux delivers every message completed before the FIN; in-tree
	 * stops the psock at once.  Targeted messages die with the psock.
	 */
	if (cfg.reference)
		stream_raise(p->rx, LOSS_ANY, "peer FIN (in-tree)");
	mux_each_stream(p->mux, DIR_TX, true, fn_lossable, NULL);
}

/* Starts the next batch of messages on p's stream. */
static void peer_batch(struct psock *p)
{
	int n = 1 + rnd_below(&p->wrng, PEER_BATCH), i;
	uint32_t len;
	size_t off = 0;
	uint64_t seq;

	if (!p->wbuf) {
		p->wbuf = malloc(PEER_BATCH * (size_t)MAX_MSG);
		if (!p->wbuf)
			abort();
	}
	for (i = 0; i < n; i++) {
		len = msg_len_for(&p->wrng, p->mux);
		seq = atomic_fetch_add(&p->rx->next_seq, 1);
		msg_build(p->wbuf + off, len, p->rx->id, seq, 0);
		off += len;
		p->wend[i] = off;
		p->wseq[i] = seq;
	}
	p->wn = n;
	p->wdone = 0;
	p->wlen = off;
	p->woff = 0;
}

static void peer_write(struct psock *p)
{
	size_t chunk, left;
	int writes = 0;
	long rc;

	while (writes++ < 64) {
		if (p->woff == p->wlen) {
			if (atomic_load(&p->writer_stopped) || p->peer_fin ||
			    atomic_load(&writers_off) || atomic_load(&p->kcm_gone) ||
			    atomic_load(&p->peer_req) != PEER_NONE)
				return;
			/* One batch per call: other psocks get their turn. */
			if (writes > 1)
				return;
			peer_batch(p);
		} else if (atomic_load(&p->writer_stopped)) {
			return;
		}
		left = p->wlen - p->woff;
		switch (p->chunk_mode) {
		case 0:
			chunk = left;
			break;
		case 1:
			chunk = 1 + rnd_below(&p->wrng, (uint32_t)left);
			break;
		case 2:
			/* Up to the end of the current message. */
			chunk = p->wend[p->wdone] - p->woff;
			break;
		default:
			/* Dribble small messages, a few bytes per segment. */
			chunk = p->wlen > 4096 ? left : 1 + rnd_below(&p->wrng, 16);
			break;
		}
		if (chunk > left)
			chunk = left;
		rc = SYS(send(p->peer_fd, p->wbuf + p->woff, chunk,
			      MSG_DONTWAIT | MSG_NOSIGNAL));
		if (rc == -EAGAIN)
			return;
		if (rc < 0) {
			judge(OP_PEER_IO, rc, ERRS(EPIPE, ECONNRESET),
			      atomic_load(&p->kcm_gone), "peer send");
			atomic_store(&p->writer_stopped, true);
			return;
		}
		p->woff += rc;
		while (p->wdone < p->wn && p->wend[p->wdone] <= p->woff)
			stream_mark_sent(p->rx, p->wseq[p->wdone++]);
	}
}

/* Order of a TX stream on this psock: strictly increasing. */
static void peer_order(struct psock *p, uint32_t stream, uint64_t seq)
{
	int i;

	for (i = 0; i < p->norder; i++)
		if (p->order[i].stream == stream)
			break;
	if (i == p->norder) {
		if (p->norder == (int)(sizeof(p->order) / sizeof(p->order[0])))
			i = (int)(seq % p->norder);
		else
			p->norder++;
		p->order[i].stream = stream;
		p->order[i].last = seq;
		return;
	}
	atomic_fetch_add(&st.order_checks, 1);
	if (seq <= p->order[i].last)
		fail(OP_PEER_IO, "psock %u: stream %u seq %llu after seq %llu",
		     p->serial, stream, (unsigned long long)seq,
		     (unsigned long long)p->order[i].last);
	p->order[i].last = seq;
}

/* Checks the messages a KCM socket sent us through this psock. */
static void peer_parse(struct psock *p)
{
	struct wire_hdr h;
	struct stream *s;
	size_t len, bad;
	uint32_t pid;
	uint8_t *m;

	while (p->rlen - p->roff >= HDR_LEN) {
		m = p->rbuf + p->roff;
		if (!hdr_ok(m, &h)) {
			if (!p->rcorrupt)
				fail(OP_PEER_IO, "psock %u (mux %u): corrupt stream at byte %zu",
				     p->serial, p->mux->serial, p->roff);
			p->rcorrupt = true;
			p->roff++;
			continue;
		}
		len = ntohl(h.len_be);
		if (p->rlen - p->roff < len)
			break;
		p->roff += len;
		s = stream_get(h.stream);
		if (!s || s->dir != DIR_TX) {
			fail(OP_PEER_IO, "psock %u: message of unknown stream %u",
			     p->serial, h.stream);
			continue;
		}
		if (s->mux_serial != p->mux->serial) {
			fail(OP_PEER_IO, "psock %u of mux %u carried stream %u of mux %u",
			     p->serial, p->mux->serial, s->id, s->mux_serial);
			continue;
		}
		pid = atomic_load(&p->psock_id);
		if (h.target && pid && h.target != pid) {
			fail(OP_PEER_IO, "message for psock id %u went out on psock id %u",
			     h.target, pid);
			continue;
		}
		bad = body_check(m + HDR_LEN, len - HDR_LEN, s->id, h.seq);
		if (bad != len - HDR_LEN ||
		    body_sum(m + HDR_LEN, len - HDR_LEN) != h.body_sum) {
			fail(OP_PEER_IO, "stream %u seq %llu: body corrupt at byte %zu",
			     s->id, (unsigned long long)h.seq, bad + HDR_LEN);
			continue;
		}
		if (h.seq >= atomic_load(&s->next_seq)) {
			fail(OP_PEER_IO, "stream %u: seq %llu never sent", s->id,
			     (unsigned long long)h.seq);
			continue;
		}
		if (p->mux->fixed_len && len != p->mux->fixed_len)
			fail(OP_PEER_IO, "stream %u: %zu-byte message on a mux framing %u",
			     s->id, len, p->mux->fixed_len);
		if (bm_set(&s->seen, h.seq)) {
			fail(OP_PEER_IO, "stream %u seq %llu: sent twice (now on psock %u)",
			     s->id, (unsigned long long)h.seq, p->serial);
			continue;
		}
		atomic_fetch_add(&s->nseen, 1);
		atomic_fetch_add(&st.tx_verified, 1);
		peer_order(p, s->id, h.seq);
	}
	if (p->roff > RBUF_SIZE / 2 || p->roff == p->rlen) {
		memmove(p->rbuf, p->rbuf + p->roff, p->rlen - p->roff);
		p->rlen -= p->roff;
		p->roff = 0;
	}
}

static void peer_read(struct psock *p)
{
	int reads = 0;
	long rc;

	if (!p->rbuf) {
		p->rbuf = malloc(RBUF_SIZE);
		if (!p->rbuf)
			abort();
	}
	while (reads++ < 16) {
		rc = SYS(recv(p->peer_fd, p->rbuf + p->rlen, RBUF_SIZE - p->rlen,
			      MSG_DONTWAIT));
		if (rc > 0) {
			p->rlen += rc;
			peer_parse(p);
			continue;
		}
		if (rc == -EAGAIN)
			return;
		if (rc == 0) {
			if (p->rlen > p->roff) {
				/* A message that ended short: only after a cut. */
				if (atomic_load(&p->may_cut) || atomic_load(&p->stopped))
					atomic_fetch_add(&st.tx_cut, 1);
				else
					fail(OP_PEER_IO, "psock %u: stream ends inside a message (%zu bytes)",
					     p->serial, p->rlen - p->roff);
			}
		} else {
			judge(OP_PEER_IO, rc, ERRS(ECONNRESET),
			      atomic_load(&p->kcm_gone), "peer recv");
		}
		p->peer_rd_done = true;
		return;
	}
}

/* One round of work on p's peer end; revents from poll. */
static void peer_service(struct psock *p, short revents)
{
	int req = atomic_load(&p->peer_req);

	if (p->peer_done)
		return;
	if (req == PEER_RST) {
		peer_reset(p);
		return;
	}
	if (req == PEER_STOP)
		atomic_store(&p->writer_stopped, true);
	if (req == PEER_FIN && !p->peer_fin && p->woff == p->wlen)
		peer_fin(p);
	if (!p->peer_fin)
		peer_write(p);
	if (revents & (POLLIN | POLLERR | POLLHUP))
		peer_read(p);
	if (p->peer_rd_done) {
		close(p->peer_fd);
		p->peer_fd = -1;
		p->peer_done = true;
	}
}

struct peer_arg {
	int idx, of;
};

static void *peer_main(void *arg)
{
	struct peer_arg *pa = arg;
	struct psock *mine[MAX_PEERS];
	struct pollfd pfd[MAX_PEERS];
	int n, i, j;

	my_idx = pa->idx;
	my_role = "peer";
	while (atomic_load(&phase) != PH_DONE) {
		n = 0;
		pthread_mutex_lock(&tbl);
		for (i = 0; i < npeer; i++)
			if (peertab[i]->serial % pa->of == (unsigned int)pa->idx) {
				mine[n] = peertab[i];
				atomic_fetch_add(&mine[n]->refs, 1);
				n++;
			}
		pthread_mutex_unlock(&tbl);
		for (i = 0; i < n; i++) {
			pfd[i].fd = mine[i]->peer_fd;
			pfd[i].events = POLLIN;
			if (mine[i]->woff < mine[i]->wlen ||
			    (!atomic_load(&mine[i]->writer_stopped) &&
			     !atomic_load(&writers_off)))
				pfd[i].events |= POLLOUT;
		}
		if (!n) {
			kcm_msleep(5);
			continue;
		}
		poll(pfd, n, 5);
		for (i = 0; i < n; i++) {
			peer_service(mine[i], pfd[i].revents);
			if (mine[i]->peer_done) {
				pthread_mutex_lock(&tbl);
				for (j = 0; j < npeer; j++)
					if (peertab[j] == mine[i]) {
						peertab[j] = peertab[--npeer];
						mine[i]->on_peers = false;
						atomic_fetch_sub(&mine[i]->refs, 1);
						break;
					}
				pthread_mutex_unlock(&tbl);
			}
			psock_put(mine[i]);
		}
	}
	return NULL;
}

/* --- the monitor: errors posted on attached TCP sockets ------------------- */

struct genl_find {
	uint32_t id;
	bool found;
	uint32_t state, error, rxq, txq;
};

static void genl_find_cb(struct nlattr **tb, void *arg);
static int genl_dump(uint8_t cmd, void (*fn)(struct nlattr **tb, void *arg),
		     void *arg);

static void psock_stopped(struct psock *p, int err)
{
	bool ok;

	if (atomic_exchange(&p->stopped, true))
		return;
	atomic_store(&p->stop_err, err);
	atomic_fetch_add(&st.runs[OP_PSOCK_ERROR], 1);
	atomic_fetch_add(&st.err[OP_PSOCK_ERROR][err < ERRNO_MAX ? err : 0], 1);
	/* Its received messages stay in TCP; a message to the peer is cut. */
	stream_raise(p->rx, LOSS_ANY, "psock stopped");
	mux_each_stream(p->mux, DIR_TX, true, fn_lossable, NULL);
	atomic_store(&p->may_cut, true);

	switch (err) {
	case EPIPE:
		/* Peer FIN, reset, or a KCM socket closed mid-message. */
		ok = atomic_load(&p->fin_at) || atomic_load(&p->rst_sent) ||
		     atomic_load(&p->mux->sock_closes) > p->closes_at_attach ||
		     atomic_load(&p->kcm_gone);
		break;
	case ECONNRESET:
		ok = atomic_load(&p->rst_sent);
		break;
	case ENOMEM:
	case ENOBUFS:
		ok = faults_used;
		break;
	default:
		ok = false;
		break;
	}
	if (!ok) {
		struct genl_find f = { .id = atomic_load(&p->psock_id) };

		if (cfg.genl_family && f.id && !p->mux->netns)
			genl_dump(KCMUX_CMD_GET_PSOCK, genl_find_cb, &f);
		fail(OP_PSOCK_ERROR, "psock %u (mux %u%s, id %u): error %d (%s) posted without cause; kernel: %s state %u first error %u; closes on the mux %d (%d at attach), peer fin %d rst %d",
		     p->serial, p->mux->serial, p->mux->netns ? " in a netns" : "",
		     atomic_load(&p->psock_id), err, strerror(err),
		     f.found ? "" : "(no genetlink view)", f.state, f.error,
		     atomic_load(&p->mux->sock_closes), p->closes_at_attach,
		     atomic_load(&p->fin_at) != 0, atomic_load(&p->rst_sent));
	}
}

static void *monitor_main(void *arg)
{
	struct psock *ps[MAX_PSOCKS];
	struct pollfd pfd[MAX_PSOCKS];
	uint64_t fin;
	int n, i, err;
	socklen_t len;

	(void)arg;
	my_role = "monitor";
	while (atomic_load(&phase) != PH_DONE) {
		n = 0;
		pthread_mutex_lock(&tbl);
		for (i = 0; i < np; i++)
			if (ptab[i]->state == PS_ATTACHED &&
			    !atomic_load(&ptab[i]->stopped)) {
				ps[n] = ptab[i];
				atomic_fetch_add(&ps[n]->refs, 1);
				pfd[n].fd = ps[n]->fd;
				pfd[n].events = POLLRDHUP;
				n++;
			}
		pthread_mutex_unlock(&tbl);
		if (n)
			poll(pfd, n, 0);
		for (i = 0; i < n; i++) {
			pthread_mutex_lock(&ps[i]->lock);
			if ((pfd[i].revents & POLLERR) &&
			    ps[i]->state == PS_ATTACHED && !atomic_load(&ps[i]->dead)) {
				err = 0;
				len = sizeof(err);
				getsockopt(ps[i]->fd, SOL_SOCKET, SO_ERROR, &err, &len);
				if (err)
					psock_stopped(ps[i], err);
			}
			fin = atomic_load(&ps[i]->fin_at);
			if (fin && !atomic_load(&ps[i]->stopped) &&
			    ps[i]->state == PS_ATTACHED && !ps[i]->mux->destroyed &&
			    now_ms() - fin > 30000) {
				fail(OP_PSOCK_ERROR, "psock %u: no error 30 s after the peer's FIN",
				     ps[i]->serial);
				atomic_store(&ps[i]->stopped, true);
			}
			pthread_mutex_unlock(&ps[i]->lock);
			psock_put(ps[i]);
		}
		kcm_msleep(20);
	}
	return NULL;
}

/* --- receivers: keep every KCM socket drained --------------------------- */

static bool op_available(enum op op);

static void *receiver_main(void *arg)
{
	struct wctx *w = arg;
	struct ksock *ks[MAX_KSOCKS];
	struct pollfd pfd[MAX_KSOCKS];
	int n, i, j;

	my_idx = w->idx;
	my_role = "receiver";
	while (atomic_load(&phase) < PH_TEARDOWN) {
		n = 0;
		pthread_mutex_lock(&tbl);
		for (i = 0; i < nk; i++) {
			ks[n] = ktab[i];
			atomic_fetch_add(&ks[n]->refs, 1);
			pfd[n].fd = ks[n]->fd;
			pfd[n].events = POLLIN;
			n++;
		}
		pthread_mutex_unlock(&tbl);
		if (!n) {
			kcm_msleep(10);
			continue;
		}
		poll(pfd, n, 20);
		for (i = 0; i < n; i++) {
			if (!(pfd[i].revents & POLLIN))
				continue;
			for (j = 0; j < 4; j++) {
				uint32_t r = rnd_below(&w->rng, 100);

				if (r >= 60 && r < 75 && op_available(OP_RECVMMSG))
					op_recvmmsg(w, ks[i]);
				else if (r >= 75 && r < 85 &&
					 op_available(OP_RECV_SPLICE))
					op_recv_splice(w, ks[i]);
				else if (r >= 85 && r < 90 &&
					 op_available(OP_RECV_PEEK))
					op_recv_peek(w, ks[i]);
				else if (r >= 90 && ks[i]->type == SOCK_DGRAM &&
					 op_available(OP_RECV_TRUNC))
					op_recv_trunc(w, ks[i]);
				else if (r >= 90 && ks[i]->type == SOCK_SEQPACKET &&
					 op_available(OP_RECV_PARTIAL))
					op_recv_partial(w, ks[i]);
				else
					op_recv(w, ks[i], true);
			}
		}
		for (i = 0; i < n; i++)
			ksock_put(ks[i]);
	}
	return NULL;
}

/* --- workers ---------------------------------------------------------------- */

struct op_weight {
	enum op op;
	unsigned int weight;
};

static const struct op_weight op_weights[] = {
	{ OP_SOCKET, 3 }, { OP_CLONE, 4 }, { OP_CLOSE_KCM, 3 },
	{ OP_ATTACH, 5 }, { OP_ATTACH_EXT, 3 }, { OP_ATTACH_AGAIN, 1 },
	{ OP_UNATTACH, 4 }, { OP_CLOSE_TCP, 2 }, { OP_PEER_FIN, 1 },
	{ OP_PEER_RST, 1 }, { OP_SEND, 20 }, { OP_SENDMMSG, 4 },
	{ OP_SEND_MORE, 4 }, { OP_SEND_SPLICE, 2 }, { OP_SEND_TARGETED, 3 },
	{ OP_RECV, 8 }, { OP_RECVMMSG, 3 }, { OP_RECV_PEEK, 3 },
	{ OP_RECV_TRUNC, 2 }, { OP_RECV_PARTIAL, 2 }, { OP_RECV_SPLICE, 2 },
	{ OP_POLL, 3 }, { OP_EPOLL, 3 }, { OP_RECV_DISABLE, 3 },
	{ OP_SOCKOPT, 4 }, { OP_ORIGIN, 2 }, { OP_INQ, 2 }, { OP_PSOCKID, 2 },
	{ OP_NETNS, 1 }, { OP_PROC, 1 }, { OP_HOSTILE, 2 }, { OP_GENL, 1 },
};

#define N_WEIGHTS (sizeof(op_weights) / sizeof(op_weights[0]))

/* Operations this run cannot do: extension missing, or reference limits. */
static bool op_available(enum op op)
{
	if (cfg.skip_ops & (1ull << op))
		return false;
	switch (op) {
	case OP_ATTACH_EXT:
		return cfg.ext_attach;
	case OP_SEND_TARGETED:
	case OP_ORIGIN:
		return cfg.ext_origin;
	case OP_PSOCKID:
		return cfg.ext_psockid;
	case OP_INQ:
		return cfg.ext_inq;
	case OP_GENL:
		return cfg.genl_family;
	/* In-tree drops the rest of a short SEQPACKET read. */
	case OP_RECV_PARTIAL:
		return !cfg.reference;
	default:
		return true;
	}
}

static enum op op_choose(uint64_t *rng)
{
	static unsigned int total;
	unsigned int r, acc = 0;
	size_t i;

	if (!total)
		for (i = 0; i < N_WEIGHTS; i++)
			if (op_available(op_weights[i].op))
				total += op_weights[i].weight;
	r = rnd_below(rng, total);
	for (i = 0; i < N_WEIGHTS; i++) {
		if (!op_available(op_weights[i].op))
			continue;
		acc += op_weights[i].weight;
		if (r < acc)
			return op_weights[i].op;
	}
	return OP_SEND;
}

static uint64_t t_end_ms;

static void op_genl(struct wctx *w);

static void worker_op(struct wctx *w, enum op op)
{
	struct ksock *k = NULL;

	switch (op) {
	case OP_SOCKET:
		op_socket(w);
		return;
	case OP_CLONE:
		op_clone(w);
		return;
	case OP_CLOSE_KCM:
		op_close_kcm(w);
		return;
	case OP_ATTACH:
	case OP_ATTACH_EXT:
		op_attach(w, op);
		return;
	case OP_ATTACH_AGAIN:
		op_attach_again(w);
		return;
	case OP_UNATTACH:
		op_unattach(w);
		return;
	case OP_CLOSE_TCP:
		op_close_tcp(w);
		return;
	case OP_PEER_FIN:
	case OP_PEER_RST:
		op_peer_end(w, op);
		return;
	case OP_POLL:
		op_poll(w);
		return;
	case OP_EPOLL:
		op_epoll(w);
		return;
	case OP_PSOCKID:
		op_psockid(w);
		return;
	case OP_NETNS:
		op_netns(w);
		return;
	case OP_PROC:
		op_proc(w);
		return;
	case OP_GENL:
		op_genl(w);
		return;
	default:
		break;
	}
	k = ksock_pick(&w->rng, NULL);
	if (!k) {
		op_socket(w);
		return;
	}
	switch (op) {
	case OP_SEND:
		op_send(w, k);
		break;
	case OP_SENDMMSG:
		op_sendmmsg(w, k);
		break;
	case OP_SEND_MORE:
		op_send_more(w, k);
		break;
	case OP_SEND_SPLICE:
		op_send_splice(w, k);
		break;
	case OP_SEND_TARGETED:
		op_send_targeted(w, k);
		break;
	case OP_RECV:
		op_recv(w, k, false);
		break;
	case OP_RECVMMSG:
		op_recvmmsg(w, k);
		break;
	case OP_RECV_PEEK:
		op_recv_peek(w, k);
		break;
	case OP_RECV_TRUNC:
		if (k->type == SOCK_DGRAM)
			op_recv_trunc(w, k);
		else if (!cfg.reference)
			op_recv_partial(w, k);
		break;
	case OP_RECV_PARTIAL:
		if (k->type == SOCK_SEQPACKET)
			op_recv_partial(w, k);
		else
			op_recv_trunc(w, k);
		break;
	case OP_RECV_SPLICE:
		op_recv_splice(w, k);
		break;
	case OP_RECV_DISABLE:
		op_recv_disable(w, k);
		break;
	case OP_SOCKOPT:
		op_sockopt(w, k);
		break;
	case OP_ORIGIN:
		op_origin(w, k);
		break;
	case OP_INQ:
		op_inq(w, k);
		break;
	case OP_HOSTILE:
		op_hostile(w, k);
		break;
	default:
		break;
	}
	ksock_put(k);
}

static void *worker_main(void *arg)
{
	struct wctx *w = arg;

	my_idx = w->idx;
	my_role = "worker";
	while (now_ms() < t_end_ms && atomic_load(&phase) == PH_RUN)
		worker_op(w, op_choose(&w->rng));
	return NULL;
}

/* --- fault injection ------------------------------------------------------- */

#define FI_TIMES	1000000000LL

static const char *const fi_dirs[] = { "/sys/kernel/debug/failslab",
				       "/sys/kernel/debug/fail_page_alloc" };

static int fi_write(const char *dir, const char *file, unsigned long long val)
{
	char path[128], buf[32];
	int fd, n, err = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = snprintf(buf, sizeof(buf), "%llu\n", val);
	if (write(fd, buf, n) != n)
		err = -errno;
	close(fd);
	return err;
}

static long long fi_read(const char *dir, const char *file)
{
	char path[128], buf[32];
	long long v = -1;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	if (n > 0) {
		buf[n] = '\0';
		v = strtoll(buf, NULL, 0);
	}
	close(fd);
	return v;
}

/*
 * The module's text, from /proc/kallsyms: the fault-injection stack
 * filter fails only allocations with one of its functions on the stack.
 */
static bool module_text(unsigned long *start, unsigned long *end)
{
	char line[512], tag[64], type;
	unsigned long addr, lo = ULONG_MAX, hi = 0;
	FILE *f = fopen("/proc/kallsyms", "re");

	if (!f)
		return false;
	snprintf(tag, sizeof(tag), "[%s]", cfg.module);
	while (fgets(line, sizeof(line), f)) {
		char name[256], mod[64];

		if (sscanf(line, "%lx %c %255s %63s", &addr, &type, name, mod) != 4)
			continue;
		if ((type != 't' && type != 'T') || strcmp(mod, tag) || !addr)
			continue;
		if (addr < lo)
			lo = addr;
		if (addr > hi)
			hi = addr;
	}
	fclose(f);
	if (!hi)
		return false;
	*start = lo;
	/* The last function's size is not listed: leave it room. */
	*end = hi + 0x4000;
	return true;
}

/*
 * The text of a core kernel function: [start of name, next symbol).  A
 * user page fault taken while the module copies to or from user memory
 * has the module on its stack too; failing its allocations would only
 * test the page fault handler (EFAULT), so it is excluded.
 */
static bool kernel_func(const char *func, unsigned long *start,
			unsigned long *end)
{
	char line[512], name[256], mod[64], type;
	unsigned long addr, at = 0, next = ULONG_MAX;
	FILE *f = fopen("/proc/kallsyms", "re");
	int n;

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		n = sscanf(line, "%lx %c %255s %63s", &addr, &type, name, mod);
		if (n == 3 && (type == 't' || type == 'T') && !strcmp(name, func))
			at = addr;
	}
	rewind(f);
	while (at && fgets(line, sizeof(line), f)) {
		n = sscanf(line, "%lx %c %255s %63s", &addr, &type, name, mod);
		if (n == 3 && addr > at && addr < next)
			next = addr;
	}
	fclose(f);
	if (!at || next == ULONG_MAX)
		return false;
	*start = at;
	*end = next;
	return true;
}

static long long fi_hits[2];

/* Configures both fault types; probability pct (0: only fail-nth). */
static bool fi_setup(int pct)
{
	unsigned long lo, hi, fault_lo, fault_hi;
	unsigned int i;
	int err = 0;

	if (access(fi_dirs[0], F_OK) || access(fi_dirs[1], F_OK)) {
		fprintf(stderr, "kcm_stress: no %s or %s: kernel without FAILSLAB/FAIL_PAGE_ALLOC or debugfs\n",
			fi_dirs[0], fi_dirs[1]);
		return false;
	}
	if (!module_text(&lo, &hi)) {
		fprintf(stderr, "kcm_stress: no text symbols of [%s] in /proc/kallsyms\n",
			cfg.module);
		return false;
	}
	if (!kernel_func("handle_mm_fault", &fault_lo, &fault_hi)) {
		fprintf(stderr, "kcm_stress: no handle_mm_fault in /proc/kallsyms\n");
		return false;
	}
	for (i = 0; i < 2; i++) {
		const char *d = fi_dirs[i];

		err |= fi_write(d, "probability", 0);
		err |= fi_write(d, "interval", 1);
		err |= fi_write(d, "times", FI_TIMES);
		err |= fi_write(d, "space", 0);
		/* No "FAULT_INJECTION: forcing a failure" + stack in the log. */
		err |= fi_write(d, "verbose", 0);
		/* Softirq and workqueue paths too, not only our tasks. */
		err |= fi_write(d, "task-filter", 0);
		err |= fi_write(d, "ignore-gfp-wait", 0);
		err |= fi_write(d, "stacktrace-depth", 32);
		err |= fi_write(d, "require-start", lo);
		err |= fi_write(d, "require-end", hi);
		err |= fi_write(d, "reject-start", fault_lo);
		err |= fi_write(d, "reject-end", fault_hi);
		if (i == 1) {
			err |= fi_write(d, "ignore-gfp-highmem", 0);
			err |= fi_write(d, "min-order", 0);
		}
	}
	if (err) {
		fprintf(stderr, "kcm_stress: cannot configure fault injection: %s\n",
			strerror(-err));
		return false;
	}
	note("fault injection: %s text %#lx-%#lx, not under handle_mm_fault %#lx-%#lx, %d%%",
	     cfg.module, lo, hi, fault_lo, fault_hi, pct);
	for (i = 0; i < 2; i++)
		if (fi_write(fi_dirs[i], "probability", pct))
			return false;
	faults_on = pct > 0;
	faults_used = faults_used || faults_on;
	return true;
}

/* Stops injecting; adds up how many failures were injected. */
static void fi_stop(void)
{
	unsigned int i;
	long long left;

	for (i = 0; i < 2; i++) {
		fi_write(fi_dirs[i], "probability", 0);
		left = fi_read(fi_dirs[i], "times");
		if (left >= 0)
			fi_hits[i] += FI_TIMES - left;
		fi_write(fi_dirs[i], "times", FI_TIMES);
	}
	faults_on = false;
}

/* --- generic netlink: the kcmux family -------------------------------- */

struct genl_msg {
	struct nlmsghdr n;
	struct genlmsghdr g;
	char attrs[64];
};

static int genl_socket(void)
{
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);

	if (fd >= 0)
		set_timeo_ms(fd, SO_RCVTIMEO, 2000);
	return fd;
}

static int genl_send(int fd, uint16_t type, uint8_t cmd, uint16_t flags,
		     uint16_t attr, const char *str)
{
	struct genl_msg m;
	struct nlattr *a = (struct nlattr *)m.attrs;
	size_t alen = 0;

	memset(&m, 0, sizeof(m));
	if (str) {
		a->nla_type = attr;
		a->nla_len = NLA_HDRLEN + strlen(str) + 1;
		memcpy((char *)a + NLA_HDRLEN, str, strlen(str) + 1);
		alen = NLA_ALIGN(a->nla_len);
	}
	m.n.nlmsg_len = NLMSG_LENGTH(GENL_HDRLEN + alen);
	m.n.nlmsg_type = type;
	m.n.nlmsg_flags = NLM_F_REQUEST | flags;
	m.n.nlmsg_seq = 1;
	m.g.cmd = cmd;
	m.g.version = 1;
	return send(fd, &m, m.n.nlmsg_len, 0) < 0 ? -errno : 0;
}

#define GENL_MAXATTR	32

/* Attributes of one generic netlink message, by type (NULL: absent). */
static void genl_attrs(struct nlmsghdr *n, struct nlattr **tb)
{
	struct nlattr *a = (struct nlattr *)((char *)NLMSG_DATA(n) + GENL_HDRLEN);
	int len = n->nlmsg_len - NLMSG_LENGTH(GENL_HDRLEN);

	memset(tb, 0, sizeof(*tb) * GENL_MAXATTR);
	while (len >= NLA_HDRLEN && a->nla_len >= NLA_HDRLEN &&
	       a->nla_len <= len) {
		if ((a->nla_type & NLA_TYPE_MASK) < GENL_MAXATTR)
			tb[a->nla_type & NLA_TYPE_MASK] = a;
		len -= NLA_ALIGN(a->nla_len);
		a = (struct nlattr *)((char *)a + NLA_ALIGN(a->nla_len));
	}
}

static uint32_t nla_u32(const struct nlattr *a)
{
	uint32_t v = 0;

	if (a && a->nla_len >= NLA_HDRLEN + 4)
		memcpy(&v, (const char *)a + NLA_HDRLEN, 4);
	return v;
}

/*
 * Reads the answer to a request: calls fn for each message until the
 * end of a dump (or the one answer).  Objects seen, or -errno.
 */
static int genl_recv(int fd, void (*fn)(struct nlattr **tb, void *arg),
		     void *arg)
{
	static __thread char buf[65536];
	struct nlattr *tb[GENL_MAXATTR];
	struct nlmsghdr *n;
	int count = 0;
	ssize_t len;

	for (;;) {
		len = recv(fd, buf, sizeof(buf), 0);
		if (len < 0)
			return -errno;
		for (n = (struct nlmsghdr *)buf; NLMSG_OK(n, len);
		     n = NLMSG_NEXT(n, len)) {
			if (n->nlmsg_type == NLMSG_DONE)
				return count;
			if (n->nlmsg_type == NLMSG_ERROR) {
				struct nlmsgerr *e = NLMSG_DATA(n);

				return e->error ? e->error : count;
			}
			genl_attrs(n, tb);
			if (fn)
				fn(tb, arg);
			count++;
			if (!(n->nlmsg_flags & NLM_F_MULTI))
				return count;
		}
	}
}

static void genl_family_cb(struct nlattr **tb, void *arg)
{
	const struct nlattr *a = tb[CTRL_ATTR_FAMILY_ID];

	if (a)
		memcpy(arg, (const char *)a + NLA_HDRLEN, sizeof(uint16_t));
}

/* The id of the "kcmux" family, 0 if it does not resolve. */
static int genl_resolve(void)
{
	uint16_t id = 0;
	int fd = genl_socket();

	if (fd < 0)
		return 0;
	if (!genl_send(fd, GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 0,
		       CTRL_ATTR_FAMILY_NAME, KCMUX_GENL_NAME))
		genl_recv(fd, genl_family_cb, &id);
	close(fd);
	return id;
}

/* A dump of the objects of the current namespace; objects, or -errno. */
static int genl_dump(uint8_t cmd, void (*fn)(struct nlattr **tb, void *arg),
		     void *arg)
{
	int fd = genl_socket(), n;

	if (fd < 0)
		return -errno;
	n = genl_send(fd, cfg.genl_family, cmd, NLM_F_DUMP, 0, NULL);
	if (!n)
		n = genl_recv(fd, fn, arg);
	close(fd);
	return n;
}

static void genl_check_cb(struct nlattr **tb, void *arg)
{
	int *bad = arg;

	/* Every object names its mux; psocks their id and a known state. */
	if (!tb[KCMUX_A_MUX_ID] ||
	    (tb[KCMUX_A_PSOCK_ID] && (!nla_u32(tb[KCMUX_A_PSOCK_ID]) ||
				      nla_u32(tb[KCMUX_A_STATE]) >
				      KCMUX_PSOCK_STATE_UNATTACHING)))
		(*bad)++;
}

/* Dumps while everything changes: the module's locking and walk. */
static void op_genl(struct wctx *w)
{
	static const uint8_t cmds[] = { KCMUX_CMD_GET_MUX, KCMUX_CMD_GET_SOCK,
					KCMUX_CMD_GET_PSOCK };
	uint8_t cmd = cmds[rnd_below(&w->rng, 3)];
	int bad = 0, n;

	n = genl_dump(cmd, genl_check_cb, &bad);
	if (judge(OP_GENL, n, NOERRS, false, "generic netlink dump") && bad)
		fail(OP_GENL, "dump %u: %d malformed objects", cmd, bad);
}

static void genl_find_cb(struct nlattr **tb, void *arg)
{
	struct genl_find *f = arg;

	if (nla_u32(tb[KCMUX_A_PSOCK_ID]) != f->id)
		return;
	f->found = true;
	f->state = nla_u32(tb[KCMUX_A_STATE]);
	f->error = nla_u32(tb[KCMUX_A_ERROR]);
	f->rxq = nla_u32(tb[KCMUX_A_RX_QUEUE]);
	f->txq = nla_u32(tb[KCMUX_A_TX_QUEUE]);
}

/* --- probing the module under test -------------------------------------- */

static void probe(void)
{
	struct kcmux_attach xa;
	struct kcmux_psock_id q;
	int k, fds[2], one = 1, v = -1;

	cfg.reference = kcmux_is_reference();
	cfg.module = kcm_module_name();
	k = kcm_socket(SOCK_DGRAM);
	if (k < 0) {
		fprintf(stderr, "kcm_stress: socket(AF_KCM): %s (module not loaded?)\n",
			strerror(-k));
		exit(2);
	}
	cfg.ext_origin = !setsockopt(k, SOL_KCM, KCMUX_ORIGIN, &one, sizeof(one));
	cfg.ext_inq = !ioctl(k, SIOCINQ, &v) && v == 0;
	if (!kcm_tcp_pair(AF_INET, fds)) {
		memset(&xa, 0, sizeof(xa));
		xa.size = sizeof(xa);
		xa.flags = KCMUX_ATTACH_FRAMING;
		xa.fd = fds[1];
		xa.framing.width = 4;
		if (!ioctl(k, SIOCKCMATTACH_EXT, &xa) && xa.psock_id) {
			cfg.ext_attach = true;
			q.fd = fds[1];
			q.psock_id = 0;
			cfg.ext_psockid = !ioctl(k, SIOCKCMPSOCKID, &q) &&
					  q.psock_id == xa.psock_id;
			kcm_unattach(k, fds[1]);
		}
		close(fds[0]);
		close(fds[1]);
	}
	close(k);
	cfg.genl_family = genl_resolve();
	/* Without ids, an origin cannot be checked: targeted sends need them. */
	if (!cfg.ext_psockid && !cfg.ext_attach)
		cfg.ext_origin = false;
}

static int load_parsers(void)
{
	int i;

	bpf_var[0] = kcm_bpf_len_parser(0);
	bpf_var[1] = kcm_bpf_len_parser_helper(0);
	if (bpf_var[0] < 0 || bpf_var[1] < 0)
		return -1;
	for (i = 0; i < NFIXED; i++) {
		bpf_fixed[i] = kcm_bpf_fixed_parser(fixed_lens[i]);
		if (bpf_fixed[i] < 0)
			return -1;
	}
	return 0;
}

static void close_parsers(void)
{
	int i;

	close(bpf_var[0]);
	close(bpf_var[1]);
	for (i = 0; i < NFIXED; i++)
		close(bpf_fixed[i]);
}

/* --- end of the run: drain, check, tear down ---------------------------- */

static unsigned long progress(void)
{
	return atomic_load(&st.rx_verified) + atomic_load(&st.tx_verified) +
	       atomic_load(&st.rx_returned);
}

/*
 * Stops the chaos and lets everything in flight arrive: no new messages,
 * receiving enabled everywhere, a fresh psock on every multiplexor.
 */
static void drain(struct wctx *w)
{
	struct ksock *ks[MAX_KSOCKS];
	struct mux *seen[MAX_KSOCKS];
	unsigned long last;
	uint64_t start = now_ms(), quiet;
	int n = 0, ns = 0, i, j, zero = 0;

	my_role = "drain";
	atomic_store(&writers_off, true);
	pthread_mutex_lock(&tbl);
	for (i = 0; i < nk; i++) {
		ks[n] = ktab[i];
		atomic_fetch_add(&ks[n]->refs, 1);
		n++;
	}
	pthread_mutex_unlock(&tbl);
	for (i = 0; i < n; i++) {
		requeue_begin(ks[i]->mux);
		if (setsockopt(ks[i]->fd, SOL_KCM, KCM_RECV_DISABLE, &zero,
			       sizeof(zero)))
			fail(OP_DRAIN, "re-enable receive on ksock %u: %s",
			     ks[i]->serial, strerror(errno));
		requeue_end(ks[i]->mux);
		for (j = 0; j < ns; j++)
			if (seen[j] == ks[i]->mux)
				break;
		if (j == ns) {
			seen[ns++] = ks[i]->mux;
			/* Whatever is queued for sending gets a way out. */
			attach_new(w, ks[i], OP_DRAIN);
		}
	}
	for (i = 0; i < n; i++)
		ksock_put(ks[i]);

	last = progress();
	quiet = now_ms();
	while (now_ms() - quiet < DRAIN_QUIET_MS) {
		kcm_msleep(100);
		if (progress() != last) {
			last = progress();
			quiet = now_ms();
		}
		if (now_ms() - start > DRAIN_MAX_MS) {
			fail(OP_DRAIN, "messages still arriving after %d s of draining",
			     DRAIN_MAX_MS / 1000);
			break;
		}
	}
	note("drained in %.1f s", (now_ms() - start) / 1000.0);
}

static const char *dir_name(int dir)
{
	return dir == DIR_RX ? "rx" : "tx";
}

/* What we know of a psock whose messages did not arrive. */
static void psock_report(uint32_t serial)
{
	struct psock *p = NULL;
	int i, inq = -1, err = -1;

	pthread_mutex_lock(&tbl);
	for (i = 0; i < npeer && !p; i++)
		if (peertab[i]->serial == serial)
			p = peertab[i];
	for (i = 0; i < np && !p; i++)
		if (ptab[i]->serial == serial)
			p = ptab[i];
	if (p)
		atomic_fetch_add(&p->refs, 1);
	pthread_mutex_unlock(&tbl);
	if (!p) {
		fprintf(stderr, "# psock %u: gone from the tables\n", serial);
		return;
	}
	if (!atomic_load(&p->dead)) {
		inq = kcm_inq(p->fd);
		err = kcm_sock_error(p->fd);
	}
	if (cfg.genl_family && atomic_load(&p->psock_id) && !p->mux->netns) {
		struct genl_find f = { .id = atomic_load(&p->psock_id) };

		genl_dump(KCMUX_CMD_GET_PSOCK, genl_find_cb, &f);
		if (f.found)
			fprintf(stderr, "# psock %u, kernel's view (genetlink): state %u, error %u, rx queue %u, tx queue %u\n",
				p->serial, f.state, f.error, f.rxq, f.txq);
		else
			fprintf(stderr, "# psock %u: id %u not in the kernel's dump\n",
				p->serial, f.id);
	}
	fprintf(stderr, "# psock %u (id %u, mux %u%s): state %d, fd %s, %d bytes in TCP, SO_ERROR %d, stopped %d (err %d), peer: writer %s, fin %d, rst %d, %zu bytes of the last batch written of %zu\n",
		p->serial, atomic_load(&p->psock_id), p->mux->serial,
		p->mux->destroyed ? ", destroyed" : "", p->state,
		atomic_load(&p->dead) ? "closed" : "open", inq, err,
		atomic_load(&p->stopped), atomic_load(&p->stop_err),
		atomic_load(&p->writer_stopped) ? "stopped" : "running",
		p->peer_fin, atomic_load(&p->rst_sent), p->woff, p->wlen);
	kcm_dump_file("/proc/net/kcm");
	psock_put(p);
}

/* The sequence numbers of s that went missing, as ranges. */
static void lost_ranges(struct stream *s, uint64_t upto)
{
	uint64_t n = atomic_load(&s->next_seq), seq, from = 0;
	int ranges = 0;
	bool in = false;

	fprintf(stderr, "# stream %u: %llu sent, %llu seen, lost:", s->id,
		(unsigned long long)atomic_load(&s->nsent),
		(unsigned long long)atomic_load(&s->nseen));
	for (seq = upto; seq <= n; seq++) {
		bool lost = seq < n && bm_test(&s->sent, seq) &&
			    !bm_test(&s->seen, seq);

		if (lost && !in) {
			from = seq;
			in = true;
		} else if (!lost && in) {
			in = false;
			if (ranges++ < 12)
				fprintf(stderr, " %llu-%llu",
					(unsigned long long)from,
					(unsigned long long)seq - 1);
		}
	}
	fprintf(stderr, "%s\n", ranges > 12 ? " ..." : "");
}

/* Allowed losses by the event that allowed them, for the summary. */
#define LOSS_REASONS	24
static struct {
	const char *why;
	unsigned long n;
} loss_reasons[LOSS_REASONS];

static void loss_count(const char *why, unsigned long n)
{
	int i;

	if (!n)
		return;
	for (i = 0; i < LOSS_REASONS - 1 && loss_reasons[i].why; i++)
		if (!strcmp(loss_reasons[i].why, why))
			break;
	if (!loss_reasons[i].why)
		loss_reasons[i].why = why;
	loss_reasons[i].n += n;
}

/* psock id -> first error, from a genetlink dump (initial namespace). */
struct psock_view {
	uint32_t n, cap;
	struct { uint32_t id, error; } *e;
};

static void psock_view_cb(struct nlattr **tb, void *arg)
{
	struct psock_view *v = arg;

	if (!tb[KCMUX_A_PSOCK_ID])
		return;
	if (v->n == v->cap) {
		v->cap = v->cap ? 2 * v->cap : 64;
		v->e = realloc(v->e, v->cap * sizeof(*v->e));
		if (!v->e)
			abort();
	}
	v->e[v->n].id = nla_u32(tb[KCMUX_A_PSOCK_ID]);
	v->e[v->n].error = nla_u32(tb[KCMUX_A_ERROR]);
	v->n++;
}

/*
 * A stream whose psock we could not watch: did the psock stop?  Only
 * if the kernel does not show it alive and error-free.
 */
static bool unobserved_stopped(const struct psock_view *v, struct stream *s)
{
	uint32_t id = atomic_load(&s->psock_id), i;

	if (!cfg.genl_family || !id || s->netns)
		return true;
	for (i = 0; i < v->n; i++)
		if (v->e[i].id == id)
			return v->e[i].error != 0;
	return true;
}

/* Every message sent and not seen must have a reason to be lost. */
static void check_losses(void)
{
	uint32_t id, last = atomic_load(&next_stream_id);
	unsigned long allowed = 0;
	struct psock_view view = { 0 };
	struct stream *s;

	if (cfg.genl_family)
		genl_dump(KCMUX_CMD_GET_PSOCK, psock_view_cb, &view);
	for (id = 1; id < last; id++) {
		uint64_t n, seq, upto, lost = 0, strict = 0, first = 0;
		int policy;

		s = stream_get(id);
		if (!s)
			continue;
		if (atomic_load(&s->unobserved) && unobserved_stopped(&view, s))
			stream_raise(s, LOSS_ANY, s->unobserved_why);
		n = atomic_load(&s->next_seq);
		upto = atomic_load(&s->lossable_upto);
		policy = atomic_load(&s->policy);
		for (seq = 0; seq < n; seq++) {
			if (!bm_test(&s->sent, seq) || bm_test(&s->seen, seq))
				continue;
			if (policy == LOSS_ANY) {
				allowed++;
				loss_count(s->why ? s->why : "?", 1);
				continue;
			}
			if (seq < upto) {
				allowed++;
				loss_count(s->targeted ?
					   "targeted, its psock went away" :
					   "in flight when a psock of its mux was reset",
					   1);
				continue;
			}
			if (!lost++)
				first = seq;
			if (policy == LOSS_NONE)
				strict++;
		}
		if ((strict || (policy == LOSS_ONE && lost > 1)) &&
		    s->dir == DIR_RX)
			psock_report(s->owner);
		if (strict || (policy == LOSS_ONE && lost > 1))
			lost_ranges(s, upto);
		if (strict)
			fail(OP_DRAIN, "%s stream %u (mux %u, %s %u, loss policy %s): %llu message(s) lost with nothing to lose them, first seq %llu of %llu sent",
			     dir_name(s->dir), s->id, s->mux_serial,
			     s->dir == DIR_RX ? "psock" : "ksock", s->owner,
			     loss_names[policy], (unsigned long long)strict,
			     (unsigned long long)first,
			     (unsigned long long)atomic_load(&s->nsent));
		else if (policy == LOSS_ONE && lost > 1)
			fail(OP_DRAIN, "%s stream %u (mux %u, psock %u): %llu messages lost at unattach (one allowed), first seq %llu",
			     dir_name(s->dir), s->id, s->mux_serial, s->owner,
			     (unsigned long long)lost, (unsigned long long)first);
		else {
			allowed += lost;
			loss_count(s->why ? s->why : "?", lost);
		}
	}
	atomic_fetch_add(&st.lost_allowed, allowed);
	free(view.e);
}

/* "*** KCM statistics (N MUX) ****": N, or -1. */
static int proc_mux_count(void)
{
	char line[256];
	FILE *f = fopen("/proc/net/kcm", "re");
	int n = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "*** KCM statistics (%d MUX)", &n) == 1)
			break;
	fclose(f);
	return n;
}

static void teardown(void)
{
	struct ksock *k;
	struct psock *p;
	uint64_t end;
	int n, refs = -1;

	atomic_store(&phase, PH_TEARDOWN);
	for (;;) {
		pthread_mutex_lock(&tbl);
		k = nk ? ktab[0] : NULL;
		if (k)
			atomic_fetch_add(&k->refs, 1);
		pthread_mutex_unlock(&tbl);
		if (!k)
			break;
		ksock_kill(k);
		ksock_put(k);
	}
	for (;;) {
		pthread_mutex_lock(&tbl);
		p = np ? ptab[0] : NULL;
		if (p)
			atomic_fetch_add(&p->refs, 1);
		pthread_mutex_unlock(&tbl);
		if (!p)
			break;
		atomic_store(&p->kcm_gone, true);
		psock_kill_fd(p);
		psock_put(p);
	}
	/* The peers read to the end of every connection. */
	end = now_ms() + 20000;
	do {
		pthread_mutex_lock(&tbl);
		n = npeer;
		pthread_mutex_unlock(&tbl);
		if (n)
			kcm_msleep(20);
	} while (n && now_ms() < end);
	if (n)
		fail(OP_DRAIN, "%d peer connections still open 20 s after teardown", n);
	/* Namespaces and sockets go away asynchronously. */
	end = now_ms() + 30000;
	while ((refs = kcm_module_refcnt()) > 0 && now_ms() < end)
		kcm_msleep(50);
	if (refs > 0)
		fail(OP_DRAIN, "module %s still has %d references after every socket closed",
		     cfg.module, refs);
	n = proc_mux_count();
	if (n != 0)
		fail(OP_DRAIN, "/proc/net/kcm lists %d multiplexors after every socket closed",
		     n);
}

/* --- fail-nth: every allocation of an operation fails once -------------- */

static int run_fail_nth(void);

/* --- summary ------------------------------------------------------------------ */

static const char *errname(int e)
{
	const char *n = e ? strerrorname_np(e) : "other";

	return n ? n : "?";
}

static void summary(double secs)
{
	unsigned long total = 0, runs, ok, c;
	int op, e;

	for (op = 0; op < OP_MAX; op++)
		total += atomic_load(&st.runs[op]);
	printf("kcm_stress: module %s, seed %llu, %d workers, %.0f s, faults %d%%\n",
	       cfg.module, (unsigned long long)cfg.seed, cfg.workers, secs,
	       cfg.fault_pct);
	printf("  %lu operations (%.0f/s); per operation: runs, ok, errors by errno\n",
	       total, secs > 0 ? total / secs : 0);
	for (op = 0; op < OP_MAX; op++) {
		runs = atomic_load(&st.runs[op]);
		ok = atomic_load(&st.ok[op]);
		if (!runs)
			continue;
		printf("  %-14s %9lu %9lu ", op_names[op], runs, ok);
		for (e = 0; e < ERRNO_MAX; e++) {
			c = atomic_load(&st.err[op][e]);
			if (c)
				printf(" %s:%lu", errname(e), c);
		}
		putchar('\n');
	}
	printf("  messages rx: sent %lu, verified %lu, handed back at unattach %lu, peeked %lu\n",
	       atomic_load(&st.rx_sent), atomic_load(&st.rx_verified),
	       atomic_load(&st.rx_returned), atomic_load(&st.rx_peeked));
	printf("  messages tx: sent %lu, verified %lu, cut short by a psock stop %lu\n",
	       atomic_load(&st.tx_sent), atomic_load(&st.tx_verified),
	       atomic_load(&st.tx_cut));
	printf("  lost where allowed %lu, truncated reads %lu, order checks %lu, streams %u\n",
	       atomic_load(&st.lost_allowed), atomic_load(&st.truncated),
	       atomic_load(&st.order_checks), atomic_load(&next_stream_id) - 1);
	for (e = 0; e < LOSS_REASONS && loss_reasons[e].why; e++)
		printf("    lost: %lu, %s\n", loss_reasons[e].n, loss_reasons[e].why);
	if (atomic_load(&st.partial_sends))
		printf("  short SEQPACKET sends (in-tree): %lu\n",
		       atomic_load(&st.partial_sends));
	printf("  SIGPIPE %lu (%lu on live sockets), network namespaces %lu\n",
	       atomic_load(&st.sigpipes), atomic_load(&st.sigpipes_live),
	       atomic_load(&st.netns_made));
	if (faults_used)
		printf("  injected failures: failslab %lld, fail_page_alloc %lld\n",
		       fi_hits[0], fi_hits[1]);
	printf("RESULT %s module=%s seed=%llu failures=%lu ops=%lu rx_verified=%lu tx_verified=%lu lost_allowed=%lu injected=%lld\n",
	       atomic_load(&st.failures) ? "FAIL" : "ok", cfg.module,
	       (unsigned long long)cfg.seed, atomic_load(&st.failures), total,
	       atomic_load(&st.rx_verified), atomic_load(&st.tx_verified),
	       atomic_load(&st.lost_allowed), fi_hits[0] + fi_hits[1]);
	fflush(stdout);
}

/* --- main -------------------------------------------------------------------- */

static void on_sigpipe(int sig)
{
	(void)sig;
	my_sigpipes++;
}

/* Kernel stacks of our threads: for a hang report. */
static void dump_stacks(void)
{
	char path[96], line[256];
	struct dirent *de;
	DIR *d = opendir("/proc/self/task");
	FILE *f;

	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%.16s/stack",
			 de->d_name);
		f = fopen(path, "re");
		if (!f)
			continue;
		fprintf(stderr, "# task %s:\n", de->d_name);
		while (fgets(line, sizeof(line), f))
			fprintf(stderr, "#   %s", line);
		fclose(f);
	}
	if (d)
		closedir(d);
}

static bool join_by(pthread_t t, uint64_t deadline_ms)
{
	struct timespec ts;
	uint64_t left = deadline_ms > now_ms() ? deadline_ms - now_ms() : 0;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += left / 1000;
	ts.tv_nsec += (left % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	return pthread_timedjoin_np(t, NULL, &ts) == 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: kcm_stress [--duration SECS] [--seed N] [--workers N]\n"
		"                  [--receivers N] [--faults PCT] [--fail-nth]\n"
		"                  [--max-socks N] [--max-muxes N] [--max-psocks N]\n"
		"                  [--skip OP[,OP...]] [--quiet]\n");
	exit(2);
}

static void parse_skip(char *list)
{
	char *save = NULL, *t;
	int op;

	for (t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		for (op = 0; op < OP_MAX; op++)
			if (!strcmp(t, op_names[op]))
				break;
		if (op == OP_MAX) {
			fprintf(stderr, "kcm_stress: unknown operation %s\n", t);
			usage();
		}
		cfg.skip_ops |= 1ull << op;
	}
}

static void parse_args(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "duration", required_argument, NULL, 'd' },
		{ "seed", required_argument, NULL, 's' },
		{ "workers", required_argument, NULL, 'w' },
		{ "receivers", required_argument, NULL, 'r' },
		{ "faults", required_argument, NULL, 'f' },
		{ "fail-nth", no_argument, NULL, 'n' },
		{ "max-socks", required_argument, NULL, 'K' },
		{ "max-muxes", required_argument, NULL, 'M' },
		{ "max-psocks", required_argument, NULL, 'P' },
		{ "skip", required_argument, NULL, 'x' },
		{ "quiet", no_argument, NULL, 'q' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "d:s:w:r:f:nK:M:P:x:q", opts,
				NULL)) != -1) {
		switch (c) {
		case 'd':
			cfg.duration = strtod(optarg, NULL);
			break;
		case 's':
			cfg.seed = strtoull(optarg, NULL, 0);
			break;
		case 'w':
			cfg.workers = atoi(optarg);
			break;
		case 'r':
			cfg.receivers = atoi(optarg);
			break;
		case 'f':
			cfg.fault_pct = atoi(optarg);
			break;
		case 'n':
			cfg.fail_nth = true;
			break;
		case 'K':
			cfg.max_ksocks = atoi(optarg);
			break;
		case 'M':
			cfg.max_muxes = atoi(optarg);
			break;
		case 'P':
			cfg.max_psocks = atoi(optarg);
			break;
		case 'x':
			parse_skip(optarg);
			break;
		case 'q':
			cfg.quiet = true;
			break;
		default:
			usage();
		}
	}
	if (optind != argc || cfg.duration <= 0 || cfg.workers < 1 ||
	    cfg.receivers < 1 || cfg.workers + cfg.receivers + 2 > MAX_THREADS ||
	    cfg.fault_pct < 0 || cfg.fault_pct > 100 ||
	    cfg.max_ksocks < 1 || cfg.max_ksocks > MAX_KSOCKS ||
	    cfg.max_psocks < 1 || cfg.max_psocks > MAX_PSOCKS - 8 ||
	    cfg.max_muxes < 1)
		usage();
}

int main(int argc, char **argv)
{
	pthread_t workers[MAX_THREADS], receivers[MAX_THREADS], peers[8], mon;
	struct wctx wc[MAX_THREADS], dctx;
	struct peer_arg pa[8];
	struct sigaction sa = { .sa_handler = on_sigpipe };
	struct rlimit rl = { 8192, 8192 };
	uint64_t start;
	int sv[2], fd_base, fd_end, i, rc;
	bool hung = false;

	parse_args(argc, argv);
	if (!cfg.seed)
		cfg.seed = mix64(now_ns() ^ ((uint64_t)getpid() << 32)) % 1000000000000ull;
	setvbuf(stdout, NULL, _IOLBF, 0);
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGPIPE, &sa, NULL);
	setrlimit(RLIMIT_NOFILE, &rl);
	streams = calloc(MAX_STREAMS, sizeof(*streams));
	if (!streams)
		abort();

	probe();
	if (load_parsers()) {
		fprintf(stderr, "kcm_stress: cannot load the BPF parsers\n");
		return 2;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK,
		       0, sv))
		return 2;
	close(sv[1]);
	placeholder = sv[0];
	epfd_shared = epoll_create1(EPOLL_CLOEXEC);
	fd_base = count_fds();
	printf("# kcm_stress: module %s, seed %llu (replay: --seed %llu), extensions:%s%s%s%s%s\n",
	       cfg.module, (unsigned long long)cfg.seed,
	       (unsigned long long)cfg.seed,
	       cfg.ext_attach ? " attach-ext" : "",
	       cfg.ext_psockid ? " psock-id" : "",
	       cfg.ext_origin ? " origin" : "",
	       cfg.ext_inq ? " fionread" : "",
	       cfg.genl_family ? " genetlink" : "");
	if (cfg.fail_nth)
		return run_fail_nth();
	if (cfg.fault_pct && !fi_setup(cfg.fault_pct))
		return 2;

	start = now_ms();
	t_end_ms = start + (uint64_t)(cfg.duration * 1000);
	for (i = 0; i < cfg.peers; i++) {
		pa[i].idx = i;
		pa[i].of = cfg.peers;
		pthread_create(&peers[i], NULL, peer_main, &pa[i]);
	}
	pthread_create(&mon, NULL, monitor_main, NULL);
	for (i = 0; i < cfg.receivers; i++) {
		wctx_init(&wc[cfg.workers + i], cfg.workers + i, cfg.seed);
		pthread_create(&receivers[i], NULL, receiver_main,
			       &wc[cfg.workers + i]);
	}
	for (i = 0; i < cfg.workers; i++) {
		wctx_init(&wc[i], i, cfg.seed);
		pthread_create(&workers[i], NULL, worker_main, &wc[i]);
	}
	my_idx = MAX_THREADS - 1;
	for (i = 0; i < cfg.workers; i++)
		if (!join_by(workers[i], t_end_ms + 60000)) {
			hung = true;
			break;
		}
	if (hung) {
		fail(OP_DRAIN, "a worker is stuck 60 s after the end of the run");
		dump_stacks();
		summary((now_ms() - start) / 1000.0);
		_exit(1);
	}
	atomic_store(&phase, PH_DRAIN);
	if (faults_on)
		fi_stop();
	wctx_init(&dctx, MAX_THREADS - 1, cfg.seed);
	drain(&dctx);
	check_losses();
	teardown();
	atomic_store(&phase, PH_DONE);
	for (i = 0; i < cfg.receivers; i++)
		pthread_join(receivers[i], NULL);
	for (i = 0; i < cfg.peers; i++)
		pthread_join(peers[i], NULL);
	pthread_join(mon, NULL);
	for (i = 0; i < cfg.workers + cfg.receivers; i++)
		wctx_fini(&wc[i]);
	wctx_fini(&dctx);
	fd_end = count_fds();
	if (fd_end != fd_base)
		fail(OP_DRAIN, "%d fds open at the end, %d at the start", fd_end,
		     fd_base);
	close(epfd_shared);
	close(placeholder);
	close_parsers();
	summary((now_ms() - start) / 1000.0);
	rc = atomic_load(&st.failures) ? 1 : 0;
	return rc;
}


/*
 * --fail-nth: for each operation below, run it with its 1st, 2nd, ...
 * allocation (in the module's call paths) failing, until it makes no
 * more allocations.  After each run the multiplexor must still work and
 * no message may be lost: a failed call changed nothing, a successful
 * one did all of its job.
 */

#define NTH_MAX		400
#define NTH_STREAM	0x7ffffff0u

struct nth_env {
	int k, k2;		/* KCM sockets of one mux (k2 may be -1) */
	int tcp, peer;		/* a TCP connection: our end, far end */
	bool attached;
	uint32_t fixed;		/* message length on the reference, else 0 */
	uint64_t seq;		/* next message number */
	uint8_t *buf, *buf2;
};

static int nth_write(int n)
{
	char b[16];
	int fd = open("/proc/thread-self/fail-nth", O_WRONLY | O_CLOEXEC);
	int len = snprintf(b, sizeof(b), "%d", n), err = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, b, len) != len)
		err = -errno;
	close(fd);
	return err;
}

/* True if the armed failure happened; disarms. */
static bool nth_fired(void)
{
	char b[16] = "";
	int fd = open("/proc/thread-self/fail-nth", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, b, sizeof(b) - 1);

	if (fd >= 0)
		close(fd);
	nth_write(0);
	return n > 0 && atoi(b) == 0;
}

static uint32_t nth_len(struct nth_env *e, uint32_t want)
{
	return e->fixed ? e->fixed : want;
}

static int nth_parser(struct nth_env *e)
{
	return e->fixed ? bpf_fixed[fixed_index(e->fixed)] : bpf_var[0];
}

static void nth_down(struct nth_env *e)
{
	if (e->k >= 0)
		close(e->k);
	if (e->k2 >= 0)
		close(e->k2);
	if (e->tcp >= 0)
		close(e->tcp);
	if (e->peer >= 0)
		close(e->peer);
	e->k = e->k2 = e->tcp = e->peer = -1;
	e->attached = false;
}

static int nth_kcm(int type)
{
	int fd = kcm_socket(type);

	if (fd >= 0) {
		set_timeo_ms(fd, SO_RCVTIMEO, 3000);
		set_timeo_ms(fd, SO_SNDTIMEO, 3000);
	}
	return fd;
}

static int nth_pair(struct nth_env *e)
{
	struct kcm_tcp_opts o = { .rcvbuf = 4 << 20, .sndtimeo_ms = 3000 };
	int fds[2], err;

	err = kcm_tcp_pair_opts(AF_INET, fds, &o);
	if (err)
		return err;
	e->peer = fds[0];
	e->tcp = fds[1];
	set_timeo_ms(e->tcp, SO_RCVTIMEO, 3000);
	set_timeo_ms(e->peer, SO_RCVTIMEO, 3000);
	return 0;
}

/* What each step needs, unarmed; 0 or -errno. */
static int nth_up(struct nth_env *e, bool clone, bool pair, bool attach)
{
	struct kcm_clone cl = { .fd = -1 };

	e->k = e->k2 = e->tcp = e->peer = -1;
	e->attached = false;
	e->k = nth_kcm(SOCK_DGRAM);
	if (e->k < 0)
		return e->k;
	if (clone) {
		if (ioctl(e->k, SIOCKCMCLONE, &cl))
			return -errno;
		e->k2 = cl.fd;
		set_timeo_ms(e->k2, SO_RCVTIMEO, 3000);
	}
	if (pair && nth_pair(e))
		return -EIO;
	if (attach) {
		if (kcm_attach(e->k, e->tcp, nth_parser(e)))
			return -errno;
		e->attached = true;
	}
	return 0;
}

/* The peer writes message seq of len bytes. */
static bool nth_peer_send(struct nth_env *e, uint32_t len)
{
	msg_build(e->buf, len, NTH_STREAM, e->seq++, 0);
	return !kcm_send_all(e->peer, e->buf, len);
}

/* Reads one message on fd and checks it is (NTH_STREAM, seq, len). */
static const char *nth_expect(struct nth_env *e, int fd, uint64_t seq,
			      uint32_t len)
{
	struct wire_hdr h;
	ssize_t n;

	if (kcm_poll(fd, POLLIN, 5000) <= 0)
		return "no message within 5 s";
	n = recv(fd, e->buf2, MAX_MSG, MSG_DONTWAIT);
	if (n < 0)
		return strerror(errno);
	if ((size_t)n != len || !hdr_ok(e->buf2, &h) || h.stream != NTH_STREAM ||
	    h.seq != seq)
		return "not the message sent";
	if (body_check(e->buf2 + HDR_LEN, len - HDR_LEN, NTH_STREAM, seq) !=
	    len - HDR_LEN)
		return "corrupt body";
	return NULL;
}

/* The peer reads one whole message and checks it. */
static const char *nth_peer_expect(struct nth_env *e, uint64_t seq,
				   uint32_t len)
{
	struct wire_hdr h;

	if (kcm_read_exact(e->peer, e->buf2, len, 5000) != (ssize_t)len)
		return "peer: no whole message within 5 s";
	if (!hdr_ok(e->buf2, &h) || h.stream != NTH_STREAM || h.seq != seq)
		return "peer: not the message sent";
	if (body_check(e->buf2 + HDR_LEN, len - HDR_LEN, NTH_STREAM, seq) !=
	    len - HDR_LEN)
		return "peer: corrupt body";
	return NULL;
}

/* The mux works both ways: peer -> kcm socket rx, kcm socket tx -> peer. */
static const char *nth_roundtrip(struct nth_env *e, int rx, int tx)
{
	uint32_t len = nth_len(e, 200);
	const char *why;
	uint64_t seq;

	seq = e->seq;
	if (!nth_peer_send(e, len))
		return "peer send failed";
	why = nth_expect(e, rx, seq, len);
	if (why)
		return why;
	seq = e->seq++;
	msg_build(e->buf, len, NTH_STREAM, seq, 0);
	if (send(tx, e->buf, len, MSG_NOSIGNAL) != (ssize_t)len)
		return "send failed";
	return nth_peer_expect(e, seq, len);
}

/* The TCP connection is plain TCP again: bytes go through untouched. */
static const char *nth_plain_tcp(struct nth_env *e)
{
	static const char ping[] = "plain tcp";
	char got[sizeof(ping)];

	if (kcm_send_all(e->peer, ping, sizeof(ping)))
		return "peer write failed";
	if (kcm_read_exact(e->tcp, got, sizeof(got), 5000) != sizeof(got) ||
	    memcmp(got, ping, sizeof(ping)))
		return "TCP socket did not get the bytes: still attached?";
	return NULL;
}

struct nth_case {
	const char *name;
	bool ext;		/* needs the kcmux extensions */
	bool kcmux_only;	/* relies on kcmux semantics */
	/* Sets up, runs the armed call (between nth_write and nth_fired),
	 * checks.  Returns NULL or a failure; *fired says if it failed. */
	const char *(*run)(struct nth_env *e, int n, bool *fired, long *rc);
};

#define ARM(n)		nth_write(n)
#define DISARM(f)	(*(f) = nth_fired())

static const char *nth_socket(struct nth_env *e, int n, bool *fired, long *rc)
{
	e->k = e->k2 = e->tcp = e->peer = -1;
	ARM(n);
	*rc = SYS(socket(AF_KCM, SOCK_DGRAM | SOCK_CLOEXEC, KCMPROTO_CONNECTED));
	DISARM(fired);
	if (*rc < 0)
		return NULL;
	e->k = *rc;
	set_timeo_ms(e->k, SO_RCVTIMEO, 3000);
	if (nth_pair(e) || kcm_attach(e->k, e->tcp, nth_parser(e)))
		return "new socket cannot attach";
	return nth_roundtrip(e, e->k, e->k);
}

static const char *nth_clone(struct nth_env *e, int n, bool *fired, long *rc)
{
	struct kcm_clone cl = { .fd = -1 };
	int one = 1;

	if (nth_up(e, false, true, true))
		return "setup";
	ARM(n);
	*rc = SYS(ioctl(e->k, SIOCKCMCLONE, &cl));
	DISARM(fired);
	if (*rc < 0)
		return nth_roundtrip(e, e->k, e->k);
	e->k2 = cl.fd;
	set_timeo_ms(e->k2, SO_RCVTIMEO, 3000);
	/* Receive only on the clone. */
	if (setsockopt(e->k, SOL_KCM, KCM_RECV_DISABLE, &one, sizeof(one)))
		return "KCM_RECV_DISABLE";
	return nth_roundtrip(e, e->k2, e->k2);
}

static const char *nth_attach_common(struct nth_env *e, int n, bool *fired,
				     long *rc, bool ext, int queued)
{
	struct kcmux_attach xa;
	struct kcm_attach a;
	uint32_t len = nth_len(e, 300);
	uint64_t first = e->seq;
	const char *why;
	int i;

	if (nth_up(e, false, true, false))
		return "setup";
	for (i = 0; i < queued; i++)
		if (!nth_peer_send(e, len))
			return "peer send";
	if (queued)
		kcm_msleep(50);	/* in the TCP receive queue */
	if (ext) {
		memset(&xa, 0, sizeof(xa));
		xa.size = sizeof(xa);
		xa.flags = KCMUX_ATTACH_FRAMING;
		xa.fd = e->tcp;
		xa.framing.width = 4;
		ARM(n);
		*rc = SYS(ioctl(e->k, SIOCKCMATTACH_EXT, &xa));
		DISARM(fired);
	} else {
		a.fd = e->tcp;
		a.bpf_fd = nth_parser(e);
		ARM(n);
		*rc = SYS(ioctl(e->k, SIOCKCMATTACH, &a));
		DISARM(fired);
	}
	if (*rc < 0) {
		/* Nothing attached: the queued bytes are still TCP's. */
		if (queued) {
			if (kcm_read_exact(e->tcp, e->buf2, len, 5000) != len)
				return "queued bytes gone after a failed attach";
			return NULL;
		}
		return nth_plain_tcp(e);
	}
	e->attached = true;
	for (i = 0; i < queued; i++) {
		why = nth_expect(e, e->k, first + i, len);
		if (why)
			return why;
	}
	return nth_roundtrip(e, e->k, e->k);
}

static const char *nth_attach(struct nth_env *e, int n, bool *fired, long *rc)
{
	return nth_attach_common(e, n, fired, rc, false, 0);
}

static const char *nth_attach_ext(struct nth_env *e, int n, bool *fired,
				  long *rc)
{
	return nth_attach_common(e, n, fired, rc, true, 0);
}

static const char *nth_attach_queued(struct nth_env *e, int n, bool *fired,
				     long *rc)
{
	return nth_attach_common(e, n, fired, rc, false, 3);
}

static const char *nth_send_common(struct nth_env *e, int n, bool *fired,
				   long *rc, uint32_t want, bool psock)
{
	uint32_t len = nth_len(e, want);
	uint64_t seq;
	struct kcm_attach a;
	const char *why;

	if (nth_up(e, false, true, psock))
		return "setup";
	seq = e->seq++;
	msg_build(e->buf, len, NTH_STREAM, seq, 0);
	ARM(n);
	*rc = SYS(send(e->k, e->buf, len, MSG_NOSIGNAL));
	DISARM(fired);
	if (!psock) {
		a.fd = e->tcp;
		a.bpf_fd = nth_parser(e);
		if (ioctl(e->k, SIOCKCMATTACH, &a))
			return "attach after the send";
	}
	if (*rc >= 0) {
		if (*rc != len)
			return "short send";
		why = nth_peer_expect(e, seq, len);
		if (why)
			return why;
	}
	/* A failed send left nothing behind: the next message is whole. */
	return nth_roundtrip(e, e->k, e->k);
}

static const char *nth_send_small(struct nth_env *e, int n, bool *fired,
				  long *rc)
{
	return nth_send_common(e, n, fired, rc, 100, true);
}

static const char *nth_send_large(struct nth_env *e, int n, bool *fired,
				  long *rc)
{
	return nth_send_common(e, n, fired, rc, 100000, true);
}

static const char *nth_send_queued(struct nth_env *e, int n, bool *fired,
				   long *rc)
{
	return nth_send_common(e, n, fired, rc, 3000, false);
}

/* The last part of a MSG_MORE message fails: the first part stays. */
static const char *nth_send_more(struct nth_env *e, int n, bool *fired,
				 long *rc)
{
	uint32_t len = nth_len(e, 5000), cut = len / 3;
	uint64_t seq;

	if (nth_up(e, false, true, true))
		return "setup";
	seq = e->seq++;
	msg_build(e->buf, len, NTH_STREAM, seq, 0);
	if (send(e->k, e->buf, cut, MSG_MORE | MSG_NOSIGNAL) != (ssize_t)cut)
		return "first part";
	ARM(n);
	*rc = SYS(send(e->k, e->buf + cut, len - cut, MSG_NOSIGNAL));
	DISARM(fired);
	if (*rc < 0 &&
	    send(e->k, e->buf + cut, len - cut, MSG_NOSIGNAL) != len - cut)
		return "last part, again";
	return nth_peer_expect(e, seq, len);
}

/* A message waits on the KCM socket; the read fails, the message stays. */
static const char *nth_recv(struct nth_env *e, int n, bool *fired, long *rc)
{
	uint32_t len = nth_len(e, 700);
	uint64_t seq;
	const char *why;

	if (nth_up(e, false, true, true))
		return "setup";
	seq = e->seq;
	if (!nth_peer_send(e, len) || kcm_poll(e->k, POLLIN, 5000) <= 0)
		return "no message to read";
	ARM(n);
	*rc = SYS(recv(e->k, e->buf2, MAX_MSG, MSG_DONTWAIT));
	DISARM(fired);
	if (*rc < 0)
		return nth_expect(e, e->k, seq, len);
	if (*rc != len || body_check(e->buf2 + HDR_LEN, len - HDR_LEN,
				     NTH_STREAM, seq) != len - HDR_LEN)
		return "wrong message";
	why = nth_roundtrip(e, e->k, e->k);
	return why;
}

static const char *nth_splice(struct nth_env *e, int n, bool *fired, long *rc)
{
	uint32_t len = nth_len(e, 9000);
	int p[2];
	uint64_t seq;
	const char *why = NULL;

	if (nth_up(e, false, true, true))
		return "setup";
	seq = e->seq;
	if (!nth_peer_send(e, len) || kcm_poll(e->k, POLLIN, 5000) <= 0)
		return "no message to splice";
	if (pipe2(p, O_CLOEXEC | O_NONBLOCK))
		return "pipe";
	ARM(n);
	*rc = SYS(splice(e->k, NULL, p[1], NULL, MAX_MSG, SPLICE_F_NONBLOCK));
	DISARM(fired);
	if (*rc < 0)
		why = nth_expect(e, e->k, seq, len);
	else if (*rc != len || pipe_read_exact(p[0], e->buf2, len, 5000) != len ||
		 body_check(e->buf2 + HDR_LEN, len - HDR_LEN, NTH_STREAM, seq) !=
		 len - HDR_LEN)
		why = "spliced the wrong bytes";
	close(p[0]);
	close(p[1]);
	return why;
}

/* Messages queued on k move to k2 when k stops receiving. */
static const char *nth_recv_disable(struct nth_env *e, int n, bool *fired,
				    long *rc)
{
	uint32_t len = nth_len(e, 400);
	int one = 1, zero = 0, i;
	uint64_t first;
	const char *why;

	if (nth_up(e, true, true, true))
		return "setup";
	if (setsockopt(e->k2, SOL_KCM, KCM_RECV_DISABLE, &one, sizeof(one)))
		return "disable k2";
	first = e->seq;
	for (i = 0; i < 3; i++)
		if (!nth_peer_send(e, len))
			return "peer send";
	for (i = 0; i < 100 && kcm_inq(e->k) >= 0; i++) {
		if (kcm_poll(e->k, POLLIN, 50) > 0 && i > 3)
			break;
	}
	if (setsockopt(e->k2, SOL_KCM, KCM_RECV_DISABLE, &zero, sizeof(zero)))
		return "enable k2";
	ARM(n);
	*rc = SYS(setsockopt(e->k, SOL_KCM, KCM_RECV_DISABLE, &one, sizeof(one)));
	DISARM(fired);
	for (i = 0; i < 3; i++) {
		why = nth_expect(e, *rc < 0 ? e->k : e->k2, first + i, len);
		if (why && *rc < 0)
			why = nth_expect(e, e->k2, first + i, len);
		if (why)
			return why;
	}
	return NULL;
}

static const char *nth_unattach(struct nth_env *e, int n, bool *fired,
				long *rc)
{
	struct kcm_unattach u;

	if (nth_up(e, false, true, true))
		return "setup";
	u.fd = e->tcp;
	ARM(n);
	*rc = SYS(ioctl(e->k, SIOCKCMUNATTACH, &u));
	DISARM(fired);
	if (*rc < 0)
		return nth_roundtrip(e, e->k, e->k);
	return nth_plain_tcp(e);
}

/* Closing the last socket with messages queued both ways. */
static const char *nth_close_last(struct nth_env *e, int n, bool *fired,
				  long *rc)
{
	uint32_t len = nth_len(e, 600);

	if (nth_up(e, false, true, true))
		return "setup";
	if (!nth_peer_send(e, len) || kcm_poll(e->k, POLLIN, 5000) <= 0)
		return "no message queued";
	msg_build(e->buf, len, NTH_STREAM, e->seq++, 0);
	send(e->k, e->buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
	ARM(n);
	*rc = SYS(close(e->k));
	DISARM(fired);
	e->k = -1;
	/* The mux is gone: TCP gets its callbacks back. */
	kcm_read_exact(e->peer, e->buf2, len, 2000);
	return nth_plain_tcp(e);
}

/* Closing a socket whose queue moves to its sibling. */
static const char *nth_close_requeue(struct nth_env *e, int n, bool *fired,
				     long *rc)
{
	uint32_t len = nth_len(e, 600);
	int one = 1, zero = 0;
	uint64_t seq;

	if (nth_up(e, true, true, true))
		return "setup";
	if (setsockopt(e->k2, SOL_KCM, KCM_RECV_DISABLE, &one, sizeof(one)))
		return "disable k2";
	seq = e->seq;
	if (!nth_peer_send(e, len) || kcm_poll(e->k, POLLIN, 5000) <= 0)
		return "no message queued";
	if (setsockopt(e->k2, SOL_KCM, KCM_RECV_DISABLE, &zero, sizeof(zero)))
		return "enable k2";
	ARM(n);
	*rc = SYS(close(e->k));
	DISARM(fired);
	e->k = -1;
	return nth_expect(e, e->k2, seq, len);
}

static const char *nth_targeted(struct nth_env *e, int n, bool *fired,
				long *rc)
{
	struct kcmux_psock_id q;
	union {
		char buf[CMSG_SPACE(sizeof(uint32_t))];
		struct cmsghdr align;
	} cm;
	uint32_t len = 500;
	struct iovec iov;
	struct msghdr mh = { 0 };
	struct cmsghdr *c;
	uint64_t seq;

	if (nth_up(e, false, true, true))
		return "setup";
	q.fd = e->tcp;
	if (ioctl(e->k, SIOCKCMPSOCKID, &q))
		return "SIOCKCMPSOCKID";
	seq = e->seq++;
	msg_build(e->buf, len, NTH_STREAM, seq, q.psock_id);
	iov.iov_base = e->buf;
	iov.iov_len = len;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cm.buf;
	mh.msg_controllen = sizeof(cm.buf);
	c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_KCM;
	c->cmsg_type = KCMUX_ORIGIN;
	c->cmsg_len = CMSG_LEN(sizeof(uint32_t));
	memcpy(CMSG_DATA(c), &q.psock_id, sizeof(uint32_t));
	ARM(n);
	*rc = SYS(sendmsg(e->k, &mh, MSG_NOSIGNAL));
	DISARM(fired);
	if (*rc >= 0)
		return nth_peer_expect(e, seq, len);
	return nth_roundtrip(e, e->k, e->k);
}

static const struct nth_case nth_cases[] = {
	{ "socket", false, false, nth_socket },
	{ "clone", false, false, nth_clone },
	{ "attach", false, false, nth_attach },
	{ "attach-ext", true, false, nth_attach_ext },
	{ "attach-queued", false, false, nth_attach_queued },
	{ "send-small", false, false, nth_send_small },
	{ "send-large", false, false, nth_send_large },
	{ "send-unattached", false, false, nth_send_queued },
	{ "send-more", false, true, nth_send_more },
	{ "send-targeted", true, false, nth_targeted },
	{ "recv", false, false, nth_recv },
	{ "splice-read", false, true, nth_splice },
	{ "recv-disable", false, false, nth_recv_disable },
	{ "unattach", false, false, nth_unattach },
	{ "close-requeue", false, false, nth_close_requeue },
	{ "close-last", false, false, nth_close_last },
};

static int run_fail_nth(void)
{
	unsigned int i;
	int n, points, failed = 0, injected_total = 0;
	struct nth_env e;

	my_role = "fail-nth";
	my_idx = 0;
	if (!fi_setup(0))
		return 2;
	if (nth_write(0)) {
		fprintf(stderr, "kcm_stress: /proc/thread-self/fail-nth: %s\n",
			strerror(errno));
		return 2;
	}
	memset(&e, 0, sizeof(e));
	e.buf = malloc(MAX_MSG);
	e.buf2 = malloc(MAX_MSG);
	if (!e.buf || !e.buf2)
		abort();
	for (i = 0; i < sizeof(nth_cases) / sizeof(nth_cases[0]); i++) {
		const struct nth_case *c = &nth_cases[i];
		unsigned long before = atomic_load(&st.failures);
		unsigned long errs[ERRNO_MAX] = { 0 };

		if ((c->ext && !cfg.ext_attach) ||
		    (c->ext && !strcmp(c->name, "send-targeted") && !cfg.ext_origin) ||
		    (c->kcmux_only && cfg.reference)) {
			printf("  %-16s skipped: %s\n", c->name,
			       c->ext ? "extension not available" :
					"kcmux semantics (in-tree differs)");
			continue;
		}
		points = 0;
		for (n = 1; n <= NTH_MAX; n++) {
			const char *why;
			bool fired = false;
			long rc = 0;

			e.fixed = cfg.reference ?
				  (strstr(c->name, "large") ? 65536 : 512) : 0;
			why = c->run(&e, n, &fired, &rc);
			nth_write(0);
			if (rc < 0)
				errs[-rc < ERRNO_MAX ? -rc : 0]++;
			if (why)
				fail(OP_DRAIN, "fail-nth %s, allocation %d%s: %s (call returned %ld)",
				     c->name, n, fired ? " failed" : "", why, rc);
			else if (rc < 0 && !fired)
				fail(OP_DRAIN, "fail-nth %s: %s without an injected failure",
				     c->name, strerror((int)-rc));
			else if (rc < 0 && rc != -ENOMEM && rc != -ENOBUFS &&
				 rc != -EAGAIN && rc != -ENFILE)
				fail(OP_DRAIN, "fail-nth %s, allocation %d: %s, not ENOMEM/ENOBUFS/ENFILE/EAGAIN",
				     c->name, n, strerror((int)-rc));
			nth_down(&e);
			if (!fired)
				break;
			points++;
		}
		injected_total += points;
		printf("  %-16s %3d allocation(s) failed in turn, %s", c->name,
		       points, atomic_load(&st.failures) == before ? "all handled" :
								   "FAILURES");
		for (n = 0; n < ERRNO_MAX; n++)
			if (errs[n])
				printf(" %s:%lu", errname(n), errs[n]);
		putchar('\n');
		if (atomic_load(&st.failures) != before)
			failed++;
	}
	fi_stop();
	free(e.buf);
	free(e.buf2);
	printf("RESULT %s module=%s seed=%llu fail-nth cases=%zu failed=%d injected=%d\n",
	       failed ? "FAIL" : "ok", cfg.module, (unsigned long long)cfg.seed,
	       sizeof(nth_cases) / sizeof(nth_cases[0]), failed, injected_total);
	return failed ? 1 : 0;
}
