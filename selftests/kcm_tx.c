// SPDX-License-Identifier: GPL-2.0
/*
 * kcm_tx: the send side of AF_KCM.
 *
 * Every test runs in its own network namespace, so /proc/net/kcm and
 * /proc/net/kcm_stats show only what the test itself did.  The KCM end of
 * each TCP pair (fds[0]) is attached to the multiplexor; the other end
 * (fds[1]) is read as a plain byte stream and parsed here, so what is
 * checked is exactly what goes out on the wire.
 *
 * Message format (kcm_test.h): 4-byte big-endian payload length, a 4-byte
 * header word (used as sequence number), then the payload.
 *
 * Expected values are those of the in-tree kcm.ko; where it differs from
 * kcmux on purpose (or is wrong), the test SKIPs on the reference and
 * says why.
 */
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <time.h>
#include <net/if.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <netinet/tcp.h>
#include <sys/uio.h>
#include <linux/sockios.h>

#include "kcm_test.h"

/*
 * The harness's TEST_F wrapper sets a local after setjmp() and reads it
 * after longjmp(); gcc's -Wclobbered flags that from data flow alone.
 * gcc never keeps such a variable in a register (its allocator spills
 * everything live across setjmp), so the warning is a false positive;
 * whether it fires depends only on how much of a test gets inlined.
 */
#pragma GCC diagnostic ignored "-Wclobbered"
#include "kselftest_harness.h"

/*
 * A TCP pair with small buffers: a message sticks half sent on it when
 * the peer does not read.
 */
static const struct kcm_tcp_opts kcm_tx_small = {
	.sndbuf = 4096, .rcvbuf = 4096, .nodelay = true,
};

/* --- the fixture --------------------------------------------------------- */

/*
 * kcm: the KCM socket under test (variant type), nothing attached.
 * a, b: TCP pairs with default buffers; tests attach a[0] / b[0].
 */
FIXTURE(tx) {
	int bpf;
	int kcm;
	int a[2];
	int b[2];
};

FIXTURE_VARIANT(tx) {
	int type;
	int more;	/* flags of a send that does not end the message */
	int end;	/* flags of a send that ends it */
};

FIXTURE_VARIANT_ADD(tx, dgram) {
	.type = SOCK_DGRAM,
	.more = MSG_MORE,
	.end = 0,
};

FIXTURE_VARIANT_ADD(tx, seqpacket) {
	.type = SOCK_SEQPACKET,
	.more = 0,
	.end = MSG_EOR,
};

FIXTURE_SETUP(tx)
{
	self->bpf = self->kcm = -1;
	self->a[0] = self->a[1] = self->b[0] = self->b[1] = -1;

	ASSERT_EQ(0, kcm_netns_enter());
	self->bpf = kcm_bpf_load_parser();
	ASSERT_LE(0, self->bpf);
	self->kcm = kcm_socket(variant->type);
	ASSERT_LE(0, self->kcm) TH_LOG("socket(AF_KCM): %s", strerror(-self->kcm));
	ASSERT_EQ(0, kcm_tcp_pair_nodelay(AF_INET, self->a));
	ASSERT_EQ(0, kcm_tcp_pair_nodelay(AF_INET, self->b));
}

FIXTURE_TEARDOWN(tx)
{
	kcm_close_fd(&self->kcm);
	kcm_close_fd(&self->a[0]);
	kcm_close_fd(&self->a[1]);
	kcm_close_fd(&self->b[0]);
	kcm_close_fd(&self->b[1]);
	kcm_close_fd(&self->bpf);
}

/* --- atomicity under concurrency ---------------------------------------- */

/*
 * Stress message: header word = sequence number (sender << 16 | n), the
 * payload = 4-byte FNV-1a checksum of the data, then 1 .. 64 KiB of data.
 */
#define STRESS_SENDERS		4
#define STRESS_MSGS		40
#define STRESS_TOTAL		(STRESS_SENDERS * STRESS_MSGS)
#define STRESS_MAX_DATA		65536

struct stress {
	int kcm[STRESS_SENDERS];	/* socket each sender uses */
	int peer[2];			/* stream ends read by the readers */
	int flags;			/* send flags ending a message */
	int seen[STRESS_TOTAL];		/* receptions per message */
	int received;			/* atomically */
	int per_stream[2];
	char error[2 + STRESS_SENDERS][160];
};

struct stress_arg {
	struct stress *st;
	int idx;
};

static uint32_t stress_size(uint32_t seq)
{
	uint32_t n = seq & 0xffff, x = seq * 2654435761u;

	if (n == 0)
		return 1;
	if (n == 1)
		return STRESS_MAX_DATA;
	/* Log-uniform: as many tiny as huge messages. */
	x ^= x >> 13;
	return 1 + (x >> 8) % (1u << ((x & 0xff) % 17));
}

static uint32_t stress_fnv(const uint8_t *p, uint32_t n)
{
	uint32_t h = 2166136261u;

	while (n--)
		h = (h ^ *p++) * 16777619u;
	return h;
}

