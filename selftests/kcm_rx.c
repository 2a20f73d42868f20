// SPDX-License-Identifier: GPL-2.0
/*
 * kcm_rx: the receive side of AF_KCM.
 *
 *   rx            framing, recv flags, poll/epoll; DGRAM and SEQPACKET
 *                 KCM sockets over IPv4 and IPv6 TCP connections; the
 *                 *_framing variants attach with kcmux's built-in length
 *                 framing instead of the BPF parser (kcmux extension)
 *   rx_dgram      DGRAM truncation
 *   rx_seqpacket  SEQPACKET short reads and splice_read
 *   steer         several KCM sockets and psocks on one multiplexor
 *   backpressure  no reader: the data stays in TCP; FIN meanwhile
 *   rx_err        errors posted on the attached TCP socket, and the
 *                 counters of /proc/net/kcm_stats
 *
 * Framing of every message here, unless a test needs its own parser: a
 * 4-byte big-endian payload length, then the payload; the parser returns
 * 4 + payload length.  A KCM message is the whole frame, header included.
 *
 * Every test runs in its own network namespace (set up by the fixtures),
 * so /proc/net/kcm and /proc/net/kcm_stats show only that test's sockets
 * and counters start at zero.
 *
 * A note on the in-tree kcm.ko (the reference): it hands the BPF program
 * the TCP skb a message starts in, with the message at the strparser's
 * offset inside it, an offset socket filters cannot see.  A parser that
 * reads the length at absolute offset 0 (LD_ABS, bpf_skb_load_bytes(skb,
 * 0, ...)) therefore reads the first message of the skb again when a
 * second one follows in the same skb.  No program can do better with
 * LD_ABS, whose offsets are absolute.  So, to pass on the reference:
 *  - a test that puts several messages into one write (one skb, the
 *    first message at offset 0) uses messages of one length: a
 *    mis-parse then gives the right length anyway;
 *  - a long stream, which TCP cuts into skbs anywhere, is parsed on the
 *    reference with a fixed-length program (kcm_rx_prog_stream());
 *  - rx.parser_offset0_* test the real thing and skip on the reference.
 *
 * Other ways the reference differs, each tested and skipped on it with
 * the reason: MSG_TRUNC (flag) returns the copied length; the rest of a
 * short SEQPACKET read or splice is dropped; SPLICE_F_NONBLOCK is taken
 * as MSG_PEEK, so it blocks; a message as large as the TCP socket's
 * sk_rcvbuf stalls (strparser waits for all of it to be in the TCP
 * receive queue, which the window does not allow); a parser's own
 * error is not counted in RX-BadLen.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <linux/bpf.h>
#include <linux/userfaultfd.h>

#include "kcm_test.h"
/*
 * gcc -O2 -Wextra flags the harness's own TEST_F wrapper (-Wclobbered:
 * its "child" local is set by fork() after setjmp()).  Not our code;
 * the kernel builds its selftests without -Wextra.  A failed ASSERT in
 * a TEST_F does end as it should (checked: the run goes on in order).
 */
#pragma GCC diagnostic ignored "-Wclobbered"
#include "kselftest_harness.h"

#define KCM_RX_HDR		4

/* ------------------------------------------------------------------ */
/* Messages                                                            */
/* ------------------------------------------------------------------ */

/* Payload byte i of the message with this seed. */
static uint8_t kcm_rx_pat(uint32_t seed, uint32_t i)
{
	uint32_t x = (seed + 1) * 2654435761u ^ (i + 7) * 2246822519u;

	return (uint8_t)(x >> 24 ^ x >> 11 ^ i);
}

/* Builds [be32 plen][plen pattern bytes] in buf; returns the frame size. */
static size_t kcm_rx_frame(void *buf, uint32_t plen, uint32_t seed)
{
	uint8_t *p = buf;
	uint32_t be = htonl(plen), i;

	memcpy(p, &be, KCM_RX_HDR);
	for (i = 0; i < plen; i++)
		p[KCM_RX_HDR + i] = kcm_rx_pat(seed, i);
	return KCM_RX_HDR + plen;
}

/*
 * 0 if (buf, n) is exactly kcm_rx_frame(plen, seed); -1 for a wrong
 * length or header; else 1 + the payload offset of the first bad byte.
 */
static long kcm_rx_check(const void *buf, ssize_t n, uint32_t plen,
			 uint32_t seed)
{
	const uint8_t *p = buf;
	uint32_t be, i;

	if (n != (ssize_t)(KCM_RX_HDR + plen))
		return -1;
	memcpy(&be, p, KCM_RX_HDR);
	if (ntohl(be) != plen)
		return -1;
	for (i = 0; i < plen; i++)
		if (p[KCM_RX_HDR + i] != kcm_rx_pat(seed, i))
			return 1 + i;
	return 0;
}

/* FNV-1a, for the self-checking messages of the MxN test. */
static uint32_t kcm_rx_fnv(const uint8_t *p, size_t n)
{
	uint32_t h = 2166136261u;

	while (n--)
		h = (h ^ *p++) * 16777619u;
	return h;
}

/* ------------------------------------------------------------------ */
/* Sockets                                                             */
/* ------------------------------------------------------------------ */

/* A TCP connection: w is the peer we write to, r the end KCM attaches. */
struct kcm_rx_pair {
	int w;
	int r;
};

/*
 * A TCP pair over loopback.  rcvbuf > 0 sets SO_RCVBUF(FORCE) on the
 * listener, so the accepted end starts with it and its TCP window is
 * sized for it (setting it after the handshake would not open the
 * window).  TCP_NODELAY on both ends (one write, one segment), and the
 * writer has a bounded SO_SNDTIMEO: a stalled receiver fails a test,
 * never hangs it.
 */
static int kcm_rx_pair_open(int family, int rcvbuf, struct kcm_rx_pair *p)
{
	const struct kcm_tcp_opts o = {
		.rcvbuf = rcvbuf,
		.nodelay = true,
		.sndtimeo_ms = KCM_WAIT_MS,
	};
	int fds[2], err;

	p->w = p->r = -1;
	err = kcm_tcp_pair_opts(family, fds, &o);
	if (err)
		return err;
	p->w = fds[0];
	p->r = fds[1];
	return 0;
}

static void kcm_rx_pair_close(struct kcm_rx_pair *p)
{
	if (p->w >= 0)
		close(p->w);
	if (p->r >= 0)
		close(p->r);
	p->w = p->r = -1;
}

/* recvmsg into one buffer; *mflags gets msg_flags. */
static ssize_t kcm_rx_recv(int fd, void *buf, size_t len, int flags,
			   int *mflags)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	n = recvmsg(fd, &mh, flags);
	if (mflags)
		*mflags = n < 0 ? 0 : mh.msg_flags;
	return n;
}

/* ------------------------------------------------------------------ */
/* BPF parsers (BPF_PROG_TYPE_SOCKET_FILTER, raw instructions)          */
/* ------------------------------------------------------------------ */

enum kcm_rx_prog {
	/* r0 = LD_ABS_W[0] + 4: the length at absolute offset 0 */
	KCM_RX_PROG_LEN,
	/* the same through bpf_skb_load_bytes(skb, 0, buf, 4) */
	KCM_RX_PROG_LEN_HELPER,
	/* -EPROTO unless payload byte 0 (skb[4]) is KCM_RX_MAGIC */
	KCM_RX_PROG_MAGIC,
	/* 0 ("need more") below 8 bytes, then 2: too short to be right */
	KCM_RX_PROG_SHORT,
	/* the length at offset 0, but only once 300 bytes are there */
	KCM_RX_PROG_LONGHDR,
};

#define KCM_RX_LONGHDR	300

#define KCM_RX_MAGIC	0xab

static int kcm_rx_prog_load(enum kcm_rx_prog which)
{
	const struct bpf_insn magic[] = {
		KCM_INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_6, BPF_REG_1, 0, 0),
		KCM_INSN(BPF_LD | BPF_ABS | BPF_B, 0, 0, 0, KCM_RX_HDR),
		KCM_INSN(BPF_JMP | BPF_JEQ | BPF_K, BPF_REG_0, 0, 2, KCM_RX_MAGIC),
		/* 32-bit mov: r0 = (u32)-EPROTO, the parser's int result */
		KCM_INSN(BPF_ALU | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, -EPROTO),
		KCM_INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
		KCM_INSN(BPF_LD | BPF_ABS | BPF_W, 0, 0, 0, 0),
		KCM_INSN(BPF_ALU | BPF_ADD | BPF_K, BPF_REG_0, 0, 0, KCM_RX_HDR),
		KCM_INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
	};
	const struct bpf_insn shortlen[] = {
		KCM_INSN(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_0, BPF_REG_1,
			 offsetof(struct __sk_buff, len), 0),
		KCM_INSN(BPF_JMP | BPF_JGE | BPF_K, BPF_REG_0, 0, 2, 8),
		KCM_INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0),
		KCM_INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
		KCM_INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 2),
		KCM_INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
	};
	const struct bpf_insn longhdr[] = {
		KCM_INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_6, BPF_REG_1, 0, 0),
		KCM_INSN(BPF_LD | BPF_ABS | BPF_B, 0, 0, 0, KCM_RX_LONGHDR - 1),
		KCM_INSN(BPF_LD | BPF_ABS | BPF_W, 0, 0, 0, 0),
		KCM_INSN(BPF_ALU | BPF_ADD | BPF_K, BPF_REG_0, 0, 0, KCM_RX_HDR),
		KCM_INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
	};

	switch (which) {
	case KCM_RX_PROG_LEN:
		return kcm_bpf_len_parser(KCM_RX_HDR);
	case KCM_RX_PROG_LEN_HELPER:
		return kcm_bpf_len_parser_helper(KCM_RX_HDR);
	case KCM_RX_PROG_MAGIC:
		return kcm_bpf_load_logged(magic, ARRAY_SIZE(magic), "(magic)");
	case KCM_RX_PROG_LONGHDR:
		return kcm_bpf_load_logged(longhdr, ARRAY_SIZE(longhdr),
					   "(long header)");
	default:
		return kcm_bpf_load_logged(shortlen, ARRAY_SIZE(shortlen),
					   "(short)");
	}
}

/*
 * The parser for a long stream of messages of total length len, which
 * TCP cuts into skbs anywhere: the length parser on kcmux (the real
 * test of its offset-0 view), a fixed-length one on the in-tree module,
 * where a message starting inside an skb is parsed at the wrong offset
 * (see the top comment), so that a length prefix cannot be framed.
 */
static int kcm_rx_prog_stream(uint32_t len)
{
	if (kcmux_is_reference())
		return kcm_bpf_fixed_parser(len);
	return kcm_rx_prog_load(KCM_RX_PROG_LEN);
}

/* ------------------------------------------------------------------ */
/* /proc/net/kcm and /proc/net/kcm_stats                                */
/* ------------------------------------------------------------------ */

/* ------------------------------------------------------------------ */
/* Fixture rx: one KCM socket, one attached TCP pair                    */
/* ------------------------------------------------------------------ */

FIXTURE(rx)
{
	int kcm;
	int prog;
	struct kcm_rx_pair t;
};

FIXTURE_VARIANT(rx)
{
	int type;
	int family;
	/* Built-in length framing (SIOCKCMATTACH_EXT), not the BPF parser. */
	bool framing;
};

FIXTURE_VARIANT_ADD(rx, dgram_ipv4)
{
	.type = SOCK_DGRAM,
	.family = AF_INET,
};

FIXTURE_VARIANT_ADD(rx, dgram_ipv6)
{
	.type = SOCK_DGRAM,
	.family = AF_INET6,
};

FIXTURE_VARIANT_ADD(rx, seqpacket_ipv4)
{
	.type = SOCK_SEQPACKET,
	.family = AF_INET,
};

FIXTURE_VARIANT_ADD(rx, seqpacket_ipv6)
{
	.type = SOCK_SEQPACKET,
	.family = AF_INET6,
};

FIXTURE_VARIANT_ADD(rx, dgram_ipv4_framing)
{
	.type = SOCK_DGRAM,
	.family = AF_INET,
	.framing = true,
};

FIXTURE_VARIANT_ADD(rx, seqpacket_ipv6_framing)
{
	.type = SOCK_SEQPACKET,
	.family = AF_INET6,
	.framing = true,
};

/*
 * The kcmux built-in framing equal to KCM_RX_PROG_LEN: the 4-byte
 * big-endian payload length at offset 0, plus the header.
 */
