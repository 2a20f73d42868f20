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
#include <netinet/tcp.h>
#include <sys/uio.h>

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

#define KCM_TX_WAIT_MS		5000	/* bound of every wait for data */
#define KCM_TX_QUIET_MS		200	/* "nothing more arrives" */

/* --- helpers (candidates for lib/kcm_test.h) ---------------------------- */

static long long kcm_tx_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* A private network namespace with loopback up.  0 or -errno. */
static int kcm_tx_netns(void)
{
	struct ifreq ifr = {};
	int fd, err = 0;

	if (unshare(CLONE_NEWNET))
		return -errno;
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr))
		err = -errno;
	ifr.ifr_flags |= IFF_UP;
	if (!err && ioctl(fd, SIOCSIFFLAGS, &ifr))
		err = -errno;
	close(fd);
	return err;
}

/*
 * TCP pair over 127.0.0.1 like kcm_tcp_pair(), with optional small
 * buffers: sndbuf on fds[0] (the end KCM sends on), rcvbuf on fds[1]
 * (set on the listener before the handshake, so the window is small
 * from the start).  TCP_NODELAY on both.  0 or -errno.
 */
static int kcm_tx_tcp_pair(int fds[2], int sndbuf, int rcvbuf)
{
	struct sockaddr_in sin = {
		.sin_family = AF_INET,
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	socklen_t len = sizeof(sin);
	int lfd, cfd = -1, afd = -1, one = 1, err;

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		return -errno;
	if (rcvbuf && setsockopt(lfd, SOL_SOCKET, SO_RCVBUF, &rcvbuf,
				 sizeof(rcvbuf)))
		goto fail;
	if (bind(lfd, (struct sockaddr *)&sin, len) || listen(lfd, 1) ||
	    getsockname(lfd, (struct sockaddr *)&sin, &len))
		goto fail;
	cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (cfd < 0)
		goto fail;
	if (sndbuf && setsockopt(cfd, SOL_SOCKET, SO_SNDBUF, &sndbuf,
				 sizeof(sndbuf)))
		goto fail;
	if (connect(cfd, (struct sockaddr *)&sin, len))
		goto fail;
	afd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (afd < 0)
		goto fail;
	if (setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) ||
	    setsockopt(afd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)))
		goto fail;
	close(lfd);
	fds[0] = cfd;
	fds[1] = afd;
	return 0;
fail:
	err = -errno;
	if (afd >= 0)
		close(afd);
	if (cfd >= 0)
		close(cfd);
	close(lfd);
	return err;
}

static int kcm_tx_clone(int kcmfd)
{
	struct kcm_clone c = { .fd = -1 };

	return ioctl(kcmfd, SIOCKCMCLONE, &c) ? -errno : c.fd;
}

/* Reads exactly n bytes, waiting at most timeout_ms in all. */
static ssize_t kcm_tx_read_exact(int fd, void *buf, size_t n, int timeout_ms)
{
	long long deadline = kcm_tx_now_ms() + timeout_ms;
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	size_t got = 0;

	while (got < n) {
		long long left = deadline - kcm_tx_now_ms();
		ssize_t r;

		if (left <= 0 || poll(&pfd, 1, left) <= 0)
			break;
		r = recv(fd, (char *)buf + got, n - got, MSG_DONTWAIT);
		if (r < 0 && errno == EAGAIN)
			continue;
		if (r <= 0)
			break;
		got += r;
	}
	return got;
}

/* True if no byte arrives on fd within ms. */
static bool kcm_tx_quiet(int fd, int ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	return poll(&pfd, 1, ms) == 0;
}

static uint8_t kcm_tx_pattern(uint32_t seq, uint32_t i)
{
	return (uint8_t)(seq * 131 + i * 7 + (i >> 8));
}

/* A message with header word seq and len payload bytes; returns its size. */
static ssize_t kcm_tx_msg(void *buf, uint32_t seq, uint32_t len)
{
	uint32_t be_len = htonl(len), be_seq = htonl(seq);
	uint8_t *p = buf;
	uint32_t i;

	memcpy(p, &be_len, 4);
	memcpy(p + 4, &be_seq, 4);
	for (i = 0; i < len; i++)
		p[KCM_TEST_HDR_LEN + i] = kcm_tx_pattern(seq, i);
	return KCM_TEST_HDR_LEN + len;
}

/*
 * Reads one message from the stream fd and checks it is the one
 * kcm_tx_msg(seq, len) built.  Returns 0, or a short reason.
 */