static void *stress_sender(void *v)
{
	struct stress_arg *arg = v;
	struct stress *st = arg->st;
	static __thread uint8_t data[STRESS_MAX_DATA];
	uint8_t hdr[KCM_TEST_HDR_LEN + 4];
	int n;

	for (n = 0; n < STRESS_MSGS; n++) {
		uint32_t seq = (uint32_t)arg->idx << 16 | n;
		uint32_t len = stress_size(seq), i, be;
		struct iovec iov[2] = {
			{ .iov_base = hdr, .iov_len = sizeof(hdr) },
			{ .iov_base = data, .iov_len = len },
		};
		struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
		ssize_t r;

		for (i = 0; i < len; i++)
			data[i] = kcm_pattern(seq, i);
		be = htonl(4 + len);
		memcpy(hdr, &be, 4);
		be = htonl(seq);
		memcpy(hdr + 4, &be, 4);
		be = htonl(stress_fnv(data, len));
		memcpy(hdr + 8, &be, 4);

		r = sendmsg(st->kcm[arg->idx], &mh, st->flags);
		if (r != (ssize_t)(sizeof(hdr) + len)) {
			snprintf(st->error[2 + arg->idx], 160,
				 "sender %d msg %d: sendmsg %zd (%s)", arg->idx,
				 n, r, r < 0 ? strerror(errno) : "short");
			break;
		}
	}
	return NULL;
}

/* Parses one peer's stream until every message has been seen somewhere. */
static void *stress_reader(void *v)
{
	struct stress_arg *arg = v;
	struct stress *st = arg->st;
	char *err = st->error[arg->idx];
	int fd = st->peer[arg->idx];
	int last[STRESS_SENDERS];
	long long deadline = kcm_now_ms() + 20000;
	static __thread uint8_t buf[4 + STRESS_MAX_DATA];
	uint32_t be, len, seq, sum;
	int s, n;

	for (s = 0; s < STRESS_SENDERS; s++)
		last[s] = -1;

	while (__atomic_load_n(&st->received, __ATOMIC_SEQ_CST) < STRESS_TOTAL) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		uint8_t hdr[KCM_TEST_HDR_LEN];

		if (kcm_now_ms() > deadline) {
			snprintf(err, 160, "stream %d: timeout, %d of %d messages seen",
				 arg->idx, st->received, STRESS_TOTAL);
			return NULL;
		}
		if (poll(&pfd, 1, 50) <= 0)
			continue;
		if (kcm_read_exact(fd, hdr, sizeof(hdr), KCM_WAIT_MS) !=
		    sizeof(hdr)) {
			snprintf(err, 160, "stream %d: truncated header", arg->idx);
			return NULL;
		}
		memcpy(&be, hdr, 4);
		len = ntohl(be);
		memcpy(&be, hdr + 4, 4);
		seq = ntohl(be);
		s = seq >> 16;
		n = seq & 0xffff;
		if (s >= STRESS_SENDERS || n >= STRESS_MSGS ||
		    len != 4 + stress_size(seq)) {
			snprintf(err, 160,
				 "stream %d: garbage header len %u seq %#x (interleaved?)",
				 arg->idx, len, seq);
			return NULL;
		}
		if (kcm_read_exact(fd, buf, len, KCM_WAIT_MS) != len) {
			snprintf(err, 160, "stream %d: seq %#x truncated", arg->idx, seq);
			return NULL;
		}
		memcpy(&be, buf, 4);
		sum = stress_fnv(buf + 4, len - 4);
		if (ntohl(be) != sum) {
			snprintf(err, 160, "stream %d: seq %#x bad checksum", arg->idx, seq);
			return NULL;
		}
		/* One KCM socket's queue goes out in order on whatever psock. */
		if (n <= last[s]) {
			snprintf(err, 160, "stream %d: sender %d msg %d after msg %d",
				 arg->idx, s, n, last[s]);
			return NULL;
		}
		last[s] = n;
		__atomic_add_fetch(&st->seen[s * STRESS_MSGS + n], 1, __ATOMIC_SEQ_CST);
		__atomic_add_fetch(&st->received, 1, __ATOMIC_SEQ_CST);
		st->per_stream[arg->idx]++;
	}
	return NULL;
}

/*
 * 4 threads on 2 KCM sockets of one mux (the second a clone) send
 * messages of 1 B .. 64 KiB over 2 psocks.  Each peer parses its stream:
 * every message is whole, nothing interleaves, and the union holds each
 * message exactly once.
 */
TEST_F_TIMEOUT(tx, stress_no_interleave, 60)
{
	static struct stress st;
	struct stress_arg args[2 + STRESS_SENDERS];
	pthread_t th[2 + STRESS_SENDERS];
	long long tx0 = kcm_stat("Psock", "TX-Msgs");
	int clone, i, bad;

	memset(&st, 0, sizeof(st));
	clone = kcm_clone(self->kcm);
	ASSERT_LE(0, clone) TH_LOG("SIOCKCMCLONE: %s", strerror(-clone));
	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));
	ASSERT_EQ(0, kcm_attach(clone, self->b[0], self->bpf));
	st.kcm[0] = st.kcm[1] = self->kcm;
	st.kcm[2] = st.kcm[3] = clone;
	st.peer[0] = self->a[1];
	st.peer[1] = self->b[1];
	st.flags = variant->end;

	for (i = 0; i < 2 + STRESS_SENDERS; i++) {
		args[i].st = &st;
		args[i].idx = i < 2 ? i : i - 2;
		ASSERT_EQ(0, pthread_create(&th[i], NULL,
					    i < 2 ? stress_reader : stress_sender,
					    &args[i]));
	}
	for (i = 0; i < 2 + STRESS_SENDERS; i++)
		pthread_join(th[i], NULL);
	for (i = 0; i < 2 + STRESS_SENDERS; i++)
		EXPECT_EQ('\0', st.error[i][0]) TH_LOG("%s", st.error[i]);
	for (i = 0, bad = 0; i < STRESS_TOTAL; i++) {
		if (st.seen[i] == 1)
			continue;
		if (!bad++)
			TH_LOG("message %#x seen %d times",
			       (i / STRESS_MSGS) << 16 | i % STRESS_MSGS, st.seen[i]);
	}
	EXPECT_EQ(0, bad) TH_LOG("%d messages not seen exactly once", bad);
	EXPECT_EQ(STRESS_TOTAL, st.per_stream[0] + st.per_stream[1]);
	TH_LOG("messages per psock: %d + %d", st.per_stream[0], st.per_stream[1]);
	EXPECT_EQ(STRESS_TOTAL, kcm_stat("Psock", "TX-Msgs") - tx0);
	EXPECT_TRUE(kcm_quiet(self->a[1], KCM_QUIET_MS));
	EXPECT_TRUE(kcm_quiet(self->b[1], KCM_QUIET_MS));
	close(clone);
}