static int kcm_rx_attach_framing(int kcm, int tcp)
{
	struct kcmux_attach a = {
		.size = sizeof(a),
		.flags = KCMUX_ATTACH_FRAMING,
		.fd = tcp,
		.framing = {
			.width = 4,
			.flags = KCMUX_FRAMING_EXCLUDES_HEADER,
		},
	};

	return ioctl(kcm, SIOCKCMATTACH_EXT, &a) ? -errno : 0;
}

/*
 * Shared by the fixtures: netns, a KCM socket of type with a bounded
 * SO_RCVTIMEO, the length parser, and (if pair) a TCP pair attached.
 */
static void kcm_rx_setup(struct __test_metadata *_metadata, int type,
			 int family, int *kcm, int *prog,
			 struct kcm_rx_pair *pair)
{
	ASSERT_EQ(kcm_netns_enter(), 0);
	*prog = kcm_rx_prog_load(KCM_RX_PROG_LEN);
	ASSERT_GE(*prog, 0);
	*kcm = kcm_socket(type);
	ASSERT_GE(*kcm, 0) TH_LOG("socket(AF_KCM): %s", strerror(-*kcm));
	ASSERT_EQ(kcm_set_timeo(*kcm, SO_RCVTIMEO, KCM_WAIT_MS), 0);
	if (!pair)
		return;
	ASSERT_EQ(kcm_rx_pair_open(family, 0, pair), 0);
	ASSERT_EQ(kcm_attach(*kcm, pair->r, *prog), 0);
}

FIXTURE_SETUP(rx)
{
	self->t.w = self->t.r = -1;
	self->kcm = self->prog = -1;
	if (variant->framing && kcmux_is_reference())
		SKIP(return, "kcmux extension: built-in framing");
	kcm_rx_setup(_metadata, variant->type, variant->family, &self->kcm,
		     &self->prog, variant->framing ? NULL : &self->t);
	if (!variant->framing)
		return;
	ASSERT_EQ(kcm_rx_pair_open(variant->family, 0, &self->t), 0);
	ASSERT_EQ(kcm_rx_attach_framing(self->kcm, self->t.r), 0);
}

FIXTURE_TEARDOWN(rx)
{
	kcm_rx_pair_close(&self->t);
	close(self->kcm);
	close(self->prog);
}

/*
 * One message, byte by byte, each byte its own TCP segment.  The header
 * bytes are paced by the RX-NeedMor counter (each partial header is one
 * more "need more" from the parser), the payload bytes by small delays.
 * No message may show up before the last byte.
 */
TEST_F(rx, byte_by_byte)
{
	const uint32_t plen = 40;
	uint8_t msg[64], buf[256];
	long long need0;
	size_t total, i;
	int mflags;
	ssize_t n;

	total = kcm_rx_frame(msg, plen, 1);
	need0 = kcm_stat("Psock", "RX-NeedMor");
	ASSERT_GE(need0, 0);
	for (i = 0; i < total; i++) {
		ASSERT_EQ(kcm_send_all(self->t.w, msg + i, 1), 0);
		if (i + 1 == total)
			break;
		if (i + 1 < KCM_RX_HDR) {
			ASSERT_GE(kcm_wait_stat("Psock", "RX-NeedMor",
							 need0 + i + 1),
				  need0 + (long long)i + 1);
		} else {
			usleep(500);
		}
		ASSERT_EQ(kcm_poll(self->kcm, POLLIN, 0), 0)
			TH_LOG("a message after %zu of %zu bytes", i + 1, total);
	}
	n = kcm_rx_recv(self->kcm, buf, sizeof(buf), 0, &mflags);
	ASSERT_EQ(kcm_rx_check(buf, n, plen, 1), 0);
	ASSERT_TRUE(mflags & MSG_EOR);
	ASSERT_EQ(kcm_rx_recv(self->kcm, buf, sizeof(buf), MSG_DONTWAIT, NULL), -1);
	ASSERT_EQ(errno, EAGAIN);
}

/* Many messages (of one length, see the top comment) in one write(). */
TEST_F(rx, many_in_one_write)
{
	const uint32_t plen = 60, count = 64;
	uint8_t *wbuf, buf[256];
	size_t off = 0;
	uint32_t i;
	ssize_t n;

	wbuf = malloc(count * (KCM_RX_HDR + plen));
	ASSERT_NE(wbuf, NULL);
	for (i = 0; i < count; i++)
		off += kcm_rx_frame(wbuf + off, plen, i);
	ASSERT_EQ(kcm_send_all(self->t.w, wbuf, off), 0);
	for (i = 0; i < count; i++) {
		n = kcm_rx_recv(self->kcm, buf, sizeof(buf), 0, NULL);
		ASSERT_EQ(kcm_rx_check(buf, n, plen, i), 0)
			TH_LOG("message %u: %zd bytes", i, n);
	}
	ASSERT_EQ(kcm_rx_recv(self->kcm, buf, sizeof(buf), MSG_DONTWAIT, NULL), -1);
	ASSERT_EQ(errno, EAGAIN);
	free(wbuf);
}

/*
 * Messages around the sizes where kcmux changes how it builds a message
 * skb (pack, page fragments, TCP's own pages, clones past the copybreak),
 * first each in a write of its own (it starts a TCP skb), then all in
 * one write (they start anywhere in TCP skbs; kcmux only: the in-tree
 * module cannot frame that, see the top comment).  Every byte checked.
 */
TEST_F(rx, message_sizes)
{
	static const uint32_t plens[] = {
		508, 509, 1000, 2044, 4091, 4092, 4093, 6000, 7700, 7900, 8188,
		12000,
	};
	const uint32_t count = ARRAY_SIZE(plens);
	size_t off = 0, total = 0;
	uint8_t *wbuf, *buf;
	uint32_t i;
	ssize_t n;

	for (i = 0; i < count; i++)
		total += KCM_RX_HDR + plens[i];
	wbuf = malloc(total);
	buf = malloc(KCM_RX_HDR + 12000 + 16);
	ASSERT_NE(wbuf, NULL);
	ASSERT_NE(buf, NULL);
	for (i = 0; i < count; i++) {
		size_t len = kcm_rx_frame(wbuf, plens[i], i);

		ASSERT_EQ(kcm_send_all(self->t.w, wbuf, len), 0);
		n = kcm_rx_recv(self->kcm, buf, KCM_RX_HDR + 12000 + 16, 0,
				NULL);
		ASSERT_EQ(kcm_rx_check(buf, n, plens[i], i), 0)
			TH_LOG("own write, message %u: %zd bytes", i, n);
	}
	if (kcmux_is_reference())
		goto out;
	for (i = 0; i < count; i++)
		off += kcm_rx_frame(wbuf + off, plens[i], 100 + i);
	ASSERT_EQ(kcm_send_all(self->t.w, wbuf, off), 0);
	for (i = 0; i < count; i++) {
		n = kcm_rx_recv(self->kcm, buf, KCM_RX_HDR + 12000 + 16, 0,
				NULL);
		ASSERT_EQ(kcm_rx_check(buf, n, plens[i], 100 + i), 0)
			TH_LOG("one write, message %u: %zd bytes", i, n);
	}
out:
	free(wbuf);
	free(buf);
}

/* Header-only messages (payload length 0), then a normal one. */
TEST_F(rx, zero_payload)
{
	uint8_t wbuf[8 * KCM_RX_HDR], buf[256];
	const uint32_t count = 8;
	size_t off = 0;
	int mflags;
	uint32_t i;
	ssize_t n;

	for (i = 0; i < count; i++)
		off += kcm_rx_frame(wbuf + off, 0, i);
	ASSERT_EQ(kcm_send_all(self->t.w, wbuf, off), 0);
	for (i = 0; i < count; i++) {
		n = kcm_rx_recv(self->kcm, buf, sizeof(buf), 0, &mflags);
		ASSERT_EQ(kcm_rx_check(buf, n, 0, i), 0)
			TH_LOG("message %u: %zd bytes", i, n);
		ASSERT_TRUE(mflags & MSG_EOR);
	}
	off = kcm_rx_frame(wbuf, 20, 99);
	ASSERT_EQ(kcm_send_all(self->t.w, wbuf, off), 0);
	n = kcm_rx_recv(self->kcm, buf, sizeof(buf), 0, NULL);
	ASSERT_EQ(kcm_rx_check(buf, n, 20, 99), 0);
	ASSERT_EQ(kcm_rx_recv(self->kcm, buf, sizeof(buf), MSG_DONTWAIT, NULL), -1);
	ASSERT_EQ(errno, EAGAIN);
}

/*
 * The header of a > 512-byte message in pieces (2 + 2 bytes, then 3 + 1
 * with payload), the payload in a few more: the message is built from
 * the parser's view plus later segments.
 */
TEST_F(rx, split_header_large)
{
	static const size_t cuts[2][5] = {
		{ 2, 4, 104, 1500, 2004 },	/* 2000-byte payload */
		{ 3, 504, 900, 1004, 1004 },	/* 1000-byte payload */
	};
	static const uint32_t plen[2] = { 2000, 1000 };
	uint8_t msg[2100], buf[4096];
	long long need;
	size_t off, total;
	int m, c, mflags;
	ssize_t n;

	for (m = 0; m < 2; m++) {
		total = kcm_rx_frame(msg, plen[m], 90 + m);
		need = kcm_stat("Psock", "RX-NeedMor");
		for (off = 0, c = 0; c < 5; off = cuts[m][c++]) {
			if (cuts[m][c] == off)
				continue;
			ASSERT_EQ(kcm_send_all(self->t.w, msg + off,
						  cuts[m][c] - off), 0);
			if (cuts[m][c] == total)
				break;
			if (cuts[m][c] < KCM_RX_HDR) {
				/* Partial header: the parser said "more". */
				ASSERT_GE(kcm_wait_stat("Psock", "RX-NeedMor",
								 need + 1),
					  need + 1);
			} else {
				usleep(1000);
			}
			ASSERT_EQ(kcm_poll(self->kcm, POLLIN, 0), 0);
		}
		n = kcm_rx_recv(self->kcm, buf, sizeof(buf), 0, &mflags);
		ASSERT_EQ(kcm_rx_check(buf, n, plen[m], 90 + m), 0)
			TH_LOG("message %d: %zd bytes", m, n);
		ASSERT_TRUE(mflags & MSG_EOR);
	}
}

/*
 * A parser that needs 300 bytes before it can tell the length (more
 * than a first look at the data may hold): fed 100 bytes at a time, it
 * is asked again as bytes come; then a message in one write.
 */
TEST_F(rx, long_header_parser)
{
	const uint32_t plen = 996;
	uint8_t msg[1000], buf[2048];
	struct kcm_rx_pair p;
	long long need;
	size_t total, off;
	ssize_t n;
	int prog;

	prog = kcm_rx_prog_load(KCM_RX_PROG_LONGHDR);
	ASSERT_GE(prog, 0);
	ASSERT_EQ(kcm_rx_pair_open(variant->family, 0, &p), 0);
	ASSERT_EQ(kcm_attach(self->kcm, p.r, prog), 0);
	close(prog);

	total = kcm_rx_frame(msg, plen, 95);
	need = kcm_stat("Psock", "RX-NeedMor");
	for (off = 0; off < KCM_RX_LONGHDR - 100; off += 100) {
		ASSERT_EQ(kcm_send_all(p.w, msg + off, 100), 0);
		need++;
		ASSERT_GE(kcm_wait_stat("Psock", "RX-NeedMor", need), need);
		ASSERT_EQ(kcm_poll(self->kcm, POLLIN, 0), 0);
	}
	ASSERT_EQ(kcm_send_all(p.w, msg + off, total - off), 0);
	n = kcm_rx_recv(self->kcm, buf, sizeof(buf), 0, NULL);
	ASSERT_EQ(kcm_rx_check(buf, n, plen, 95), 0) TH_LOG("got %zd", n);

	total = kcm_rx_frame(msg, plen, 96);
	ASSERT_EQ(kcm_send_all(p.w, msg, total), 0);
	n = kcm_rx_recv(self->kcm, buf, sizeof(buf), 0, NULL);
	ASSERT_EQ(kcm_rx_check(buf, n, plen, 96), 0) TH_LOG("got %zd", n);
	kcm_rx_pair_close(&p);
}