static const char *kcm_tx_read_msg(int fd, uint32_t seq, uint32_t len,
				   int timeout_ms)
{
	static uint8_t buf[KCM_TEST_HDR_LEN + 300000];
	uint32_t be_len, be_seq, i;

	if (len > sizeof(buf) - KCM_TEST_HDR_LEN)
		return "test bug: message too long";
	if (kcm_tx_read_exact(fd, buf, KCM_TEST_HDR_LEN, timeout_ms) !=
	    KCM_TEST_HDR_LEN)
		return "no message header within the timeout";
	memcpy(&be_len, buf, 4);
	memcpy(&be_seq, buf + 4, 4);
	if (ntohl(be_len) != len)
		return "wrong length in the header";
	if (ntohl(be_seq) != seq)
		return "wrong sequence number in the header";
	if (kcm_tx_read_exact(fd, buf + KCM_TEST_HDR_LEN, len, timeout_ms) !=
	    (ssize_t)len)
		return "payload incomplete within the timeout";
	for (i = 0; i < len; i++)
		if (buf[KCM_TEST_HDR_LEN + i] != kcm_tx_pattern(seq, i))
			return "payload corrupted";
	return NULL;
}

static char *kcm_tx_slurp(const char *path)
{
	static char buf[16384];
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		return NULL;
	buf[n] = '\0';
	return buf;
}

/* Splits line (modified) into at most max whitespace separated words. */
static int kcm_tx_words(char *line, char **w, int max)
{
	int n = 0;
	char *save = NULL, *t;

	for (t = strtok_r(line, " \t", &save); t && n < max;
	     t = strtok_r(NULL, " \t", &save))
		w[n++] = t;
	return n;
}

/*
 * A total from /proc/net/kcm_stats: section is "MUX" or "Psock" (the
 * first word of a header line), col a column name of that header.  The
 * value line under a header has no first word.  -1 if not found.
 */
static long long kcm_tx_stat(const char *section, const char *col)
{
	char *text = kcm_tx_slurp("/proc/net/kcm_stats");
	char *line, *next, *hw[32], *vw[32];
	int nh, nv, i;

	for (line = text; line && *line; line = next) {
		next = strchr(line, '\n');
		if (!next)
			break;
		*next++ = '\0';
		nh = kcm_tx_words(line, hw, 32);
		if (nh < 2 || strcmp(hw[0], section))
			continue;
		line = next;
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		nv = kcm_tx_words(line, vw, 32);
		for (i = 1; i < nh; i++)
			if (!strcmp(hw[i], col) && i - 1 < nv)
				return atoll(vw[i - 1]);
		return -1;
	}
	return -1;
}

/*
 * Column col of the line of object obj ("mux", "kcm-0", "psock-1") in
 * /proc/net/kcm (the first mux that has it).  -1 if not found.
 */
static long long kcm_tx_proc(const char *obj, const char *col)
{
	char *text = kcm_tx_slurp("/proc/net/kcm");
	char *line, *next, *w[32];
	int idx = -1, n, i;

	for (line = text; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		n = kcm_tx_words(line, w, 32);
		if (n < 2)
			continue;
		if (!strcmp(w[0], "Object")) {
			for (i = 1; i < n; i++)
				if (!strcmp(w[i], col))
					idx = i;
			continue;
		}
		if (idx > 0 && !strcmp(w[0], obj) && idx < n)
			return atoll(w[idx]);
	}
	return -1;
}

static void kcm_tx_close(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

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

	ASSERT_EQ(0, kcm_tx_netns());
	self->bpf = kcm_bpf_load_parser();
	ASSERT_LE(0, self->bpf);
	self->kcm = kcm_socket(variant->type);
	ASSERT_LE(0, self->kcm) TH_LOG("socket(AF_KCM): %s", strerror(-self->kcm));
	ASSERT_EQ(0, kcm_tx_tcp_pair(self->a, 0, 0));
	ASSERT_EQ(0, kcm_tx_tcp_pair(self->b, 0, 0));
}