/* --- where a message ends ------------------------------------------------ */

enum kcm_tx_ending { END_SEND, END_ZERO_LEN, END_WRITE };

/*
 * The KCM socket sends a message in three parts, the last one ending it
 * the way `how` says.  Between the parts a clone (same mux, same psock)
 * sends a complete message: it must come out first and whole, then the
 * three parts as one message.  Had a part gone out as a message of its
 * own, the clone's message would sit in the middle of it.
 */
static void kcm_tx_parts(struct __test_metadata *_metadata,
			 FIXTURE_DATA(tx) *self,
			 const FIXTURE_VARIANT(tx) *variant,
			 enum kcm_tx_ending how)
{
	static uint8_t m1[KCM_TEST_HDR_LEN + 3000], m2[KCM_TEST_HDR_LEN + 100];
	long long tx0 = kcm_stat("Psock", "TX-Msgs");
	ssize_t n1 = kcm_test_msg(m1, 1, 3000), n2 = kcm_test_msg(m2, 2, 100);
	ssize_t cut1 = 1000, cut2 = how == END_ZERO_LEN ? n1 : 2000;
	const char *why;
	int clone;

	clone = kcm_clone(self->kcm);
	ASSERT_LE(0, clone);
	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));

	ASSERT_EQ(cut1, send(self->kcm, m1, cut1, variant->more));
	ASSERT_EQ(n2, send(clone, m2, n2, variant->end));
	why = kcm_read_msg(self->a[1], 2, 100, KCM_WAIT_MS);
	ASSERT_EQ(NULL, why) TH_LOG("the clone's message: %s", why);

	ASSERT_EQ(cut2 - cut1, send(self->kcm, m1 + cut1, cut2 - cut1,
				    variant->more));
	/* Still an open message: nothing may have gone out of it. */
	ASSERT_TRUE(kcm_quiet(self->a[1], KCM_QUIET_MS));

	switch (how) {
	case END_SEND:
		ASSERT_EQ(n1 - cut2, send(self->kcm, m1 + cut2, n1 - cut2,
					  variant->end));
		break;
	case END_ZERO_LEN:
		ASSERT_EQ(0, send(self->kcm, m1, 0, variant->end));
		break;
	case END_WRITE:
		/* write() has no flags: it ends a message on both types. */
		ASSERT_EQ(n1 - cut2, write(self->kcm, m1 + cut2, n1 - cut2));
		break;
	}
	why = kcm_read_msg(self->a[1], 1, 3000, KCM_WAIT_MS);
	ASSERT_EQ(NULL, why) TH_LOG("the message in parts: %s", why);
	EXPECT_TRUE(kcm_quiet(self->a[1], KCM_QUIET_MS));
	EXPECT_EQ(2, kcm_stat("Psock", "TX-Msgs") - tx0);
	close(clone);
}

/* DGRAM: MSG_MORE parts; SEQPACKET: parts without MSG_EOR; one message. */
TEST_F(tx, parts_make_one_message)
{
	kcm_tx_parts(_metadata, self, variant, END_SEND);
}

/* A zero-length send that ends the message completes the open one. */
TEST_F(tx, zero_length_end_completes_message)
{
	kcm_tx_parts(_metadata, self, variant, END_ZERO_LEN);
}

/* write() ends an open message (SEQPACKET: as if MSG_EOR). */
TEST_F(tx, write_ends_open_message)
{
	kcm_tx_parts(_metadata, self, variant, END_WRITE);
}

/* write() of a whole message sends it, with no MSG_EOR on SEQPACKET. */
TEST_F(tx, write_sends_message)
{
	static uint8_t m[KCM_TEST_HDR_LEN + 5000];
	ssize_t n = kcm_test_msg(m, 7, 5000);
	const char *why;

	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));
	ASSERT_EQ(n, write(self->kcm, m, n));
	why = kcm_read_msg(self->a[1], 7, 5000, KCM_WAIT_MS);
	ASSERT_EQ(NULL, why) TH_LOG("%s", why);
}

/* A zero-length send returns 0 and puts nothing on the wire or in stats. */
TEST_F(tx, zero_length_send_sends_nothing)
{
	uint8_t m[KCM_TEST_HDR_LEN + 10];
	long long tx0 = kcm_stat("Psock", "TX-Msgs");
	ssize_t n = kcm_test_msg(m, 3, 10);
	const char *why;

	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));
	EXPECT_EQ(0, send(self->kcm, m, 0, variant->end));
	EXPECT_EQ(0, send(self->kcm, m, 0, variant->end | MSG_DONTWAIT));
	EXPECT_EQ(0, kcm_proc_value("kcm-0", "TX-Msgs"));
	EXPECT_EQ(0, kcm_stat("Psock", "TX-Msgs") - tx0);

	/* The next real message is the first and only thing on the wire. */
	ASSERT_EQ(n, send(self->kcm, m, n, variant->end));
	why = kcm_read_msg(self->a[1], 3, 10, KCM_WAIT_MS);
	ASSERT_EQ(NULL, why) TH_LOG("%s", why);
	EXPECT_TRUE(kcm_quiet(self->a[1], KCM_QUIET_MS));
	EXPECT_EQ(1, kcm_proc_value("kcm-0", "TX-Msgs"));
	EXPECT_EQ(1, kcm_stat("Psock", "TX-Msgs") - tx0);
}