/* Writes msg in pieces of piece bytes (each its own segment). */
static int kcm_rx_send_pieces(int fd, const uint8_t *msg, size_t len,
			      size_t piece)
{
	size_t off, n;
	int err;

	for (off = 0; off < len; off += n) {
		n = len - off < piece ? len - off : piece;
		err = kcm_send_all(fd, msg + off, n);
		if (err)
			return err;
	}
	return 0;
}

/*
 * 200 KiB in 4 KiB writes: one message built from ~50 TCP skbs, far more
 * than MAX_SKB_FRAGS (17).  SO_RCVBUF of the TCP socket is raised so the
 * message is within the limit.
 */
TEST_F(rx, large_200k)
{
	const uint32_t plen = 200 * 1024;
	struct kcm_rx_pair p;
	uint8_t *msg, *buf;
	size_t total;
	ssize_t n;

	ASSERT_EQ(kcm_rx_pair_open(variant->family, 1 << 20, &p), 0);
	ASSERT_GT(kcm_getint(p.r, SOL_SOCKET, SO_RCVBUF), (int)plen + KCM_RX_HDR);
	ASSERT_EQ(kcm_attach(self->kcm, p.r, self->prog), 0);
	msg = malloc(KCM_RX_HDR + plen);
	buf = malloc(KCM_RX_HDR + plen + 4096);
	ASSERT_NE(msg, NULL);
	ASSERT_NE(buf, NULL);
	total = kcm_rx_frame(msg, plen, 7);
	ASSERT_EQ(kcm_rx_send_pieces(p.w, msg, total, 4096), 0);
	n = kcm_rx_recv(self->kcm, buf, KCM_RX_HDR + plen + 4096, 0, NULL);
	ASSERT_EQ(kcm_rx_check(buf, n, plen, 7), 0) TH_LOG("got %zd bytes", n);
	free(msg);
	free(buf);
	kcm_rx_pair_close(&p);
}

struct kcm_rx_writer {
	int fd;
	const uint8_t *buf;
	size_t len;
	size_t piece;
	int err;
};

static uint32_t kcm_rx_rand(uint32_t *state);

/* Writes the buffer in pieces; piece 0: random cuts of 1 to 6000 bytes. */
static void *kcm_rx_writer_fn(void *arg)
{
	struct kcm_rx_writer *w = arg;
	uint32_t rnd = 0xc0ffee;
	size_t off, n;

	if (w->piece) {
		w->err = kcm_rx_send_pieces(w->fd, w->buf, w->len, w->piece);
		return NULL;
	}
	for (off = 0; off < w->len && !w->err; off += n) {
		n = 1 + kcm_rx_rand(&rnd) % 6000;
		if (n > w->len - off)
			n = w->len - off;
		w->err = kcm_send_all(w->fd, w->buf + off, n);
	}
	return NULL;
}

/* One write from a thread of its own (see message_in_three_pages). */
static void *kcm_rx_part_fn(void *arg)
{
	struct kcm_rx_writer *w = arg;

	w->err = kcm_send_all(w->fd, w->buf, w->len);
	return NULL;
}

/*
 * One message in three writes, each from a new thread: a task writes from
 * page fragments of its own, so each part lies in a page of its own.  The
 * TCP socket's receive buffer is too small for kcmux to leave the message
 * in TCP until it is whole, so it takes the parts as they come: the first
 * two by sharing TCP's pages, the third past what one message may share
 * (two fragments), so chained instead.  Every byte checked, and then the
 * message after it.
 */
TEST_F(rx, message_in_three_pages)
{
	const uint32_t plen = 7000, cuts[] = { 0, 2500, 5000, 7004 };
	uint8_t msg[KCM_RX_HDR + 7000], buf[KCM_RX_HDR + 7000 + 16];
	struct kcm_rx_writer wr;
	struct kcm_rx_pair p;
	pthread_t thr;
	ssize_t n;
	int i;

	ASSERT_EQ(kcm_rx_pair_open(variant->family, 8192, &p), 0);
	ASSERT_EQ(kcm_attach(self->kcm, p.r, self->prog), 0);
	ASSERT_EQ(kcm_rx_frame(msg, plen, 7), sizeof(msg));
	for (i = 0; i < 3; i++) {
		wr = (struct kcm_rx_writer){ .fd = p.w, .buf = msg + cuts[i],
					     .len = cuts[i + 1] - cuts[i] };
		ASSERT_EQ(pthread_create(&thr, NULL, kcm_rx_part_fn, &wr), 0);
		pthread_join(thr, NULL);
		ASSERT_EQ(wr.err, 0);
	}
	n = kcm_rx_recv(self->kcm, buf, sizeof(buf), 0, NULL);
	ASSERT_EQ(kcm_rx_check(buf, n, plen, 7), 0)
		TH_LOG("%zd bytes, want %zu", n, sizeof(msg));

	ASSERT_EQ(kcm_send_all(p.w, msg, kcm_rx_frame(msg, 100, 8)), 0);
	n = kcm_rx_recv(self->kcm, buf, sizeof(buf), 0, NULL);
	ASSERT_EQ(kcm_rx_check(buf, n, 100, 8), 0);
	kcm_rx_pair_close(&p);
}

/*
 * Sixteen 4 KiB messages in one 64 KiB write: most lie whole in a TCP skb
 * they share with the others.  Queued unread, each must be charged about
 * what an skb of its own holding it would be, not the skb it came in
 * (kcmux makes such a message a clone of that skb and charges the clone
 * its own length).  Then every byte is checked.
 */
TEST_F(rx, whole_messages_charged_their_size)
{
	enum { COUNT = 16, PLEN = 4096 - KCM_RX_HDR };
	/* Per message: its bytes, an sk_buff and a shared info. */
	const long long limit = COUNT * (KCM_RX_HDR + PLEN + 1024);
	static uint8_t wbuf[COUNT * (KCM_RX_HDR + PLEN)];
	uint8_t buf[KCM_RX_HDR + PLEN + 16];
	long long queued, rmem, end;
	size_t off = 0;
	uint32_t i;
	ssize_t n;

	for (i = 0; i < COUNT; i++)
		off += kcm_rx_frame(wbuf + off, PLEN, i);
	ASSERT_EQ(kcm_send_all(self->t.w, wbuf, off), 0);
	end = kcm_now_ms() + KCM_WAIT_MS;
	while ((queued = kcm_proc_nth("kcm-", 0, "Recv-Q")) < COUNT &&
	       kcm_now_ms() <= end)
		kcm_msleep(1);
	rmem = kcm_proc_nth("kcm-", 0, "Rmem");
	TH_LOG("%lld messages queued, Rmem %lld (limit %lld)", queued, rmem,
	       limit);
	if (kcmux_is_reference() && (queued < COUNT || rmem > limit))
		SKIP(return, "in-tree KCM charges each message the whole TCP skb it was cloned from: %lld of %d messages of 4 KiB queued, Rmem %lld",
		     queued, COUNT, rmem);
	ASSERT_EQ(queued, COUNT);
	ASSERT_LE(rmem, limit);
	for (i = 0; i < COUNT; i++) {
		n = kcm_rx_recv(self->kcm, buf, sizeof(buf), 0, NULL);
		ASSERT_EQ(kcm_rx_check(buf, n, PLEN, i), 0)
			TH_LOG("message %u: %zd bytes", i, n);
	}
	EXPECT_EQ(kcm_proc_nth("kcm-", 0, "Rmem"), 0);
}

/*
 * A message of exactly the TCP socket's sk_rcvbuf bytes (what SO_RCVBUF
 * reads back) is the largest one allowed.
 */
TEST_F(rx, max_size)
{
	struct kcm_rx_writer wr;
	struct kcm_rx_pair p;
	uint8_t *msg, *buf;
	pthread_t thr;
	ssize_t n;
	int limit;

	ASSERT_EQ(kcm_rx_pair_open(variant->family, 64 * 1024, &p), 0);
	limit = kcm_getint(p.r, SOL_SOCKET, SO_RCVBUF);
	ASSERT_GE(limit, 64 * 1024);
	ASSERT_EQ(kcm_attach(self->kcm, p.r, self->prog), 0);
	ASSERT_EQ(kcm_set_timeo(p.w, SO_SNDTIMEO, 4000), 0);
	ASSERT_EQ(kcm_set_timeo(self->kcm, SO_RCVTIMEO, 4000), 0);
	msg = malloc(limit);
	buf = malloc(limit + 4096);
	ASSERT_NE(msg, NULL);
	ASSERT_NE(buf, NULL);
	kcm_rx_frame(msg, limit - KCM_RX_HDR, 3);

	wr = (struct kcm_rx_writer){ .fd = p.w, .buf = msg, .len = limit,
				     .piece = 16384 };
	ASSERT_EQ(pthread_create(&thr, NULL, kcm_rx_writer_fn, &wr), 0);
	n = kcm_rx_recv(self->kcm, buf, limit + 4096, 0, NULL);
	if (n < 0 && errno == EAGAIN && kcmux_is_reference()) {
		shutdown(p.w, SHUT_RDWR);
		pthread_join(thr, NULL);
		SKIP(return, "in-tree strparser waits for the rest of a message to be in the TCP receive queue at once: a message of sk_rcvbuf (%d) bytes did not complete in 4 s",
		     limit);
	}
	pthread_join(thr, NULL);
	ASSERT_EQ(wr.err, 0);
	ASSERT_EQ(kcm_rx_check(buf, n, limit - KCM_RX_HDR, 3), 0)
		TH_LOG("got %zd of %d bytes", n, limit);
	free(msg);
	free(buf);
	kcm_rx_pair_close(&p);
}

/*
 * Several messages of different lengths share one skb (one write), and
 * the parser reads the length at absolute offset 0: it must see every
 * message at offset 0.  The 4th message is > 512 bytes.
 */
static void kcm_rx_parser_offset0(struct __test_metadata *_metadata, int kcm,
				  int family, enum kcm_rx_prog which)
{
	static const uint32_t plen[] = { 10, 300, 0, 1000, 33 };
	const unsigned int count = ARRAY_SIZE(plen);
	uint8_t wbuf[2048], buf[2048];
	struct kcm_rx_pair p;
	unsigned int i;
	size_t off = 0;
	ssize_t n;
	int prog;

	prog = kcm_rx_prog_load(which);
	ASSERT_GE(prog, 0);
	ASSERT_EQ(kcm_rx_pair_open(family, 0, &p), 0);
	ASSERT_EQ(kcm_attach(kcm, p.r, prog), 0);
	ASSERT_EQ(kcm_set_timeo(kcm, SO_RCVTIMEO, 2000), 0);
	for (i = 0; i < count; i++)
		off += kcm_rx_frame(wbuf + off, plen[i], i);
	ASSERT_EQ(kcm_send_all(p.w, wbuf, off), 0);
	for (i = 0; i < count; i++) {
		n = kcm_rx_recv(kcm, buf, sizeof(buf), 0, NULL);
		if (i == 1 && kcmux_is_reference() &&
		    kcm_rx_check(buf, n, plen[i], i) &&
		    n == (ssize_t)(KCM_RX_HDR + plen[0]))
			SKIP(return, "in-tree kcm runs the parser on the TCP skb with the strparser offset hidden: the 2nd message of a shared skb is parsed with the 1st one's length (%zd bytes, not %u)",
			     n, KCM_RX_HDR + plen[i]);
		ASSERT_EQ(kcm_rx_check(buf, n, plen[i], i), 0)
			TH_LOG("message %u: %zd bytes, want %u", i, n,
			       KCM_RX_HDR + plen[i]);
	}
	kcm_rx_pair_close(&p);
	close(prog);
}

TEST_F(rx, parser_offset0_ld_abs)
{
	kcm_rx_parser_offset0(_metadata, self->kcm, variant->family,
			      KCM_RX_PROG_LEN);
}

TEST_F(rx, parser_offset0_load_bytes)
{
	kcm_rx_parser_offset0(_metadata, self->kcm, variant->family,
			      KCM_RX_PROG_LEN_HELPER);
}

/* xorshift32: the same "random" stream on every run. */
static uint32_t kcm_rx_rand(uint32_t *state)
{
	uint32_t x = *state;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return *state = x;
}

#define KCM_RX_RAND_MSGS	400
#define KCM_RX_RAND_MAXLEN	9000

/*
 * A stream of messages of random lengths (0 to 9000 bytes: packed,
 * copied into page fragments, sharing TCP's pages, and past the
 * copybreak cloned), written in random cuts (1 to 6000 bytes): messages
 * start anywhere in TCP skbs and span several.  Every message must come
 * out intact, in order.
 */
