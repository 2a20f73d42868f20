// SPDX-License-Identifier: GPL-2.0
/*
 * kcm_bench - one measurement of message throughput or memory over
 * loopback TCP, in a private network namespace, printed as one JSON line.
 *
 *   kcm_bench probe
 *   kcm_bench run --impl kcm|framing|user|raw --dir rx|tx --size BYTES
 *                 [--psocks N] [--socks M] [--recvmmsg] [--parser len|fixed|pinned:PATH]
 *                 [--bufsize BYTES] [--chunk BYTES] [--warmup SECS]
 *                 [--secs SECS] [--drain SECS] [--kcm-rcvbuf BYTES] [--prefill]
 *                 [--batch] [--label NAME] [--expect kcmux|kcm|none]
 *   kcm_bench mem --impl kcm|framing|user [--parser len|fixed|pinned:PATH] [--msgs N]
 *                 [--label NAME] [--expect kcmux|kcm|none]
 *   kcm_bench frame --impl kcm|framing [--parser len|fixed|pinned:PATH] [--size BYTES]
 *                 [--msgs N] [--label NAME] [--expect kcmux|kcm|none]
 *
 * Implementations under test:
 *   kcm      AF_KCM with a BPF parser: kcmux or the in-tree kcm.ko, whichever
 *            module is loaded (--expect kcmux|kcm makes sure it is the one
 *            the caller means);
 *   framing  AF_KCM with kcmux's built-in length framing (SIOCKCMATTACH_EXT);
 *   user     the same messages framed in user space over plain TCP: large
 *            reads into a buffer, lengths parsed in place;
 *   raw      plain TCP bytes, no messages: the bound.
 *
 * Every message is framed the same way: a 4-byte big-endian length that
 * includes the header, a sequence number, a flow id and, in its last four
 * bytes, a trailer derived from both.  The receiving side checks all of
 * it, the order of each flow and, after the run, that every message sent
 * arrived exactly once, so a path that is fast because it is wrong fails
 * instead of winning.
 *
 * rx: a peer writes framed bytes into the TCP sockets as fast as it can;
 *     the implementation receives (M KCM sockets on M threads, or M user
 *     threads sharing the connections).
 * tx: the implementation sends (M threads, one KCM socket each, or M user
 *     threads owning a share of the connections); a peer reads the TCP
 *     streams and checks the framing.
 * mem: a peer fills the receive side while nobody reads; kernel memory per
 *     queued 64-byte message.
 * frame: the same fill, timed: the cost of framing and queueing a message
 *     with nobody reading (the parser's share shows here, not behind a
 *     busy reader).
 *
 * A run counts, after --warmup, the messages that arrive in --secs.  With
 * --batch it times a batch instead: after the warm-up the senders stop
 * and everything they wrote is read, then a batch of messages (about
 * --secs at the warm-up's rate) goes from idle buffers to idle buffers,
 * timed from letting the senders go to the arrival of its last message.
 * A count over a window also counts how much fuller or emptier the
 * buffers between sender and receiver got during it; a batch does not.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdarg.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <linux/sockios.h>

#include "kcm_test.h"

#ifndef SO_MEMINFO
#define SO_MEMINFO	55
#endif
#ifndef SK_MEMINFO_RMEM_ALLOC
#define SK_MEMINFO_RMEM_ALLOC	0
#define SK_MEMINFO_VARS		9
#endif

#define MSG_MIN		16		/* header (12) + trailer (4) */
#define MSG_MAX		(8u << 20)
#define MMSG_BATCH	32
#define POLL_MS		100		/* how often blocked threads look up */
#define KSTAT_MAX	48

enum impl { IMPL_KCM, IMPL_FRAMING, IMPL_USER, IMPL_RAW };
static const char *const impl_names[] = { "kcm", "framing", "user", "raw" };

static struct {
	enum impl impl;
	bool tx;
	uint32_t size;
	int psocks;
	int socks;
	bool mmsg;
	bool fixed_parser;
	const char *pinned_parser;	/* --parser pinned:PATH */
	double warmup;
	double secs;
	const char *label;
	const char *expect;
	int bufsize;
	int drain_ms;		/* bound of "everything sent arrives" */
	bool prefill;		/* rx: fill every connection before reading */
	bool batch;		/* time a batch from idle to idle (above) */
	int chunk;		/* bytes per write of the rx peer (whole messages) */
	int kcm_rcvbuf;		/* SO_RCVBUF of the KCM sockets, if not bufsize */
	uint64_t msgs;		/* mem: messages queued in phase 1 */
} cfg = {
	.size = 64, .psocks = 1, .socks = 1, .warmup = 0.5, .secs = 1.5,
	.label = "", .drain_ms = 20000, .msgs = 20000,
};

/* Set when any check fails; the first reason is kept. */
static atomic_bool failed;
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;
static char fail_reason[256];

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&fail_lock);
	if (!atomic_load(&failed)) {
		va_start(ap, fmt);
		vsnprintf(fail_reason, sizeof(fail_reason), fmt, ap);
		va_end(ap);
		atomic_store(&failed, true);
	}
	pthread_mutex_unlock(&fail_lock);
}

/* For setup errors: nothing to measure, report and leave. */
static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
	struct timespec ts = { .tv_sec = (time_t)s,
			       .tv_nsec = (long)((s - (time_t)s) * 1e9) };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n, size);

	if (!p)
		die("out of memory (%zu x %zu)", n, size);
	return p;
}

/* --- messages ------------------------------------------------------------ */

static inline uint32_t msg_trailer(uint32_t seq, uint32_t flow)
{
	return ~(seq * 0x9e3779b1u) ^ (flow << 20) ^ 0x6b636d;
}

/* Stamps the framing of one message of len bytes over p; payload untouched. */
static inline void msg_stamp(uint8_t *p, uint32_t len, uint32_t seq,
			     uint32_t flow)
{
	uint32_t be = htonl(len), tr = msg_trailer(seq, flow);

	memcpy(p, &be, 4);
	memcpy(p + 4, &seq, 4);
	memcpy(p + 8, &flow, 4);
	memcpy(p + len - 4, &tr, 4);
}

static inline uint32_t be32_at(const uint8_t *p)
{
	uint32_t be;

	memcpy(&be, p, 4);
	return ntohl(be);
}

/*
 * What one receiving context (a thread, or a connection) has seen: the
 * last sequence number of each flow it gets messages of, and per flow the
 * count and the sum of sequence numbers (the senders number each flow's
 * messages 1, 2, 3...).  msgs and bytes are read by the main thread while
 * the run goes on; only the context's current owner writes them.
 */
struct lane {
	_Atomic uint64_t msgs;
	_Atomic uint64_t bytes;
	uint32_t flow_base;
	uint32_t nflows;
	uint32_t *last;
	uint64_t *count;
	uint64_t *sum;
} __attribute__((aligned(64)));

/*
 * --batch: what has arrived (messages; raw: bytes), and where the batch
 * ends.  The arrival that reaches the end stamps the time and posts
 * batch_done.
 */
static _Atomic uint64_t arrived;
static _Atomic uint64_t batch_end = UINT64_MAX;
static double batch_done_at;
static sem_t batch_done;

static void batch_arrive(uint64_t units)
{
	uint64_t now = atomic_fetch_add(&arrived, units) + units;
	uint64_t end = atomic_load(&batch_end);

	if (now >= end && now - units < end) {
		batch_done_at = now_s();
		sem_post(&batch_done);
	}
}

static void lane_init(struct lane *l, uint32_t flow_base, uint32_t nflows)
{
	l->flow_base = flow_base;
	l->nflows = nflows;
	l->last = xcalloc(nflows, sizeof(*l->last));
	l->count = xcalloc(nflows, sizeof(*l->count));
	l->sum = xcalloc(nflows, sizeof(*l->sum));
}

static inline void lane_add(struct lane *l, uint64_t msgs, uint64_t bytes)
{
	/* Single writer: a plain load and store, no atomic read-modify-write. */
	atomic_store_explicit(&l->msgs,
			      atomic_load_explicit(&l->msgs, memory_order_relaxed) + msgs,
			      memory_order_relaxed);
	atomic_store_explicit(&l->bytes,
			      atomic_load_explicit(&l->bytes, memory_order_relaxed) + bytes,
			      memory_order_relaxed);
	if (cfg.batch)
		batch_arrive(cfg.impl == IMPL_RAW ? bytes : msgs);
}

/* Checks one received message of n bytes and accounts it. */
static inline void lane_msg(struct lane *l, const uint8_t *p, size_t n)
{
	uint32_t seq, flow, tr, idx;

	if (n != cfg.size || n < MSG_MIN || be32_at(p) != n) {
		fail("message of %zu bytes with length field %u, expected %u",
		     n, n >= 4 ? be32_at(p) : 0, cfg.size);
		return;
	}
	memcpy(&seq, p + 4, 4);
	memcpy(&flow, p + 8, 4);
	memcpy(&tr, p + n - 4, 4);
	idx = flow - l->flow_base;
	if (idx >= l->nflows) {
		fail("message of unexpected flow %u", flow);
		return;
	}
	if (tr != msg_trailer(seq, flow)) {
		fail("flow %u seq %u: trailer mismatch (torn or misframed)",
		     flow, seq);
		return;
	}
	if (seq <= l->last[idx]) {
		fail("flow %u: seq %u after %u", flow, seq, l->last[idx]);
		return;
	}
	l->last[idx] = seq;
	l->count[idx]++;
	l->sum[idx] += seq;
	lane_add(l, 1, n);
}