/* sendmmsg() (MSG_BATCH on all but the last) sends every message. */
TEST_F(tx, sendmmsg_sends_all)
{
	enum { N = 16 };
	static uint8_t m[N][KCM_TEST_HDR_LEN + 2000];
	struct mmsghdr mm[N];
	struct iovec iov[N];
	long long tx0 = kcm_stat("Psock", "TX-Msgs");
	const char *why;
	int i;

	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));
	memset(mm, 0, sizeof(mm));
	for (i = 0; i < N; i++) {
		iov[i].iov_base = m[i];
		iov[i].iov_len = kcm_test_msg(m[i], 100 + i, 1 + i * 97);
		mm[i].msg_hdr.msg_iov = &iov[i];
		mm[i].msg_hdr.msg_iovlen = 1;
	}
	ASSERT_EQ(N, sendmmsg(self->kcm, mm, N, variant->end));
	for (i = 0; i < N; i++) {
		EXPECT_EQ(iov[i].iov_len, mm[i].msg_len);
		why = kcm_read_msg(self->a[1], 100 + i, 1 + i * 97,
				      KCM_WAIT_MS);
		ASSERT_EQ(NULL, why) TH_LOG("message %d: %s", i, why);
	}
	EXPECT_TRUE(kcm_quiet(self->a[1], KCM_QUIET_MS));
	EXPECT_EQ(N, kcm_stat("Psock", "TX-Msgs") - tx0);
}

/* With no psock, sends queue; attaching one sends them in order. */
TEST_F(tx, queued_until_psock_attached)
{
	enum { N = 5 };
	uint8_t m[KCM_TEST_HDR_LEN + 600];
	const char *why;
	ssize_t n;
	int i;

	for (i = 0; i < N; i++) {
		n = kcm_test_msg(m, 10 + i, 100 * (i + 1));
		ASSERT_EQ(n, send(self->kcm, m, n, variant->end | MSG_DONTWAIT));
	}
	EXPECT_EQ(N, kcm_proc_value("kcm-0", "Send-Q"));
	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));
	for (i = 0; i < N; i++) {
		why = kcm_read_msg(self->a[1], 10 + i, 100 * (i + 1),
				      KCM_WAIT_MS);
		ASSERT_EQ(NULL, why) TH_LOG("message %d: %s", i, why);
	}
	EXPECT_TRUE(kcm_quiet(self->a[1], KCM_QUIET_MS));
	EXPECT_EQ(0, kcm_proc_value("kcm-0", "Send-Q"));
}

/* --- blocking, timeouts, sizes ------------------------------------------- */

#define FILL_MSG	1000
#define FILL_MAX	5000

/*
 * Attaches a TCP socket with small buffers whose peer does not read and
 * sends FILL_MSG-byte messages until everything is full.  "Full" is when
 * a send blocks for a whole SO_SNDTIMEO of FILL_TIMEO_MS (a first EAGAIN
 * of MSG_DONTWAIT may only mean that the KCM queue outran TCP for a
 * moment, and the in-tree module's poll() reports POLLOUT throughout).
 * SO_SNDTIMEO is left at FILL_TIMEO_MS.  Returns how many messages were
 * accepted; pair gets the TCP pair.
 */
#define FILL_TIMEO_MS	300

static int kcm_tx_fill(struct __test_metadata *_metadata,
		       FIXTURE_DATA(tx) *self,
		       const FIXTURE_VARIANT(tx) *variant, int pair[2])
{
	struct timeval tv = { .tv_usec = FILL_TIMEO_MS * 1000 };
	uint8_t m[KCM_TEST_HDR_LEN + FILL_MSG];
	int sndbuf = 16384, sent, settle;
	ssize_t n, r = 0;

	ASSERT_EQ(0, kcm_tcp_pair_opts(AF_INET, pair, &kcm_tx_small));
	ASSERT_EQ(0, setsockopt(self->kcm, SOL_SOCKET, SO_SNDBUF, &sndbuf,
				sizeof(sndbuf)));
	ASSERT_EQ(0, setsockopt(self->kcm, SOL_SOCKET, SO_SNDTIMEO, &tv,
				sizeof(tv)));
	ASSERT_EQ(0, kcm_attach(self->kcm, pair[0], self->bpf));
	for (sent = 0; sent < FILL_MAX; sent++) {
		n = kcm_test_msg(m, sent, FILL_MSG);
		r = send(self->kcm, m, n, variant->end);
		if (r != n)
			break;
	}
	ASSERT_EQ(-1, r) TH_LOG("%d messages never filled the buffers", sent);
	ASSERT_EQ(EAGAIN, errno);
	/*
	 * On a slow (debug) kernel TCP may still be moving bytes and growing
	 * the peer's window: top up until a pause frees no room.
	 */
	for (settle = 0; settle < 50 && sent < FILL_MAX; settle++) {
		usleep(100 * 1000);
		n = kcm_test_msg(m, sent, FILL_MSG);
		r = send(self->kcm, m, n, variant->end | MSG_DONTWAIT);
		if (r != n)
			break;
		sent++;
	}
	ASSERT_EQ(-1, r) TH_LOG("buffers never stopped draining");
	ASSERT_EQ(EAGAIN, errno);
	ASSERT_LT(0, sent);
	return sent;
}