TEST_F(rx, stream_random_cuts)
{
	struct kcm_rx_writer wr;
	uint32_t rnd = 0x1234567, *plen, i;
	uint8_t *stream, buf[KCM_RX_HDR + KCM_RX_RAND_MAXLEN + 16];
	size_t len = 0;
	pthread_t thr;
	ssize_t n = 0;

	if (kcmux_is_reference())
		SKIP(return, "in-tree kcm parses a message that starts inside a TCP skb at the skb's offset 0 (see parser_offset0_*): it cannot frame this stream");
	plen = calloc(KCM_RX_RAND_MSGS, sizeof(*plen));
	stream = malloc(KCM_RX_RAND_MSGS * (KCM_RX_HDR + KCM_RX_RAND_MAXLEN));
	ASSERT_NE(plen, NULL);
	ASSERT_NE(stream, NULL);
	for (i = 0; i < KCM_RX_RAND_MSGS; i++) {
		plen[i] = kcm_rx_rand(&rnd) % (KCM_RX_RAND_MAXLEN + 1);
		/* Some of the smallest on purpose. */
		if (i % 10 == 3)
			plen[i] = i % 4;
		len += kcm_rx_frame(stream + len, plen[i], i);
	}

	/* The cuts are made by the writer thread, one write each. */
	wr = (struct kcm_rx_writer){ .fd = self->t.w, .buf = stream,
				     .len = len, .piece = 0 };
	ASSERT_EQ(pthread_create(&thr, NULL, kcm_rx_writer_fn, &wr), 0);
	for (i = 0; i < KCM_RX_RAND_MSGS; i++) {
		n = kcm_rx_recv(self->kcm, buf, sizeof(buf), 0, NULL);
		if (kcm_rx_check(buf, n, plen[i], i))
			break;
	}
	pthread_join(thr, NULL);
	ASSERT_EQ(wr.err, 0);
	ASSERT_EQ(i, (uint32_t)KCM_RX_RAND_MSGS)
		TH_LOG("message %u: %zd bytes, want %u", i, n,
		       KCM_RX_HDR + plen[i]);
	free(plen);
	free(stream);
}

#define KCM_RX_DROP_INST	KCM_TRACEFS "/instances/kcm_rx"