static void lanes_total(struct lane *lanes, int n, uint64_t *msgs,
			uint64_t *bytes)
{
	int i;

	*msgs = *bytes = 0;
	for (i = 0; i < n; i++) {
		*msgs += atomic_load_explicit(&lanes[i].msgs, memory_order_relaxed);
		*bytes += atomic_load_explicit(&lanes[i].bytes, memory_order_relaxed);
	}
}

/*
 * After the run: each flow f must have delivered exactly messages
 * 1..sent[f], over all lanes together.
 */
static void lanes_verify(struct lane *lanes, int nlanes, const uint64_t *sent,
			 uint32_t nflows)
{
	uint64_t *cnt = xcalloc(nflows, sizeof(*cnt));
	uint64_t *sum = xcalloc(nflows, sizeof(*sum));
	uint32_t f, i;
	int l;

	for (l = 0; l < nlanes; l++)
		for (i = 0; i < lanes[l].nflows; i++) {
			f = lanes[l].flow_base + i;
			cnt[f] += lanes[l].count[i];
			sum[f] += lanes[l].sum[i];
		}
	for (f = 0; f < nflows; f++) {
		uint64_t n = sent[f];

		if (cnt[f] != n || sum[f] != n * (n + 1) / 2) {
			fail("flow %u: %llu messages sent, %llu received (seq sum %llu, expected %llu)",
			     f, (unsigned long long)n, (unsigned long long)cnt[f],
			     (unsigned long long)sum[f],
			     (unsigned long long)(n * (n + 1) / 2));
			break;
		}
	}
	free(cnt);
	free(sum);
}

/* --- user-space framing of a TCP stream ---------------------------------- */

/*
 * One connection read the way a careful user-space server reads it:
 * large reads into a buffer, messages parsed in place, the incomplete
 * tail moved to the front.  raw: count bytes, no framing.
 */
struct stream {
	int fd;
	bool raw;
	struct lane *lane;
	uint8_t *buf;
	size_t cap;
	size_t have;
};

static void stream_init(struct stream *s, int fd, struct lane *lane, bool raw)
{
	s->fd = fd;
	s->raw = raw;
	s->lane = lane;
	s->cap = cfg.size * 2 > 256 * 1024 ? cfg.size * 2 : 256 * 1024;
	s->buf = xcalloc(1, s->cap);
	s->have = 0;
}

/* One read and what it completes.  Bytes read, 0 at EOF, or -errno. */
static ssize_t stream_pump(struct stream *s, int flags)
{
	size_t off = 0;
	ssize_t n;

	n = recv(s->fd, s->buf + s->have, s->cap - s->have, flags);
	if (n <= 0)
		return n < 0 ? -errno : 0;
	if (s->raw) {
		lane_add(s->lane, 0, n);
		return n;
	}
	s->have += n;
	while (s->have - off >= 4) {
		uint32_t len = be32_at(s->buf + off);

		if (len < MSG_MIN || len > cfg.size) {
			fail("stream: length field %u at a message boundary", len);
			s->have = 0;
			return -EPROTO;
		}
		if (s->have - off < len)
			break;
		lane_msg(s->lane, s->buf + off, len);
		off += len;
	}
	if (off) {
		memmove(s->buf, s->buf + off, s->have - off);
		s->have -= off;
	}
	return n;
}

/* --- the network namespace and its connections --------------------------- */

struct conn {
	int app;	/* the implementation's end (accepted) */
	int peer;	/* the peer's end (connecting) */
};

static struct conn *conns;

static void raise_nofile(int need)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur >= (rlim_t)need)
		return;
	rl.rlim_cur = need;
	if (rl.rlim_max < (rlim_t)need)
		rl.rlim_max = need;
	if (setrlimit(RLIMIT_NOFILE, &rl))
		die("setrlimit(NOFILE, %d): %s", need, strerror(errno));
}

static void set_bufs(int fd, int bytes)
{
	if (bytes <= 0)
		return;
	if (kcm_set_rcvbuf(fd, bytes) ||
	    (kcm_setint(fd, SOL_SOCKET, SO_SNDBUFFORCE, bytes) &&
	     kcm_setint(fd, SOL_SOCKET, SO_SNDBUF, bytes)))
		die("setting buffers of %d bytes: %s", bytes, strerror(errno));
}

/* n connected pairs over 127.0.0.1, both ends with bufsize buffers. */
static struct conn *make_conns(int n, int bufsize)
{
	struct sockaddr_in sin = { .sin_family = AF_INET,
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);
	struct conn *c = xcalloc(n, sizeof(*c));
	int lfd, i;

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		die("socket: %s", strerror(errno));
	/* Accepted sockets inherit the listener's buffer sizes. */
	set_bufs(lfd, bufsize);
	if (bind(lfd, (struct sockaddr *)&sin, len) || listen(lfd, 128) ||
	    getsockname(lfd, (struct sockaddr *)&sin, &len))
		die("listen: %s", strerror(errno));
	for (i = 0; i < n; i++) {
		c[i].peer = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (c[i].peer < 0)
			die("socket %d: %s", i, strerror(errno));
		set_bufs(c[i].peer, bufsize);
		if (connect(c[i].peer, (struct sockaddr *)&sin, len))
			die("connect %d: %s", i, strerror(errno));
		c[i].app = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c[i].app < 0)
			die("accept %d: %s", i, strerror(errno));
	}
	close(lfd);
	return c;
}

/* --- AF_KCM ---------------------------------------------------------------- */

/*
 * The parser of every AF_KCM run: the 4-byte big-endian length at the
 * start of the message, header included (kcm_bpf_len_parser(0)).
 *
 * --parser fixed: the same instructions, but the loaded word is thrown
 * away and the workload's (fixed) message size returned.  The in-tree
 * module runs the program on the TCP segment with the message at an
 * offset the program cannot see, so a length parser reads the wrong
 * bytes as soon as two messages share a segment; this one frames any
 * stream of equal-size messages on both modules at the same cost.
 */
static const char *parser_name(void)
{
	if (cfg.pinned_parser)
		return "bpf-pinned";
	return cfg.fixed_parser ? "bpf-fixed" : "bpf-len";
}

/* A program pinned in bpffs, e.g. by `kcmctl parser load ... pin PATH`. */
static int get_pinned(const char *path)
{
	union bpf_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.pathname = (uint64_t)(uintptr_t)path;
	return syscall(__NR_bpf, BPF_OBJ_GET, &attr, sizeof(attr));
}

static int load_parser(void)
{
	const struct bpf_insn fixed[] = {
		KCM_INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_6, BPF_REG_1, 0, 0),
		KCM_INSN(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_0, BPF_REG_6,
			 offsetof(struct __sk_buff, len), 0),
		KCM_INSN(BPF_JMP | BPF_JGE | BPF_K, BPF_REG_0, 0, 2, 4),
		KCM_INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0),
		KCM_INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
		KCM_INSN(BPF_LD | BPF_ABS | BPF_W, 0, 0, 0, 0),
		KCM_INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, (int32_t)cfg.size),
		KCM_INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
	};
	int fd;

	if (cfg.pinned_parser) {
		fd = get_pinned(cfg.pinned_parser);
		if (fd < 0)
			fd = -errno;
	} else if (cfg.fixed_parser) {
		fd = kcm_bpf_load_logged(fixed, sizeof(fixed) / sizeof(fixed[0]),
					 "(fixed)");
	} else {
		fd = kcm_bpf_len_parser(0);
	}
	if (fd < 0)
		die("loading the BPF parser: %s", strerror(-fd));
	return fd;
}

/* SIOCKCMATTACH_EXT with built-in framing equivalent to the BPF parser. */
static int attach_framing(int kcmfd, int tcpfd)
{
	struct kcmux_attach a = {
		.size = sizeof(a),
		.flags = KCMUX_ATTACH_FRAMING,
		.fd = tcpfd,
		.framing = { .offset = 0, .width = 4 },
	};

	return ioctl(kcmfd, SIOCKCMATTACH_EXT, &a) ? -errno : 0;
}

static int kcm_socks[64];

/* A mux with cfg.socks KCM sockets and every connection attached. */
static void make_mux(int nconns, int bufsize)
{
	int bpf = -1, i, err;

	if (cfg.impl == IMPL_KCM)
		bpf = load_parser();
	kcm_socks[0] = kcm_socket(SOCK_DGRAM);
	if (kcm_socks[0] < 0)
		die("socket(AF_KCM): %s", strerror(-kcm_socks[0]));
	for (i = 1; i < cfg.socks; i++) {
		kcm_socks[i] = kcm_clone(kcm_socks[0]);
		if (kcm_socks[i] < 0)
			die("SIOCKCMCLONE: %s", strerror(-kcm_socks[i]));
	}
	for (i = 0; i < cfg.socks; i++) {
		set_bufs(kcm_socks[i], bufsize);
		if (cfg.kcm_rcvbuf && kcm_set_rcvbuf(kcm_socks[i], cfg.kcm_rcvbuf))
			die("SO_RCVBUF of a KCM socket: %s", strerror(errno));
		if (kcm_set_timeo(kcm_socks[i], SO_RCVTIMEO, POLL_MS))
			die("SO_RCVTIMEO: %s", strerror(errno));
	}
	for (i = 0; i < nconns; i++) {
		if (cfg.impl == IMPL_FRAMING)
			err = attach_framing(kcm_socks[0], conns[i].app);
		else
			err = kcm_attach(kcm_socks[0], conns[i].app, bpf);
		if (err)
			die("%s of connection %d: %s",
			    cfg.impl == IMPL_FRAMING ? "SIOCKCMATTACH_EXT" :
			    "SIOCKCMATTACH", i, strerror(-err));
	}
	if (bpf >= 0)
		close(bpf);
}