/* The peer reads everything: exactly `sent` whole messages, in order. */
static void kcm_tx_drain(struct __test_metadata *_metadata, int fd, int sent)
{
	const char *why;
	int i;

	for (i = 0; i < sent; i++) {
		why = kcm_read_msg(fd, i, FILL_MSG, KCM_WAIT_MS);
		ASSERT_EQ(NULL, why) TH_LOG("message %d of %d: %s", i, sent, why);
	}
	EXPECT_TRUE(kcm_quiet(fd, KCM_QUIET_MS));
}

/* Peer never reads: MSG_DONTWAIT gets EAGAIN and nothing is half sent. */
TEST_F(tx, dontwait_eagain_when_full)
{
	uint8_t m[KCM_TEST_HDR_LEN + FILL_MSG];
	long long t0, elapsed;
	int pair[2], sent;
	ssize_t r;

	sent = kcm_tx_fill(_metadata, self, variant, pair);
	/* At once, although SO_SNDTIMEO is set; for a small message too. */
	kcm_test_msg(m, 9999, 1);
	t0 = kcm_now_ms();
	r = send(self->kcm, m, KCM_TEST_HDR_LEN + 1, variant->end | MSG_DONTWAIT);
	elapsed = kcm_now_ms() - t0;
	EXPECT_EQ(-1, r);
	EXPECT_EQ(EAGAIN, errno);
	EXPECT_GT(FILL_TIMEO_MS * 2 / 3, elapsed);
	kcm_tx_drain(_metadata, pair[1], sent);
	close(pair[0]);
	close(pair[1]);
}

/* Peer never reads: a blocking send with SO_SNDTIMEO fails after it. */
TEST_F(tx, sndtimeo_eagain_after_timeout)
{
	struct timeval tv = { .tv_sec = 0, .tv_usec = 500000 };
	uint8_t m[KCM_TEST_HDR_LEN + FILL_MSG];
	long long t0, elapsed;
	int pair[2], sent;
	ssize_t r;

	sent = kcm_tx_fill(_metadata, self, variant, pair);
	ASSERT_EQ(0, setsockopt(self->kcm, SOL_SOCKET, SO_SNDTIMEO, &tv,
				sizeof(tv)));
	/*
	 * A zero-window probe can still open the peer's window by a few
	 * bytes (a slow kernel collapses its queue late): a send that finds
	 * room that way is one more message, and the next one must wait.
	 */
	do {
		kcm_test_msg(m, sent, FILL_MSG);
		t0 = kcm_now_ms();
		r = send(self->kcm, m, sizeof(m), variant->end);
		elapsed = kcm_now_ms() - t0;
	} while (r == sizeof(m) && ++sent < FILL_MAX);
	EXPECT_EQ(-1, r);
	EXPECT_EQ(EAGAIN, errno);
	EXPECT_LE(450, elapsed);
	EXPECT_GT(5000, elapsed);
	kcm_tx_drain(_metadata, pair[1], sent);
	close(pair[0]);
	close(pair[1]);
}

/*
 * A message larger than the KCM socket's SO_SNDBUF is accepted and sent
 * whole, as in-tree does (waiting for it to drain first would wait for
 * ever); the peer reads each message intact, in order.
 */
TEST_F(tx, larger_than_sndbuf_sent)
{
	static uint8_t m[KCM_TEST_HDR_LEN + 65536];
	int sndbuf = 16384, val;
	socklen_t len = sizeof(val);
	const char *why;
	ssize_t n;

	ASSERT_EQ(0, setsockopt(self->kcm, SOL_SOCKET, SO_SNDBUF, &sndbuf,
				sizeof(sndbuf)));
	ASSERT_EQ(0, getsockopt(self->kcm, SOL_SOCKET, SO_SNDBUF, &val, &len));
	ASSERT_EQ(2 * sndbuf, val);
	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));

	n = kcm_test_msg(m, 1, val);		/* 8 bytes over the limit */
	ASSERT_EQ(n, send(self->kcm, m, n, variant->end));
	why = kcm_read_msg(self->a[1], 1, val, KCM_WAIT_MS);
	ASSERT_EQ(NULL, why) TH_LOG("%s", why);

	n = kcm_test_msg(m, 2, 65536);		/* four times the limit */
	ASSERT_EQ(n, send(self->kcm, m, n, variant->end));
	why = kcm_read_msg(self->a[1], 2, 65536, KCM_WAIT_MS);
	ASSERT_EQ(NULL, why) TH_LOG("%s", why);
	EXPECT_TRUE(kcm_quiet(self->a[1], KCM_QUIET_MS));
}

/*
 * Messages of sizes on both sides of each point where the send path
 * changes how it holds them (page fragments of the task's page_frag, up
 * to 32 KiB each, a new skb every MAX_SKB_FRAGS fragments: 544 KiB; and
 * 1 KiB, up to which messages were once kept linear), sent whole and in
 * random parts; the peer checks every byte.
 */