FIXTURE_TEARDOWN(tx)
{
	kcm_tx_close(&self->kcm);
	kcm_tx_close(&self->a[0]);
	kcm_tx_close(&self->a[1]);
	kcm_tx_close(&self->b[0]);
	kcm_tx_close(&self->b[1]);
	kcm_tx_close(&self->bpf);
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
			data[i] = kcm_tx_pattern(seq, i);
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
	long long deadline = kcm_tx_now_ms() + 20000;
	static __thread uint8_t buf[4 + STRESS_MAX_DATA];
	uint32_t be, len, seq, sum;
	int s, n;

	for (s = 0; s < STRESS_SENDERS; s++)
		last[s] = -1;

	while (__atomic_load_n(&st->received, __ATOMIC_SEQ_CST) < STRESS_TOTAL) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		uint8_t hdr[KCM_TEST_HDR_LEN];

		if (kcm_tx_now_ms() > deadline) {
			snprintf(err, 160, "stream %d: timeout, %d of %d messages seen",
				 arg->idx, st->received, STRESS_TOTAL);
			return NULL;
		}
		if (poll(&pfd, 1, 50) <= 0)
			continue;
		if (kcm_tx_read_exact(fd, hdr, sizeof(hdr), KCM_TX_WAIT_MS) !=
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
		if (kcm_tx_read_exact(fd, buf, len, KCM_TX_WAIT_MS) != len) {
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
	long long tx0 = kcm_tx_stat("Psock", "TX-Msgs");
	int clone, i, bad;

	memset(&st, 0, sizeof(st));
	clone = kcm_tx_clone(self->kcm);
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
	EXPECT_EQ(STRESS_TOTAL, kcm_tx_stat("Psock", "TX-Msgs") - tx0);
	EXPECT_TRUE(kcm_tx_quiet(self->a[1], KCM_TX_QUIET_MS));
	EXPECT_TRUE(kcm_tx_quiet(self->b[1], KCM_TX_QUIET_MS));
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
	long long tx0 = kcm_tx_stat("Psock", "TX-Msgs");
	ssize_t n1 = kcm_tx_msg(m1, 1, 3000), n2 = kcm_tx_msg(m2, 2, 100);
	ssize_t cut1 = 1000, cut2 = how == END_ZERO_LEN ? n1 : 2000;
	const char *why;
	int clone;

	clone = kcm_tx_clone(self->kcm);
	ASSERT_LE(0, clone);
	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));

	ASSERT_EQ(cut1, send(self->kcm, m1, cut1, variant->more));
	ASSERT_EQ(n2, send(clone, m2, n2, variant->end));
	why = kcm_tx_read_msg(self->a[1], 2, 100, KCM_TX_WAIT_MS);
	ASSERT_EQ(NULL, why) TH_LOG("the clone's message: %s", why);

	ASSERT_EQ(cut2 - cut1, send(self->kcm, m1 + cut1, cut2 - cut1,
				    variant->more));
	/* Still an open message: nothing may have gone out of it. */
	ASSERT_TRUE(kcm_tx_quiet(self->a[1], KCM_TX_QUIET_MS));

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
	why = kcm_tx_read_msg(self->a[1], 1, 3000, KCM_TX_WAIT_MS);
	ASSERT_EQ(NULL, why) TH_LOG("the message in parts: %s", why);
	EXPECT_TRUE(kcm_tx_quiet(self->a[1], KCM_TX_QUIET_MS));
	EXPECT_EQ(2, kcm_tx_stat("Psock", "TX-Msgs") - tx0);
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
	ssize_t n = kcm_tx_msg(m, 7, 5000);
	const char *why;

	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));
	ASSERT_EQ(n, write(self->kcm, m, n));
	why = kcm_tx_read_msg(self->a[1], 7, 5000, KCM_TX_WAIT_MS);
	ASSERT_EQ(NULL, why) TH_LOG("%s", why);
}

/* A zero-length send returns 0 and puts nothing on the wire or in stats. */
TEST_F(tx, zero_length_send_sends_nothing)
{
	uint8_t m[KCM_TEST_HDR_LEN + 10];
	long long tx0 = kcm_tx_stat("Psock", "TX-Msgs");
	ssize_t n = kcm_tx_msg(m, 3, 10);
	const char *why;

	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));
	EXPECT_EQ(0, send(self->kcm, m, 0, variant->end));
	EXPECT_EQ(0, send(self->kcm, m, 0, variant->end | MSG_DONTWAIT));
	EXPECT_EQ(0, kcm_tx_proc("kcm-0", "TX-Msgs"));
	EXPECT_EQ(0, kcm_tx_stat("Psock", "TX-Msgs") - tx0);

	/* The next real message is the first and only thing on the wire. */
	ASSERT_EQ(n, send(self->kcm, m, n, variant->end));
	why = kcm_tx_read_msg(self->a[1], 3, 10, KCM_TX_WAIT_MS);
	ASSERT_EQ(NULL, why) TH_LOG("%s", why);
	EXPECT_TRUE(kcm_tx_quiet(self->a[1], KCM_TX_QUIET_MS));
	EXPECT_EQ(1, kcm_tx_proc("kcm-0", "TX-Msgs"));
	EXPECT_EQ(1, kcm_tx_stat("Psock", "TX-Msgs") - tx0);
}