/* --- counters of the whole system: /proc/stat, /proc/net/kcm_stats -------- */

struct kstats {
	int n;
	char name[KSTAT_MAX][32];
	long long val[KSTAT_MAX];
};

/* Every column of /proc/net/kcm_stats as "SECTION.Column". */
static void kstats_read(struct kstats *ks)
{
	char hdr[1024], val[1024];
	char *hw[KCM_PROC_MAXWORDS], *vw[KCM_PROC_MAXWORDS];
	int nh, nv, i;
	FILE *f;

	ks->n = 0;
	f = fopen("/proc/net/kcm_stats", "re");
	if (!f)
		return;
	while (fgets(hdr, sizeof(hdr), f)) {
		if (hdr[0] == ' ' || !fgets(val, sizeof(val), f))
			continue;
		nh = kcm_words(hdr, hw, KCM_PROC_MAXWORDS);
		nv = kcm_words(val, vw, KCM_PROC_MAXWORDS);
		for (i = 1; i < nh && i - 1 < nv && ks->n < KSTAT_MAX; i++) {
			snprintf(ks->name[ks->n], sizeof(ks->name[0]), "%s.%s",
				 hw[0], hw[i]);
			ks->val[ks->n++] = strtoll(vw[i - 1], NULL, 10);
		}
	}
	fclose(f);
}

/*
 * Segments TCP received, sent and retransmitted in the run's network
 * namespace (/proc/net/snmp): how many segments, ACKs included, each
 * message cost.
 */
struct tcpstat {
	long long in_segs, out_segs, retrans;
	long long data_segs;	/* sent with new data (TCPOrigDataSent) */
	long long delayed_acks;	/* delayed ACK timers that fired */
};

#define SNMP_LINE	8192
#define SNMP_WORDS	256

/*
 * The counters of one protocol in a /proc/net/snmp-style file, where a
 * line of names ("Tcp: InSegs ...") is followed by one of values: each
 * name listed in names[] (NULL-terminated) is stored to *vals[i].
 */
static void snmp_read(const char *path, const char *proto,
		      const char *const names[], long long *const vals[])
{
	static char hdr[SNMP_LINE], val[SNMP_LINE];
	char *hw[SNMP_WORDS], *vw[SNMP_WORDS];
	size_t plen = strlen(proto);
	int nh, nv, i, k;
	FILE *f = fopen(path, "re");

	if (!f)
		return;
	while (fgets(hdr, sizeof(hdr), f)) {
		if (strncmp(hdr, proto, plen) || hdr[plen] != ':' ||
		    !fgets(val, sizeof(val), f))
			continue;
		nh = kcm_words(hdr, hw, SNMP_WORDS);
		nv = kcm_words(val, vw, SNMP_WORDS);
		for (i = 1; i < nh && i < nv; i++)
			for (k = 0; names[k]; k++)
				if (!strcmp(hw[i], names[k]))
					*vals[k] = strtoll(vw[i], NULL, 10);
		break;
	}
	fclose(f);
}

static void tcpstat_read(struct tcpstat *t)
{
	static const char *const tcp[] = {
		"InSegs", "OutSegs", "RetransSegs", NULL
	};
	static const char *const tcpext[] = {
		"TCPOrigDataSent", "DelayedACKs", NULL
	};

	memset(t, 0, sizeof(*t));
	snmp_read("/proc/net/snmp", "Tcp", tcp,
		  (long long *const []){ &t->in_segs, &t->out_segs,
					 &t->retrans });
	snmp_read("/proc/net/netstat", "TcpExt", tcpext,
		  (long long *const []){ &t->data_segs, &t->delayed_acks });
}

/*
 * TCP_INFO as the kernel fills it: glibc's struct tcp_info stops at
 * tcpi_total_retrans, and the kernel's only ever grows at the end.
 */
struct tcp_info_more {
	struct tcp_info base;
	uint64_t pacing_rate, max_pacing_rate, bytes_acked, bytes_received;
	uint32_t segs_out, segs_in, notsent_bytes, min_rtt;
};

_Static_assert(offsetof(struct tcp_info_more, pacing_rate) == 104,
	       "glibc's struct tcp_info is not the kernel's first 104 bytes");

/*
 * What the data's sender thinks of the path as the measurement ends:
 * TCP sizes its segments by the pacing rate and the minimum RTT
 * (tcp_tso_autosize()), which is how a receiver that acknowledges
 * later or sooner changes the segments it gets.
 */
struct sndinfo {
	bool ok;
	uint32_t rtt_us, min_rtt_us, cwnd;
	uint64_t pacing_rate;
};

static void sndinfo_read(struct sndinfo *si, int fd)
{
	struct tcp_info_more ti;
	socklen_t len = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	si->ok = !getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) &&
		 len >= sizeof(ti);
	si->rtt_us = ti.base.tcpi_rtt;
	si->min_rtt_us = ti.min_rtt;
	si->cwnd = ti.base.tcpi_snd_cwnd;
	si->pacing_rate = ti.pacing_rate;
}

struct cpustat {
	long long user, system, idle, softirq, total;
};

static void cpustat_read(struct cpustat *c)
{
	long long v[10] = { 0 };
	FILE *f = fopen("/proc/stat", "re");
	int i;

	memset(c, 0, sizeof(*c));
	if (!f)
		return;
	if (fscanf(f, "cpu %lld %lld %lld %lld %lld %lld %lld %lld", &v[0],
		   &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) == 8) {
		c->user = v[0] + v[1];
		c->system = v[2] + v[5];
		c->idle = v[3] + v[4];
		c->softirq = v[6];
		for (i = 0; i < 8; i++)
			c->total += v[i];
	}
	fclose(f);
}

/*
 * CPU clocks of the implementation's threads and of the peer's, so that
 * the cost per message splits into "the application's calls", "the
 * peer" and the rest (softirq, kernel workers).
 */
static clockid_t app_clocks[64];
static int napp_clocks;
static clockid_t peer_clock;
static bool have_peer_clock;

static double thread_cpu_s(clockid_t c)
{
	struct timespec ts;

	if (clock_gettime(c, &ts))
		return 0;
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

struct snap {
	double t;
	double app_cpu, peer_cpu;
	uint64_t msgs, bytes;
	struct cpustat cpu;
	struct tcpstat tcp;
	struct kstats ks;
	long long kcm_q, kcm_rmem;	/* of the first KCM socket */
	struct sndinfo snd;		/* of the first connection's sender */
};

/* --- results -------------------------------------------------------------- */

static void json_head(const char *mode)
{
	printf("{\"mode\":\"%s\",\"label\":\"%s\",\"impl\":\"%s\"", mode,
	       cfg.label, impl_names[cfg.impl]);
}

static void json_tail(void)
{
	/* The JSON string must stay valid whatever the reason says. */
	for (char *p = fail_reason; *p; p++)
		if (*p == '"' || *p == '\\' || (unsigned char)*p < ' ')
			*p = '\'';
	if (atomic_load(&failed))
		printf(",\"ok\":false,\"error\":\"%s\"}\n", fail_reason);
	else
		printf(",\"ok\":true}\n");
	fflush(stdout);
}

static void die(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&fail_lock);
	va_start(ap, fmt);
	vsnprintf(fail_reason, sizeof(fail_reason), fmt, ap);
	va_end(ap);
	atomic_store(&failed, true);
	json_head("error");
	json_tail();
	exit(1);
}

static void json_kstats(const struct kstats *a, const struct kstats *b)
{
	int i;

	if (!b->n)
		return;
	printf(",\"kstats\":{");
	for (i = 0; i < b->n && i < a->n; i++)
		printf("%s\"%s\":%lld", i ? "," : "", b->name[i],
		       b->val[i] - a->val[i]);
	printf("}");
}

/* --- threads of a run ------------------------------------------------------- */

static atomic_bool stop_send;	/* senders: finish what you started, then exit */
static atomic_bool stop_recv;	/* receivers: exit */
static atomic_bool peer_filled;	/* rx peer: prefill done, receivers may start */

static struct lane *lanes;
static int nlanes;
static uint64_t *sent;		/* per flow, valid once the senders exited */
static uint32_t nflows;

static bool interrupted(int err)
{
	return err == EAGAIN || err == EWOULDBLOCK || err == EINTR;
}

/*
 * Messages the senders may still write: unlimited, except that --batch
 * closes it after the warm-up and then opens it for the batch alone.
 */
#define BUDGET_UNLIMITED	(INT64_MAX / 2)

static _Atomic int64_t budget = BUDGET_UNLIMITED;
static pthread_mutex_t budget_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t budget_cond = PTHREAD_COND_INITIALIZER;

static bool senders_stopped(void)
{
	return atomic_load_explicit(&stop_send, memory_order_relaxed) ||
	       atomic_load(&failed);
}