TEST_F(tx, message_sizes)
{
	static const uint32_t sizes[] = {
		1, 100, 1016, 1017, 4088, 4089, 32760, 32761, 65536,
		557048, 557049, KCM_TEST_MAX_PAYLOAD,
	};
	static uint8_t m[KCM_TEST_HDR_LEN + KCM_TEST_MAX_PAYLOAD];
	unsigned int seed = 20261206, i, whole;
	int sndbuf = 4 << 20;
	const char *why;

	/* In-tree KCM waits for room before each part, even of one message. */
	ASSERT_EQ(0, setsockopt(self->kcm, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf,
				sizeof(sndbuf)));
	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		for (whole = 0; whole < 2; whole++) {
			uint32_t hdr = 2 * i + whole + 1;
			ssize_t n = kcm_test_msg(m, hdr, sizes[i]), off = 0;

			while (off < n) {
				ssize_t part = whole ? n : 1 + rand_r(&seed) % 70000;
				int flags = variant->more;

				if (part >= n - off) {
					part = n - off;
					flags = variant->end;
				}
				ASSERT_EQ(part, send(self->kcm, m + off, part, flags))
					TH_LOG("size %u, part at %zd: %s", sizes[i],
					       off, strerror(errno));
				off += part;
			}
			why = kcm_read_msg(self->a[1], hdr, sizes[i], KCM_WAIT_MS);
			ASSERT_EQ(NULL, why) TH_LOG("size %u%s: %s", sizes[i],
						    whole ? "" : " in parts", why);
		}
	}
	EXPECT_TRUE(kcm_quiet(self->a[1], KCM_QUIET_MS));
}

/*
 * A full send page that TCP still holds goes to the mux, and a sender
 * takes it back once TCP lets go.  Round 0: the peer reads nothing until
 * the socket and a clone have sent 12 messages of 24 KiB, more than the
 * pages a mux keeps, so every page holds unread bytes while the later
 * messages are written: none may land on them.  Round 1 starts once the
 * peer has read everything and TCP has nothing unacknowledged, so its
 * messages go into pages taken back.  The peer checks every byte.
 */
#define TX_REUSE_MSGS	12
#define TX_REUSE_LEN	(24 * 1024)

TEST_F(tx, send_pages_reused_only_when_free)
{
	static uint8_t m[KCM_TEST_HDR_LEN + TX_REUSE_LEN];
	int big = 4 << 20, clone, round, i;

	ASSERT_EQ(0, setsockopt(self->kcm, SOL_SOCKET, SO_SNDBUFFORCE, &big,
				sizeof(big)));
	ASSERT_EQ(0, setsockopt(self->a[0], SOL_SOCKET, SO_SNDBUFFORCE, &big,
				sizeof(big)));
	ASSERT_EQ(0, setsockopt(self->a[1], SOL_SOCKET, SO_RCVBUFFORCE, &big,
				sizeof(big)));
	clone = kcm_clone(self->kcm);
	ASSERT_LE(0, clone) TH_LOG("SIOCKCMCLONE: %s", strerror(-clone));
	ASSERT_EQ(0, setsockopt(clone, SOL_SOCKET, SO_SNDBUFFORCE, &big,
				sizeof(big)));
	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));

	for (round = 0; round < 2; round++) {
		bool seen[TX_REUSE_MSGS] = { false };

		for (i = 0; i < TX_REUSE_MSGS; i++) {
			uint32_t hdr = round * TX_REUSE_MSGS + i;
			ssize_t n = kcm_test_msg(m, hdr, TX_REUSE_LEN);

			ASSERT_EQ(n, send(i % 2 ? clone : self->kcm, m, n,
					  variant->end | MSG_DONTWAIT))
				TH_LOG("round %d, message %d: %s", round, i,
				       strerror(errno));
		}
		/* The sockets take turns on the psock: match by header. */
		for (i = 0; i < TX_REUSE_MSGS; i++) {
			uint32_t be, hdr;
			ssize_t n;

			n = kcm_read_exact(self->a[1], m, KCM_TEST_HDR_LEN,
					   KCM_WAIT_MS);
			ASSERT_EQ(KCM_TEST_HDR_LEN, n) TH_LOG("round %d: %d of %d messages",
							      round, i, TX_REUSE_MSGS);
			memcpy(&be, m + 4, 4);
			hdr = ntohl(be) - round * TX_REUSE_MSGS;
			ASSERT_GT((uint32_t)TX_REUSE_MSGS, hdr) TH_LOG("round %d: header %#x",
							     round, ntohl(be));
			ASSERT_FALSE(seen[hdr]);
			seen[hdr] = true;
			n = kcm_read_exact(self->a[1], m + KCM_TEST_HDR_LEN,
					   TX_REUSE_LEN, KCM_WAIT_MS);
			ASSERT_EQ(TX_REUSE_LEN, n);
			EXPECT_TRUE(kcm_test_msg_ok(m, KCM_TEST_HDR_LEN + n,
						    ntohl(be), TX_REUSE_LEN))
				TH_LOG("round %d, message %u: payload corrupted",
				       round, hdr);
		}
		/* Everything acknowledged: TCP has let go of every page. */
		ASSERT_EQ(0, kcm_wait_outq_empty(self->a[0], KCM_WAIT_MS));
	}
	EXPECT_TRUE(kcm_quiet(self->a[1], KCM_QUIET_MS));
	close(clone);
}

/* --- memory cgroup ----------------------------------------------------- */

#define TX_CG_ROOT	"/sys/fs/cgroup"

/*
 * Puts the calling process into a new memory cgroup; 0, or a reason to
 * skip in why.  The test process is a child of the harness: it exits at
 * the end of the test, and the group is removed then by tx_cg_leave().
 */
