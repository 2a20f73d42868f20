// SPDX-License-Identifier: GPL-2.0
/*
 * kcm_hostile: peers and parsers that do their worst.
 *
 *   parser   what a BPF parser may return: 0 for ever, a length of 1,
 *            above the receive buffer, 2^31, 2^32 - 1, negative errnos,
 *            negative non-errnos, a length inside the bytes it asked for
 *   peer     one byte per segment with gaps, a message that never
 *            completes (assembly timeout), a FIN in the middle of one
 *   memory   a peer that never reads, a flood nobody reads, a header
 *            that never completes: the kernel memory each holds is
 *            bounded by the socket buffers and given back on close
 *
 * The memory bound.  A byte a peer has written is either still in its
 * send queue, in flight, or held by the receiving side (TCP's receive
 * queue, a message being assembled, a KCM socket's receive queue).  Each
 * of these is limited by a socket buffer size: the sender's SO_SNDBUF,
 * the receiver's SO_RCVBUF, the KCM socket's SO_RCVBUF (plus the one
 * message that may overshoot it).  Kernel accounting charges truesize,
 * which for small segments is up to about twice the payload, hence:
 *
 *     bytes a peer can push = 2 * (its SO_SNDBUF + TCP SO_RCVBUF
 *                                  + KCM SO_RCVBUF) + largest message
 *                             + 1 MiB of slack
 *
 * and symmetrically for a KCM socket sending to a peer that never reads.
 * A module that keeps reading from TCP into memory of its own without a
 * limit lets the peer push more than that: the tests count what the
 * peer (or the sender) manages to queue until no more goes in, and
 * compare.  TCP's own memory (/proc/net/sockstat "TCP: mem", pages) must
 * also stay within the bound while blocked and return to where it was
 * after the sockets are closed; /proc/meminfo SUnreclaim is printed for
 * information only (KASAN's quarantine delays frees).
 *
 * On the in-tree kcm.ko (the reference) a few tests are skipped where it
 * behaves differently, each with the reason in its SKIP line.
 */
#include <limits.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <linux/sock_diag.h>

#include "kcm_test.h"
#pragma GCC diagnostic ignored "-Wclobbered"
#include "kselftest_harness.h"

#ifndef SO_MEMINFO
#define SO_MEMINFO	55
#endif

#define MiB		(1024 * 1024)
#define KCM_MAX_ERRNO	4095
/* The test buffers: small, so that bounds are tight and tests quick. */
#define H_TCP_RCVBUF	(256 * 1024)
#define H_SNDBUF	(128 * 1024)
#define H_KCM_RCVBUF	(128 * 1024)

/* ------------------------------------------------------------------ */
/* Parsers                                                             */
/* ------------------------------------------------------------------ */

/* Returns 0 while fewer than min bytes are there, then ret. */
static int h_gated_parser(uint32_t min, int32_t ret)
{
	const struct bpf_insn insns[] = {
		KCM_INSN(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_0, BPF_REG_1,
			 offsetof(struct __sk_buff, len), 0),
		KCM_INSN(BPF_JMP | BPF_JGE | BPF_K, BPF_REG_0, 0, 2, (int32_t)min),
		KCM_INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0),
		KCM_INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
		KCM_INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, ret),
		KCM_INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
	};

	return kcm_bpf_load_logged(insns, sizeof(insns) / sizeof(insns[0]),
				   "(gated)");
}

/* ------------------------------------------------------------------ */
/* Memory                                                              */
/* ------------------------------------------------------------------ */

/*
 * A number of /proc/net/sockstat: line "TCP:" or "sockets:", then the
 * word before it ("mem": pages charged to TCP, "alloc": TCP sockets,
 * "used": sockets of the namespace).  -1 if absent.
 */
static long h_sockstat(const char *line_tag, const char *word)
{
	char line[256], key[32];
	long v = -1;
	FILE *f = fopen("/proc/net/sockstat", "re");

	if (!f)
		return -1;
	snprintf(key, sizeof(key), " %s ", word);
	while (fgets(line, sizeof(line), f)) {
		char *p = strstr(line, key);

		if (!strncmp(line, line_tag, strlen(line_tag)) && p)
			v = strtol(p + strlen(key), NULL, 10);
	}
	fclose(f);
	return v;
}