/* sendmmsg() (MSG_BATCH on all but the last) sends every message. */
TEST_F(tx, sendmmsg_sends_all)
{
	enum { N = 16 };
	static uint8_t m[N][KCM_TEST_HDR_LEN + 2000];
	struct mmsghdr mm[N];
	struct iovec iov[N];
	long long tx0 = kcm_tx_stat("Psock", "TX-Msgs");
	const char *why;
	int i;

	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));
	memset(mm, 0, sizeof(mm));
	for (i = 0; i < N; i++) {
		iov[i].iov_base = m[i];
		iov[i].iov_len = kcm_tx_msg(m[i], 100 + i, 1 + i * 97);
		mm[i].msg_hdr.msg_iov = &iov[i];
		mm[i].msg_hdr.msg_iovlen = 1;
	}
	ASSERT_EQ(N, sendmmsg(self->kcm, mm, N, variant->end));
	for (i = 0; i < N; i++) {
		EXPECT_EQ(iov[i].iov_len, mm[i].msg_len);
		why = kcm_tx_read_msg(self->a[1], 100 + i, 1 + i * 97,
				      KCM_TX_WAIT_MS);
		ASSERT_EQ(NULL, why) TH_LOG("message %d: %s", i, why);
	}
	EXPECT_TRUE(kcm_tx_quiet(self->a[1], KCM_TX_QUIET_MS));
	EXPECT_EQ(N, kcm_tx_stat("Psock", "TX-Msgs") - tx0);
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
		n = kcm_tx_msg(m, 10 + i, 100 * (i + 1));
		ASSERT_EQ(n, send(self->kcm, m, n, variant->end | MSG_DONTWAIT));
	}
	EXPECT_EQ(N, kcm_tx_proc("kcm-0", "Send-Q"));
	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));
	for (i = 0; i < N; i++) {
		why = kcm_tx_read_msg(self->a[1], 10 + i, 100 * (i + 1),
				      KCM_TX_WAIT_MS);
		ASSERT_EQ(NULL, why) TH_LOG("message %d: %s", i, why);
	}
	EXPECT_TRUE(kcm_tx_quiet(self->a[1], KCM_TX_QUIET_MS));
	EXPECT_EQ(0, kcm_tx_proc("kcm-0", "Send-Q"));
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
	int sndbuf = 16384, sent;
	ssize_t n, r = 0;

	ASSERT_EQ(0, kcm_tx_tcp_pair(pair, 4096, 4096));
	ASSERT_EQ(0, setsockopt(self->kcm, SOL_SOCKET, SO_SNDBUF, &sndbuf,
				sizeof(sndbuf)));
	ASSERT_EQ(0, setsockopt(self->kcm, SOL_SOCKET, SO_SNDTIMEO, &tv,
				sizeof(tv)));
	ASSERT_EQ(0, kcm_attach(self->kcm, pair[0], self->bpf));
	for (sent = 0; sent < FILL_MAX; sent++) {
		n = kcm_tx_msg(m, sent, FILL_MSG);
		r = send(self->kcm, m, n, variant->end);
		if (r != n)
			break;
	}
	ASSERT_EQ(-1, r) TH_LOG("%d messages never filled the buffers", sent);
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
		why = kcm_tx_read_msg(fd, i, FILL_MSG, KCM_TX_WAIT_MS);
		ASSERT_EQ(NULL, why) TH_LOG("message %d of %d: %s", i, sent, why);
	}
	EXPECT_TRUE(kcm_tx_quiet(fd, KCM_TX_QUIET_MS));
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
	kcm_tx_msg(m, 9999, 1);
	t0 = kcm_tx_now_ms();
	r = send(self->kcm, m, KCM_TEST_HDR_LEN + 1, variant->end | MSG_DONTWAIT);
	elapsed = kcm_tx_now_ms() - t0;
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
	kcm_tx_msg(m, sent, FILL_MSG);
	t0 = kcm_tx_now_ms();
	r = send(self->kcm, m, sizeof(m), variant->end);
	elapsed = kcm_tx_now_ms() - t0;
	EXPECT_EQ(-1, r);
	EXPECT_EQ(EAGAIN, errno);
	EXPECT_LE(450, elapsed);
	EXPECT_GT(5000, elapsed);
	kcm_tx_drain(_metadata, pair[1], sent);
	close(pair[0]);
	close(pair[1]);
}