/* POLL_MS from now on the realtime clock, for the timed waits. */
static void poll_deadline(struct timespec *ts)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_nsec += POLL_MS * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Until the budget is not empty or the senders are stopped. */
static void budget_wait(void)
{
	struct timespec ts;

	pthread_mutex_lock(&budget_lock);
	while (atomic_load(&budget) <= 0 && !senders_stopped()) {
		/* A failure is not signalled: look again now and then. */
		poll_deadline(&ts);
		pthread_cond_timedwait(&budget_cond, &budget_lock, &ts);
	}
	pthread_mutex_unlock(&budget_lock);
}

/*
 * Takes up to want messages of the budget, waiting while it is empty
 * unless nowait.  0 once the senders are stopped, or if nowait and the
 * budget is empty.
 */
static uint32_t budget_take(uint32_t want, bool nowait)
{
	int64_t b;

	for (;;) {
		if (senders_stopped())
			return 0;
		b = atomic_load(&budget);
		while (b > 0) {
			int64_t n = b < want ? b : want;

			if (atomic_compare_exchange_weak(&budget, &b, b - n))
				return (uint32_t)n;
		}
		if (nowait)
			return 0;
		budget_wait();
	}
}

/* Sets the budget and wakes its waiters; returns what was left of it. */
static int64_t budget_set(int64_t n)
{
	int64_t left;

	pthread_mutex_lock(&budget_lock);
	left = atomic_exchange(&budget, n);
	pthread_cond_broadcast(&budget_cond);
	pthread_mutex_unlock(&budget_lock);
	return left;
}

/* Blocking send of all of buf on a TCP socket.  false on error. */
static bool send_all(int fd, const uint8_t *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (interrupted(errno))
				continue;
			fail("send on TCP: %s", strerror(errno));
			return false;
		}
		buf += n;
		len -= n;
	}
	return true;
}

/*
 * The rx peer: writes framed bytes as fast as the connections take them,
 * in chunks of whole messages, spreading over all connections.
 */
struct peer_conn {
	int fd;
	uint32_t flow;
	uint32_t seq;		/* last sequence number stamped */
	uint64_t done_msgs;	/* messages whose last byte was written */
	uint8_t *chunk;
	size_t len, off;	/* len 0: no chunk begun */
	uint32_t msgs;		/* in the chunk */
	uint32_t per_chunk;
	bool retired;
	bool parked;		/* out of the epoll set until there is budget */
};

/*
 * Begins pc's next chunk: as many messages as a chunk holds, or as the
 * budget has left.  false if there is no budget (see budget_take()).
 */
static bool peer_next(struct peer_conn *pc, bool nowait)
{
	uint32_t i, n = budget_take(pc->per_chunk, nowait);

	if (!n)
		return false;
	pc->off = 0;
	pc->msgs = n;
	pc->len = (size_t)n * cfg.size;
	if (cfg.impl != IMPL_RAW)
		for (i = 0; i < n; i++)
			msg_stamp(pc->chunk + (size_t)i * cfg.size, cfg.size,
				  ++pc->seq, pc->flow);
	return true;
}

static void peer_conn_init(struct peer_conn *pc, int fd, uint32_t flow)
{
	size_t target = cfg.chunk;

	pc->fd = fd;
	pc->flow = flow;
	pc->per_chunk = cfg.size >= target ? 1 : target / cfg.size;
	pc->chunk = xcalloc(pc->per_chunk, cfg.size);
}

/*
 * Writes more of pc's chunk.  true if the chunk was completed; pc then
 * has none begun.
 */
static bool peer_write(struct peer_conn *pc, int flags)
{
	ssize_t n = send(pc->fd, pc->chunk + pc->off, pc->len - pc->off,
			 flags | MSG_NOSIGNAL);

	if (n < 0) {
		if (!interrupted(errno))
			fail("peer send: %s", strerror(errno));
		return false;
	}
	pc->off += n;
	if (pc->off < pc->len)
		return false;
	pc->done_msgs += pc->msgs;
	pc->len = 0;
	return true;
}

/*
 * After the stop, a chunk already begun is finished so that only whole
 * messages count as sent; but not forever if the receiving side stalled.
 */
static bool peer_gave_up(double *stop_at)
{
	if (!atomic_load_explicit(&stop_send, memory_order_relaxed))
		return false;
	if (!*stop_at)
		*stop_at = now_s();
	if (now_s() - *stop_at < cfg.drain_ms / 1000.0)
		return false;
	fail("the receiving side stopped taking bytes");
	return true;
}

/*
 * --prefill: before the receivers start, write to every connection until
 * TCP takes no more.  The measurement then sees the steady state, every
 * queue full and the peer writing only as fast as the receivers free
 * room.  Without it, over many connections the measured second falls in
 * the time the peer takes to fill them all (1000 x 128 KiB socket
 * buffers: minutes here), and under instruction counting, where both
 * vCPUs share one clock, the receivers get only what the filling leaves.
 */
static void peer_prefill(struct peer_conn *pcs)
{
	bool more = true;
	int i;

	while (more && !atomic_load(&failed)) {
		more = false;
		for (i = 0; i < cfg.psocks; i++) {
			while ((pcs[i].len || peer_next(&pcs[i], true)) &&
			       peer_write(&pcs[i], MSG_DONTWAIT))
				more = true;
		}
	}
}

/* Takes pc out of the epoll set: no budget for its next chunk. */
static void peer_park(int ep, struct peer_conn *pc)
{
	struct epoll_event e = { .events = 0, .data.ptr = pc };

	epoll_ctl(ep, EPOLL_CTL_MOD, pc->fd, &e);
	pc->parked = true;
}

static void peer_unpark(int ep, struct peer_conn *pc)
{
	struct epoll_event e = { .events = EPOLLOUT, .data.ptr = pc };

	epoll_ctl(ep, EPOLL_CTL_MOD, pc->fd, &e);
	pc->parked = false;
}

static void *rx_peer_thread(void *arg)
{
	struct peer_conn *pcs = xcalloc(cfg.psocks, sizeof(*pcs));
	struct epoll_event ev[64];
	int i, n, ep = -1, active = cfg.psocks, busy = 0, parked = 0;
	double stop_at = 0;

	(void)arg;
	for (i = 0; i < cfg.psocks; i++) {
		peer_conn_init(&pcs[i], conns[i].peer, i);
		if (kcm_set_timeo(pcs[i].fd, SO_SNDTIMEO, POLL_MS))
			fail("SO_SNDTIMEO: %s", strerror(errno));
	}
	if (cfg.prefill)
		peer_prefill(pcs);
	atomic_store(&peer_filled, true);
	if (cfg.psocks == 1) {
		struct peer_conn *pc = &pcs[0];

		while (!atomic_load(&failed) && !peer_gave_up(&stop_at)) {
			/* A chunk not begun before the stop is never written. */
			if (!pc->len && !peer_next(pc, false))
				break;
			peer_write(pc, 0);
		}
		goto out;
	}
	for (i = 0; i < cfg.psocks; i++)
		busy += pcs[i].len != 0;
	ep = epoll_create1(EPOLL_CLOEXEC);
	for (i = 0; i < cfg.psocks; i++) {
		struct epoll_event e = { .events = EPOLLOUT, .data.ptr = &pcs[i] };

		if (epoll_ctl(ep, EPOLL_CTL_ADD, pcs[i].fd, &e))
			fail("epoll_ctl: %s", strerror(errno));
	}
	while (active && !atomic_load(&failed) && !peer_gave_up(&stop_at)) {
		bool stopping = atomic_load_explicit(&stop_send,
						     memory_order_relaxed);

		if (stopping) {
			/* A chunk not begun is never written. */
			for (i = 0; i < cfg.psocks; i++)
				if (!pcs[i].retired && !pcs[i].len) {
					pcs[i].retired = true;
					epoll_ctl(ep, EPOLL_CTL_DEL, pcs[i].fd, NULL);
					active--;
				}
		} else if (parked && !busy) {
			/* Every chunk begun is written: wait for budget. */
			budget_wait();
			for (i = 0; i < cfg.psocks; i++)
				if (pcs[i].parked)
					peer_unpark(ep, &pcs[i]);
			parked = 0;
			continue;
		}
		n = epoll_wait(ep, ev, 64, POLL_MS);
		for (i = 0; i < n; i++) {
			struct peer_conn *pc = ev[i].data.ptr;

			if (pc->retired || pc->parked)
				continue;
			if (!pc->len) {
				if (stopping)
					continue;
				if (!peer_next(pc, true)) {
					peer_park(ep, pc);
					parked++;
					continue;
				}
				busy++;
			}
			if (peer_write(pc, MSG_DONTWAIT))
				busy--;
		}
	}
out:
	for (i = 0; i < cfg.psocks; i++)
		sent[i] = pcs[i].done_msgs;
	if (cfg.impl == IMPL_RAW)
		sent[0] = pcs[0].done_msgs * cfg.size;	/* bytes */
	if (ep >= 0)
		close(ep);
	for (i = 0; i < cfg.psocks; i++)
		free(pcs[i].chunk);
	free(pcs);
	return NULL;
}