static long h_tcp_mem_pages(void)
{
	return h_sockstat("TCP:", "mem");
}

/*
 * TCP charges memory through a per-CPU reserve (net.core.mem_pcpu_rsv
 * pages, 256 by default) and adds to the global count only past it, so
 * "TCP: mem" is exact only to within that much per CPU.
 */
static long h_tcp_mem_slack(void)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN), rsv = 256;
	FILE *f = fopen("/proc/sys/net/core/mem_pcpu_rsv", "re");

	if (f) {
		if (fscanf(f, "%ld", &rsv) != 1)
			rsv = 256;
		fclose(f);
	}
	return (ncpu > 0 ? ncpu : 1) * rsv + 4;
}

/* A /proc/meminfo value in KiB, or -1. */
static long h_meminfo_kb(const char *key)
{
	char line[256];
	size_t n = strlen(key);
	long v = -1;
	FILE *f = fopen("/proc/meminfo", "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, n) && line[n] == ':')
			v = strtol(line + n + 1, NULL, 10);
	fclose(f);
	return v;
}

/* SO_MEMINFO: what the kernel charges to one socket. */
static int h_meminfo(int fd, uint32_t mi[SK_MEMINFO_VARS])
{
	socklen_t len = sizeof(uint32_t) * SK_MEMINFO_VARS;

	memset(mi, 0, len);
	return getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mi, &len) ? -errno : 0;
}

/* Bytes charged to a socket for receiving and sending. */
static long h_charged(int fd)
{
	uint32_t mi[SK_MEMINFO_VARS];

	if (h_meminfo(fd, mi))
		return -1;
	return (long)mi[SK_MEMINFO_RMEM_ALLOC] + mi[SK_MEMINFO_WMEM_QUEUED] +
	       mi[SK_MEMINFO_BACKLOG];
}

static int h_getint(int fd, int name)
{
	return kcm_getint(fd, SOL_SOCKET, name);
}

/*
 * Sockets and TCP's pages back at (or below) where they were: sockets
 * are freed asynchronously, so wait a little.  True if they are.
 */
static bool h_settle(long mem_max, long used_max, long alloc_max)
{
	long long end = kcm_now_ms() + 10000;

	do {
		if (h_tcp_mem_pages() <= mem_max &&
		    h_sockstat("sockets:", "used") <= used_max &&
		    h_sockstat("TCP:", "alloc") <= alloc_max)
			return true;
		kcm_msleep(20);
	} while (kcm_now_ms() < end);
	return false;
}

/*
 * Writes buf again and again (a stream of copies of it) on fd without
 * blocking, until nothing more goes in for quiet_ms or max bytes went
 * in; the bytes written.
 */
static long h_push(int fd, const void *buf, size_t len, long max, int quiet_ms)
{
	long long last = kcm_now_ms();
	long total = 0;
	size_t off, want;
	ssize_t n;

	while (total < max) {
		off = total % len;
		want = len - off;
		if ((long)want > max - total)
			want = max - total;
		n = send(fd, (const char *)buf + off, want,
			 MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n > 0) {
			total += n;
			last = kcm_now_ms();
			continue;
		}
		if (n < 0 && errno != EAGAIN)
			break;
		if (kcm_now_ms() - last > quiet_ms)
			break;
		kcm_poll(fd, POLLOUT, 20);
	}
	return total;
}

/* ------------------------------------------------------------------ */
/* Fixture: a KCM socket and a TCP connection with small buffers       */
/* ------------------------------------------------------------------ */

FIXTURE(hostile)
{
	int kcm;
	int tcp;	/* attached end (accepted, SO_RCVBUF H_TCP_RCVBUF) */
	int peer;	/* the peer (SO_SNDBUF H_SNDBUF) */
	int prog;
	long tcp_mem_base;
	long sunreclaim_base;
	long used_base;		/* sockets of the namespace */
	long alloc_base;	/* TCP sockets */
};