/*
 * A message larger than the KCM socket's SO_SNDBUF can never be queued:
 * kcmux fails it with EMSGSIZE and sends nothing of it.
 */
TEST_F(tx, larger_than_sndbuf_emsgsize)
{
	static uint8_t m[KCM_TEST_HDR_LEN + 65536];
	int sndbuf = 16384, val;
	socklen_t len = sizeof(val);
	const char *why;
	ssize_t n;

	if (kcmux_is_reference())
		SKIP(return, "in-tree kcm queues and sends a message larger than SO_SNDBUF (send returns its length); kcmux: EMSGSIZE");

	ASSERT_EQ(0, setsockopt(self->kcm, SOL_SOCKET, SO_SNDBUF, &sndbuf,
				sizeof(sndbuf)));
	ASSERT_EQ(0, getsockopt(self->kcm, SOL_SOCKET, SO_SNDBUF, &val, &len));
	ASSERT_EQ(2 * sndbuf, val);
	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));

	n = kcm_tx_msg(m, 1, val);		/* 8 bytes over the limit */
	EXPECT_EQ(-1, send(self->kcm, m, n, variant->end));
	EXPECT_EQ(EMSGSIZE, errno);
	n = kcm_tx_msg(m, 2, 65536);
	EXPECT_EQ(-1, send(self->kcm, m, n, variant->end | MSG_DONTWAIT));
	EXPECT_EQ(EMSGSIZE, errno);

	/* Exactly sndbuf is fine, and only it goes out. */
	n = kcm_tx_msg(m, 3, val - KCM_TEST_HDR_LEN);
	ASSERT_EQ(n, send(self->kcm, m, n, variant->end));
	why = kcm_tx_read_msg(self->a[1], 3, val - KCM_TEST_HDR_LEN,
			      KCM_TX_WAIT_MS);
	ASSERT_EQ(NULL, why) TH_LOG("%s", why);
	EXPECT_TRUE(kcm_tx_quiet(self->a[1], KCM_TX_QUIET_MS));
}

/* --- failing psocks, SIGPIPE --------------------------------------------- */

static volatile sig_atomic_t kcm_tx_sigpipes;

static void kcm_tx_on_sigpipe(int sig)
{
	kcm_tx_sigpipes++;
}

static void kcm_tx_count_sigpipe(struct __test_metadata *_metadata)
{
	struct sigaction sa = { .sa_handler = kcm_tx_on_sigpipe };

	kcm_tx_sigpipes = 0;
	ASSERT_EQ(0, sigaction(SIGPIPE, &sa, NULL));
}