/* rx with AF_KCM: one thread per KCM socket, recv or recvmmsg. */
static void *rx_kcm_thread(void *arg)
{
	long t = (long)arg;
	struct lane *l = &lanes[t];
	int fd = kcm_socks[t];
	uint8_t *buf;
	int i;

	if (!cfg.mmsg) {
		buf = xcalloc(1, cfg.size);
		while (!atomic_load_explicit(&stop_recv, memory_order_relaxed)) {
			ssize_t n = recv(fd, buf, cfg.size, 0);

			if (n < 0) {
				if (interrupted(errno))
					continue;
				fail("recv on KCM: %s", strerror(errno));
				break;
			}
			lane_msg(l, buf, n);
		}
	} else {
		struct mmsghdr mm[MMSG_BATCH];
		struct iovec iov[MMSG_BATCH];

		buf = xcalloc(MMSG_BATCH, cfg.size);
		memset(mm, 0, sizeof(mm));
		for (i = 0; i < MMSG_BATCH; i++) {
			iov[i].iov_base = buf + (size_t)i * cfg.size;
			iov[i].iov_len = cfg.size;
			mm[i].msg_hdr.msg_iov = &iov[i];
			mm[i].msg_hdr.msg_iovlen = 1;
		}
		while (!atomic_load_explicit(&stop_recv, memory_order_relaxed)) {
			int n = recvmmsg(fd, mm, MMSG_BATCH, MSG_WAITFORONE, NULL);

			if (n < 0) {
				if (interrupted(errno))
					continue;
				fail("recvmmsg on KCM: %s", strerror(errno));
				break;
			}
			for (i = 0; i < n; i++) {
				if (mm[i].msg_hdr.msg_flags & MSG_TRUNC)
					fail("recvmmsg: truncated message");
				lane_msg(l, iov[i].iov_base, mm[i].msg_len);
			}
		}
	}
	free(buf);
	return NULL;
}

/*
 * Reading TCP streams in user space, on cfg.socks threads (rx: the
 * implementation) or one thread (tx: the peer).  One connection: a
 * blocking read loop.  Several: an epoll set shared by the threads, each
 * connection handed to one thread at a time (EPOLLONESHOT), which reads
 * a buffer-full, handles every complete message in it and re-arms.
 */
struct reader {
	struct stream *streams;
	int nstreams;
	int ep;
	bool oneshot;
};

static void *reader_thread(void *arg)
{
	struct reader *r = arg;
	struct epoll_event ev[16];
	int i, n;

	if (r->nstreams == 1) {
		struct stream *s = &r->streams[0];

		while (!atomic_load_explicit(&stop_recv, memory_order_relaxed)) {
			ssize_t got = stream_pump(s, 0);

			if (got == 0 || (got < 0 && !interrupted(-got))) {
				if (got != -EPROTO)
					fail("read: %s", got ? strerror(-got) : "EOF");
				break;
			}
		}
		return NULL;
	}
	while (!atomic_load_explicit(&stop_recv, memory_order_relaxed)) {
		n = epoll_wait(r->ep, ev, r->oneshot ? 1 : 16, POLL_MS);
		for (i = 0; i < n; i++) {
			struct stream *s = ev[i].data.ptr;
			ssize_t got = stream_pump(s, MSG_DONTWAIT);

			if (got == 0 || (got < 0 && !interrupted(-got))) {
				if (got != -EPROTO)
					fail("read: %s", got ? strerror(-got) : "EOF");
				return NULL;
			}
			if (r->oneshot) {
				struct epoll_event e = {
					.events = EPOLLIN | EPOLLONESHOT,
					.data.ptr = s,
				};

				epoll_ctl(r->ep, EPOLL_CTL_MOD, s->fd, &e);
			}
		}
	}
	return NULL;
}

/* Streams over fd[i] of conns, lane i each, in an epoll set if several. */
static void reader_init(struct reader *r, bool app_side, int nthreads)
{
	int i;

	r->nstreams = cfg.psocks;
	r->streams = xcalloc(r->nstreams, sizeof(*r->streams));
	r->oneshot = nthreads > 1;
	r->ep = -1;
	for (i = 0; i < r->nstreams; i++) {
		int fd = app_side ? conns[i].app : conns[i].peer;

		stream_init(&r->streams[i], fd, &lanes[i], cfg.impl == IMPL_RAW);
		if (kcm_set_timeo(fd, SO_RCVTIMEO, POLL_MS))
			die("SO_RCVTIMEO: %s", strerror(errno));
	}
	if (r->nstreams == 1)
		return;
	r->ep = epoll_create1(EPOLL_CLOEXEC);
	for (i = 0; i < r->nstreams; i++) {
		struct epoll_event e = {
			.events = EPOLLIN | (r->oneshot ? EPOLLONESHOT : 0),
			.data.ptr = &r->streams[i],
		};

		if (epoll_ctl(r->ep, EPOLL_CTL_ADD, r->streams[i].fd, &e))
			die("epoll_ctl: %s", strerror(errno));
	}
}

/* tx: the implementation's sender threads. */
static void *tx_app_thread(void *arg)
{
	long t = (long)arg;
	uint8_t *buf = xcalloc(1, cfg.size);
	uint32_t seq = 0;
	int c = (int)t;

	if (cfg.impl == IMPL_RAW) {
		while (budget_take(1, false) &&
		       send_all(conns[0].app, buf, cfg.size))
			seq++;
		sent[0] = (uint64_t)seq * cfg.size;
		free(buf);
		return NULL;
	}
	while (budget_take(1, false)) {
		msg_stamp(buf, cfg.size, seq + 1, t);
		if (cfg.impl == IMPL_USER) {
			/* Thread t owns connections t, t + M, t + 2M...: in turn. */
			if (!send_all(conns[c].app, buf, cfg.size))
				break;
			c += cfg.socks;
			if (c >= cfg.psocks)
				c = (int)t;
		} else {
			ssize_t n = send(kcm_socks[t], buf, cfg.size, MSG_NOSIGNAL);

			if (n != (ssize_t)cfg.size) {
				fail("send on KCM: %s (%zd)",
				     n < 0 ? strerror(errno) : "short", n);
				break;
			}
		}
		seq++;
	}
	sent[t] = seq;
	free(buf);
	return NULL;
}

/*
 * Joins t unless the run already failed to end: a thread stuck in the
 * kernel must not keep the result from being printed (exit ends it).
 */
static bool stuck;

static void join(pthread_t t, const char *what)
{
	struct timespec ts;

	if (stuck)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += cfg.drain_ms / 1000 + 5;
	if (pthread_timedjoin_np(t, NULL, &ts)) {
		fail("%s did not finish", what);
		stuck = true;
	}
}

/* What the TCP sockets say when a run failed: AF_KCM posts errors there. */
static void note_socket_errors(void)
{
	size_t len;
	int i, err;

	for (i = 0; conns && i < cfg.psocks; i++) {
		err = kcm_sock_error(conns[i].app);
		if (err > 0) {
			pthread_mutex_lock(&fail_lock);
			len = strlen(fail_reason);
			snprintf(fail_reason + len, sizeof(fail_reason) - len,
				 "; TCP socket %d has SO_ERROR %d (%s)", i, err,
				 strerror(err));
			pthread_mutex_unlock(&fail_lock);
			break;
		}
	}
}

/*
 * Marks the start and the end of the measured window for an instruction
 * profiler watching this syscall (bench/tbprof.c, mark=): an invalid
 * policy, so it does nothing and nothing else in the guest calls it so.
 */
#define KCM_BENCH_MARK	0x6b636d	/* "kcm" */

/* The clock, the message count and the threads' CPU time. */
static void snap_clock(struct snap *s)
{
	int i;

	s->t = now_s();
	s->app_cpu = 0;
	for (i = 0; i < napp_clocks; i++)
		s->app_cpu += thread_cpu_s(app_clocks[i]);
	s->peer_cpu = have_peer_clock ? thread_cpu_s(peer_clock) : 0;
	lanes_total(lanes, nlanes, &s->msgs, &s->bytes);
}

/*
 * The system's counters.  Reading them takes time the workload does not
 * get: /proc/net/kcm_stats sums every psock, and at 1000 psocks that was
 * 13 % of a 1 s window.  So they are read just before the window opens
 * and just after it closes, not inside it.
 */
static void snap_counters(struct snap *s)
{
	cpustat_read(&s->cpu);
	tcpstat_read(&s->tcp);
	kstats_read(&s->ks);
}

/*
 * What the first KCM socket holds.  Messages that join its queue inside
 * the window are not counted as received, so a queue that fills (or
 * drains) during the window makes msgs_per_s lower (or higher) than the
 * rate the socket is fed at; kstats' MUX.RX-Msgs is that rate.
 */
static void snap_queue(struct snap *s)
{
	s->kcm_q = s->kcm_rmem = -1;
	if (cfg.impl == IMPL_KCM || cfg.impl == IMPL_FRAMING) {
		s->kcm_q = kcm_proc_nth("kcm-", 0, "Recv-Q");
		s->kcm_rmem = kcm_proc_nth("kcm-", 0, "Rmem");
	}
}

static void snap_start(struct snap *s)
{
	snap_counters(s);
	snap_queue(s);
	syscall(SYS_sched_get_priority_max, KCM_BENCH_MARK);
	snap_clock(s);
}

static void snap_end(struct snap *s)
{
	snap_clock(s);
	syscall(SYS_sched_get_priority_max, KCM_BENCH_MARK);
	snap_counters(s);
	snap_queue(s);
	sndinfo_read(&s->snd, cfg.tx ? conns[0].app : conns[0].peer);
}