FIXTURE_SETUP(hostile)
{
	const struct kcm_tcp_opts o = {
		.rcvbuf = H_TCP_RCVBUF,
		.sndbuf = H_SNDBUF,
		.nodelay = true,
		.sndtimeo_ms = 5000,
	};
	int fds[2];

	self->kcm = self->tcp = self->peer = self->prog = -1;
	ASSERT_EQ(0, kcm_netns_enter());
	self->tcp_mem_base = h_tcp_mem_pages();
	self->sunreclaim_base = h_meminfo_kb("SUnreclaim");
	self->used_base = h_sockstat("sockets:", "used");
	self->alloc_base = h_sockstat("TCP:", "alloc");
	self->kcm = kcm_socket(SOCK_DGRAM);
	ASSERT_LE(0, self->kcm);
	ASSERT_EQ(0, kcm_set_rcvbuf(self->kcm, H_KCM_RCVBUF));
	ASSERT_EQ(0, kcm_set_timeo(self->kcm, SO_RCVTIMEO, 2000));
	ASSERT_EQ(0, kcm_set_timeo(self->kcm, SO_SNDTIMEO, 2000));
	ASSERT_EQ(0, kcm_tcp_pair_opts(AF_INET, fds, &o));
	self->peer = fds[0];
	self->tcp = fds[1];
}

FIXTURE_TEARDOWN(hostile)
{
	kcm_close_fd(&self->kcm);
	kcm_close_fd(&self->tcp);
	kcm_close_fd(&self->peer);
	kcm_close_fd(&self->prog);
}

static int h_attach(struct __test_metadata *_metadata,
		    FIXTURE_DATA(hostile) *self, int prog)
{
	self->prog = prog;
	ASSERT_LE(0, prog);
	return kcm_attach(self->kcm, self->tcp, prog);
}

/* The error posted on the attached socket; and nothing was delivered. */
static int h_posted(FIXTURE_DATA(hostile) *self)
{
	return kcm_err_wait(self->tcp);
}

static void h_send_be32(int fd, uint32_t v)
{
	uint32_t be = htonl(v);

	kcm_send_all(fd, &be, sizeof(be));
}

/* ------------------------------------------------------------------ */
/* What a parser returns                                               */
/* ------------------------------------------------------------------ */

/*
 * Lengths from the stream, through the usual parser (4-byte big-endian
 * length, returned as is): the parser returns what the peer says.
 */
TEST_F(hostile, length_above_rcvbuf)
{
	ASSERT_EQ(0, h_attach(_metadata, self, kcm_bpf_len_parser(0)));
	h_send_be32(self->peer, 2 * h_getint(self->tcp, SO_RCVBUF));
	EXPECT_EQ(EMSGSIZE, h_posted(self));
	EXPECT_TRUE(kcm_quiet(self->kcm, KCM_QUIET_MS));
}

/* 2^31 is INT_MIN as an int: an error, not a length nor a crash. */
TEST_F(hostile, length_2pow31)
{
	int err;

	ASSERT_EQ(0, h_attach(_metadata, self, kcm_bpf_len_parser(0)));
	h_send_be32(self->peer, 0x80000000u);
	err = h_posted(self);
	TH_LOG("parser returned 2^31: SO_ERROR %d", err);
	if (kcmux_is_reference() && err == INT_MIN)
		SKIP(return, "in-tree kcm posts the parser's return value unchecked: SO_ERROR %d, a negative errno",
		     err);
	EXPECT_LT(0, err);
	EXPECT_GE(KCM_MAX_ERRNO, err);
	EXPECT_TRUE(kcm_quiet(self->kcm, KCM_QUIET_MS));
}

/* 2^32 - 1 is -1: EPERM is posted, as any negative errno would be. */
TEST_F(hostile, length_2pow32_minus_1)
{
	ASSERT_EQ(0, h_attach(_metadata, self, kcm_bpf_len_parser(0)));
	h_send_be32(self->peer, 0xffffffffu);
	EXPECT_EQ(EPERM, h_posted(self));
	EXPECT_TRUE(kcm_quiet(self->kcm, KCM_QUIET_MS));
}