static int tx_cg_enter(char *dir, size_t size, const char **why)
{
	char path[128], pid[16];

	if (mount("none", TX_CG_ROOT, "cgroup2", 0, NULL) && errno != EBUSY) {
		*why = "cannot mount cgroup2";
		return -1;
	}
	if (kcm_write_file(TX_CG_ROOT "/cgroup.subtree_control", "+memory")) {
		*why = "no memory controller in cgroup2";
		return -1;
	}
	snprintf(dir, size, TX_CG_ROOT "/kcm_tx.%d", getpid());
	if (mkdir(dir, 0755)) {
		*why = "cannot create a cgroup";
		return -1;
	}
	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	snprintf(pid, sizeof(pid), "%d", getpid());
	if (kcm_write_file(path, pid)) {
		rmdir(dir);
		*why = "cannot join the new cgroup";
		return -1;
	}
	return 0;
}

static void tx_cg_leave(const char *dir)
{
	char pid[16];

	snprintf(pid, sizeof(pid), "%d", getpid());
	kcm_write_file(TX_CG_ROOT "/cgroup.procs", pid);
	rmdir(dir);
}

/*
 * A message being built (MSG_MORE / no MSG_EOR yet) holds its bytes in
 * the kernel for as long as the sender likes: they are charged to the
 * sender's memory cgroup, and given back when the socket closes.
 */
TEST_F(tx, building_message_charged_to_memcg)
{
	static uint8_t m[1 << 20];
	long long before, during, after;
	char dir[96], path[128];
	const char *why = NULL;
	int i, k;

	if (kcmux_is_reference())
		SKIP(return, "in-tree kcm copies into pages not charged to the sender's memory cgroup: kcmux behaviour");
	if (tx_cg_enter(dir, sizeof(dir), &why))
		SKIP(return, "%s", why);
	snprintf(path, sizeof(path), "%s/memory.current", dir);
	memset(m, 0x5a, sizeof(m));
	k = kcm_socket(variant->type);
	ASSERT_LE(0, k);
	before = kcm_read_number(path);
	for (i = 0; i < 16; i++)
		ASSERT_EQ((ssize_t)sizeof(m),
			  send(k, m, sizeof(m), variant->more));
	during = kcm_read_number(path);
	close(k);
	for (i = 0; i < 100; i++) {
		after = kcm_read_number(path);
		if (after - before < (4 << 20))
			break;
		kcm_msleep(10);
	}
	tx_cg_leave(dir);
	TH_LOG("memory.current: %lld before, %lld with 16 MiB pending, %lld after close",
	       before, during, after);
	EXPECT_LE(before + (15LL << 20), during);
	EXPECT_GT(before + (4LL << 20), after);
}

/* --- failing psocks, SIGPIPE --------------------------------------------- */

#define BIG_MSG		100000

/*
 * Sends BIG_MSG (seq 1) so that it sticks half sent on a new psock A
 * (small buffers, peer not reading), attaches psock B (self->b), then
 * A's peer resets the connection.
 */
static void kcm_tx_stuck_then_reset(struct __test_metadata *_metadata,
				    FIXTURE_DATA(tx) *self,
				    const FIXTURE_VARIANT(tx) *variant,
				    int pair[2])
{
	static uint8_t m[KCM_TEST_HDR_LEN + BIG_MSG];
	struct pollfd pfd;
	ssize_t n;

	ASSERT_EQ(0, kcm_tcp_pair_opts(AF_INET, pair, &kcm_tx_small));
	ASSERT_EQ(0, kcm_attach(self->kcm, pair[0], self->bpf));
	n = kcm_test_msg(m, 1, BIG_MSG);
	ASSERT_EQ(n, send(self->kcm, m, n, variant->end | MSG_NOSIGNAL));
	/* Part of it is out: A carries it, mid-message. */
	pfd = (struct pollfd){ .fd = pair[1], .events = POLLIN };
	ASSERT_EQ(1, poll(&pfd, 1, KCM_WAIT_MS));
	ASSERT_EQ(0, kcm_attach(self->kcm, self->b[0], self->bpf));
	ASSERT_EQ(0, kcm_tcp_reset(&pair[1], pair[0]));
}

/*
 * The message stuck on psock A when A's peer resets the connection goes
 * out again, whole, on psock B, and TX-Retries counts it.  The test then
 * sends two more messages with sendmmsg(MSG_NOSIGNAL): that makes the
 * in-tree module, too, run its transmit path at once (see the
 * _unprompted test for why it may need that).  Those sends succeed, so
 * no SIGPIPE may be raised.
 */
TEST_F(tx, psock_reset_mid_message_retried)
{
	long long retries0 = kcm_stat("MUX", "TX-Retries");
	long long aborts0 = kcm_stat("Psock", "TX-Aborts");
	uint8_t m[2][KCM_TEST_HDR_LEN + 10];
	struct iovec iov[2];
	struct mmsghdr mm[2];
	int pair[2], err, i;
	socklen_t len = sizeof(err);
	const char *why;

	ASSERT_EQ(0, kcm_sigpipe_catch());
	kcm_tx_stuck_then_reset(_metadata, self, variant, pair);

	memset(mm, 0, sizeof(mm));
	for (i = 0; i < 2; i++) {
		iov[i].iov_base = m[i];
		iov[i].iov_len = kcm_test_msg(m[i], 2 + i, 10);
		mm[i].msg_hdr.msg_iov = &iov[i];
		mm[i].msg_hdr.msg_iovlen = 1;
	}
	EXPECT_EQ(2, sendmmsg(self->kcm, mm, 2, variant->end | MSG_NOSIGNAL));

	why = kcm_read_msg(self->b[1], 1, BIG_MSG, KCM_WAIT_MS);
	ASSERT_EQ(NULL, why) TH_LOG("retried message on psock B: %s", why);
	for (i = 0; i < 2; i++) {
		why = kcm_read_msg(self->b[1], 2 + i, 10, KCM_WAIT_MS);
		ASSERT_EQ(NULL, why) TH_LOG("message %d on psock B: %s", 2 + i, why);
	}
	EXPECT_TRUE(kcm_quiet(self->b[1], KCM_QUIET_MS));
	ASSERT_EQ(0, getsockopt(pair[0], SOL_SOCKET, SO_ERROR, &err, &len));
	EXPECT_NE(0, err);
	EXPECT_LE(1, kcm_stat("Psock", "TX-Aborts") - aborts0);
	close(pair[0]);

	if (kcmux_is_reference())
		SKIP(return, "in-tree kcm_stats never sums tx_retries (TX-Retries stays 0); in-tree raised %d SIGPIPE(s) on sends that succeeded",
		     kcm_sigpipes());
	EXPECT_LE(1, kcm_stat("MUX", "TX-Retries") - retries0);
	EXPECT_EQ(0, kcm_sigpipes());
}