/* Records of skb:kfree_skb in our trace instance, or -errno. */
static int kcm_rx_drop_records(void)
{
	char line[512];
	int n = 0;
	FILE *f;

	f = fopen(KCM_RX_DROP_INST "/trace", "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, " kfree_skb:"))
			n++;
	fclose(f);
	return n;
}

/*
 * A message read from a KCM socket, or sent on one, is consumed, not
 * dropped: drop monitors (the skb:kfree_skb tracepoint, as perf trace and
 * dropwatch use it) must not count it.  100 messages each way, of sizes
 * that are packed, copied and share TCP's pages; TCP drops nothing on the
 * open connection meanwhile, so a module that reported its messages as
 * drops would show 200 records or more (kcmux did until it used
 * consume_skb(); the in-tree module does for the messages it sends).  A trace instance of our own
 * keeps the test away from whatever else uses tracing.
 */
TEST_F(rx, messages_not_reported_as_drops)
{
	static const uint32_t plens[] = { 60, 1000, 3000, 6000 };
	uint8_t msg[KCM_RX_HDR + 6000], buf[KCM_RX_HDR + 6000 + 16];
	int err, records, i;
	ssize_t n, len;

	if (kcmux_is_reference())
		SKIP(return, "in-tree kcm frees every message it sent with kfree_skb(): drop monitors count each one");
	err = kcm_tracefs();
	if (err)
		SKIP(return, "no tracefs in this kernel: %s", strerror(-err));
	rmdir(KCM_RX_DROP_INST);
	ASSERT_EQ(mkdir(KCM_RX_DROP_INST, 0755), 0);
	ASSERT_EQ(kcm_write_file(KCM_RX_DROP_INST "/events/skb/kfree_skb/enable",
				 "1"), 0);
	for (i = 0; i < 100; i++) {
		uint32_t plen = plens[i % ARRAY_SIZE(plens)];

		len = kcm_rx_frame(msg, plen, i);
		ASSERT_EQ(kcm_send_all(self->t.w, msg, len), 0);
		n = kcm_rx_recv(self->kcm, buf, sizeof(buf), 0, NULL);
		ASSERT_EQ(kcm_rx_check(buf, n, plen, i), 0);
		ASSERT_EQ(send(self->kcm, msg, len, MSG_EOR), len);
		ASSERT_EQ(kcm_read_exact(self->t.w, buf, len, KCM_WAIT_MS), len);
	}
	records = kcm_rx_drop_records();
	kcm_write_file(KCM_RX_DROP_INST "/events/skb/kfree_skb/enable", "0");
	EXPECT_EQ(rmdir(KCM_RX_DROP_INST), 0);
	ASSERT_GE(records, 0);
	EXPECT_LT(records, 20)
		TH_LOG("%d skb:kfree_skb records for 200 messages", records);
}

TEST_F(rx, dontwait_eagain)
{
	uint8_t msg[128], buf[256];
	size_t total;
	ssize_t n;

	ASSERT_EQ(kcm_rx_recv(self->kcm, buf, sizeof(buf), MSG_DONTWAIT, NULL), -1);
	ASSERT_EQ(errno, EAGAIN);
	total = kcm_rx_frame(msg, 50, 5);
	ASSERT_EQ(kcm_send_all(self->t.w, msg, total), 0);
	ASSERT_EQ(kcm_poll(self->kcm, POLLIN, KCM_WAIT_MS), POLLIN);
	n = kcm_rx_recv(self->kcm, buf, sizeof(buf), MSG_DONTWAIT, NULL);
	ASSERT_EQ(kcm_rx_check(buf, n, 50, 5), 0);
}

TEST_F(rx, rcvtimeo_eagain)
{
	long long t0, dt;
	uint8_t buf[64];

	ASSERT_EQ(kcm_set_timeo(self->kcm, SO_RCVTIMEO, 200), 0);
	t0 = kcm_now_ms();
	ASSERT_EQ(kcm_rx_recv(self->kcm, buf, sizeof(buf), 0, NULL), -1);
	ASSERT_EQ(errno, EAGAIN);
	dt = kcm_now_ms() - t0;
	ASSERT_GE(dt, 180);
	ASSERT_LT(dt, KCM_WAIT_MS);
}

TEST_F(rx, peek)
{
	uint8_t msg[256], buf[512];
	int mflags;
	size_t total;
	ssize_t n;

	total = kcm_rx_frame(msg, 200, 11);
	ASSERT_EQ(kcm_send_all(self->t.w, msg, total), 0);
	n = kcm_rx_recv(self->kcm, buf, sizeof(buf), MSG_PEEK, NULL);
	ASSERT_EQ(kcm_rx_check(buf, n, 200, 11), 0);
	memset(buf, 0, sizeof(buf));
	n = kcm_rx_recv(self->kcm, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT, NULL);
	ASSERT_EQ(kcm_rx_check(buf, n, 200, 11), 0);
	memset(buf, 0, sizeof(buf));
	n = kcm_rx_recv(self->kcm, buf, sizeof(buf), MSG_DONTWAIT, &mflags);
	ASSERT_EQ(kcm_rx_check(buf, n, 200, 11), 0);
	ASSERT_TRUE(mflags & MSG_EOR);
	ASSERT_EQ(kcm_rx_recv(self->kcm, buf, sizeof(buf), MSG_DONTWAIT, NULL), -1);
	ASSERT_EQ(errno, EAGAIN);
}

TEST_F(rx, eor_whole_message)
{
	uint8_t msg[1100], buf[2048];
	int mflags;
	size_t total;
	ssize_t n;

	/* One small (copied) and one large (cloned) message. */
	total = kcm_rx_frame(msg, 100, 21);
	ASSERT_EQ(kcm_send_all(self->t.w, msg, total), 0);
	n = kcm_rx_recv(self->kcm, buf, sizeof(buf), 0, &mflags);
	ASSERT_EQ(kcm_rx_check(buf, n, 100, 21), 0);
	ASSERT_EQ(mflags & (MSG_EOR | MSG_TRUNC), MSG_EOR);

	total = kcm_rx_frame(msg, 1000, 22);
	ASSERT_EQ(kcm_send_all(self->t.w, msg, total), 0);
	/* Exactly the message's size: still whole. */
	n = kcm_rx_recv(self->kcm, buf, total, 0, &mflags);
	ASSERT_EQ(kcm_rx_check(buf, n, 1000, 22), 0);
	ASSERT_EQ(mflags & (MSG_EOR | MSG_TRUNC), MSG_EOR);
}

/*
 * Two 3000-byte messages in one write (the 2nd one at an offset in the
 * skb), each read with readv() into three buffers.
 */
TEST_F(rx, recv_iovec_scatter)
{
	const uint32_t plen = 2996;
	static uint8_t wbuf[6000], buf[6000];
	struct iovec iov[3];
	struct msghdr mh;
	size_t off = 0;
	ssize_t n;
	int i;

	off += kcm_rx_frame(wbuf + off, plen, 33);
	off += kcm_rx_frame(wbuf + off, plen, 34);
	ASSERT_EQ(kcm_send_all(self->t.w, wbuf, off), 0);
	for (i = 0; i < 2; i++) {
		memset(buf, 0, sizeof(buf));
		iov[0] = (struct iovec){ .iov_base = buf, .iov_len = 7 };
		iov[1] = (struct iovec){ .iov_base = buf + 7, .iov_len = 1000 };
		iov[2] = (struct iovec){ .iov_base = buf + 1007,
					 .iov_len = sizeof(buf) - 1007 };
		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = iov;
		mh.msg_iovlen = 3;
		n = recvmsg(self->kcm, &mh, 0);
		ASSERT_EQ(kcm_rx_check(buf, n, plen, 33 + i), 0)
			TH_LOG("message %d: %zd bytes", i, n);
		ASSERT_TRUE(mh.msg_flags & MSG_EOR);
	}
}

TEST_F(rx, recvmmsg)
{
	enum { COUNT = 5, PLEN = 120 };
	uint8_t wbuf[COUNT * (KCM_RX_HDR + PLEN)], bufs[COUNT][512];
	struct mmsghdr mm[COUNT];
	struct iovec iov[COUNT];
	size_t off = 0;
	int i, n;

	for (i = 0; i < COUNT; i++)
		off += kcm_rx_frame(wbuf + off, PLEN, 40 + i);
	ASSERT_EQ(kcm_send_all(self->t.w, wbuf, off), 0);
	memset(mm, 0, sizeof(mm));
	for (i = 0; i < COUNT; i++) {
		iov[i].iov_base = bufs[i];
		iov[i].iov_len = sizeof(bufs[i]);
		mm[i].msg_hdr.msg_iov = &iov[i];
		mm[i].msg_hdr.msg_iovlen = 1;
	}
	n = recvmmsg(self->kcm, mm, COUNT, 0, NULL);
	ASSERT_EQ(n, COUNT) TH_LOG("recvmmsg: %s", n < 0 ? strerror(errno) : "short");
	for (i = 0; i < COUNT; i++) {
		ASSERT_EQ(kcm_rx_check(bufs[i], mm[i].msg_len, PLEN, 40 + i), 0);
		ASSERT_TRUE(mm[i].msg_hdr.msg_flags & MSG_EOR);
	}
}

/* POLLIN once a whole message is queued, not for half of one. */
TEST_F(rx, poll_pollin)
{
	uint8_t msg[600], buf[1024];
	size_t total;
	ssize_t n;

	ASSERT_EQ(kcm_poll(self->kcm, POLLIN, 0), 0);
	total = kcm_rx_frame(msg, 500, 31);
	ASSERT_EQ(kcm_send_all(self->t.w, msg, total / 2), 0);
	ASSERT_EQ(kcm_poll(self->kcm, POLLIN, 300), 0);
	ASSERT_EQ(kcm_send_all(self->t.w, msg + total / 2,
				  total - total / 2), 0);
	ASSERT_EQ(kcm_poll(self->kcm, POLLIN, KCM_WAIT_MS) & POLLIN,
		  POLLIN);
	n = kcm_rx_recv(self->kcm, buf, sizeof(buf), MSG_DONTWAIT, NULL);
	ASSERT_EQ(kcm_rx_check(buf, n, 500, 31), 0);
	ASSERT_EQ(kcm_poll(self->kcm, POLLIN, 0), 0);
}

TEST_F(rx, epoll_pollin)
{
	struct epoll_event ev = { .events = EPOLLIN }, out;
	uint8_t msg[600], buf[1024];
	size_t total;
	ssize_t n;
	int ep;

	ep = epoll_create1(EPOLL_CLOEXEC);
	ASSERT_GE(ep, 0);
	ASSERT_EQ(epoll_ctl(ep, EPOLL_CTL_ADD, self->kcm, &ev), 0);
	ASSERT_EQ(epoll_wait(ep, &out, 1, 0), 0);
	total = kcm_rx_frame(msg, 500, 32);
	ASSERT_EQ(kcm_send_all(self->t.w, msg, 10), 0);
	ASSERT_EQ(epoll_wait(ep, &out, 1, 300), 0);
	ASSERT_EQ(kcm_send_all(self->t.w, msg + 10, total - 10), 0);
	ASSERT_EQ(epoll_wait(ep, &out, 1, KCM_WAIT_MS), 1);
	ASSERT_NE(out.events & EPOLLIN, 0u);
	n = kcm_rx_recv(self->kcm, buf, sizeof(buf), MSG_DONTWAIT, NULL);
	ASSERT_EQ(kcm_rx_check(buf, n, 500, 32), 0);
	ASSERT_EQ(epoll_wait(ep, &out, 1, 0), 0);
	close(ep);
}

TEST_F(rx, pollout)
{
	int rev = kcm_poll(self->kcm, POLLIN | POLLOUT, KCM_WAIT_MS);

	ASSERT_EQ(rev & (POLLIN | POLLOUT | POLLERR), POLLOUT);
}

struct kcm_rx_io {
	int fd;
	void *buf;
	size_t len;
	ssize_t n;
	int err;
};

static void *kcm_rx_recv_fn(void *arg)
{
	struct kcm_rx_io *io = arg;

	io->n = recv(io->fd, io->buf, io->len, 0);
	io->err = io->n < 0 ? errno : 0;
	return NULL;
}

static void *kcm_rx_send_fn(void *arg)
{
	struct kcm_rx_io *io = arg;

	/* One whole message on either socket type. */
	io->n = send(io->fd, io->buf, io->len, MSG_EOR);
	io->err = io->n < 0 ? errno : 0;
	return NULL;
}

/*
 * A reader stalled while it copies a message out (its buffer is a page
 * registered with userfaultfd, whose fault the test holds) must not
 * stop a writer of the same socket, as it does not on in-tree kcm (6.1
 * and 6.12): readers are serialised by a mutex of their own, not by the
 * socket lock that sendmsg takes.  Then both finish, with the right
 * bytes.
 */
TEST_F(rx, reader_stall_does_not_block_writer)
{
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	struct uffdio_zeropage zero = { .mode = 0 };
	size_t page = sysconf(_SC_PAGESIZE), total;
	struct kcm_rx_io rd, wr;
	uint8_t msg[300], out[300];
	pthread_t reader, writer;
	struct uffd_msg ev;
	bool wrote_first;
	struct timespec ts;
	void *buf;
	int uffd;

	uffd = syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0)
		SKIP(return, "no userfaultfd: %s", strerror(errno));
	ASSERT_EQ(ioctl(uffd, UFFDIO_API, &api), 0);
	buf = mmap(NULL, page, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(buf, MAP_FAILED);
	reg.range.start = (unsigned long)buf;
	reg.range.len = page;
	ASSERT_EQ(ioctl(uffd, UFFDIO_REGISTER, &reg), 0);

	total = kcm_rx_frame(msg, 200, 41);
	ASSERT_EQ(kcm_send_all(self->t.w, msg, total), 0);
	rd = (struct kcm_rx_io){ .fd = self->kcm, .buf = buf, .len = page };
	ASSERT_EQ(pthread_create(&reader, NULL, kcm_rx_recv_fn, &rd), 0);
	/* Its fault is reported once it is in recvmsg, copying. */
	ASSERT_EQ(kcm_poll(uffd, POLLIN, KCM_WAIT_MS), POLLIN);
	ASSERT_EQ(read(uffd, &ev, sizeof(ev)), (ssize_t)sizeof(ev));
	ASSERT_EQ(ev.event, UFFD_EVENT_PAGEFAULT);

	total = kcm_rx_frame(msg, 150, 42);
	wr = (struct kcm_rx_io){ .fd = self->kcm, .buf = msg, .len = total };
	ASSERT_EQ(pthread_create(&writer, NULL, kcm_rx_send_fn, &wr), 0);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 2;
	wrote_first = !pthread_timedjoin_np(writer, NULL, &ts);

	/* Let the reader go either way: nothing is left hanging. */
	zero.range.start = (unsigned long)buf;
	zero.range.len = page;
	EXPECT_EQ(ioctl(uffd, UFFDIO_ZEROPAGE, &zero), 0);
	ASSERT_EQ(pthread_join(reader, NULL), 0);
	if (!wrote_first)
		ASSERT_EQ(pthread_join(writer, NULL), 0);
	close(uffd);

	ASSERT_EQ(kcm_rx_check(buf, rd.n, 200, 41), 0)
		TH_LOG("recv: %zd (%s)", rd.n, strerror(rd.err));
	ASSERT_EQ(wr.n, (ssize_t)total) TH_LOG("send: %s", strerror(wr.err));
	ASSERT_EQ(kcm_read_exact(self->t.w, out, total, KCM_WAIT_MS),
		  (ssize_t)total);
	ASSERT_EQ(kcm_rx_check(out, total, 150, 42), 0);
	munmap(buf, page);
	ASSERT_TRUE(wrote_first) TH_LOG("sendmsg waited for the stalled reader");
}

/* ------------------------------------------------------------------ */
/* Fixture rx_dgram: truncation                                         */
/* ------------------------------------------------------------------ */

FIXTURE(rx_dgram)
{
	int kcm;
	int prog;
	struct kcm_rx_pair t;
};

FIXTURE_SETUP(rx_dgram)
{
	self->t.w = self->t.r = -1;
	kcm_rx_setup(_metadata, SOCK_DGRAM, AF_INET, &self->kcm, &self->prog,
		     &self->t);
}

FIXTURE_TEARDOWN(rx_dgram)
{
	kcm_rx_pair_close(&self->t);
	close(self->kcm);
	close(self->prog);
}

/* Two 100-byte messages A (seed 1) and B (seed 2) in one write. */
static void kcm_rx_send_ab(struct __test_metadata *_metadata, int fd,
			   uint8_t *a)
{
	uint8_t wbuf[256];
	size_t off;

	off = kcm_rx_frame(wbuf, 96, 1);
	memcpy(a, wbuf, off);
	off += kcm_rx_frame(wbuf + off, 96, 2);
	ASSERT_EQ(kcm_send_all(fd, wbuf, off), 0);
}

TEST_F(rx_dgram, trunc_drops_rest)
{
	uint8_t a[128], buf[256];
	int mflags;
	ssize_t n;

	kcm_rx_send_ab(_metadata, self->t.w, a);
	n = kcm_rx_recv(self->kcm, buf, 10, 0, &mflags);
	ASSERT_EQ(n, 10);
	ASSERT_EQ(memcmp(buf, a, 10), 0);
	ASSERT_TRUE(mflags & MSG_TRUNC);
	/* The rest of A is gone: next comes B. */
	n = kcm_rx_recv(self->kcm, buf, sizeof(buf), 0, &mflags);
	ASSERT_EQ(kcm_rx_check(buf, n, 96, 2), 0);
	ASSERT_EQ(mflags & (MSG_EOR | MSG_TRUNC), MSG_EOR);
	ASSERT_EQ(kcm_rx_recv(self->kcm, buf, sizeof(buf), MSG_DONTWAIT, NULL), -1);
	ASSERT_EQ(errno, EAGAIN);
}

TEST_F(rx_dgram, trunc_flag_full_len)
{
	uint8_t a[128], buf[256];
	int mflags;
	ssize_t n;

	kcm_rx_send_ab(_metadata, self->t.w, a);
	n = kcm_rx_recv(self->kcm, buf, 10, MSG_TRUNC, &mflags);
	if (n == 10 && kcmux_is_reference())
		SKIP(return, "in-tree kcm_recvmsg ignores the MSG_TRUNC flag: returns the copied length (10), not the message length (100)");
	ASSERT_EQ(n, 100);
	ASSERT_EQ(memcmp(buf, a, 10), 0);
	ASSERT_TRUE(mflags & MSG_TRUNC);
	n = kcm_rx_recv(self->kcm, buf, sizeof(buf), 0, NULL);
	ASSERT_EQ(kcm_rx_check(buf, n, 96, 2), 0);
}

/* ------------------------------------------------------------------ */
/* Fixture rx_seqpacket: short reads, splice                            */
/* ------------------------------------------------------------------ */

FIXTURE(rx_seqpacket)
{
	int kcm;
	int prog;
	struct kcm_rx_pair t;
};

FIXTURE_SETUP(rx_seqpacket)
{
	self->t.w = self->t.r = -1;
	kcm_rx_setup(_metadata, SOCK_SEQPACKET, AF_INET, &self->kcm,
		     &self->prog, &self->t);
}

FIXTURE_TEARDOWN(rx_seqpacket)
{
	kcm_rx_pair_close(&self->t);
	close(self->kcm);
	close(self->prog);
}

TEST_F(rx_seqpacket, short_read_keeps_rest)
{
	uint8_t a[128], buf[256];
	int mflags;
	ssize_t n;

	kcm_rx_send_ab(_metadata, self->t.w, a);
	n = kcm_rx_recv(self->kcm, buf, 10, 0, &mflags);
	ASSERT_EQ(n, 10);
	ASSERT_EQ(memcmp(buf, a, 10), 0);
	ASSERT_EQ(mflags & (MSG_EOR | MSG_TRUNC), 0);
	n = kcm_rx_recv(self->kcm, buf, sizeof(buf), 0, &mflags);
	if (kcmux_is_reference() && !kcm_rx_check(buf, n, 96, 2))
		SKIP(return, "in-tree kcm (6.1+) drops the rest of a short SEQPACKET read: the next read returned the next message");
	ASSERT_EQ(n, 90);
	ASSERT_EQ(memcmp(buf, a + 10, 90), 0);
	ASSERT_EQ(mflags & (MSG_EOR | MSG_TRUNC), MSG_EOR);
	n = kcm_rx_recv(self->kcm, buf, sizeof(buf), 0, NULL);
	ASSERT_EQ(kcm_rx_check(buf, n, 96, 2), 0);
}

TEST_F(rx_seqpacket, splice_read)
{
	uint8_t msg[1100], buf[2048];
	int pfd[2];
	size_t total;
	ssize_t n;

	ASSERT_EQ(pipe2(pfd, O_CLOEXEC), 0);
	total = kcm_rx_frame(msg, 1000, 51);
	ASSERT_EQ(kcm_send_all(self->t.w, msg, total), 0);
	n = splice(self->kcm, NULL, pfd[1], NULL, 65536, 0);
	ASSERT_EQ(n, (ssize_t)total) TH_LOG("splice: %s", strerror(errno));
	n = read(pfd[0], buf, sizeof(buf));
	ASSERT_EQ(kcm_rx_check(buf, n, 1000, 51), 0);
	/* All of it was taken. */
	ASSERT_EQ(kcm_rx_recv(self->kcm, buf, sizeof(buf), MSG_DONTWAIT, NULL), -1);
	ASSERT_EQ(errno, EAGAIN);

	/* A second, small message. */
	total = kcm_rx_frame(msg, 30, 52);
	ASSERT_EQ(kcm_send_all(self->t.w, msg, total), 0);
	n = splice(self->kcm, NULL, pfd[1], NULL, 65536, 0);
	ASSERT_EQ(n, (ssize_t)total);
	n = read(pfd[0], buf, sizeof(buf));
	ASSERT_EQ(kcm_rx_check(buf, n, 30, 52), 0);
	close(pfd[0]);
	close(pfd[1]);
}

/* splice() of part of a message leaves the rest to read. */
TEST_F(rx_seqpacket, splice_partial_keeps_rest)
{
	uint8_t msg[128], buf[256];
	int pfd[2], mflags;
	size_t total;
	ssize_t n;

	ASSERT_EQ(pipe2(pfd, O_CLOEXEC), 0);
	total = kcm_rx_frame(msg, 96, 53);
	ASSERT_EQ(kcm_send_all(self->t.w, msg, total), 0);
	ASSERT_EQ(kcm_poll(self->kcm, POLLIN, KCM_WAIT_MS), POLLIN);
	n = splice(self->kcm, NULL, pfd[1], NULL, 10, 0);
	ASSERT_EQ(n, 10);
	ASSERT_EQ(read(pfd[0], buf, sizeof(buf)), 10);
	ASSERT_EQ(memcmp(buf, msg, 10), 0);
	n = kcm_rx_recv(self->kcm, buf, sizeof(buf), MSG_DONTWAIT, &mflags);
	if (n < 0 && errno == EAGAIN && kcmux_is_reference())
		SKIP(return, "in-tree kcm_splice_read drops the rest of a message it splices in part");
	ASSERT_EQ(n, (ssize_t)total - 10);
	ASSERT_EQ(memcmp(buf, msg + 10, total - 10), 0);
	ASSERT_TRUE(mflags & MSG_EOR);
	close(pfd[0]);
	close(pfd[1]);
}

TEST_F(rx_seqpacket, splice_nonblock_eagain)
{
	long long t0, dt;
	int pfd[2];
	ssize_t n;

	ASSERT_EQ(pipe2(pfd, O_CLOEXEC), 0);
	/* Bounds the call if SPLICE_F_NONBLOCK is not honoured. */
	ASSERT_EQ(kcm_set_timeo(self->kcm, SO_RCVTIMEO, 1000), 0);
	t0 = kcm_now_ms();
	n = splice(self->kcm, NULL, pfd[1], NULL, 65536, SPLICE_F_NONBLOCK);
	dt = kcm_now_ms() - t0;
	ASSERT_EQ(n, -1);
	ASSERT_EQ(errno, EAGAIN);
	if (dt >= 900 && kcmux_is_reference())
		SKIP(return, "in-tree kcm_splice_read passes splice flags as recv flags (SPLICE_F_NONBLOCK == MSG_PEEK): it blocked %lld ms until SO_RCVTIMEO",
		     dt);
	ASSERT_LT(dt, 500);
	close(pfd[0]);
	close(pfd[1]);
}

/* ------------------------------------------------------------------ */
/* Fixture steer: several KCM sockets / psocks on one mux               */
/* ------------------------------------------------------------------ */

#define KCM_RX_MAX_SOCKS	4
#define KCM_RX_MAX_PSOCKS	3

FIXTURE(steer)
{
	int kcm[KCM_RX_MAX_SOCKS];	/* kcm[0] and its clones */
	int prog;
	struct kcm_rx_pair t[KCM_RX_MAX_PSOCKS];
};

FIXTURE_SETUP(steer)
{
	int i;

	for (i = 0; i < KCM_RX_MAX_SOCKS; i++)
		self->kcm[i] = -1;
	for (i = 0; i < KCM_RX_MAX_PSOCKS; i++)
		self->t[i].w = self->t[i].r = -1;
	kcm_rx_setup(_metadata, SOCK_DGRAM, AF_INET, &self->kcm[0],
		     &self->prog, NULL);
}

FIXTURE_TEARDOWN(steer)
{
	int i;

	for (i = 0; i < KCM_RX_MAX_PSOCKS; i++)
		kcm_rx_pair_close(&self->t[i]);
	for (i = 0; i < KCM_RX_MAX_SOCKS; i++)
		if (self->kcm[i] >= 0)
			close(self->kcm[i]);
	close(self->prog);
}

/*
 * nsocks KCM sockets (kcm[0] + clones), npsocks attached TCP pairs;
 * psock i parses with progs[i], or the length parser if progs is NULL.
 */
static void kcm_rx_steer_build(struct __test_metadata *_metadata,
			       FIXTURE_DATA(steer) *self, int nsocks,
			       int npsocks, const int *progs)
{
	int i;

	for (i = 1; i < nsocks; i++) {
		self->kcm[i] = kcm_clone(self->kcm[0]);
		ASSERT_GE(self->kcm[i], 0);
	}
	for (i = 0; i < npsocks; i++) {
		ASSERT_EQ(kcm_rx_pair_open(AF_INET, 0, &self->t[i]), 0);
		ASSERT_EQ(kcm_attach(self->kcm[0], self->t[i].r,
				     progs ? progs[i] : self->prog), 0);
	}
}

#define KCM_RX_SPREAD_MSGS	24
#define KCM_RX_SPREAD_PLEN	64

struct kcm_rx_spread {
	int kcm[KCM_RX_MAX_SOCKS];
	int nsocks;
	pid_t tid[KCM_RX_MAX_SOCKS];
	unsigned int got;			/* atomic: messages received */
	unsigned int count[KCM_RX_MAX_SOCKS];	/* per KCM socket */
	unsigned int seen[KCM_RX_SPREAD_MSGS];	/* atomic: per sequence */
	unsigned int bad;			/* atomic: corrupt messages */
	long long deadline;
};

struct kcm_rx_spread_arg {
	struct kcm_rx_spread *s;
	int idx;
};

/* Reader: recv until every message has arrived somewhere (bounded). */
static void *kcm_rx_spread_reader(void *arg)
{
	struct kcm_rx_spread_arg *a = arg;
	struct kcm_rx_spread *s = a->s;
	uint8_t buf[256];
	uint32_t seq;
	ssize_t n;

	__atomic_store_n(&s->tid[a->idx], (pid_t)syscall(SYS_gettid),
			 __ATOMIC_RELEASE);
	while (__atomic_load_n(&s->got, __ATOMIC_ACQUIRE) < KCM_RX_SPREAD_MSGS &&
	       kcm_now_ms() < s->deadline) {
		/* Blocks up to SO_RCVTIMEO (200 ms) */
		n = kcm_rx_recv(s->kcm[a->idx], buf, sizeof(buf), 0, NULL);
		if (n < 0)
			continue;
		/* The seed of the pattern is the sequence number. */
		for (seq = 0; seq < KCM_RX_SPREAD_MSGS; seq++)
			if (!kcm_rx_check(buf, n, KCM_RX_SPREAD_PLEN, seq))
				break;
		if (seq == KCM_RX_SPREAD_MSGS) {
			__atomic_add_fetch(&s->bad, 1, __ATOMIC_RELAXED);
		} else {
			__atomic_add_fetch(&s->seen[seq], 1, __ATOMIC_RELAXED);
			s->count[a->idx]++;
		}
		__atomic_add_fetch(&s->got, 1, __ATOMIC_RELEASE);
	}
	return NULL;
}

/* 'S' when the thread sleeps (in our readers: in recvmsg). */
static char kcm_rx_thread_state(pid_t tid)
{
	char path[64], line[512], *p;
	char st = '?';
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	f = fopen(path, "re");
	if (!f)
		return st;
	if (fgets(line, sizeof(line), f)) {
		p = strrchr(line, ')');
		if (p && p[1] == ' ')
			st = p[2];
	}
	fclose(f);
	return st;
}

static bool kcm_rx_all_sleeping(struct kcm_rx_spread *s)
{
	long long end = kcm_now_ms() + KCM_WAIT_MS;
	pid_t tid;
	int i;

	for (i = 0; i < s->nsocks; i++) {
		for (;;) {
			tid = __atomic_load_n(&s->tid[i], __ATOMIC_ACQUIRE);
			if (tid && kcm_rx_thread_state(tid) == 'S')
				break;
			if (kcm_now_ms() > end)
				return false;
			kcm_msleep(1);
		}
	}
	return true;
}

/*
 * Messages are spread over the KCM sockets: with every socket's reader
 * blocked in recv, each message in turn (one per TCP segment, the next
 * one sent once the previous one arrived) goes to another socket.
 */
TEST_F(steer, spread)
{
	struct kcm_rx_spread_arg args[KCM_RX_MAX_SOCKS];
	pthread_t thr[KCM_RX_MAX_SOCKS];
	struct kcm_rx_spread *s;
	uint8_t msg[KCM_RX_HDR + KCM_RX_SPREAD_PLEN];
	int i, used = 0;
	size_t total;

	kcm_rx_steer_build(_metadata, self, KCM_RX_MAX_SOCKS, 1, NULL);
	s = calloc(1, sizeof(*s));
	ASSERT_NE(s, NULL);
	s->nsocks = KCM_RX_MAX_SOCKS;
	s->deadline = kcm_now_ms() + 8000;
	for (i = 0; i < s->nsocks; i++) {
		s->kcm[i] = self->kcm[i];
		ASSERT_EQ(kcm_set_timeo(s->kcm[i], SO_RCVTIMEO, 200), 0);
		args[i] = (struct kcm_rx_spread_arg){ .s = s, .idx = i };
		ASSERT_EQ(pthread_create(&thr[i], NULL, kcm_rx_spread_reader,
					 &args[i]), 0);
	}
	for (i = 0; i < KCM_RX_SPREAD_MSGS; i++) {
		long long end = kcm_now_ms() + KCM_WAIT_MS;

		ASSERT_TRUE(kcm_rx_all_sleeping(s));
		total = kcm_rx_frame(msg, KCM_RX_SPREAD_PLEN, i);
		ASSERT_EQ(kcm_send_all(self->t[0].w, msg, total), 0);
		while (__atomic_load_n(&s->got, __ATOMIC_ACQUIRE) <
		       (unsigned int)i + 1 && kcm_now_ms() < end)
			kcm_msleep(1);
	}
	for (i = 0; i < s->nsocks; i++)
		pthread_join(thr[i], NULL);

	ASSERT_EQ(s->got, (unsigned int)KCM_RX_SPREAD_MSGS);
	ASSERT_EQ(s->bad, 0u);
	for (i = 0; i < KCM_RX_SPREAD_MSGS; i++)
		ASSERT_EQ(s->seen[i], 1u) TH_LOG("message %d", i);
	for (i = 0; i < s->nsocks; i++) {
		TH_LOG("kcm[%d] got %u", i, s->count[i]);
		ASSERT_LT(s->count[i], (unsigned int)KCM_RX_SPREAD_MSGS);
		used += s->count[i] > 0;
	}
	ASSERT_EQ(used, s->nsocks);
	free(s);
}

/*
 * MxN: 3 psocks x 3 KCM sockets, a writer thread per TCP peer and a
 * reader thread per KCM socket.  Every message carries its writer, its
 * sequence number and a checksum; each must arrive exactly once, intact.
 * A stream's messages have one length (top comment); the three streams
 * differ (copied and cloned sizes).
 */
#define KCM_RX_MXN		3
#define KCM_RX_MXN_MSGS		150
#define KCM_RX_MXN_BATCH	6	/* messages per write */
#define KCM_RX_MXN_TOTAL	(KCM_RX_MXN * KCM_RX_MXN_MSGS)

static const uint32_t kcm_rx_mxn_plen[KCM_RX_MXN] = { 100, 700, 1500 };

struct kcm_rx_mxn {
	int kcm[KCM_RX_MXN];
	int w[KCM_RX_MXN];
	unsigned int got;				/* atomic */
	unsigned int bad;				/* atomic */
	unsigned int seen[KCM_RX_MXN][KCM_RX_MXN_MSGS];	/* atomic */
	unsigned int per_reader[KCM_RX_MXN];
	int werr[KCM_RX_MXN];
	long long deadline;
};

struct kcm_rx_mxn_arg {
	struct kcm_rx_mxn *m;
	int idx;
};

/* Payload: [u32 writer][u32 seq][pattern...][u32 FNV of all before]. */
static size_t kcm_rx_mxn_build(uint8_t *p, uint32_t writer, uint32_t seq)
{
	uint32_t plen = kcm_rx_mxn_plen[writer], sum;
	size_t total = kcm_rx_frame(p, plen, writer * 100000 + seq);

	memcpy(p + KCM_RX_HDR, &writer, 4);
	memcpy(p + KCM_RX_HDR + 4, &seq, 4);
	sum = kcm_rx_fnv(p, total - 4);
	memcpy(p + total - 4, &sum, 4);
	return total;
}

/* 0 and (*writer, *seq) if the message is intact. */
static int kcm_rx_mxn_parse(const uint8_t *p, ssize_t n, uint32_t *writer,
			    uint32_t *seq)
{
	uint32_t be, sum;

	if (n < KCM_RX_HDR + 12)
		return -1;
	memcpy(&be, p, 4);
	memcpy(writer, p + KCM_RX_HDR, 4);
	memcpy(seq, p + KCM_RX_HDR + 4, 4);
	memcpy(&sum, p + n - 4, 4);
	if (*writer >= KCM_RX_MXN || *seq >= KCM_RX_MXN_MSGS ||
	    ntohl(be) != kcm_rx_mxn_plen[*writer] ||
	    n != (ssize_t)(KCM_RX_HDR + ntohl(be)) ||
	    sum != kcm_rx_fnv(p, n - 4))
		return -1;
	return 0;
}

static void *kcm_rx_mxn_writer(void *arg)
{
	struct kcm_rx_mxn_arg *a = arg;
	uint8_t *buf;
	size_t off;
	uint32_t seq, i;

	buf = malloc(KCM_RX_MXN_BATCH * (KCM_RX_HDR + 1600));
	if (!buf) {
		a->m->werr[a->idx] = -ENOMEM;
		return NULL;
	}
	for (seq = 0; seq < KCM_RX_MXN_MSGS && !a->m->werr[a->idx];) {
		for (off = 0, i = 0; i < KCM_RX_MXN_BATCH && seq < KCM_RX_MXN_MSGS;
		     i++, seq++)
			off += kcm_rx_mxn_build(buf + off, a->idx, seq);
		a->m->werr[a->idx] = kcm_send_all(a->m->w[a->idx], buf, off);
	}
	free(buf);
	return NULL;
}

static void *kcm_rx_mxn_reader(void *arg)
{
	struct kcm_rx_mxn_arg *a = arg;
	struct kcm_rx_mxn *m = a->m;
	uint32_t writer, seq;
	uint8_t buf[2048];
	ssize_t n;

	while (__atomic_load_n(&m->got, __ATOMIC_ACQUIRE) < KCM_RX_MXN_TOTAL &&
	       kcm_now_ms() < m->deadline) {
		if (kcm_poll(m->kcm[a->idx], POLLIN, 100) <= 0)
			continue;
		n = kcm_rx_recv(m->kcm[a->idx], buf, sizeof(buf), MSG_DONTWAIT,
				NULL);
		if (n < 0)
			continue;
		if (kcm_rx_mxn_parse(buf, n, &writer, &seq))
			__atomic_add_fetch(&m->bad, 1, __ATOMIC_RELAXED);
		else
			__atomic_add_fetch(&m->seen[writer][seq], 1,
					   __ATOMIC_RELAXED);
		m->per_reader[a->idx]++;
		__atomic_add_fetch(&m->got, 1, __ATOMIC_RELEASE);
	}
	return NULL;
}

TEST_F(steer, mxn)
{
	struct kcm_rx_mxn_arg args[KCM_RX_MXN];
	pthread_t rd[KCM_RX_MXN], wr[KCM_RX_MXN];
	int i, j, progs[KCM_RX_MXN];
	struct kcm_rx_mxn *m;

	for (i = 0; i < KCM_RX_MXN; i++) {
		progs[i] = kcm_rx_prog_stream(KCM_RX_HDR + kcm_rx_mxn_plen[i]);
		ASSERT_GE(progs[i], 0);
	}
	kcm_rx_steer_build(_metadata, self, KCM_RX_MXN, KCM_RX_MXN, progs);
	for (i = 0; i < KCM_RX_MXN; i++)
		close(progs[i]);
	m = calloc(1, sizeof(*m));
	ASSERT_NE(m, NULL);
	m->deadline = kcm_now_ms() + 8000;
	for (i = 0; i < KCM_RX_MXN; i++) {
		m->kcm[i] = self->kcm[i];
		m->w[i] = self->t[i].w;
		args[i] = (struct kcm_rx_mxn_arg){ .m = m, .idx = i };
	}
	for (i = 0; i < KCM_RX_MXN; i++)
		ASSERT_EQ(pthread_create(&rd[i], NULL, kcm_rx_mxn_reader,
					 &args[i]), 0);
	for (i = 0; i < KCM_RX_MXN; i++)
		ASSERT_EQ(pthread_create(&wr[i], NULL, kcm_rx_mxn_writer,
					 &args[i]), 0);
	for (i = 0; i < KCM_RX_MXN; i++)
		pthread_join(wr[i], NULL);
	for (i = 0; i < KCM_RX_MXN; i++)
		pthread_join(rd[i], NULL);
	if (m->got != KCM_RX_MXN_TOTAL)
		kcm_dump_file("/proc/net/kcm");

	for (i = 0; i < KCM_RX_MXN; i++) {
		TH_LOG("reader %d got %u", i, m->per_reader[i]);
		ASSERT_EQ(m->werr[i], 0);
	}
	ASSERT_EQ(m->bad, 0u);
	ASSERT_EQ(m->got, (unsigned int)KCM_RX_MXN_TOTAL);
	for (i = 0; i < KCM_RX_MXN; i++)
		for (j = 0; j < KCM_RX_MXN_MSGS; j++)
			ASSERT_EQ(m->seen[i][j], 1u)
				TH_LOG("writer %d message %d", i, j);
	free(m);
}

/* ------------------------------------------------------------------ */
/* Fixture backpressure                                                 */
/* ------------------------------------------------------------------ */

FIXTURE(backpressure)
{
	int kcm;
	int prog;
	int kcm_rcvbuf;
	struct kcm_rx_pair t;
};

#define KCM_RX_BP_PLEN		996	/* 1000-byte messages */
#define KCM_RX_BP_MSGS		2048

FIXTURE_SETUP(backpressure)
{
	int prog;

	self->t.w = self->t.r = -1;
	kcm_rx_setup(_metadata, SOCK_DGRAM, AF_INET, &self->kcm, &self->prog,
		     NULL);
	ASSERT_EQ(kcm_setint(self->kcm, SOL_SOCKET, SO_RCVBUF, 16384), 0);
	self->kcm_rcvbuf = kcm_getint(self->kcm, SOL_SOCKET, SO_RCVBUF);
	ASSERT_GT(self->kcm_rcvbuf, 0);
	/* Fixed buffers, no autotuning: the writer soon gets EAGAIN. */
	ASSERT_EQ(kcm_rx_pair_open(AF_INET, 128 * 1024, &self->t), 0);
	ASSERT_EQ(kcm_setint(self->t.w, SOL_SOCKET, SO_SNDBUF, 64 * 1024), 0);
	ASSERT_EQ(fcntl(self->t.w, F_SETFL, O_NONBLOCK), 0);
	prog = kcm_rx_prog_stream(KCM_RX_HDR + KCM_RX_BP_PLEN);
	ASSERT_GE(prog, 0);
	ASSERT_EQ(kcm_attach(self->kcm, self->t.r, prog), 0);
	close(prog);
}

FIXTURE_TEARDOWN(backpressure)
{
	kcm_rx_pair_close(&self->t);
	close(self->kcm);
	close(self->prog);
}

struct kcm_rx_bp_tx {
	uint8_t msg[KCM_RX_HDR + KCM_RX_BP_PLEN];
	size_t len, off;
	uint32_t seq;
};

/* Writes messages until EAGAIN or all are sent; -errno on error. */
static int kcm_rx_bp_write(int fd, struct kcm_rx_bp_tx *tx)
{
	ssize_t n;

	while (tx->seq < KCM_RX_BP_MSGS) {
		if (tx->off == tx->len) {
			tx->len = kcm_rx_frame(tx->msg, KCM_RX_BP_PLEN, tx->seq);
			tx->off = 0;
		}
		n = send(fd, tx->msg + tx->off, tx->len - tx->off, MSG_NOSIGNAL);
		if (n < 0)
			return errno == EAGAIN ? 0 : -errno;
		tx->off += n;
		if (tx->off == tx->len)
			tx->seq++;
	}
	return 0;
}

/*
 * Nobody reads the KCM socket: it takes about SO_RCVBUF worth of
 * messages, the rest stays in the TCP socket (its SIOCINQ grows) and
 * the writer is pushed back.  Then everything is read, in order, intact.
 */
TEST_F(backpressure, data_stays_in_tcp)
{
	struct kcm_rx_bp_tx *tx;
	long long end, rmem, recvq;
	uint8_t buf[2048];
	uint32_t next = 0;
	size_t written;
	int inq;
	ssize_t n;

	tx = calloc(1, sizeof(*tx));
	ASSERT_NE(tx, NULL);
	ASSERT_EQ(kcm_inq(self->t.r), 0);
	ASSERT_EQ(kcm_rx_bp_write(self->t.w, tx), 0);
	written = (size_t)tx->seq * (KCM_RX_HDR + KCM_RX_BP_PLEN) + tx->off;
	ASSERT_LT(tx->seq, (uint32_t)KCM_RX_BP_MSGS) TH_LOG("the writer never blocked");

	/* The receiving TCP socket fills up (bounded wait). */
	end = kcm_now_ms() + KCM_WAIT_MS;
	while ((inq = kcm_inq(self->t.r)) < 64 * 1024 &&
	       kcm_now_ms() < end)
		kcm_msleep(2);
	rmem = kcm_proc_nth("kcm-", 0, "Rmem");
	recvq = kcm_proc_nth("kcm-", 0, "Recv-Q");
	TH_LOG("written %zu, TCP inq %d, KCM Recv-Q %lld Rmem %lld rcvbuf %d",
	       written, inq, recvq, rmem, self->kcm_rcvbuf);
	ASSERT_GE(inq, 64 * 1024);
	ASSERT_GT(recvq, 0);
	ASSERT_GT(rmem, 0);
	/*
	 * Bounded by SO_RCVBUF, plus the message that crossed it (whose
	 * truesize may be that of a whole 64 KiB TCP skb it shares).
	 */
	ASSERT_LE(rmem, self->kcm_rcvbuf + 68 * 1024);
	ASSERT_LT(recvq * (KCM_RX_HDR + KCM_RX_BP_PLEN), (long long)written / 2);

	/* Now read it all, writing the rest as room appears. */
	end = kcm_now_ms() + 8000;
	while (next < KCM_RX_BP_MSGS) {
		struct pollfd pfd[2] = {
			{ .fd = self->kcm, .events = POLLIN },
			{ .fd = self->t.w,
			  .events = tx->seq < KCM_RX_BP_MSGS ? POLLOUT : 0 },
		};

		if (kcm_now_ms() > end || poll(pfd, 2, KCM_WAIT_MS) <= 0) {
			TH_LOG("stuck at message %u, sent %u, TCP inq %d",
			       next, tx->seq, kcm_inq(self->t.r));
			kcm_dump_file("/proc/net/kcm");
			ASSERT_TRUE(0);
		}
		if (pfd[1].revents & POLLOUT)
			ASSERT_EQ(kcm_rx_bp_write(self->t.w, tx), 0);
		if (!(pfd[0].revents & POLLIN))
			continue;
		while ((n = kcm_rx_recv(self->kcm, buf, sizeof(buf),
					MSG_DONTWAIT, NULL)) >= 0) {
			ASSERT_EQ(kcm_rx_check(buf, n, KCM_RX_BP_PLEN, next), 0)
				TH_LOG("message %u: %zd bytes", next, n);
			next++;
		}
		ASSERT_EQ(errno, EAGAIN);
	}
	ASSERT_EQ(kcm_rx_recv(self->kcm, buf, sizeof(buf), MSG_DONTWAIT, NULL), -1);
	free(tx);
}

/*
 * The peer sends its FIN while complete messages still wait in TCP
 * (nobody reads the KCM socket): they are all delivered, then the
 * error is posted.
 */
TEST_F(backpressure, fin_while_parked)
{
	const uint32_t count = 100;
	uint8_t msg[KCM_RX_HDR + KCM_RX_BP_PLEN], buf[2048];
	long long end;
	uint32_t i;
	ssize_t n;
	int err;

	ASSERT_EQ(fcntl(self->t.w, F_SETFL, 0), 0);
	for (i = 0; i < count; i++) {
		kcm_rx_frame(msg, KCM_RX_BP_PLEN, i);
		ASSERT_EQ(kcm_send_all(self->t.w, msg, sizeof(msg)), 0)
			TH_LOG("message %u", i);
	}
	ASSERT_EQ(shutdown(self->t.w, SHUT_WR), 0);
	/* The FIN is in; messages are still in the TCP socket. */
	end = kcm_now_ms() + KCM_WAIT_MS;
	while (!(kcm_poll(self->t.r, POLLRDHUP, 10) & POLLRDHUP) &&
	       kcm_now_ms() < end)
		;
	ASSERT_GT(kcm_inq(self->t.r), 0);
	ASSERT_LT(kcm_proc_nth("kcm-", 0, "Recv-Q"), (long long)count);

	for (i = 0; i < count; i++) {
		n = kcm_rx_recv(self->kcm, buf, sizeof(buf), 0, NULL);
		ASSERT_EQ(kcm_rx_check(buf, n, KCM_RX_BP_PLEN, i), 0)
			TH_LOG("message %u: %zd bytes (%s), SO_ERROR %d", i, n,
			       n < 0 ? strerror(errno) : "-",
			       kcm_getint(self->t.r, SOL_SOCKET, SO_ERROR));
	}
	err = kcm_err_wait(self->t.r);
	ASSERT_TRUE(err == EPIPE || err == ECONNRESET)
		TH_LOG("SO_ERROR %d", err);
	ASSERT_EQ(kcm_rx_recv(self->kcm, buf, sizeof(buf), MSG_DONTWAIT, NULL), -1);
	ASSERT_EQ(errno, EAGAIN);
}

/* ------------------------------------------------------------------ */
/* Fixture rx_err: errors posted on an attached TCP socket              */
/* ------------------------------------------------------------------ */

FIXTURE(rx_err)
{
	int kcm;
	int prog;
	struct kcm_rx_pair a;	/* the psock that fails, attached by tests */
	struct kcm_rx_pair b;	/* another psock, attached, must carry on */
};

FIXTURE_VARIANT(rx_err)
{
	int family;
};

FIXTURE_VARIANT_ADD(rx_err, ipv4)
{
	.family = AF_INET,
};

FIXTURE_VARIANT_ADD(rx_err, ipv6)
{
	.family = AF_INET6,
};

FIXTURE_SETUP(rx_err)
{
	self->a.w = self->a.r = self->b.w = self->b.r = -1;
	kcm_rx_setup(_metadata, SOCK_DGRAM, variant->family, &self->kcm,
		     &self->prog, &self->b);
	ASSERT_EQ(kcm_rx_pair_open(variant->family, 0, &self->a), 0);
}

FIXTURE_TEARDOWN(rx_err)
{
	kcm_rx_pair_close(&self->a);
	kcm_rx_pair_close(&self->b);
	close(self->kcm);
	close(self->prog);
}

/* The failed psock delivered nothing more; psock b still delivers. */
static void kcm_rx_err_others_fine(struct __test_metadata *_metadata,
				   FIXTURE_DATA(rx_err) *self)
{
	uint8_t msg[128], buf[256];
	size_t total;
	ssize_t n;

	ASSERT_EQ(kcm_rx_recv(self->kcm, buf, sizeof(buf), MSG_DONTWAIT, NULL), -1);
	ASSERT_EQ(errno, EAGAIN);
	total = kcm_rx_frame(msg, 77, 0xb0b);
	ASSERT_EQ(kcm_send_all(self->b.w, msg, total), 0);
	n = kcm_rx_recv(self->kcm, buf, sizeof(buf), 0, NULL);
	ASSERT_EQ(kcm_rx_check(buf, n, 77, 0xb0b), 0);
}

/* Half a message and the TCP socket's SO_RCVTIMEO (200 ms) expires. */
TEST_F(rx_err, assembly_timeout)
{
	long long before, t0, dt;
	uint8_t msg[128];

	ASSERT_EQ(kcm_set_timeo(self->a.r, SO_RCVTIMEO, 200), 0);
	ASSERT_EQ(kcm_attach(self->kcm, self->a.r, self->prog), 0);
	before = kcm_stat("Psock", "RX-Timeout");
	ASSERT_GE(before, 0);
	kcm_rx_frame(msg, 100, 61);
	t0 = kcm_now_ms();
	ASSERT_EQ(kcm_send_all(self->a.w, msg, 50), 0);
	ASSERT_EQ(kcm_err_wait(self->a.r), ETIMEDOUT);
	dt = kcm_now_ms() - t0;
	ASSERT_GE(dt, 150);
	ASSERT_EQ(kcm_stat("Psock", "RX-Timeout"), before + 1);
	kcm_rx_err_others_fine(_metadata, self);
}

/*
 * The assembly timeout is per message: messages that each complete
 * within it (halves 100 ms apart, timeout 400 ms) go on for longer than
 * it in total without an error.
 */
TEST_F(rx_err, assembly_timeout_per_message)
{
	uint8_t msg[256], buf[256];
	long long before;
	size_t total;
	ssize_t n;
	int i;

	ASSERT_EQ(kcm_set_timeo(self->a.r, SO_RCVTIMEO, 400), 0);
	ASSERT_EQ(kcm_attach(self->kcm, self->a.r, self->prog), 0);
	before = kcm_stat("Psock", "RX-Timeout");
	for (i = 0; i < 8; i++) {
		total = kcm_rx_frame(msg, 150, 64 + i);
		ASSERT_EQ(kcm_send_all(self->a.w, msg, total / 2), 0);
		kcm_msleep(100);
		ASSERT_EQ(kcm_send_all(self->a.w, msg + total / 2,
					  total - total / 2), 0);
		n = kcm_rx_recv(self->kcm, buf, sizeof(buf), 0, NULL);
		ASSERT_EQ(kcm_rx_check(buf, n, 150, 64 + i), 0)
			TH_LOG("message %d: %zd bytes", i, n);
	}
	ASSERT_EQ(kcm_poll(self->a.r, 0, 0) & POLLERR, 0);
	ASSERT_EQ(kcm_sock_error(self->a.r), 0);
	ASSERT_EQ(kcm_stat("Psock", "RX-Timeout"), before);
}

/* A length beyond the TCP socket's SO_RCVBUF. */
TEST_F(rx_err, too_big)
{
	long long before;
	uint8_t msg[256];
	int limit;

	ASSERT_EQ(kcm_setint(self->a.r, SOL_SOCKET, SO_RCVBUF, 16384), 0);
	limit = kcm_getint(self->a.r, SOL_SOCKET, SO_RCVBUF);
	ASSERT_GT(limit, 0);
	ASSERT_EQ(kcm_attach(self->kcm, self->a.r, self->prog), 0);
	before = kcm_stat("Psock", "RX-TooBig");
	ASSERT_GE(before, 0);
	/* 4 + payload = limit + 1 */
	kcm_rx_frame(msg, 200, 62);
	*(uint32_t *)msg = htonl(limit - KCM_RX_HDR + 1);
	ASSERT_EQ(kcm_send_all(self->a.w, msg, sizeof(msg)), 0);
	ASSERT_EQ(kcm_err_wait(self->a.r), EMSGSIZE);
	ASSERT_EQ(kcm_stat("Psock", "RX-TooBig"), before + 1);
	kcm_rx_err_others_fine(_metadata, self);
}

/*
 * The magic parser: a good message passes, then a bad magic byte makes
 * it return -EPROTO, which is posted as is.
 */
static void kcm_rx_err_magic(struct __test_metadata *_metadata,
			     FIXTURE_DATA(rx_err) *self)
{
	uint8_t msg[128], buf[256];
	size_t total;
	ssize_t n;
	int prog;

	prog = kcm_rx_prog_load(KCM_RX_PROG_MAGIC);
	ASSERT_GE(prog, 0);
	ASSERT_EQ(kcm_attach(self->kcm, self->a.r, prog), 0);
	close(prog);
	total = kcm_rx_frame(msg, 64, 63);
	msg[KCM_RX_HDR] = KCM_RX_MAGIC;
	ASSERT_EQ(kcm_send_all(self->a.w, msg, total), 0);
	n = kcm_rx_recv(self->kcm, buf, sizeof(buf), 0, NULL);
	ASSERT_EQ(n, (ssize_t)total);
	ASSERT_EQ(memcmp(buf, msg, total), 0);
	msg[KCM_RX_HDR] = 0;
	ASSERT_EQ(kcm_send_all(self->a.w, msg, total), 0);
	ASSERT_EQ(kcm_err_wait(self->a.r), EPROTO);
}

TEST_F(rx_err, parser_errno)
{
	kcm_rx_err_magic(_metadata, self);
	kcm_rx_err_others_fine(_metadata, self);
}

TEST_F(rx_err, parser_errno_counted)
{
	long long before = kcm_stat("Psock", "RX-BadLen"), after;

	ASSERT_GE(before, 0);
	kcm_rx_err_magic(_metadata, self);
	after = kcm_stat("Psock", "RX-BadLen");
	if (after == before && kcmux_is_reference())
		SKIP(return, "in-tree strparser counts no parser error in RX-BadLen (only lengths that end before the bytes already seen)");
	ASSERT_EQ(after, before + 1);
}

/*
 * A length that ends inside bytes the parser had already asked more
 * for: -EPROTO, counted in RX-BadLen.  The parser says "need more" up
 * to 8 bytes, then claims 2; the 8 bytes come as two segments of 4.
 */
TEST_F(rx_err, bad_len)
{
	long long before, need0;
	uint8_t msg[8] = { 0, 0, 0, 4, 1, 2, 3, 4 };
	int prog;

	prog = kcm_rx_prog_load(KCM_RX_PROG_SHORT);
	ASSERT_GE(prog, 0);
	ASSERT_EQ(kcm_attach(self->kcm, self->a.r, prog), 0);
	close(prog);
	before = kcm_stat("Psock", "RX-BadLen");
	need0 = kcm_stat("Psock", "RX-NeedMor");
	ASSERT_GE(before, 0);
	ASSERT_EQ(kcm_send_all(self->a.w, msg, 4), 0);
	ASSERT_GE(kcm_wait_stat("Psock", "RX-NeedMor", need0 + 1), need0 + 1);
	ASSERT_EQ(kcm_send_all(self->a.w, msg + 4, 4), 0);
	ASSERT_EQ(kcm_err_wait(self->a.r), EPROTO);
	ASSERT_EQ(kcm_stat("Psock", "RX-BadLen"), before + 1);
	kcm_rx_err_others_fine(_metadata, self);
}

static bool kcm_rx_is_pipe_or_reset(int err)
{
	return err == EPIPE || err == ECONNRESET;
}

/* Peer FIN: complete messages before it arrive, the partial one not. */
TEST_F(rx_err, peer_fin)
{
	uint8_t wbuf[4 * (KCM_RX_HDR + 50)], buf[256];
	size_t off = 0;
	ssize_t n;
	int i, err;

	ASSERT_EQ(kcm_attach(self->kcm, self->a.r, self->prog), 0);
	for (i = 0; i < 4; i++)
		off += kcm_rx_frame(wbuf + off, 50, 70 + i);
	ASSERT_EQ(kcm_send_all(self->a.w, wbuf, off - 30), 0);
	ASSERT_EQ(shutdown(self->a.w, SHUT_WR), 0);
	for (i = 0; i < 3; i++) {
		n = kcm_rx_recv(self->kcm, buf, sizeof(buf), 0, NULL);
		ASSERT_EQ(kcm_rx_check(buf, n, 50, 70 + i), 0)
			TH_LOG("message %d: %zd bytes", i, n);
	}
	err = kcm_err_wait(self->a.r);
	ASSERT_TRUE(kcm_rx_is_pipe_or_reset(err))
		TH_LOG("SO_ERROR %d (%s)", err, err > 0 ? strerror(err) : "none");
	kcm_rx_err_others_fine(_metadata, self);
}

/* Peer RST (SO_LINGER 0 close). */
TEST_F(rx_err, peer_rst)
{
	struct linger lin = { .l_onoff = 1, .l_linger = 0 };
	uint8_t msg[128], buf[256];
	size_t total;
	ssize_t n;
	int err;

	ASSERT_EQ(kcm_attach(self->kcm, self->a.r, self->prog), 0);
	total = kcm_rx_frame(msg, 90, 80);
	ASSERT_EQ(kcm_send_all(self->a.w, msg, total), 0);
	n = kcm_rx_recv(self->kcm, buf, sizeof(buf), 0, NULL);
	ASSERT_EQ(kcm_rx_check(buf, n, 90, 80), 0);
	ASSERT_EQ(setsockopt(self->a.w, SOL_SOCKET, SO_LINGER, &lin,
			     sizeof(lin)), 0);
	close(self->a.w);
	self->a.w = -1;
	err = kcm_err_wait(self->a.r);
	ASSERT_TRUE(kcm_rx_is_pipe_or_reset(err))
		TH_LOG("SO_ERROR %d (%s)", err, err > 0 ? strerror(err) : "none");
	kcm_rx_err_others_fine(_metadata, self);
}

TEST_HARNESS_MAIN