/* A length of 1: a one-byte message, the framing goes on after it. */
TEST_F(hostile, length_1)
{
	char m[8];

	/* Fixed length 1, so in-tree's skb offset does not matter. */
	ASSERT_EQ(0, h_attach(_metadata, self, kcm_bpf_fixed_parser(1)));
	ASSERT_EQ(0, kcm_send_all(self->peer, "abc", 3));
	ASSERT_EQ(1, recv(self->kcm, m, sizeof(m), 0));
	EXPECT_EQ('a', m[0]);
	ASSERT_EQ(1, recv(self->kcm, m, sizeof(m), 0));
	EXPECT_EQ('b', m[0]);
	ASSERT_EQ(1, recv(self->kcm, m, sizeof(m), 0));
	EXPECT_EQ('c', m[0]);
	EXPECT_TRUE(kcm_quiet(self->kcm, KCM_QUIET_MS));
	EXPECT_EQ(0, kcm_sock_error(self->tcp));
}

/* A length inside the bytes the parser asked to see: EPROTO. */
TEST_F(hostile, length_inside_seen_bytes)
{
	ASSERT_EQ(0, h_attach(_metadata, self, h_gated_parser(16, 8)));
	ASSERT_EQ(0, kcm_send_all(self->peer, "0123456789", 10));
	kcm_msleep(50);
	ASSERT_EQ(0, kcm_send_all(self->peer, "abcdefghij", 10));
	EXPECT_EQ(EPROTO, h_posted(self));
	EXPECT_TRUE(kcm_quiet(self->kcm, KCM_QUIET_MS));
}

TEST_F(hostile, parser_negative_errno)
{
	ASSERT_EQ(0, h_attach(_metadata, self, kcm_bpf_fixed_parser(-EBADMSG)));
	ASSERT_EQ(0, kcm_send_all(self->peer, "x", 1));
	EXPECT_EQ(EBADMSG, h_posted(self));
	EXPECT_TRUE(kcm_quiet(self->kcm, KCM_QUIET_MS));
}

/* A negative value that is no errno: some errno is posted, no garbage. */
TEST_F(hostile, parser_negative_garbage)
{
	int err;

	ASSERT_EQ(0, h_attach(_metadata, self, kcm_bpf_fixed_parser(-100000)));
	ASSERT_EQ(0, kcm_send_all(self->peer, "x", 1));
	err = h_posted(self);
	TH_LOG("parser returned -100000: SO_ERROR %d", err);
	if (kcmux_is_reference() && err == 100000)
		SKIP(return, "in-tree kcm posts the parser's value as it is: SO_ERROR 100000, no errno");
	EXPECT_LT(0, err);
	EXPECT_GE(KCM_MAX_ERRNO, err);
	EXPECT_TRUE(kcm_quiet(self->kcm, KCM_QUIET_MS));
}

TEST_F(hostile, parser_huge_positive)
{
	ASSERT_EQ(0, h_attach(_metadata, self, kcm_bpf_fixed_parser(0x7fffffff)));
	ASSERT_EQ(0, kcm_send_all(self->peer, "x", 1));
	EXPECT_EQ(EMSGSIZE, h_posted(self));
	EXPECT_TRUE(kcm_quiet(self->kcm, KCM_QUIET_MS));
}

/* ------------------------------------------------------------------ */
/* Peers                                                               */
/* ------------------------------------------------------------------ */

/* Three messages, one byte per segment, a pause between segments. */
TEST_F(hostile, one_byte_segments)
{
	uint8_t out[3][40], in[64];
	int i, j;

	/* The length is at offset 0 of each message: in-tree cannot (see
	 * kcm_rx.c), a fixed length frames the same stream there. */
	ASSERT_EQ(0, h_attach(_metadata, self, kcmux_is_reference() ?
			      kcm_bpf_fixed_parser(40) : kcm_bpf_len_parser(8)));
	for (i = 0; i < 3; i++)
		kcm_test_msg(out[i], i + 1, 32);
	for (i = 0; i < 3; i++)
		for (j = 0; j < 40; j++) {
			ASSERT_EQ(1, send(self->peer, &out[i][j], 1, MSG_NOSIGNAL));
			if (j % 8 == 0)
				kcm_msleep(2);
		}
	for (i = 0; i < 3; i++) {
		ASSERT_EQ(40, recv(self->kcm, in, sizeof(in), 0));
		EXPECT_TRUE(kcm_test_msg_ok(in, 40, i + 1, 32));
	}
	EXPECT_EQ(0, kcm_sock_error(self->tcp));
}