/* The peer resets the connection: close() with SO_LINGER 0. */
static void kcm_tx_reset(struct __test_metadata *_metadata, int *peer, int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	ASSERT_EQ(0, setsockopt(*peer, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)));
	close(*peer);
	*peer = -1;
	/* Wait until our end has seen the RST. */
	ASSERT_EQ(1, poll(&pfd, 1, KCM_TX_WAIT_MS));
	ASSERT_TRUE(pfd.revents & (POLLERR | POLLHUP));
}

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

	ASSERT_EQ(0, kcm_tx_tcp_pair(pair, 4096, 4096));
	ASSERT_EQ(0, kcm_attach(self->kcm, pair[0], self->bpf));
	n = kcm_tx_msg(m, 1, BIG_MSG);
	ASSERT_EQ(n, send(self->kcm, m, n, variant->end | MSG_NOSIGNAL));
	/* Part of it is out: A carries it, mid-message. */
	pfd = (struct pollfd){ .fd = pair[1], .events = POLLIN };
	ASSERT_EQ(1, poll(&pfd, 1, KCM_TX_WAIT_MS));
	ASSERT_EQ(0, kcm_attach(self->kcm, self->b[0], self->bpf));
	kcm_tx_reset(_metadata, &pair[1], pair[0]);
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
	long long retries0 = kcm_tx_stat("MUX", "TX-Retries");
	long long aborts0 = kcm_tx_stat("Psock", "TX-Aborts");
	uint8_t m[2][KCM_TEST_HDR_LEN + 10];
	struct iovec iov[2];
	struct mmsghdr mm[2];
	int pair[2], err, i;
	socklen_t len = sizeof(err);
	const char *why;

	kcm_tx_count_sigpipe(_metadata);
	kcm_tx_stuck_then_reset(_metadata, self, variant, pair);

	memset(mm, 0, sizeof(mm));
	for (i = 0; i < 2; i++) {
		iov[i].iov_base = m[i];
		iov[i].iov_len = kcm_tx_msg(m[i], 2 + i, 10);
		mm[i].msg_hdr.msg_iov = &iov[i];
		mm[i].msg_hdr.msg_iovlen = 1;
	}
	EXPECT_EQ(2, sendmmsg(self->kcm, mm, 2, variant->end | MSG_NOSIGNAL));

	why = kcm_tx_read_msg(self->b[1], 1, BIG_MSG, KCM_TX_WAIT_MS);
	ASSERT_EQ(NULL, why) TH_LOG("retried message on psock B: %s", why);
	for (i = 0; i < 2; i++) {
		why = kcm_tx_read_msg(self->b[1], 2 + i, 10, KCM_TX_WAIT_MS);
		ASSERT_EQ(NULL, why) TH_LOG("message %d on psock B: %s", 2 + i, why);
	}
	EXPECT_TRUE(kcm_tx_quiet(self->b[1], KCM_TX_QUIET_MS));
	ASSERT_EQ(0, getsockopt(pair[0], SOL_SOCKET, SO_ERROR, &err, &len));
	EXPECT_NE(0, err);
	EXPECT_LE(1, kcm_tx_stat("Psock", "TX-Aborts") - aborts0);
	close(pair[0]);

	if (kcmux_is_reference())
		SKIP(return, "in-tree kcm_stats never sums tx_retries (TX-Retries stays 0); in-tree raised %d SIGPIPE(s) on sends that succeeded",
		     (int)kcm_tx_sigpipes);
	EXPECT_LE(1, kcm_tx_stat("MUX", "TX-Retries") - retries0);
	EXPECT_EQ(0, kcm_tx_sigpipes);
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

	kcm_tx_count_sigpipe(_metadata);
	kcm_tx_stuck_then_reset(_metadata, self, variant, pair);
	why = kcm_tx_read_msg(self->b[1], 1, BIG_MSG, KCM_TX_WAIT_MS);
	ASSERT_EQ(NULL, why) TH_LOG("retried message on psock B: %s", why);
	EXPECT_TRUE(kcm_tx_quiet(self->b[1], KCM_TX_QUIET_MS));
	EXPECT_EQ(0, kcm_tx_sigpipes);
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

	kcm_tx_count_sigpipe(_metadata);
	kcm_tx_stuck_then_reset(_metadata, self, variant, pair);
	n = kcm_tx_msg(m, 2, 10);
	EXPECT_EQ(n, send(self->kcm, m, n, variant->end | MSG_NOSIGNAL));
	EXPECT_EQ(0, kcm_tx_sigpipes);

	why = kcm_tx_read_msg(self->b[1], 1, BIG_MSG, KCM_TX_WAIT_MS);
	ASSERT_EQ(NULL, why) TH_LOG("first message: %s", why);
	why = kcm_tx_read_msg(self->b[1], 2, 10, KCM_TX_WAIT_MS);
	ASSERT_EQ(NULL, why) TH_LOG("second message: %s", why);
	EXPECT_EQ(0, kcm_tx_sigpipes);
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

	kcm_tx_count_sigpipe(_metadata);
	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));
	ASSERT_EQ(0, kcm_attach(self->kcm, self->b[0], self->bpf));
	kcm_tx_reset(_metadata, &self->a[1], self->a[0]);

	n = kcm_tx_msg(m, 1, 500);
	EXPECT_EQ(n, send(self->kcm, m, n, variant->end | MSG_NOSIGNAL));
	n = kcm_tx_msg(m, 2, 500);
	EXPECT_EQ(n, send(self->kcm, m, n, variant->end));
	why = kcm_tx_read_msg(self->b[1], 1, 500, KCM_TX_WAIT_MS);
	ASSERT_EQ(NULL, why) TH_LOG("first message: %s", why);
	why = kcm_tx_read_msg(self->b[1], 2, 500, KCM_TX_WAIT_MS);
	ASSERT_EQ(NULL, why) TH_LOG("second message: %s", why);

	if (kcmux_is_reference() && kcm_tx_sigpipes)
		SKIP(return, "in-tree kcm raised %d SIGPIPE(s): it sends on the reset psock from the caller's context without MSG_NOSIGNAL, then retries",
		     (int)kcm_tx_sigpipes);
	EXPECT_EQ(0, kcm_tx_sigpipes);
}

TEST_HARNESS_MAIN