/*
 * The same, with the application doing nothing after the reset: the
 * retry must happen on its own (an application waiting for a reply to
 * the message would otherwise wait forever).
 */
TEST_F(tx, psock_reset_mid_message_retried_unprompted)
{
	const char *why;
	int pair[2];

	if (kcmux_is_reference())
		SKIP(return, "in-tree kcm retries only if its tx work happens to run after the reset (e.g. an ACK raced the RST); else the message waits for a later send");

	ASSERT_EQ(0, kcm_sigpipe_catch());
	kcm_tx_stuck_then_reset(_metadata, self, variant, pair);
	why = kcm_read_msg(self->b[1], 1, BIG_MSG, KCM_WAIT_MS);
	ASSERT_EQ(NULL, why) TH_LOG("retried message on psock B: %s", why);
	EXPECT_TRUE(kcm_quiet(self->b[1], KCM_QUIET_MS));
	EXPECT_EQ(0, kcm_sigpipes());
	close(pair[0]);
}

/*
 * After the reset, a plain send() with MSG_NOSIGNAL: it succeeds (the
 * message is queued), so it must not raise SIGPIPE even if it is the
 * one that runs into the failed psock; both messages then arrive whole
 * and in order on psock B.
 */
TEST_F(tx, send_after_psock_reset_no_sigpipe)
{
	uint8_t m[KCM_TEST_HDR_LEN + 10];
	const char *why;
	int pair[2];
	ssize_t n;

	if (kcmux_is_reference())
		SKIP(return, "in-tree kcm does not run its transmit path on a send while a message is queued: the stuck message waits for tx work (see the _unprompted test)");

	ASSERT_EQ(0, kcm_sigpipe_catch());
	kcm_tx_stuck_then_reset(_metadata, self, variant, pair);
	n = kcm_test_msg(m, 2, 10);
	EXPECT_EQ(n, send(self->kcm, m, n, variant->end | MSG_NOSIGNAL));
	EXPECT_EQ(0, kcm_sigpipes());

	why = kcm_read_msg(self->b[1], 1, BIG_MSG, KCM_WAIT_MS);
	ASSERT_EQ(NULL, why) TH_LOG("first message: %s", why);
	why = kcm_read_msg(self->b[1], 2, 10, KCM_WAIT_MS);
	ASSERT_EQ(NULL, why) TH_LOG("second message: %s", why);
	EXPECT_EQ(0, kcm_sigpipes());
	close(pair[0]);
}

/*
 * An idle psock's peer resets the connection; then the application
 * sends.  The message goes out whole on the other psock and send()
 * returns its length, so there is no SIGPIPE, with MSG_NOSIGNAL or not.
 *
 * (A KCM send itself never fails with EPIPE in practice: the in-tree
 * module returns it only when the KCM socket's sk_err is set, which only
 * a failed internal write sets, and that happens only on paths that
 * WARN; KCM has no shutdown().  So SIGPIPE is tested where it really
 * shows up: raised by TCP underneath a send that succeeded.)
 */
TEST_F(tx, idle_psock_reset_no_sigpipe)
{
	uint8_t m[KCM_TEST_HDR_LEN + 500];
	const char *why;
	ssize_t n;

	ASSERT_EQ(0, kcm_sigpipe_catch());
	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));
	ASSERT_EQ(0, kcm_attach(self->kcm, self->b[0], self->bpf));
	ASSERT_EQ(0, kcm_tcp_reset(&self->a[1], self->a[0]));

	n = kcm_test_msg(m, 1, 500);
	EXPECT_EQ(n, send(self->kcm, m, n, variant->end | MSG_NOSIGNAL));
	n = kcm_test_msg(m, 2, 500);
	EXPECT_EQ(n, send(self->kcm, m, n, variant->end));
	why = kcm_read_msg(self->b[1], 1, 500, KCM_WAIT_MS);
	ASSERT_EQ(NULL, why) TH_LOG("first message: %s", why);
	why = kcm_read_msg(self->b[1], 2, 500, KCM_WAIT_MS);
	ASSERT_EQ(NULL, why) TH_LOG("second message: %s", why);

	if (kcmux_is_reference() && kcm_sigpipes())
		SKIP(return, "in-tree kcm raised %d SIGPIPE(s): it sends on the reset psock from the caller's context without MSG_NOSIGNAL, then retries",
		     kcm_sigpipes());
	EXPECT_EQ(0, kcm_sigpipes());
}

TEST_HARNESS_MAIN