/* A message that stops arriving: the TCP socket's SO_RCVTIMEO ends it. */
TEST_F(hostile, assembly_timeout)
{
	long long t0;
	int i, err;

	ASSERT_EQ(0, kcm_set_timeo(self->tcp, SO_RCVTIMEO, 300));
	ASSERT_EQ(0, h_attach(_metadata, self, kcm_bpf_fixed_parser(1000)));
	t0 = kcm_now_ms();
	for (i = 0; i < 10; i++) {
		ASSERT_EQ(1, send(self->peer, "z", 1, MSG_NOSIGNAL));
		kcm_msleep(20);
	}
	err = h_posted(self);
	EXPECT_EQ(ETIMEDOUT, err);
	TH_LOG("ETIMEDOUT after %lld ms", kcm_now_ms() - t0);
	EXPECT_TRUE(kcm_quiet(self->kcm, KCM_QUIET_MS));
}

/* The peer closes in the middle of a message: EPIPE, nothing delivered. */
TEST_F(hostile, fin_inside_message)
{
	ASSERT_EQ(0, h_attach(_metadata, self, kcm_bpf_fixed_parser(100000)));
	ASSERT_EQ(0, kcm_send_all(self->peer, "0123456789", 10));
	ASSERT_EQ(0, shutdown(self->peer, SHUT_WR));
	EXPECT_EQ(EPIPE, h_posted(self));
	EXPECT_TRUE(kcm_quiet(self->kcm, KCM_QUIET_MS));
}

/* ------------------------------------------------------------------ */
/* Memory                                                              */
/* ------------------------------------------------------------------ */

/*
 * The memory a peer can make the kernel hold for it: see the comment at
 * the top.  largest: the largest message in play.
 */
static long h_bound(int sndbuf, int tcp_rcvbuf, int kcm_rcvbuf, long largest)
{
	return 2L * (sndbuf + tcp_rcvbuf + kcm_rcvbuf) + largest + MiB;
}

static void h_log_mem(struct __test_metadata *_metadata,
		      FIXTURE_DATA(hostile) *self, const char *when)
{
	TH_LOG("%s: TCP mem %ld pages (base %ld), SUnreclaim %ld KiB (base %ld), charged: kcm %ld tcp %ld peer %ld",
	       when, h_tcp_mem_pages(), self->tcp_mem_base,
	       h_meminfo_kb("SUnreclaim"), self->sunreclaim_base,
	       h_charged(self->kcm), h_charged(self->tcp), h_charged(self->peer));
}

/*
 * Closes everything: every socket must go, and TCP's memory come back
 * (to within its per-CPU reserves).
 */
static void h_check_released(struct __test_metadata *_metadata,
			     FIXTURE_DATA(hostile) *self)
{
	bool back;

	kcm_close_fd(&self->kcm);
	kcm_close_fd(&self->tcp);
	kcm_close_fd(&self->peer);
	kcm_close_fd(&self->prog);
	back = h_settle(self->tcp_mem_base + h_tcp_mem_slack(), self->used_base,
			self->alloc_base);
	TH_LOG("after close: TCP mem %ld pages (base %ld, slack %ld), sockets %ld (base %ld), TCP sockets %ld (base %ld), SUnreclaim %ld KiB (base %ld)",
	       h_tcp_mem_pages(), self->tcp_mem_base, h_tcp_mem_slack(),
	       h_sockstat("sockets:", "used"), self->used_base,
	       h_sockstat("TCP:", "alloc"), self->alloc_base,
	       h_meminfo_kb("SUnreclaim"), self->sunreclaim_base);
	EXPECT_TRUE(back) {
		kcm_dump_file("/proc/net/sockstat");
		kcm_dump_file("/proc/net/tcp");
		kcm_dump_file("/proc/net/kcm");
	}
}