/* Until everything sent has arrived, or cfg.drain_ms. */
static void drain_wait(void)
{
	uint64_t want = 0, msgs, bytes, last = UINT64_MAX;
	double deadline = now_s() + cfg.drain_ms / 1000.0;
	uint32_t f;

	for (f = 0; f < nflows; f++)
		want += sent[f];
	for (;;) {
		lanes_total(lanes, nlanes, &msgs, &bytes);
		if ((cfg.impl == IMPL_RAW ? bytes : msgs) >= want ||
		    atomic_load(&failed))
			return;
		if (now_s() > deadline) {
			fail("%llu of %llu %s arrived (%llu at the last look)",
			     (unsigned long long)(cfg.impl == IMPL_RAW ? bytes : msgs),
			     (unsigned long long)want,
			     cfg.impl == IMPL_RAW ? "bytes" : "messages",
			     (unsigned long long)last);
			return;
		}
		last = cfg.impl == IMPL_RAW ? bytes : msgs;
		kcm_msleep(10);
	}
}

/* Until units (messages; raw: bytes) have arrived.  false if they did not. */
static bool wait_arrived(uint64_t units)
{
	double deadline = now_s() + cfg.drain_ms / 1000.0;

	while (atomic_load(&arrived) < units) {
		if (atomic_load(&failed))
			return false;
		if (now_s() > deadline) {
			fail("warm-up: %llu of %llu %s arrived",
			     (unsigned long long)atomic_load(&arrived),
			     (unsigned long long)units,
			     cfg.impl == IMPL_RAW ? "bytes" : "messages");
			return false;
		}
		kcm_msleep(10);
	}
	return true;
}

/*
 * --batch, after the warm-up: stops the senders, waits until all they
 * wrote has arrived, then times a batch of messages sized to take about
 * cfg.secs at rate (units a second, from the warm-up), from letting the
 * senders go to the arrival of its last message.  The senders wait for
 * budget after it.
 */
static void run_batch(struct snap *s0, struct snap *s1, double rate)
{
	uint64_t unit = cfg.impl == IMPL_RAW ? cfg.size : 1;
	uint64_t granted = BUDGET_UNLIMITED - budget_set(0);
	uint64_t n = (uint64_t)(rate / unit * cfg.secs);
	double deadline;
	struct timespec ts;

	if (n < 16)
		n = 16;
	if (!wait_arrived(granted * unit)) {
		snap_start(s0);
		snap_end(s1);
		return;
	}
	atomic_store(&batch_end, (granted + n) * unit);
	snap_start(s0);
	budget_set((int64_t)n);
	deadline = now_s() + cfg.drain_ms / 1000.0 + 20 * cfg.secs;
	for (;;) {
		poll_deadline(&ts);
		if (!sem_timedwait(&batch_done, &ts))
			break;
		if (atomic_load(&failed))
			break;
		if (now_s() > deadline) {
			fail("the batch of %llu messages did not arrive",
			     (unsigned long long)n);
			break;
		}
	}
	snap_end(s1);
	if (!atomic_load(&failed))
		s1->t = batch_done_at;
}

static void check_module(void)
{
	bool kcmux = access("/sys/module/kcmux", F_OK) == 0;
	bool intree = access("/sys/module/kcm", F_OK) == 0;

	if (!cfg.expect)
		return;
	if (!strcmp(cfg.expect, "kcmux") && !kcmux)
		die("kcmux.ko is not loaded");
	if (!strcmp(cfg.expect, "kcm") && (!intree || kcmux))
		die("the in-tree kcm.ko is not (alone) loaded");
	if (!strcmp(cfg.expect, "none") && (kcmux || intree))
		die("an AF_KCM module is loaded");
}

static void setup_ns(void)
{
	int err;

	check_module();
	raise_nofile(2 * cfg.psocks + 256);
	err = kcm_netns_enter();
	if (err)
		die("private network namespace: %s", strerror(-err));
}

/*
 * Many connections get small buffers and chunks: 1000 of them with full
 * queues must fit the guest's memory.  --bufsize and --chunk override
 * (the psock scaling series uses the same values for every count).
 */
static void default_sizes(void)
{
	if (!cfg.bufsize) {
		if (cfg.psocks > 16)
			cfg.bufsize = 128 * 1024;
		else
			cfg.bufsize = cfg.size > 256 * 1024 ? 4 * cfg.size : 1 << 20;
	}
	if (!cfg.chunk)
		cfg.chunk = cfg.psocks > 16 ? 4096 : 65536;
}

static int cmd_run(void)
{
	pthread_t peer, app[64];
	struct reader rd = { 0 };
	struct snap s0, s1;
	bool kcm = cfg.impl == IMPL_KCM || cfg.impl == IMPL_FRAMING;
	int napp, i;

	if (cfg.size < MSG_MIN || cfg.size > MSG_MAX)
		die("--size must be %d..%u", MSG_MIN, MSG_MAX);
	if (cfg.socks < 1 || cfg.socks > 64 || cfg.psocks < 1 ||
	    (cfg.impl == IMPL_USER && cfg.tx && cfg.socks > cfg.psocks))
		die("bad --socks/--psocks");
	if (cfg.impl == IMPL_RAW && (cfg.psocks != 1 || cfg.socks != 1))
		die("raw: one connection, one thread");
	if (cfg.mmsg && (!kcm || cfg.tx))
		die("--recvmmsg: AF_KCM receive only");
	if (cfg.mmsg && cfg.size > 65536)
		die("--recvmmsg: messages up to 64 KiB");
	if (cfg.batch && (cfg.prefill || cfg.warmup <= 0))
		die("--batch: needs a warm-up, and no --prefill");
	sem_init(&batch_done, 0, 0);
	setup_ns();
	default_sizes();
	conns = make_conns(cfg.psocks, cfg.bufsize);
	if (kcm)
		make_mux(cfg.psocks, cfg.bufsize);

	/* Flows: rx one per connection, tx one per sending thread. */
	nflows = cfg.tx ? cfg.socks : cfg.psocks;
	sent = xcalloc(nflows, sizeof(*sent));
	if (!cfg.tx && kcm) {
		nlanes = cfg.socks;
		lanes = xcalloc(nlanes, sizeof(*lanes));
		for (i = 0; i < nlanes; i++)
			lane_init(&lanes[i], 0, nflows);
	} else {
		/* A lane per connection: one flow each on rx, all on tx. */
		nlanes = cfg.psocks;
		lanes = xcalloc(nlanes, sizeof(*lanes));
		for (i = 0; i < nlanes; i++) {
			if (cfg.tx)
				lane_init(&lanes[i], 0, nflows);
			else
				lane_init(&lanes[i], i, 1);
		}
	}

	if (!cfg.tx) {
		napp = cfg.socks;
		if (!kcm)
			reader_init(&rd, true, napp);
		if (cfg.prefill) {
			pthread_create(&peer, NULL, rx_peer_thread, NULL);
			while (!atomic_load(&peer_filled) &&
			       !atomic_load(&failed))
				sleep_s(0.01);
		}
		for (i = 0; i < napp; i++)
			pthread_create(&app[i], NULL,
				       kcm ? rx_kcm_thread : reader_thread,
				       kcm ? (void *)(long)i : (void *)&rd);
		if (!cfg.prefill)
			pthread_create(&peer, NULL, rx_peer_thread, NULL);
	} else {
		napp = cfg.socks;
		reader_init(&rd, false, 1);
		pthread_create(&peer, NULL, reader_thread, &rd);
		for (i = 0; i < napp; i++)
			pthread_create(&app[i], NULL, tx_app_thread, (void *)(long)i);
	}

	for (i = 0; i < napp; i++)
		if (!pthread_getcpuclockid(app[i], &app_clocks[i]))
			napp_clocks = i + 1;
	have_peer_clock = !pthread_getcpuclockid(peer, &peer_clock);

	if (cfg.batch) {
		/* The rate of the warm-up's second half sizes the batch. */
		uint64_t half;

		sleep_s(cfg.warmup / 2);
		half = atomic_load(&arrived);
		sleep_s(cfg.warmup / 2);
		run_batch(&s0, &s1, (atomic_load(&arrived) - half) /
				    (cfg.warmup / 2));
	} else {
		sleep_s(cfg.warmup);
		snap_start(&s0);
		sleep_s(cfg.secs);
		snap_end(&s1);
	}

	atomic_store(&stop_send, true);
	/* Senders waiting for budget see the stop. */
	budget_set(0);
	if (!cfg.tx) {
		join(peer, "the peer");
		if (!stuck)
			drain_wait();
		atomic_store(&stop_recv, true);
		for (i = 0; i < napp; i++)
			join(app[i], "a receiver");
	} else {
		for (i = 0; i < napp; i++)
			join(app[i], "a sender");
		if (!stuck)
			drain_wait();
		atomic_store(&stop_recv, true);
		join(peer, "the peer");
	}
	if (!atomic_load(&failed) && cfg.impl != IMPL_RAW)
		lanes_verify(lanes, nlanes, sent, nflows);
	if (atomic_load(&failed))
		note_socket_errors();

	{
		double dt = s1.t - s0.t;
		long long ticks = s1.cpu.total - s0.cpu.total;
		uint64_t tm, tb;

		lanes_total(lanes, nlanes, &tm, &tb);
		json_head("run");
		printf(",\"dir\":\"%s\",\"size\":%u,\"psocks\":%d,\"socks\":%d,"
		       "\"recv\":\"%s\",\"parser\":\"%s\",\"bufsize\":%d,\"chunk\":%d,"
		       "\"prefill\":%s,\"batch\":%s,"
		       "\"warmup\":%.2f,\"secs\":%.3f,"
		       "\"msgs_per_s\":%.1f,\"bytes_per_s\":%.1f,"
		       "\"msgs_total\":%llu,\"bytes_total\":%llu",
		       cfg.tx ? "tx" : "rx", cfg.size, cfg.psocks, cfg.socks,
		       cfg.mmsg ? "recvmmsg" : "recv",
		       cfg.impl == IMPL_KCM ? parser_name() :
		       cfg.impl == IMPL_FRAMING ? "framing" : "user",
		       cfg.bufsize, cfg.tx ? 0 : cfg.chunk,
		       cfg.prefill ? "true" : "false",
		       cfg.batch ? "true" : "false", cfg.warmup, dt,
		       (s1.msgs - s0.msgs) / dt, (s1.bytes - s0.bytes) / dt,
		       (unsigned long long)tm, (unsigned long long)tb);
		if (ticks > 0)
			printf(",\"cpu\":{\"busy\":%.3f,\"user\":%.3f,\"system\":%.3f,\"softirq\":%.3f}",
			       1.0 - (double)(s1.cpu.idle - s0.cpu.idle) / ticks,
			       (double)(s1.cpu.user - s0.cpu.user) / ticks,
			       (double)(s1.cpu.system - s0.cpu.system) / ticks,
			       (double)(s1.cpu.softirq - s0.cpu.softirq) / ticks);
		/* CPU seconds of the threads per second of the run. */
		printf(",\"threads_cpu\":{\"app\":%.3f,\"peer\":%.3f}",
		       (s1.app_cpu - s0.app_cpu) / dt,
		       (s1.peer_cpu - s0.peer_cpu) / dt);
		printf(",\"tcp\":{\"in_segs\":%lld,\"out_segs\":%lld,\"retrans\":%lld,"
		       "\"data_segs\":%lld,\"delayed_acks\":%lld}",
		       s1.tcp.in_segs - s0.tcp.in_segs,
		       s1.tcp.out_segs - s0.tcp.out_segs,
		       s1.tcp.retrans - s0.tcp.retrans,
		       s1.tcp.data_segs - s0.tcp.data_segs,
		       s1.tcp.delayed_acks - s0.tcp.delayed_acks);
		if (s1.snd.ok)
			printf(",\"sender\":{\"rtt_us\":%u,\"min_rtt_us\":%u,"
			       "\"cwnd\":%u,\"pacing_rate\":%llu}",
			       s1.snd.rtt_us, s1.snd.min_rtt_us, s1.snd.cwnd,
			       (unsigned long long)s1.snd.pacing_rate);
		json_kstats(&s0.ks, &s1.ks);
		if (s0.kcm_q >= 0)
			printf(",\"kcm_queue_start\":{\"msgs\":%lld,\"rmem\":%lld}",
			       s0.kcm_q, s0.kcm_rmem);
		if (s1.kcm_q >= 0)
			printf(",\"kcm_queue_end\":{\"msgs\":%lld,\"rmem\":%lld,\"rcvbuf\":%d}",
			       s1.kcm_q, s1.kcm_rmem,
			       kcm_getint(kcm_socks[0], SOL_SOCKET, SO_RCVBUF));
		json_tail();
	}
	if (stuck)
		_exit(1);
	return atomic_load(&failed) ? 1 : 0;
}