/*
 * The parser never finds a length (always "need more"): whatever the
 * module does with the bytes, the peer must be stopped by the buffers.
 */
TEST_F(hostile, memory_length_never_known)
{
	static uint8_t chunk[16384];
	long pushed, bound, tcp_pages;
	int err;

	memset(chunk, 0x5a, sizeof(chunk));
	ASSERT_EQ(0, h_attach(_metadata, self, kcm_bpf_fixed_parser(0)));
	bound = h_bound(h_getint(self->peer, SO_SNDBUF),
			h_getint(self->tcp, SO_RCVBUF),
			h_getint(self->kcm, SO_RCVBUF), 0);
	pushed = h_push(self->peer, chunk, sizeof(chunk), 2 * bound, 1000);
	tcp_pages = h_tcp_mem_pages();
	h_log_mem(_metadata, self, "blocked");
	err = kcm_sock_error(self->tcp);
	TH_LOG("peer pushed %ld bytes (bound %ld), SO_ERROR %d", pushed, bound,
	       err);
	if (kcmux_is_reference() && pushed > bound) {
		h_check_released(_metadata, self);
		SKIP(return, "in-tree strparser takes bytes off TCP as long as the parser returns 0: the peer pushed %ld bytes (bound %ld), held in kernel memory",
		     pushed, bound);
	}
	EXPECT_GE(bound, pushed);
	EXPECT_GE(bound / 4096, tcp_pages - self->tcp_mem_base);
	EXPECT_TRUE(err >= 0 && err <= KCM_MAX_ERRNO);
	EXPECT_TRUE(kcm_quiet(self->kcm, KCM_QUIET_MS));
	h_check_released(_metadata, self);
}

/*
 * Messages nobody reads: the KCM socket fills to its SO_RCVBUF, the
 * psock stops reading, TCP closes the window.  Then everything pushed
 * is delivered, whole and in order.
 */
TEST_F(hostile, memory_flood_no_reader)
{
	enum { PAYLOAD = 4088, MSG = KCM_TEST_HDR_LEN + PAYLOAD };
	static uint8_t m[MSG], in[MSG + 64];
	long pushed = 0, bound, tcp_pages, sent, got;
	uint32_t seq = 0;
	ssize_t n;

	/* All messages one length: framed right on in-tree too. */
	ASSERT_EQ(0, h_attach(_metadata, self, kcm_bpf_fixed_parser(MSG)));
	bound = h_bound(h_getint(self->peer, SO_SNDBUF),
			h_getint(self->tcp, SO_RCVBUF),
			h_getint(self->kcm, SO_RCVBUF), MSG);
	for (;;) {
		kcm_test_msg(m, seq, PAYLOAD);
		n = h_push(self->peer, m, MSG, MSG, 1000);
		if (n != MSG) {
			/* Blocked in the middle of a message: finish it later. */
			pushed += n;
			break;
		}
		pushed += MSG;
		seq++;
		if (pushed > 8 * bound)
			break;
	}
	tcp_pages = h_tcp_mem_pages();
	h_log_mem(_metadata, self, "blocked");
	TH_LOG("peer pushed %ld bytes, %u whole messages (bound %ld)", pushed,
	       seq, bound);
	EXPECT_GE(bound, pushed);
	EXPECT_GE(bound / 4096, tcp_pages - self->tcp_mem_base);
	EXPECT_GE(h_getint(self->kcm, SO_RCVBUF) + 2 * MSG,
		  kcm_proc_nth("kcm-", 0, "Rmem") < 0 ? 0 :
		  kcm_proc_nth("kcm-", 0, "Rmem"));

	/* Read everything back, finishing the torn message on the way. */
	sent = seq + 1;
	for (got = 0; got < sent; got++) {
		if (got == seq)
			ASSERT_EQ(0, kcm_send_all(self->peer, m + (pushed % MSG),
						  MSG - pushed % MSG));
		n = recv(self->kcm, in, sizeof(in), 0);
		ASSERT_EQ(MSG, n) TH_LOG("message %ld of %ld", got, sent);
		ASSERT_TRUE(kcm_test_msg_ok(in, n, (uint32_t)got, PAYLOAD))
			TH_LOG("message %ld: wrong or out of order", got);
	}
	EXPECT_TRUE(kcm_quiet(self->kcm, KCM_QUIET_MS));
	EXPECT_EQ(0, kcm_sock_error(self->tcp));
	h_check_released(_metadata, self);
}