/* --- memory per queued message -------------------------------------------- */

/*
 * Free memory in bytes: the buddy allocator's free pages plus the pages
 * parked on the per-CPU lists, which MemFree does not count and which
 * move by megabytes on their own; without them a delta of a few MB is
 * noise.
 */
static long long free_bytes(void)
{
	char line[256];
	long long pages = 0, v;
	FILE *f = fopen("/proc/zoneinfo", "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, " nr_free_pages %lld", &v) == 1 ||
		    sscanf(line, " count: %lld", &v) == 1)
			pages += v;
	}
	fclose(f);
	return pages * sysconf(_SC_PAGESIZE);
}

static long long sk_rmem(int fd)
{
	uint32_t mi[SK_MEMINFO_VARS];
	socklen_t len = sizeof(mi);

	if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mi, &len))
		return -1;
	return mi[SK_MEMINFO_RMEM_ALLOC];
}

/* Messages queued on the receive side: on the KCM socket, or in TCP. */
static long long queued_msgs(int fd)
{
	if (cfg.impl == IMPL_USER)
		return kcm_inq(fd) / (long long)cfg.size;
	return kcm_proc_nth("kcm-", 0, "Recv-Q");
}

/* Reads back n messages of flow 0 from fd and checks them. */
static void mem_readback(int fd, uint64_t n)
{
	struct lane l = { 0 };
	uint8_t *buf = xcalloc(1, cfg.size);
	double deadline = now_s() + cfg.drain_ms / 1000.0;
	struct stream s;

	lane_init(&l, 0, 1);
	if (cfg.impl == IMPL_USER)
		stream_init(&s, fd, &l, false);
	kcm_set_timeo(fd, SO_RCVTIMEO, POLL_MS);
	while (atomic_load(&l.msgs) < n && !atomic_load(&failed) &&
	       now_s() < deadline) {
		if (cfg.impl == IMPL_USER) {
			stream_pump(&s, 0);
		} else {
			ssize_t r = recv(fd, buf, cfg.size, 0);

			if (r > 0)
				lane_msg(&l, buf, r);
			else if (r < 0 && !interrupted(errno))
				fail("recv: %s", strerror(errno));
		}
	}
	lanes_verify(&l, 1, &n, 1);
	free(buf);
}

/*
 * Phase 1: n messages into a receive side whose buffer is large enough
 * for all of them; once all sit on the KCM socket (or in TCP), the
 * socket's rmem and the drop of free memory, per message.
 * Phase 2: default buffers; the peer writes until nothing more is taken;
 * how many messages the socket holds then, and its rmem per message.
 */
static int cmd_mem(void)
{
	const uint64_t n = cfg.msgs;
	bool kcm = cfg.impl != IMPL_USER;
	long long free0, free1, q, rmem, rmem2 = -1, tcp_rmem;
	uint64_t fill_sent = 0;
	uint8_t *buf;
	double deadline;
	int fd, idle;

	cfg.size = 64;
	cfg.psocks = cfg.socks = 1;
	if (cfg.impl != IMPL_KCM && cfg.impl != IMPL_USER && cfg.impl != IMPL_FRAMING)
		die("mem: --impl kcm, framing or user");
	setup_ns();
	buf = xcalloc(n, cfg.size);
	for (uint64_t i = 0; i < n; i++)
		msg_stamp(buf + i * cfg.size, cfg.size, i + 1, 0);

	/* Phase 1. */
	conns = make_conns(1, 0);
	if (kcm) {
		make_mux(1, 0);
		fd = kcm_socks[0];
	} else {
		fd = conns[0].app;
	}
	/*
	 * Room for every message whatever each one is charged: the in-tree
	 * module charges each the truesize of the whole TCP skb it clones.
	 */
	kcm_set_rcvbuf(fd, INT_MAX / 2);
	kcm_msleep(50);
	free0 = free_bytes();
	if (!send_all(conns[0].peer, buf, n * cfg.size))
		die("peer send failed");
	deadline = now_s() + 10;
	while ((q = queued_msgs(fd)) < (long long)n && now_s() < deadline)
		kcm_msleep(10);
	kcm_msleep(100);
	q = queued_msgs(fd);
	free1 = free_bytes();
	rmem = sk_rmem(fd);
	tcp_rmem = kcm ? sk_rmem(conns[0].app) : 0;
	if (q != (long long)n)
		fail("only %lld of %llu messages reached the receive queue", q,
		     (unsigned long long)n);
	mem_readback(fd, n);
	for (int i = 0; i < cfg.socks; i++)
		if (kcm)
			close(kcm_socks[i]);
	close(conns[0].app);
	close(conns[0].peer);
	free(conns);

	/* Phase 2. */
	long long q2 = -1, tcp_q2 = -1;

	if (!atomic_load(&failed)) {
		conns = make_conns(1, 0);
		if (kcm) {
			make_mux(1, 0);
			fd = kcm_socks[0];
		} else {
			fd = conns[0].app;
		}
		/*
		 * Written the way the rx peer writes, 64 KiB of messages per
		 * call: how the bytes arrive decides what the in-tree module
		 * charges per message (it clones whole TCP skbs).
		 */
		{
			const size_t chunk = 65536;
			uint8_t *c = xcalloc(1, chunk);
			uint64_t written = 0;
			size_t off = chunk;
			uint32_t seq = 0;

			idle = 0;
			while (idle < 10 && !atomic_load(&failed)) {
				ssize_t r;

				if (off == chunk) {
					for (off = 0; off < chunk; off += 64)
						msg_stamp(c + off, 64, ++seq, 0);
					off = 0;
				}
				r = send(conns[0].peer, c + off, chunk - off,
					 MSG_DONTWAIT | MSG_NOSIGNAL);
				if (r > 0) {
					off += r;
					written += r;
					idle = 0;
					continue;
				}
				if (r < 0 && !interrupted(errno))
					die("peer send: %s", strerror(errno));
				idle++;
				kcm_msleep(50);
			}
			/* A message cut by the last write never completes. */
			fill_sent = written / 64;
			free(c);
		}
		q2 = queued_msgs(fd);
		rmem2 = sk_rmem(fd);
		tcp_q2 = kcm ? kcm_inq(conns[0].app) : 0;
		mem_readback(fd, fill_sent);
	}

	json_head("mem");
	printf(",\"size\":64,\"parser\":\"%s\",\"msgs\":%llu,\"queued\":%lld,"
	       "\"rmem\":%lld,\"tcp_rmem\":%lld,\"free_drop\":%lld,"
	       "\"rmem_per_msg\":%.1f,\"real_per_msg\":%.1f,"
	       "\"fill_sent\":%llu,\"fill_queued\":%lld,\"fill_tcp_inq\":%lld,"
	       "\"fill_rmem\":%lld,\"fill_rmem_per_msg\":%.1f",
	       cfg.impl == IMPL_KCM ? parser_name() :
	       cfg.impl == IMPL_FRAMING ? "framing" : "user",
	       (unsigned long long)n, q, rmem, tcp_rmem,
	       free0 - free1,
	       q > 0 ? (double)rmem / q : 0.0,
	       (double)(free0 - free1) / n,
	       (unsigned long long)fill_sent, q2, tcp_q2, rmem2,
	       q2 > 0 ? (double)rmem2 / q2 : 0.0);
	json_tail();
	free(buf);
	return atomic_load(&failed) ? 1 : 0;
}