/*
 * A peer that never reads: sendmsg must end in EAGAIN (non-blocking),
 * block until SO_SNDTIMEO (blocking), and what it accepted must fit
 * the buffers.  Then the peer reads it all, whole and in order.
 */
TEST_F(hostile, memory_peer_never_reads)
{
	enum { PAYLOAD = 16376, MSG = KCM_TEST_HDR_LEN + PAYLOAD };
	static uint8_t m[MSG], in[MSG];
	long accepted = 0, bound, tcp_pages, n_msgs = 0, i;
	long long t0, waited;
	ssize_t n;

	ASSERT_EQ(0, h_attach(_metadata, self, kcm_bpf_fixed_parser(MSG)));
	ASSERT_EQ(0, kcm_setint(self->kcm, SOL_SOCKET, SO_SNDBUF, H_SNDBUF));
	/*
	 * Until sends fail for a while: TCP's send buffer grows by itself
	 * (autotuning), which makes room again after a first EAGAIN.
	 */
	t0 = kcm_now_ms();
	while (kcm_now_ms() - t0 < 1000) {
		kcm_test_msg(m, (uint32_t)n_msgs, PAYLOAD);
		n = send(self->kcm, m, MSG, MSG_DONTWAIT);
		if (n < 0) {
			ASSERT_EQ(EAGAIN, errno);
			kcm_msleep(50);
			continue;
		}
		ASSERT_EQ(MSG, n);
		accepted += n;
		n_msgs++;
		t0 = kcm_now_ms();
		ASSERT_GE(64L * MiB, accepted) TH_LOG("sendmsg never blocks");
	}
	/*
	 * Sender: the KCM socket and the attached TCP socket; receiver: the
	 * peer's receive buffer.  TCP sizes the last two itself (autotuning):
	 * their sizes now.
	 */
	bound = h_bound(h_getint(self->kcm, SO_SNDBUF) +
			h_getint(self->tcp, SO_SNDBUF),
			h_getint(self->peer, SO_RCVBUF), 0, MSG);
	tcp_pages = h_tcp_mem_pages();
	h_log_mem(_metadata, self, "full");
	TH_LOG("KCM socket accepted %ld bytes, %ld messages (bound %ld)",
	       accepted, n_msgs, bound);
	EXPECT_GE(bound, accepted);
	EXPECT_GE(bound / 4096, tcp_pages - self->tcp_mem_base);

	/* Blocking: waits for SO_SNDTIMEO, then EAGAIN; nothing added. */
	ASSERT_EQ(0, kcm_set_timeo(self->kcm, SO_SNDTIMEO, 300));
	kcm_test_msg(m, (uint32_t)n_msgs, PAYLOAD);
	t0 = kcm_now_ms();
	n = send(self->kcm, m, MSG, 0);
	waited = kcm_now_ms() - t0;
	EXPECT_EQ(-1, n);
	EXPECT_EQ(EAGAIN, errno);
	EXPECT_LE(250, waited) TH_LOG("returned after %lld ms", waited);
	if (n == MSG)
		n_msgs++;

	for (i = 0; i < n_msgs; i++) {
		ASSERT_EQ(MSG, kcm_read_exact(self->peer, in, MSG, KCM_WAIT_MS))
			TH_LOG("message %ld of %ld", i, n_msgs);
		ASSERT_TRUE(kcm_test_msg_ok(in, MSG, (uint32_t)i, PAYLOAD))
			TH_LOG("message %ld: wrong or out of order", i);
	}
	EXPECT_TRUE(kcm_quiet(self->peer, KCM_QUIET_MS));
	h_check_released(_metadata, self);
}

/*
 * Many psocks, each with a message that never completes: each one holds
 * at most its buffers, and all of it comes back on close.
 */
TEST_F(hostile, memory_many_partial_messages)
{
	enum { N = 8 };
	const struct kcm_tcp_opts o = { .rcvbuf = H_TCP_RCVBUF,
					.sndbuf = H_SNDBUF, .nodelay = true };
	enum { MSG = 200000 };
	static uint8_t chunk[MSG];
	int tcp[N], peer[N], fds[2], i, prog;
	long pushed = 0, bound, tcp_pages;

	memset(chunk, 0x33, sizeof(chunk));
	/* Messages that fit TCP's buffer; each peer sends all but a byte. */
	prog = kcm_bpf_fixed_parser(MSG);
	ASSERT_LE(0, prog);
	self->prog = prog;
	for (i = 0; i < N; i++) {
		ASSERT_EQ(0, kcm_tcp_pair_opts(AF_INET, fds, &o));
		peer[i] = fds[0];
		tcp[i] = fds[1];
		ASSERT_EQ(0, kcm_attach(self->kcm, tcp[i], prog));
	}
	bound = N * h_bound(h_getint(peer[0], SO_SNDBUF),
			    h_getint(tcp[0], SO_RCVBUF), 0, MSG);
	for (i = 0; i < N; i++)
		pushed += h_push(peer[i], chunk, MSG - 1, MSG - 1, 500);
	tcp_pages = h_tcp_mem_pages();
	h_log_mem(_metadata, self, "blocked");
	TH_LOG("%d peers pushed %ld bytes (bound %ld)", N, pushed, bound);
	EXPECT_GE(bound, pushed);
	EXPECT_GE(bound / 4096, tcp_pages - self->tcp_mem_base);
	for (i = 0; i < N; i++)
		EXPECT_EQ(0, kcm_sock_error(tcp[i]));
	EXPECT_TRUE(kcm_quiet(self->kcm, KCM_QUIET_MS));
	for (i = 0; i < N; i++) {
		close(tcp[i]);
		close(peer[i]);
	}
	h_check_released(_metadata, self);
}

/*
 * Psocks stopped by their parser (a length above the buffer) while their
 * peers keep writing: the bytes stay in TCP, bounded by its buffers, and
 * all of it is freed once the sockets are closed.
 */
TEST_F(hostile, memory_stopped_psocks)
{
	enum { N = 8 };
	const struct kcm_tcp_opts o = { .rcvbuf = H_TCP_RCVBUF,
					.sndbuf = H_SNDBUF, .nodelay = true };
	static uint8_t chunk[65536];
	int tcp[N], peer[N], fds[2], i, prog;
	long pushed = 0, bound, tcp_pages;

	memset(chunk, 0x44, sizeof(chunk));
	prog = kcm_bpf_fixed_parser(8 * MiB);
	ASSERT_LE(0, prog);
	self->prog = prog;
	for (i = 0; i < N; i++) {
		ASSERT_EQ(0, kcm_tcp_pair_opts(AF_INET, fds, &o));
		peer[i] = fds[0];
		tcp[i] = fds[1];
		ASSERT_EQ(0, kcm_attach(self->kcm, tcp[i], prog));
	}
	bound = N * h_bound(h_getint(peer[0], SO_SNDBUF),
			    h_getint(tcp[0], SO_RCVBUF), 0, 0);
	for (i = 0; i < N; i++)
		pushed += h_push(peer[i], chunk, sizeof(chunk), 8 * MiB, 500);
	tcp_pages = h_tcp_mem_pages();
	h_log_mem(_metadata, self, "blocked");
	TH_LOG("%d peers pushed %ld bytes (bound %ld)", N, pushed, bound);
	EXPECT_GE(bound, pushed);
	EXPECT_GE(bound / 4096, tcp_pages - self->tcp_mem_base);
	for (i = 0; i < N; i++)
		EXPECT_EQ(EMSGSIZE, kcm_sock_error(tcp[i]));
	EXPECT_TRUE(kcm_quiet(self->kcm, KCM_QUIET_MS));
	for (i = 0; i < N; i++) {
		close(tcp[i]);
		close(peer[i]);
	}
	h_check_released(_metadata, self);
}

TEST_HARNESS_MAIN