/* --- probe ------------------------------------------------------------------ */

/* Whether SIOCKCMATTACH_EXT with built-in framing works. */
static int cmd_probe(void)
{
	int fd, err;

	setup_ns();
	conns = make_conns(1, 0);
	fd = kcm_socket(SOCK_DGRAM);
	if (fd < 0) {
		printf("{\"mode\":\"probe\",\"af_kcm\":false,\"framing\":false,\"errno\":%d}\n",
		       -fd);
		return 0;
	}
	err = attach_framing(fd, conns[0].app);
	printf("{\"mode\":\"probe\",\"af_kcm\":true,\"kcmux\":%s,\"framing\":%s,\"error\":\"%s\"}\n",
	       kcmux_is_reference() ? "false" : "true", err ? "false" : "true",
	       err ? strerror(-err) : "");
	return 0;
}

/* --- the cost of framing alone ------------------------------------------- */

/*
 * n messages written in one go into a receive side that nobody reads
 * and whose buffer holds them all.  On loopback the receiving TCP stack,
 * and with it the framing, runs in the writer's softirq before send()
 * returns, and with no reader there is nobody to contend with: the time
 * the write takes, over n, is what it costs to frame and queue one
 * message (plus loopback TCP, the same for every parser).  The messages
 * are then read back and checked like every other run's.
 */
static int cmd_frame(void)
{
	const uint64_t n = cfg.msgs;
	long long q, q_at_end, ticks, busy;
	struct cpustat c0, c1;
	double t0, t1, deadline;
	uint8_t *buf;
	int fd;

	if (cfg.impl != IMPL_KCM && cfg.impl != IMPL_FRAMING)
		die("frame: --impl kcm or framing");
	if (cfg.size < MSG_MIN || cfg.size > MSG_MAX)
		die("frame: --size %u out of range", cfg.size);
	cfg.psocks = cfg.socks = 1;
	setup_ns();
	buf = xcalloc(n, cfg.size);
	for (uint64_t i = 0; i < n; i++)
		msg_stamp(buf + i * cfg.size, cfg.size, i + 1, 0);
	conns = make_conns(1, 0);
	make_mux(1, 0);
	fd = kcm_socks[0];
	kcm_set_rcvbuf(fd, INT_MAX / 2);
	kcm_msleep(50);

	cpustat_read(&c0);
	t0 = now_s();
	if (!send_all(conns[0].peer, buf, n * cfg.size))
		die("peer send failed");
	t1 = now_s();
	cpustat_read(&c1);
	q_at_end = queued_msgs(fd);

	deadline = now_s() + 10;
	while ((q = queued_msgs(fd)) < (long long)n && now_s() < deadline)
		kcm_msleep(10);
	if (q != (long long)n)
		fail("only %lld of %llu messages reached the receive queue", q,
		     (unsigned long long)n);
	mem_readback(fd, n);
	close(kcm_socks[0]);
	close(conns[0].app);
	close(conns[0].peer);
	free(conns);

	ticks = c1.total - c0.total;
	busy = ticks - (c1.idle - c0.idle);
	json_head("frame");
	printf(",\"size\":%u,\"parser\":\"%s\",\"msgs\":%llu,"
	       "\"queued_when_sent\":%lld,\"send_s\":%.4f,"
	       "\"us_per_msg\":%.3f,\"msgs_per_s\":%.1f,"
	       "\"cpu_us_per_msg\":%.3f",
	       cfg.size,
	       cfg.impl == IMPL_FRAMING ? "framing" : parser_name(),
	       (unsigned long long)n, q_at_end, t1 - t0,
	       (t1 - t0) * 1e6 / n, n / (t1 - t0),
	       (double)busy / sysconf(_SC_CLK_TCK) * 1e6 / n);
	json_tail();
	free(buf);
	return atomic_load(&failed) ? 1 : 0;
}

/* --- command line ------------------------------------------------------------- */

static void usage(void)
{
	fprintf(stderr,
		"usage: kcm_bench probe\n"
		"       kcm_bench run --impl kcm|framing|user|raw --dir rx|tx --size BYTES\n"
		"                 [--psocks N] [--socks M] [--recvmmsg] [--parser len|fixed|pinned:PATH]\n"
		"                 [--bufsize BYTES] [--chunk BYTES] [--warmup SECS] [--secs SECS]\n"
		"                 [--drain SECS] [--kcm-rcvbuf BYTES] [--prefill] [--batch]\n"
		"                 [--label NAME] [--expect kcmux|kcm|none]\n"
		"       kcm_bench mem --impl kcm|framing|user [--parser len|fixed|pinned:PATH] [--msgs N]\n"
		"                 [--label NAME] [--expect kcmux|kcm|none]\n"
		"       kcm_bench frame --impl kcm|framing [--parser len|fixed|pinned:PATH] [--size BYTES]\n"
		"                 [--msgs N] [--label NAME] [--expect kcmux|kcm|none]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *mode;
	int i;

	if (argc < 2)
		usage();
	mode = argv[1];
	for (i = 2; i < argc; i++) {
		const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(o, "--recvmmsg")) {
			cfg.mmsg = true;
			continue;
		}
		if (!strcmp(o, "--prefill")) {
			cfg.prefill = true;
			continue;
		}
		if (!strcmp(o, "--batch")) {
			cfg.batch = true;
			continue;
		}
		if (!v)
			usage();
		i++;
		if (!strcmp(o, "--impl")) {
			unsigned int k;

			for (k = 0; k < sizeof(impl_names) / sizeof(impl_names[0]); k++)
				if (!strcmp(v, impl_names[k]))
					break;
			if (k == sizeof(impl_names) / sizeof(impl_names[0]))
				usage();
			cfg.impl = k;
		} else if (!strcmp(o, "--dir")) {
			if (strcmp(v, "rx") && strcmp(v, "tx"))
				usage();
			cfg.tx = !strcmp(v, "tx");
		} else if (!strcmp(o, "--size")) {
			cfg.size = strtoul(v, NULL, 0);
		} else if (!strcmp(o, "--psocks")) {
			cfg.psocks = atoi(v);
		} else if (!strcmp(o, "--socks")) {
			cfg.socks = atoi(v);
		} else if (!strcmp(o, "--parser")) {
			if (!strncmp(v, "pinned:", 7) && v[7])
				cfg.pinned_parser = v + 7;
			else if (strcmp(v, "len") && strcmp(v, "fixed"))
				usage();
			cfg.fixed_parser = !strcmp(v, "fixed");
		} else if (!strcmp(o, "--bufsize")) {
			cfg.bufsize = atoi(v);
		} else if (!strcmp(o, "--warmup")) {
			cfg.warmup = atof(v);
		} else if (!strcmp(o, "--secs")) {
			cfg.secs = atof(v);
		} else if (!strcmp(o, "--msgs")) {
			cfg.msgs = strtoull(v, NULL, 0);
		} else if (!strcmp(o, "--kcm-rcvbuf")) {
			cfg.kcm_rcvbuf = atoi(v);
		} else if (!strcmp(o, "--chunk")) {
			cfg.chunk = atoi(v);
		} else if (!strcmp(o, "--drain")) {
			cfg.drain_ms = (int)(atof(v) * 1000);
		} else if (!strcmp(o, "--label")) {
			cfg.label = v;
		} else if (!strcmp(o, "--expect")) {
			cfg.expect = v;
		} else {
			usage();
		}
	}
	signal(SIGPIPE, SIG_IGN);
	if (!strcmp(mode, "run"))
		return cmd_run();
	if (!strcmp(mode, "mem"))
		return cmd_mem();
	if (!strcmp(mode, "frame"))
		return cmd_frame();
	if (!strcmp(mode, "probe"))
		return cmd_probe();
	usage();
	return 2;
}
