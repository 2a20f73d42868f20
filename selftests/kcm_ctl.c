// SPDX-License-Identifier: GPL-2.0
/*
 * kcm_ctl: the control side of AF_KCM: SIOCKCMATTACH, SIOCKCMUNATTACH,
 * SIOCKCMCLONE, KCM_RECV_DISABLE, closing KCM sockets, and the counters
 * of /proc/net/kcm and /proc/net/kcm_stats.
 *
 * Every test runs in its own network namespace, so the /proc files show
 * only the test's own multiplexors.  Errnos expected are those of the
 * in-tree kcm.ko (net/kcm/kcmsock.c, 6.1 and 6.12): kcmux must return the
 * same.  Where the in-tree module is wrong or lacks a feature, the test
 * SKIPs on the reference and says why.
 *
 * Receiving and the in-tree parser: the in-tree module runs the BPF
 * program on a TCP skb from its start, not from where a message starts
 * in it, so a message that shares an skb with the previous one is
 * mis-framed there.  Tests that receive therefore let each message be
 * taken by the mux before the peer writes the next one.
 */
#include <poll.h>
#include <sched.h>
#include <time.h>
#include <net/if.h>
#include <netinet/tcp.h>

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

#ifndef TCP_ULP
#define TCP_ULP		31
#endif

/* --- helpers of this file (shared ones: lib/kcm_test.h) ------------------ */

#define KCM_CTL_MAX_PAYLOAD	100000

/* Writes the whole message on a stream socket.  0 or -errno. */
static int kcm_ctl_write_msg(int fd, uint32_t hdr, uint32_t len)
{
	static uint8_t buf[KCM_TEST_HDR_LEN + KCM_CTL_MAX_PAYLOAD];

	if (len > KCM_CTL_MAX_PAYLOAD)
		abort();
	return kcm_send_all(fd, buf, kcm_test_msg(buf, hdr, len));
}

/*
 * One message sent by the mux on either of two psocks: read it from the
 * peer that got it.  (KCM keeps a socket's queue on one psock, and a
 * message is sent only after the previous one left, so in-order reading
 * of whichever stream has data sees messages whole.)
 */
static bool kcm_ctl_read_either_msg(int fd1, int fd2, uint32_t hdr,
				    uint32_t len)
{
	struct pollfd pfd[2] = {
		{ .fd = fd1, .events = POLLIN },
		{ .fd = fd2, .events = POLLIN },
	};

	if (poll(pfd, 2, KCM_WAIT_MS) <= 0)
		return false;
	return !kcm_read_msg(pfd[0].revents ? fd1 : fd2, hdr, len, KCM_WAIT_MS);
}

/*
 * Messages first_hdr .. first_hdr + count - 1 (len payload bytes each)
 * sent by the mux over two psocks in any distribution: reads both
 * streams until all came, each whole.  Returns how many distinct ones
 * were read correctly.
 */
static int kcm_ctl_read_msgs_any(int fd1, int fd2, uint32_t first_hdr,
				 int count, uint32_t len)
{
	static uint8_t buf[KCM_TEST_HDR_LEN + KCM_CTL_MAX_PAYLOAD];
	ssize_t n = KCM_TEST_HDR_LEN + len;
	uint64_t seen = 0;
	int got = 0;

	if (count > 64 || len > KCM_CTL_MAX_PAYLOAD)
		return -1;
	while (got < count) {
		struct pollfd pfd[2] = {
			{ .fd = fd1, .events = POLLIN },
			{ .fd = fd2, .events = POLLIN },
		};
		uint32_t be, hdr;
		int fd;

		if (poll(pfd, 2, KCM_WAIT_MS) <= 0)
			break;
		fd = pfd[0].revents ? fd1 : fd2;
		if (kcm_read_exact(fd, buf, n, KCM_WAIT_MS) != n)
			break;
		memcpy(&be, buf + 4, 4);
		hdr = ntohl(be);
		if (hdr < first_hdr || hdr >= first_hdr + count ||
		    (seen & 1ULL << (hdr - first_hdr)) ||
		    !kcm_test_msg_ok(buf, n, hdr, len))
			break;
		seen |= 1ULL << (hdr - first_hdr);
		got++;
	}
	return got;
}

/*
 * Receives one message on a KCM socket within timeout_ms and checks it.
 * Returns the recv() result (or -errno), *ok says if it was the message.
 */
static ssize_t kcm_ctl_recv_msg(int kcmfd, uint32_t hdr, uint32_t len,
				int timeout_ms, bool *ok)
{
	static uint8_t buf[KCM_TEST_HDR_LEN + KCM_CTL_MAX_PAYLOAD + 1];
	struct pollfd pfd = { .fd = kcmfd, .events = POLLIN };
	ssize_t r;

	*ok = false;
	if (poll(&pfd, 1, timeout_ms) != 1)
		return -ETIMEDOUT;
	r = recv(kcmfd, buf, sizeof(buf), MSG_DONTWAIT);
	if (r < 0)
		return -errno;
	*ok = kcm_test_msg_ok(buf, r, hdr, len);
	return r;
}

/* True if no message is waiting on the KCM socket (or bytes on a TCP one). */
static bool kcm_ctl_nothing(int fd)
{
	uint8_t buf[64];

	return recv(fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_PEEK) < 0 &&
	       errno == EAGAIN;
}

/* A loaded BPF program of another type than SOCKET_FILTER, or -errno. */
static int kcm_ctl_other_prog(int *type)
{
	static const int types[] = { BPF_PROG_TYPE_XDP, BPF_PROG_TYPE_SCHED_CLS };
	const struct bpf_insn insns[] = {
		KCM_INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0),
		KCM_INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
	};
	union bpf_attr attr;
	unsigned int i;
	int fd = -ENOSYS;

	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		memset(&attr, 0, sizeof(attr));
		attr.prog_type = types[i];
		attr.insns = (uintptr_t)insns;
		attr.insn_cnt = 2;
		attr.license = (uintptr_t)"GPL";
		fd = syscall(__NR_bpf, BPF_PROG_LOAD, &attr, sizeof(attr));
		if (fd >= 0) {
			*type = types[i];
			return fd;
		}
		fd = -errno;
	}
	return fd;
}

static char *kcm_ctl_slurp(const char *path)
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

/* How many lines of /proc/net/kcm start with prefix (after blanks). */
static int kcm_ctl_proc_count(const char *prefix)
{
	char *text = kcm_ctl_slurp("/proc/net/kcm");
	char *line, *next;
	int n = 0;

	for (line = text; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		line += strspn(line, " ");
		if (!strncmp(line, prefix, strlen(prefix)))
			n++;
	}
	return n;
}

/* "KCMs: %d, Psocks %d" of the first mux line; false if there is none. */
static bool kcm_ctl_proc_mux(int *kcms, int *psocks)
{
	char *text = kcm_ctl_slurp("/proc/net/kcm");
	char *p = text ? strstr(text, "KCMs: ") : NULL;

	return p && sscanf(p, "KCMs: %d, Psocks %d", kcms, psocks) == 2;
}

/* The N of "*** KCM statistics (N MUX) ****", -1 if unreadable. */
static int kcm_ctl_proc_nmux(void)
{
	char *text = kcm_ctl_slurp("/proc/net/kcm");
	int n;

	if (!text || sscanf(text, "*** KCM statistics (%d MUX)", &n) != 1)
		return -1;
	return n;
}

/* Waits until a TCP socket has exactly n bytes queued for reading. */
static int kcm_ctl_wait_inq(int fd, int n)
{
	long long deadline = kcm_now_ms() + KCM_WAIT_MS;
	int inq = -1;

	while (kcm_now_ms() <= deadline) {
		inq = kcm_inq(fd);
		if (inq < 0)
			return inq;
		if (inq >= n)
			break;
		usleep(2000);
	}
	return inq;
}

/* Waits until /proc/net/kcm lists no psock; returns how many it lists. */
static int kcm_ctl_wait_no_psock(void)
{
	long long deadline = kcm_now_ms() + KCM_WAIT_MS;
	int n;

	while ((n = kcm_ctl_proc_count("psock-")) > 0 &&
	       kcm_now_ms() <= deadline)
		usleep(2000);
	return n;
}

/* --- attach: what can be attached ---------------------------------------- */

FIXTURE(attach_ok) {
	int bpf;
	int kcm;
	int tcp[2];
};

FIXTURE_VARIANT(attach_ok) {
	int family;
};

FIXTURE_VARIANT_ADD(attach_ok, ipv4) {
	.family = AF_INET,
};

FIXTURE_VARIANT_ADD(attach_ok, ipv6) {
	.family = AF_INET6,
};

FIXTURE_SETUP(attach_ok)
{
	self->bpf = self->kcm = self->tcp[0] = self->tcp[1] = -1;
	ASSERT_EQ(0, kcm_netns_enter());
	self->bpf = kcm_bpf_load_parser();
	ASSERT_LE(0, self->bpf);
	self->kcm = kcm_socket(SOCK_DGRAM);
	ASSERT_LE(0, self->kcm);
	ASSERT_EQ(0, kcm_tcp_pair_nodelay(variant->family, self->tcp));
}

FIXTURE_TEARDOWN(attach_ok)
{
	kcm_close_fd(&self->kcm);
	kcm_close_fd(&self->tcp[0]);
	kcm_close_fd(&self->tcp[1]);
	kcm_close_fd(&self->bpf);
}

/* A connected TCP socket attaches, and messages flow both ways. */
TEST_F(attach_ok, connected_tcp)
{
	uint8_t m[KCM_TEST_HDR_LEN + 100];
	ssize_t n = kcm_test_msg(m, 5, 100);
	bool ok;

	ASSERT_EQ(0, kcm_attach(self->kcm, self->tcp[0], self->bpf));
	ASSERT_EQ(n, send(self->kcm, m, n, 0));
	EXPECT_EQ(NULL, kcm_read_msg(self->tcp[1], 5, 100, KCM_WAIT_MS));
	ASSERT_EQ(0, kcm_ctl_write_msg(self->tcp[1], 6, 200));
	EXPECT_EQ(KCM_TEST_HDR_LEN + 200,
		  kcm_ctl_recv_msg(self->kcm, 6, 200, KCM_WAIT_MS, &ok));
	EXPECT_TRUE(ok);
	EXPECT_EQ(1, kcm_proc_value("psock-0", "RX-Msgs"));
	EXPECT_EQ(1, kcm_proc_value("psock-0", "TX-Msgs"));
}

/* --- attach: what cannot be attached ------------------------------------- */

FIXTURE(ctl) {
	int bpf;
	int kcm;
	int a[2];
	int b[2];
};

FIXTURE_SETUP(ctl)
{
	self->bpf = self->kcm = -1;
	self->a[0] = self->a[1] = self->b[0] = self->b[1] = -1;
	ASSERT_EQ(0, kcm_netns_enter());
	self->bpf = kcm_bpf_load_parser();
	ASSERT_LE(0, self->bpf);
	self->kcm = kcm_socket(SOCK_DGRAM);
	ASSERT_LE(0, self->kcm);
	ASSERT_EQ(0, kcm_tcp_pair_nodelay(AF_INET, self->a));
	ASSERT_EQ(0, kcm_tcp_pair_nodelay(AF_INET, self->b));
}

FIXTURE_TEARDOWN(ctl)
{
	kcm_close_fd(&self->kcm);
	kcm_close_fd(&self->a[0]);
	kcm_close_fd(&self->a[1]);
	kcm_close_fd(&self->b[0]);
	kcm_close_fd(&self->b[1]);
	kcm_close_fd(&self->bpf);
}

/* Nothing got attached: the mux lists no psock and counted no attach. */
static void kcm_ctl_no_psock(struct __test_metadata *_metadata)
{
	int kcms = -1, psocks = -1;

	ASSERT_TRUE(kcm_ctl_proc_mux(&kcms, &psocks));
	EXPECT_EQ(0, psocks);
	EXPECT_EQ(0, kcm_stat("MUX", "Attach"));
}

TEST_F(ctl, attach_listening_eopnotsupp)
{
	struct sockaddr_in sin = {
		.sin_family = AF_INET,
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, bind(fd, (struct sockaddr *)&sin, sizeof(sin)));
	ASSERT_EQ(0, listen(fd, 1));
	EXPECT_EQ(-EOPNOTSUPP, kcm_attach(self->kcm, fd, self->bpf));
	kcm_ctl_no_psock(_metadata);
	close(fd);
}

TEST_F(ctl, attach_never_connected_eopnotsupp)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0), fd6 = socket(AF_INET6, SOCK_STREAM, 0);

	ASSERT_LE(0, fd);
	ASSERT_LE(0, fd6);
	EXPECT_EQ(-EOPNOTSUPP, kcm_attach(self->kcm, fd, self->bpf));
	EXPECT_EQ(-EOPNOTSUPP, kcm_attach(self->kcm, fd6, self->bpf));
	kcm_ctl_no_psock(_metadata);
	close(fd);
	close(fd6);
}

/* Connected once, now in TCP_CLOSE: reset by the peer, or disconnected. */
TEST_F(ctl, attach_closed_tcp_eopnotsupp)
{
	struct sockaddr sa = { .sa_family = AF_UNSPEC };

	ASSERT_EQ(0, kcm_tcp_reset(&self->a[1], self->a[0]));
	self->a[1] = -1;
	EXPECT_EQ(-EOPNOTSUPP, kcm_attach(self->kcm, self->a[0], self->bpf));

	/* connect(AF_UNSPEC) disconnects: TCP_CLOSE again. */
	ASSERT_EQ(0, connect(self->b[0], &sa, sizeof(sa)));
	EXPECT_EQ(-EOPNOTSUPP, kcm_attach(self->kcm, self->b[0], self->bpf));
	kcm_ctl_no_psock(_metadata);
}

/* The application closed its TCP fd: that fd is gone, ENOENT. */
TEST_F(ctl, attach_closed_fd_enoent)
{
	int fd = self->a[0];

	close(self->a[0]);
	self->a[0] = -1;
	EXPECT_EQ(-ENOENT, kcm_attach(self->kcm, fd, self->bpf));
	kcm_ctl_no_psock(_metadata);
}

TEST_F(ctl, attach_udp_eopnotsupp)
{
	struct sockaddr_in sin = {
		.sin_family = AF_INET,
		.sin_port = htons(9),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	ASSERT_LE(0, fd);
	EXPECT_EQ(-EOPNOTSUPP, kcm_attach(self->kcm, fd, self->bpf));
	/* Connected UDP is still not TCP. */
	ASSERT_EQ(0, connect(fd, (struct sockaddr *)&sin, sizeof(sin)));
	EXPECT_EQ(-EOPNOTSUPP, kcm_attach(self->kcm, fd, self->bpf));
	kcm_ctl_no_psock(_metadata);
	close(fd);
}

TEST_F(ctl, attach_unix_stream_eopnotsupp)
{
	int sv[2];

	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
	EXPECT_EQ(-EOPNOTSUPP, kcm_attach(self->kcm, sv[0], self->bpf));
	kcm_ctl_no_psock(_metadata);
	close(sv[0]);
	close(sv[1]);
}

/* Another KCM socket as the "TCP" fd (of another mux, and a clone). */
TEST_F(ctl, attach_kcm_socket_eopnotsupp)
{
	int other = kcm_socket(SOCK_DGRAM), clone = kcm_clone(self->kcm);

	ASSERT_LE(0, other);
	ASSERT_LE(0, clone);
	EXPECT_EQ(-EOPNOTSUPP, kcm_attach(self->kcm, other, self->bpf));
	EXPECT_EQ(-EOPNOTSUPP, kcm_attach(self->kcm, clone, self->bpf));
	EXPECT_EQ(0, kcm_stat("MUX", "Attach"));
	close(other);
	close(clone);
}

TEST_F(ctl, attach_not_a_socket_enoent)
{
	int p[2];

	ASSERT_EQ(0, pipe(p));
	EXPECT_EQ(-ENOENT, kcm_attach(self->kcm, p[0], self->bpf));
	/* The BPF program fd itself is no socket either. */
	EXPECT_EQ(-ENOENT, kcm_attach(self->kcm, self->bpf, self->bpf));
	kcm_ctl_no_psock(_metadata);
	close(p[0]);
	close(p[1]);
}

TEST_F(ctl, attach_bad_fd_enoent)
{
	EXPECT_EQ(-ENOENT, kcm_attach(self->kcm, -1, self->bpf));
	EXPECT_EQ(-ENOENT, kcm_attach(self->kcm, 1000000, self->bpf));
	/* The TCP fd is looked up first: a bad one wins over a bad program. */
	EXPECT_EQ(-ENOENT, kcm_attach(self->kcm, -1, -1));
	kcm_ctl_no_psock(_metadata);
}

/*
 * Bad bpf_fd: another program type, a non-BPF fd, no fd at all.  Each
 * failure leaves the TCP socket untouched: a good attach then works.
 */
TEST_F(ctl, attach_bad_bpf_prog)
{
	int type = -1, prog = kcm_ctl_other_prog(&type), p[2];
	bool ok;

	ASSERT_LE(0, prog) TH_LOG("no XDP or SCHED_CLS program: %s", strerror(-prog));
	ASSERT_EQ(0, pipe(p));
	TH_LOG("other program type: %d", type);
	EXPECT_EQ(-EINVAL, kcm_attach(self->kcm, self->a[0], prog));
	EXPECT_EQ(-EINVAL, kcm_attach(self->kcm, self->a[0], p[0]));
	EXPECT_EQ(-EINVAL, kcm_attach(self->kcm, self->a[0], self->b[0]));
	EXPECT_EQ(-EBADF, kcm_attach(self->kcm, self->a[0], -1));
	EXPECT_EQ(-EBADF, kcm_attach(self->kcm, self->a[0], 1000000));
	kcm_ctl_no_psock(_metadata);

	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));
	ASSERT_EQ(0, kcm_ctl_write_msg(self->a[1], 1, 10));
	EXPECT_EQ(KCM_TEST_HDR_LEN + 10,
		  kcm_ctl_recv_msg(self->kcm, 1, 10, KCM_WAIT_MS, &ok));
	EXPECT_TRUE(ok);
	close(prog);
	close(p[0]);
	close(p[1]);
}

/* A TCP socket belongs to one mux at a time, once. */
TEST_F(ctl, attach_twice_ealready)
{
	int other = kcm_socket(SOCK_DGRAM), clone = kcm_clone(self->kcm);

	ASSERT_LE(0, other);
	ASSERT_LE(0, clone);
	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));
	EXPECT_EQ(-EALREADY, kcm_attach(self->kcm, self->a[0], self->bpf));
	EXPECT_EQ(-EALREADY, kcm_attach(clone, self->a[0], self->bpf));
	EXPECT_EQ(-EALREADY, kcm_attach(other, self->a[0], self->bpf));
	EXPECT_EQ(1, kcm_stat("MUX", "Attach"));
	EXPECT_EQ(2, kcm_ctl_proc_nmux());
	EXPECT_EQ(1, kcm_ctl_proc_count("psock-"));
	close(other);
	close(clone);
}

/*
 * kTLS (or any ULP) owns the socket's callbacks too: kcmux refuses it
 * with EBUSY.  Needs the tls module; the test VMs load only kcm/kcmux.
 */
TEST_F(ctl, attach_ktls_ebusy)
{
	if (kcmux_is_reference())
		SKIP(return, "in-tree kcm does not check for a ULP: it attaches a socket with the tls ULP (seen on 6.1), not run on the reference");
	if (setsockopt(self->a[0], IPPROTO_TCP, TCP_ULP, "tls", sizeof("tls"))) {
		if (errno == ENOENT)
			SKIP(return, "TCP_ULP \"tls\": ENOENT, the tls module is not loaded");
		ASSERT_EQ(0, -errno) TH_LOG("TCP_ULP tls: %s", strerror(errno));
	}
	EXPECT_EQ(-EBUSY, kcm_attach(self->kcm, self->a[0], self->bpf));
	kcm_ctl_no_psock(_metadata);
}

/*
 * The other way round: an attached socket carries the "kcmux" ULP, so
 * kTLS (which would read the receive queue under the framing) cannot be
 * stacked on it, nor can it listen; once unattached it is a plain TCP
 * socket again and takes kTLS.
 */
TEST_F(ctl, attached_socket_refuses_ulp)
{
	char name[16] = "";
	socklen_t len = sizeof(name);
	int err;

	if (kcmux_is_reference())
		SKIP(return, "in-tree kcm leaves an attached socket open to kTLS and sets no ULP: kcmux extension");
	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));
	ASSERT_EQ(0, getsockopt(self->a[0], IPPROTO_TCP, TCP_ULP, name, &len));
	EXPECT_STREQ("kcmux", name);
	err = setsockopt(self->a[0], IPPROTO_TCP, TCP_ULP, "tls", sizeof("tls"));
	EXPECT_EQ(-1, err);
	EXPECT_EQ(EEXIST, errno);
	/* Nor can user space put our ULP on a socket of its own. */
	err = setsockopt(self->a[1], IPPROTO_TCP, TCP_ULP, "kcmux",
			 sizeof("kcmux"));
	EXPECT_EQ(-1, err);
	EXPECT_EQ(EOPNOTSUPP, errno);

	ASSERT_EQ(0, kcm_unattach(self->kcm, self->a[0]));
	len = sizeof(name);
	ASSERT_EQ(0, getsockopt(self->a[0], IPPROTO_TCP, TCP_ULP, name, &len));
	EXPECT_EQ(0U, len) TH_LOG("ULP after unattach: %.*s", (int)len, name);
	if (setsockopt(self->a[0], IPPROTO_TCP, TCP_ULP, "tls", sizeof("tls"))) {
		if (errno == ENOENT)
			SKIP(return, "TCP_ULP \"tls\": ENOENT, the tls module is not loaded");
		ASSERT_EQ(0, -errno) TH_LOG("TCP_ULP tls after unattach: %s",
					   strerror(errno));
	}
	/* And with kTLS on it, it cannot be attached again. */
	EXPECT_EQ(-EBUSY, kcm_attach(self->kcm, self->a[0], self->bpf));
}

/* --- attach: what happens to the TCP socket ------------------------------ */

/* One message already queued on the TCP socket is framed at attach. */
TEST_F(ctl, bytes_queued_before_attach)
{
	bool ok;

	ASSERT_EQ(0, kcm_ctl_write_msg(self->a[1], 1, 20000));
	ASSERT_EQ(KCM_TEST_HDR_LEN + 20000,
		  kcm_ctl_wait_inq(self->a[0], KCM_TEST_HDR_LEN + 20000));
	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));
	EXPECT_EQ(KCM_TEST_HDR_LEN + 20000,
		  kcm_ctl_recv_msg(self->kcm, 1, 20000, KCM_WAIT_MS, &ok));
	EXPECT_TRUE(ok);
	EXPECT_EQ(1, kcm_proc_value("psock-0", "RX-Msgs"));
}

/* Several messages queued before attach, sharing skbs: all delivered. */
TEST_F(ctl, bytes_queued_before_attach_several)
{
	int i, total = 0;
	bool ok;

	if (kcmux_is_reference())
		SKIP(return, "in-tree kcm runs the parser on an skb from its start, not from the message: a second message inside a queued skb is mis-framed");
	for (i = 0; i < 4; i++) {
		ASSERT_EQ(0, kcm_ctl_write_msg(self->a[1], i, 100 + i * 1000));
		total += KCM_TEST_HDR_LEN + 100 + i * 1000;
	}
	ASSERT_EQ(total, kcm_ctl_wait_inq(self->a[0], total));
	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));
	for (i = 0; i < 4; i++) {
		EXPECT_EQ(KCM_TEST_HDR_LEN + 100 + i * 1000,
			  kcm_ctl_recv_msg(self->kcm, i, 100 + i * 1000,
					   KCM_WAIT_MS, &ok));
		EXPECT_TRUE(ok) TH_LOG("message %d", i);
	}
	EXPECT_TRUE(kcm_ctl_nothing(self->kcm));
}

/* The mux holds its own reference: the application's fd can go. */
TEST_F(ctl, mux_keeps_closed_tcp_fd)
{
	uint8_t m[KCM_TEST_HDR_LEN + 300];
	ssize_t n;
	bool ok;
	int i;

	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));
	close(self->a[0]);
	self->a[0] = -1;
	for (i = 0; i < 3; i++) {
		n = kcm_test_msg(m, 10 + i, 300);
		ASSERT_EQ(n, send(self->kcm, m, n, 0));
		EXPECT_EQ(NULL, kcm_read_msg(self->a[1], 10 + i, 300, KCM_WAIT_MS));
		ASSERT_EQ(0, kcm_ctl_write_msg(self->a[1], 20 + i, 40));
		EXPECT_EQ(KCM_TEST_HDR_LEN + 40,
			  kcm_ctl_recv_msg(self->kcm, 20 + i, 40, KCM_WAIT_MS, &ok));
		EXPECT_TRUE(ok);
	}
	EXPECT_EQ(3, kcm_proc_value("psock-0", "RX-Msgs"));
	EXPECT_EQ(3, kcm_proc_value("psock-0", "TX-Msgs"));
}

/* --- unattach ------------------------------------------------------------- */

TEST_F(ctl, unattach_not_attached_enoent)
{
	int p[2];

	EXPECT_EQ(-ENOENT, kcm_unattach(self->kcm, self->a[0]));
	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));
	EXPECT_EQ(-ENOENT, kcm_unattach(self->kcm, self->b[0]));
	/* No socket at all. */
	ASSERT_EQ(0, pipe(p));
	EXPECT_EQ(-ENOENT, kcm_unattach(self->kcm, p[0]));
	EXPECT_EQ(-ENOENT, kcm_unattach(self->kcm, -1));
	EXPECT_EQ(0, kcm_stat("MUX", "Unattach") +
		     kcm_stat("MUX", "UnattchRsvd"));
	close(p[0]);
	close(p[1]);
}

/* Attached to another mux: ENOENT here, and it keeps working there. */
TEST_F(ctl, unattach_other_mux_enoent)
{
	int other = kcm_socket(SOCK_DGRAM);
	bool ok;

	ASSERT_LE(0, other);
	ASSERT_EQ(0, kcm_attach(other, self->a[0], self->bpf));
	EXPECT_EQ(-ENOENT, kcm_unattach(self->kcm, self->a[0]));
	ASSERT_EQ(0, kcm_ctl_write_msg(self->a[1], 3, 30));
	EXPECT_EQ(KCM_TEST_HDR_LEN + 30,
		  kcm_ctl_recv_msg(other, 3, 30, KCM_WAIT_MS, &ok));
	EXPECT_TRUE(ok);
	EXPECT_TRUE(kcm_ctl_nothing(self->kcm));
	close(other);
}

/* After unattach the TCP socket is plain TCP again, both ways. */
TEST_F(ctl, unattach_gives_back_plain_tcp)
{
	uint8_t m[KCM_TEST_HDR_LEN + 50], buf[64];
	ssize_t n = kcm_test_msg(m, 1, 50);
	int kcms, psocks;
	bool ok;

	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));
	ASSERT_EQ(n, send(self->kcm, m, n, 0));
	EXPECT_EQ(NULL, kcm_read_msg(self->a[1], 1, 50, KCM_WAIT_MS));
	ASSERT_EQ(0, kcm_ctl_write_msg(self->a[1], 2, 50));
	EXPECT_EQ(n, kcm_ctl_recv_msg(self->kcm, 2, 50, KCM_WAIT_MS, &ok));
	EXPECT_TRUE(ok);

	ASSERT_EQ(0, kcm_unattach(self->kcm, self->a[0]));
	EXPECT_EQ(-ENOENT, kcm_unattach(self->kcm, self->a[0]));
	ASSERT_TRUE(kcm_ctl_proc_mux(&kcms, &psocks));
	EXPECT_EQ(0, psocks);

	/* Bytes arriving now are the application's, even a full message. */
	ASSERT_EQ(0, kcm_ctl_write_msg(self->a[1], 3, 50));
	EXPECT_EQ(NULL, kcm_read_msg(self->a[0], 3, 50, KCM_WAIT_MS));
	EXPECT_TRUE(kcm_ctl_nothing(self->kcm));
	ASSERT_EQ(5, send(self->a[1], "hello", 5, 0));
	EXPECT_EQ(5, kcm_read_exact(self->a[0], buf, 5, KCM_WAIT_MS));
	EXPECT_EQ(0, memcmp(buf, "hello", 5));
	/* And the other way. */
	ASSERT_EQ(5, send(self->a[0], "world", 5, 0));
	EXPECT_EQ(5, kcm_read_exact(self->a[1], buf, 5, KCM_WAIT_MS));
	EXPECT_EQ(0, memcmp(buf, "world", 5));
	/* KCM sends no longer go there: they wait for a psock. */
	ASSERT_EQ(n, send(self->kcm, m, n, MSG_DONTWAIT));
	EXPECT_TRUE(kcm_ctl_nothing(self->a[1]));
	/* And it can be attached again. */
	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));
	EXPECT_EQ(NULL, kcm_read_msg(self->a[1], 1, 50, KCM_WAIT_MS));
}

/*
 * No socket takes messages (receive disabled), so the mux parks one on
 * the psock and reads no further.  At unattach, the bytes behind it are
 * still in the TCP socket for the application, and kcmux requeues the
 * parked message: a later KCM recv returns it.
 */
TEST_F(ctl, unattach_keeps_parked_message)
{
	long long drops0 = kcm_stat("MUX", "RX-RdyDrops");
	bool ok;

	ASSERT_EQ(0, kcm_recv_disable(self->kcm, 1));
	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));
	ASSERT_EQ(0, kcm_ctl_write_msg(self->a[1], 1, 60));
	ASSERT_EQ(1, kcm_wait_proc("psock-0", "RX-Msgs", 1));
	ASSERT_EQ(0, kcm_ctl_write_msg(self->a[1], 2, 70));
	ASSERT_EQ(KCM_TEST_HDR_LEN + 70,
		  kcm_ctl_wait_inq(self->a[0], KCM_TEST_HDR_LEN + 70));
	EXPECT_TRUE(kcm_ctl_nothing(self->kcm));

	ASSERT_EQ(0, kcm_unattach(self->kcm, self->a[0]));
	/* The second message was never taken: plain TCP bytes now. */
	EXPECT_EQ(NULL, kcm_read_msg(self->a[0], 2, 70, KCM_WAIT_MS));
	EXPECT_TRUE(kcm_ctl_nothing(self->a[0]));

	ASSERT_EQ(0, kcm_recv_disable(self->kcm, 0));
	if (kcmux_is_reference()) {
		EXPECT_EQ(1, kcm_stat("MUX", "RX-RdyDrops") - drops0);
		SKIP(return, "in-tree kcm drops a message parked on the psock at unattach (RX-RdyDrops)");
	}
	EXPECT_EQ(KCM_TEST_HDR_LEN + 60,
		  kcm_ctl_recv_msg(self->kcm, 1, 60, KCM_WAIT_MS, &ok));
	EXPECT_TRUE(ok);
	EXPECT_EQ(0, kcm_stat("MUX", "RX-RdyDrops") - drops0);
}

/*
 * A message only half received when the TCP socket is unattached: kcmux
 * has left its bytes in TCP (it takes a small message only once it is
 * whole), so plain reads return all of them, then the rest as it comes.
 */
TEST_F(ctl, unattach_returns_half_message)
{
	uint8_t one[KCM_TEST_HDR_LEN + 40], two[KCM_TEST_HDR_LEN + 50];
	uint8_t both[sizeof(one) + sizeof(two)], buf[sizeof(two)];
	ssize_t n1 = kcm_test_msg(one, 1, 40);
	ssize_t n2, half;
	bool ok;

	memcpy(both, one, n1);
	n2 = kcm_test_msg(two, 2, 50);
	memcpy(both + n1, two, n2);
	half = KCM_TEST_HDR_LEN + 20;

	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));
	/* One write: by the time message 1 is out, the half has been seen. */
	ASSERT_EQ(n1 + half, send(self->a[1], both, n1 + half, 0));
	EXPECT_EQ(n1, kcm_ctl_recv_msg(self->kcm, 1, 40, KCM_WAIT_MS, &ok));
	EXPECT_TRUE(ok);
	ASSERT_EQ(0, kcm_unattach(self->kcm, self->a[0]));

	if (kcm_read_exact(self->a[0], buf, half, 500) != half &&
	    kcmux_is_reference())
		SKIP(return, "in-tree kcm drops the bytes of a message half assembled at unattach");
	ASSERT_EQ(0, memcmp(buf, two, half));
	ASSERT_EQ(n2 - half, send(self->a[1], two + half, n2 - half, 0));
	EXPECT_EQ(n2 - half, kcm_read_exact(self->a[0], buf + half,
						n2 - half, KCM_WAIT_MS));
	EXPECT_EQ(0, memcmp(buf, two, n2));
	EXPECT_TRUE(kcm_ctl_nothing(self->kcm));
}

/*
 * An attached socket is disconnected (connect AF_UNSPEC): it cannot be
 * turned into a listener while attached (its "kcmux" ULP cannot be
 * cloned into children; in-tree copies the psock pointer into accepted
 * children, a use after free).  Once unattached it listens, and a child
 * accepted from it behaves as plain TCP: data wakes its reader.
 */
TEST_F(ctl, listener_child_after_unattach)
{
	struct sockaddr_in sin = { .sin_family = AF_INET,
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr unspec = { .sa_family = AF_UNSPEC };
	socklen_t slen = sizeof(sin);
	int cli, child, one = 1;
	char buf[8];

	if (kcmux_is_reference())
		SKIP(return, "in-tree kcm copies the psock pointer into accepted children: use after free, not run on the reference");

	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));
	ASSERT_EQ(0, connect(self->a[0], &unspec, sizeof(unspec)));
	ASSERT_EQ(0, setsockopt(self->a[0], SOL_SOCKET, SO_REUSEADDR, &one,
				sizeof(one)));
	ASSERT_EQ(0, bind(self->a[0], (struct sockaddr *)&sin, sizeof(sin)));
	ASSERT_EQ(0, getsockname(self->a[0], (struct sockaddr *)&sin, &slen));
	EXPECT_EQ(-1, listen(self->a[0], 1));
	EXPECT_EQ(EINVAL, errno);

	ASSERT_EQ(0, kcm_unattach(self->kcm, self->a[0]));
	kcm_close_fd(&self->kcm);
	ASSERT_EQ(0, listen(self->a[0], 1));

	cli = socket(AF_INET, SOCK_STREAM, 0);
	ASSERT_LE(0, cli);
	ASSERT_EQ(0, connect(cli, (struct sockaddr *)&sin, sizeof(sin)));
	child = accept(self->a[0], NULL, NULL);
	ASSERT_LE(0, child);

	ASSERT_EQ(5, send(cli, "hello", 5, 0));
	EXPECT_EQ(5, kcm_read_exact(child, buf, 5, KCM_WAIT_MS));
	EXPECT_EQ(0, memcmp(buf, "hello", 5));
	ASSERT_EQ(5, send(child, "world", 5, 0));
	EXPECT_EQ(5, kcm_read_exact(cli, buf, 5, KCM_WAIT_MS));
	EXPECT_EQ(0, memcmp(buf, "world", 5));
	close(child);
	close(cli);
}

/*
 * Unattach while a KCM socket is half way through a message on the
 * psock (small buffers, peer not reading): kcmux lets the message finish
 * on that stream before giving the socket back, and a second unattach
 * in the meantime is EALREADY.
 */
TEST_F(ctl, unattach_while_sending_ealready)
{
	static uint8_t m[KCM_TEST_HDR_LEN + 100000];
	long long rsvd0 = kcm_stat("MUX", "UnattchRsvd");
	int small = 4096, pair[2], one = 1, psocks = -1, kcms;
	struct sockaddr_in sin = {
		.sin_family = AF_INET,
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	socklen_t len = sizeof(sin);
	struct pollfd pfd;
	uint8_t buf[8];
	ssize_t n;
	int lfd;

	if (kcmux_is_reference())
		SKIP(return, "in-tree kcm aborts a psock that is mid-message at unattach (EPIPE on it, the message cut short and resent elsewhere) and frees it from tx work: a second unattach gives ENOENT");

	/* A pair with small buffers, so that the message gets stuck. */
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	ASSERT_LE(0, lfd);
	ASSERT_EQ(0, setsockopt(lfd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)));
	ASSERT_EQ(0, bind(lfd, (struct sockaddr *)&sin, len));
	ASSERT_EQ(0, listen(lfd, 1));
	ASSERT_EQ(0, getsockname(lfd, (struct sockaddr *)&sin, &len));
	pair[0] = socket(AF_INET, SOCK_STREAM, 0);
	ASSERT_LE(0, pair[0]);
	ASSERT_EQ(0, setsockopt(pair[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)));
	ASSERT_EQ(0, setsockopt(pair[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)));
	ASSERT_EQ(0, connect(pair[0], (struct sockaddr *)&sin, len));
	pair[1] = accept(lfd, NULL, NULL);
	ASSERT_LE(0, pair[1]);
	close(lfd);

	ASSERT_EQ(0, kcm_attach(self->kcm, pair[0], self->bpf));
	n = kcm_test_msg(m, 9, 100000 - KCM_TEST_HDR_LEN);
	ASSERT_EQ(n, send(self->kcm, m, n, 0));
	pfd = (struct pollfd){ .fd = pair[1], .events = POLLIN };
	ASSERT_EQ(1, poll(&pfd, 1, KCM_WAIT_MS));

	ASSERT_EQ(0, kcm_unattach(self->kcm, pair[0]));
	EXPECT_EQ(-EALREADY, kcm_unattach(self->kcm, pair[0]));
	EXPECT_EQ(1, kcm_stat("MUX", "UnattchRsvd") - rsvd0);

	/* The peer reads: the whole message, then the socket is plain. */
	EXPECT_EQ(NULL, kcm_read_msg(pair[1], 9, 100000 - KCM_TEST_HDR_LEN, KCM_WAIT_MS));
	EXPECT_EQ(0, kcm_getint(pair[0], SOL_SOCKET, SO_ERROR));
	/* Given back by the sender right after the message's last byte. */
	EXPECT_EQ(0, kcm_ctl_wait_no_psock());
	ASSERT_TRUE(kcm_ctl_proc_mux(&kcms, &psocks));
	EXPECT_EQ(0, psocks);
	EXPECT_EQ(-ENOENT, kcm_unattach(self->kcm, pair[0]));
	ASSERT_EQ(3, send(pair[0], "abc", 3, 0));
	EXPECT_EQ(3, kcm_read_exact(pair[1], buf, 3, KCM_WAIT_MS));
	EXPECT_EQ(0, memcmp(buf, "abc", 3));
	close(pair[0]);
	close(pair[1]);
}

/* --- clone ---------------------------------------------------------------- */

FIXTURE(clone) {
	int bpf;
	int kcm;
	int tcp[2];
};

FIXTURE_VARIANT(clone) {
	int type;
};

FIXTURE_VARIANT_ADD(clone, dgram) {
	.type = SOCK_DGRAM,
};

FIXTURE_VARIANT_ADD(clone, seqpacket) {
	.type = SOCK_SEQPACKET,
};

FIXTURE_SETUP(clone)
{
	self->bpf = self->kcm = self->tcp[0] = self->tcp[1] = -1;
	ASSERT_EQ(0, kcm_netns_enter());
	self->bpf = kcm_bpf_load_parser();
	ASSERT_LE(0, self->bpf);
	self->kcm = kcm_socket(variant->type);
	ASSERT_LE(0, self->kcm);
	ASSERT_EQ(0, kcm_tcp_pair_nodelay(AF_INET, self->tcp));
}

FIXTURE_TEARDOWN(clone)
{
	kcm_close_fd(&self->kcm);
	kcm_close_fd(&self->tcp[0]);
	kcm_close_fd(&self->tcp[1]);
	kcm_close_fd(&self->bpf);
}

/*
 * SIOCKCMCLONE: a new fd, same type, same mux.  The original goes away
 * after the clone: the psock it attached serves the clone both ways.
 */
TEST_F(clone, same_mux_same_type)
{
	uint8_t m[KCM_TEST_HDR_LEN + 20];
	ssize_t n = kcm_test_msg(m, 4, 20);
	int c1, c2, kcms = -1, psocks = -1;
	bool ok;

	ASSERT_EQ(0, kcm_attach(self->kcm, self->tcp[0], self->bpf));
	c1 = kcm_clone(self->kcm);
	ASSERT_LE(0, c1) TH_LOG("SIOCKCMCLONE: %s", strerror(-c1));
	EXPECT_NE(self->kcm, c1);
	EXPECT_EQ(variant->type, kcm_getint(c1, SOL_SOCKET, SO_TYPE));
	EXPECT_EQ(AF_KCM, kcm_getint(c1, SOL_SOCKET, SO_DOMAIN));
	c2 = kcm_clone(c1);			/* a clone of a clone */
	ASSERT_LE(0, c2);
	EXPECT_EQ(variant->type, kcm_getint(c2, SOL_SOCKET, SO_TYPE));
	EXPECT_EQ(1, kcm_ctl_proc_nmux());
	ASSERT_TRUE(kcm_ctl_proc_mux(&kcms, &psocks));
	EXPECT_EQ(3, kcms);
	EXPECT_EQ(1, psocks);

	kcm_close_fd(&self->kcm);
	close(c2);
	ASSERT_TRUE(kcm_ctl_proc_mux(&kcms, &psocks));
	EXPECT_EQ(1, kcms);
	EXPECT_EQ(1, psocks);

	ASSERT_EQ(0, kcm_ctl_write_msg(self->tcp[1], 3, 30));
	EXPECT_EQ(KCM_TEST_HDR_LEN + 30,
		  kcm_ctl_recv_msg(c1, 3, 30, KCM_WAIT_MS, &ok));
	EXPECT_TRUE(ok);
	ASSERT_EQ(n, send(c1, m, n, MSG_EOR));
	EXPECT_EQ(NULL, kcm_read_msg(self->tcp[1], 4, 20, KCM_WAIT_MS));
	close(c1);
}

/* --- KCM_RECV_DISABLE ----------------------------------------------------- */

TEST_F(ctl, recv_disable_roundtrip)
{
	socklen_t len = sizeof(int);
	int val = -1;

	EXPECT_EQ(0, kcm_getint(self->kcm, SOL_KCM, KCM_RECV_DISABLE));
	EXPECT_EQ(0, kcm_recv_disable(self->kcm, 1));
	EXPECT_EQ(1, kcm_getint(self->kcm, SOL_KCM, KCM_RECV_DISABLE));
	EXPECT_EQ(0, kcm_recv_disable(self->kcm, 1));	/* again */
	EXPECT_EQ(1, kcm_getint(self->kcm, SOL_KCM, KCM_RECV_DISABLE));
	EXPECT_EQ(0, kcm_recv_disable(self->kcm, 0));
	EXPECT_EQ(0, kcm_getint(self->kcm, SOL_KCM, KCM_RECV_DISABLE));
	EXPECT_EQ(0, kcm_recv_disable(self->kcm, 42));	/* any non-zero */
	ASSERT_EQ(0, getsockopt(self->kcm, SOL_KCM, KCM_RECV_DISABLE, &val, &len));
	EXPECT_EQ(1, val);
	EXPECT_EQ(sizeof(int), len);
}

TEST_F(ctl, sockopt_bad_level_enoprotoopt)
{
	static const int levels[] = { SOL_TCP, SOL_IP, SOL_KCM + 1, SOL_KCM - 1 };
	socklen_t len;
	unsigned int i;
	int val = 1;

	for (i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		EXPECT_EQ(-1, setsockopt(self->kcm, levels[i], KCM_RECV_DISABLE,
					 &val, sizeof(val)));
		EXPECT_EQ(ENOPROTOOPT, errno) TH_LOG("level %d", levels[i]);
		len = sizeof(val);
		EXPECT_EQ(-1, getsockopt(self->kcm, levels[i], KCM_RECV_DISABLE,
					 &val, &len));
		EXPECT_EQ(ENOPROTOOPT, errno) TH_LOG("level %d", levels[i]);
	}
	EXPECT_EQ(0, kcm_getint(self->kcm, SOL_KCM, KCM_RECV_DISABLE));
}

TEST_F(ctl, sockopt_bad_optname_enoprotoopt)
{
	static const int names[] = { 0, KCM_RECV_DISABLE + 1, 1000, -1 };
	socklen_t len;
	unsigned int i;
	int val = 1;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		EXPECT_EQ(-1, setsockopt(self->kcm, SOL_KCM, names[i], &val,
					 sizeof(val)));
		EXPECT_EQ(ENOPROTOOPT, errno) TH_LOG("optname %d", names[i]);
		len = sizeof(val);
		EXPECT_EQ(-1, getsockopt(self->kcm, SOL_KCM, names[i], &val, &len));
		EXPECT_EQ(ENOPROTOOPT, errno) TH_LOG("optname %d", names[i]);
	}
}

TEST_F(ctl, sockopt_short_optlen_einval)
{
	int val = 1;

	EXPECT_EQ(-1, setsockopt(self->kcm, SOL_KCM, KCM_RECV_DISABLE, &val,
				 sizeof(val) - 1));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-1, setsockopt(self->kcm, SOL_KCM, KCM_RECV_DISABLE, &val, 0));
	EXPECT_EQ(EINVAL, errno);
	/* Nothing was set. */
	EXPECT_EQ(0, kcm_getint(self->kcm, SOL_KCM, KCM_RECV_DISABLE));
}

/*
 * Messages queued on a socket move to a sibling when it disables
 * receiving; once re-enabled, it receives again.
 */
TEST_F(ctl, recv_disable_moves_queue_to_sibling)
{
	int k1 = kcm_clone(self->kcm), i;
	bool ok;

	ASSERT_LE(0, k1);
	ASSERT_EQ(0, kcm_recv_disable(k1, 1));
	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));
	for (i = 0; i < 3; i++) {
		ASSERT_EQ(0, kcm_ctl_write_msg(self->a[1], i, 100 + i));
		ASSERT_EQ(i + 1, kcm_wait_proc("kcm-0", "Recv-Q", i + 1));
	}
	EXPECT_TRUE(kcm_ctl_nothing(k1));

	ASSERT_EQ(0, kcm_recv_disable(k1, 0));
	ASSERT_EQ(0, kcm_recv_disable(self->kcm, 1));
	for (i = 0; i < 3; i++) {
		EXPECT_EQ(KCM_TEST_HDR_LEN + 100 + i,
			  kcm_ctl_recv_msg(k1, i, 100 + i, KCM_WAIT_MS, &ok));
		EXPECT_TRUE(ok) TH_LOG("message %d", i);
	}
	EXPECT_TRUE(kcm_ctl_nothing(self->kcm));
	EXPECT_EQ(0, kcm_proc_value("kcm-0", "Recv-Q"));

	/* Roles swapped back: the re-enabled socket receives again. */
	ASSERT_EQ(0, kcm_recv_disable(self->kcm, 0));
	ASSERT_EQ(0, kcm_recv_disable(k1, 1));
	ASSERT_EQ(0, kcm_ctl_write_msg(self->a[1], 7, 77));
	EXPECT_EQ(KCM_TEST_HDR_LEN + 77,
		  kcm_ctl_recv_msg(self->kcm, 7, 77, KCM_WAIT_MS, &ok));
	EXPECT_TRUE(ok);
	EXPECT_TRUE(kcm_ctl_nothing(k1));
	close(k1);
}

/*
 * SEQPACKET: a message half read stays on the socket that disables
 * receive, and only it; the small messages queued after it (packed with
 * it in one skb) move to the sibling, whole and in order.
 */
TEST_F(ctl, recv_disable_half_read_stays_alone)
{
	uint8_t buf[KCM_TEST_HDR_LEN + 100];
	int k, k1 = -1, i;
	bool ok;

	if (kcmux_is_reference())
		SKIP(return, "in-tree kcm requeues a half-read message to the sibling too (its requeue takes the whole queue): kcmux behaviour");
	k = kcm_socket(SOCK_SEQPACKET);
	ASSERT_LE(0, k);
	ASSERT_EQ(0, kcm_attach(k, self->a[0], self->bpf));
	for (i = 0; i < 3; i++)
		ASSERT_EQ(0, kcm_ctl_write_msg(self->a[1], i, 100));
	ASSERT_EQ(3, kcm_wait_proc("psock-0", "RX-Msgs", 3));
	ASSERT_EQ(10, recv(k, buf, 10, 0));

	k1 = kcm_clone(k);
	ASSERT_LE(0, k1);
	ASSERT_EQ(0, kcm_recv_disable(k, 1));
	for (i = 1; i < 3; i++) {
		EXPECT_EQ(KCM_TEST_HDR_LEN + 100,
			  kcm_ctl_recv_msg(k1, i, 100, KCM_WAIT_MS, &ok));
		EXPECT_TRUE(ok) TH_LOG("message %d", i);
	}
	EXPECT_EQ(KCM_TEST_HDR_LEN + 100 - 10,
		  recv(k, buf + 10, sizeof(buf) - 10, 0));
	EXPECT_TRUE(kcm_test_msg_ok(buf, sizeof(buf), 0, 100));
	EXPECT_TRUE(kcm_ctl_nothing(k));
	EXPECT_TRUE(kcm_ctl_nothing(k1));
	close(k1);
	close(k);
}

/* With every socket disabled a message waits; enabling one delivers it. */
TEST_F(ctl, recv_disable_only_socket_holds)
{
	bool ok;

	ASSERT_EQ(0, kcm_recv_disable(self->kcm, 1));
	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));
	ASSERT_EQ(0, kcm_ctl_write_msg(self->a[1], 1, 500));
	ASSERT_EQ(1, kcm_wait_proc("psock-0", "RX-Msgs", 1));
	EXPECT_TRUE(kcm_ctl_nothing(self->kcm));
	ASSERT_EQ(0, kcm_recv_disable(self->kcm, 0));
	EXPECT_EQ(KCM_TEST_HDR_LEN + 500,
		  kcm_ctl_recv_msg(self->kcm, 1, 500, KCM_WAIT_MS, &ok));
	EXPECT_TRUE(ok);
}

/* --- closing KCM sockets --------------------------------------------------- */

/* Closing a socket hands its unread messages to a sibling, in order. */
TEST_F(ctl, close_requeues_to_sibling)
{
	int k1 = kcm_clone(self->kcm), kcms, psocks, i;
	bool ok;

	ASSERT_LE(0, k1);
	ASSERT_EQ(0, kcm_recv_disable(k1, 1));
	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));
	for (i = 0; i < 3; i++) {
		ASSERT_EQ(0, kcm_ctl_write_msg(self->a[1], i, 200 + i));
		ASSERT_EQ(i + 1, kcm_wait_proc("kcm-0", "Recv-Q", i + 1));
	}
	ASSERT_EQ(0, kcm_recv_disable(k1, 0));
	kcm_close_fd(&self->kcm);
	ASSERT_TRUE(kcm_ctl_proc_mux(&kcms, &psocks));
	EXPECT_EQ(1, kcms);
	EXPECT_EQ(1, psocks);
	for (i = 0; i < 3; i++) {
		EXPECT_EQ(KCM_TEST_HDR_LEN + 200 + i,
			  kcm_ctl_recv_msg(k1, i, 200 + i, KCM_WAIT_MS, &ok));
		EXPECT_TRUE(ok) TH_LOG("message %d", i);
	}
	EXPECT_TRUE(kcm_ctl_nothing(k1));
	close(k1);
}

/*
 * Closing the last KCM socket frees the mux and gives every TCP socket
 * back as plain TCP, both ways.
 */
TEST_F(ctl, close_last_frees_mux)
{
	int k1 = kcm_clone(self->kcm), i, *pairs[2] = { self->a, self->b };
	uint8_t m[KCM_TEST_HDR_LEN + 10], buf[8];
	ssize_t n = kcm_test_msg(m, 1, 10);
	bool ok;

	ASSERT_LE(0, k1);
	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));
	ASSERT_EQ(0, kcm_attach(k1, self->b[0], self->bpf));
	ASSERT_EQ(0, kcm_recv_disable(k1, 1));
	ASSERT_EQ(0, kcm_ctl_write_msg(self->b[1], 2, 20));
	EXPECT_EQ(KCM_TEST_HDR_LEN + 20,
		  kcm_ctl_recv_msg(self->kcm, 2, 20, KCM_WAIT_MS, &ok));
	EXPECT_TRUE(ok);
	ASSERT_EQ(n, send(k1, m, n, 0));
	EXPECT_TRUE(kcm_ctl_read_either_msg(self->a[1], self->b[1], 1, 10));

	kcm_close_fd(&self->kcm);
	EXPECT_EQ(1, kcm_ctl_proc_nmux());
	close(k1);
	EXPECT_EQ(0, kcm_ctl_proc_nmux());
	EXPECT_EQ(0, kcm_ctl_proc_count("mux"));

	for (i = 0; i < 2; i++) {
		int *p = pairs[i];

		EXPECT_EQ(0, kcm_getint(p[0], SOL_SOCKET, SO_ERROR));
		ASSERT_EQ(0, kcm_ctl_write_msg(p[1], 3, 30));
		EXPECT_EQ(NULL, kcm_read_msg(p[0], 3, 30, KCM_WAIT_MS)) TH_LOG("pair %d", i);
		ASSERT_EQ(4, send(p[0], "pong", 4, 0));
		EXPECT_EQ(4, kcm_read_exact(p[1], buf, 4, KCM_WAIT_MS));
		EXPECT_EQ(0, memcmp(buf, "pong", 4));
	}
}

/* --- /proc/net/kcm and /proc/net/kcm_stats ----------------------------- */

/*
 * /proc/net/kcm lists the mux, its KCM sockets and its psocks, and the
 * per-object counters follow the traffic.
 */
TEST_F(ctl, proc_net_kcm_lists_and_counts)
{
	int k1 = kcm_clone(self->kcm), kcms = -1, psocks = -1, i;
	uint8_t m[KCM_TEST_HDR_LEN + 64];
	long long tx;
	bool ok;

	ASSERT_LE(0, k1);
	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));
	ASSERT_EQ(0, kcm_attach(self->kcm, self->b[0], self->bpf));
	EXPECT_EQ(1, kcm_ctl_proc_nmux());
	ASSERT_TRUE(kcm_ctl_proc_mux(&kcms, &psocks));
	EXPECT_EQ(2, kcms);
	EXPECT_EQ(2, psocks);
	EXPECT_EQ(1, kcm_ctl_proc_count("mux"));
	EXPECT_EQ(2, kcm_ctl_proc_count("kcm-"));
	EXPECT_EQ(2, kcm_ctl_proc_count("psock-"));
	EXPECT_LE(0, kcm_proc_value("kcm-0", "RX-Msgs"));
	EXPECT_LE(0, kcm_proc_value("kcm-1", "RX-Msgs"));

	/* Receive: 3 messages through psock-0 (a), 2 through psock-1 (b). */
	ASSERT_EQ(0, kcm_recv_disable(k1, 1));
	for (i = 0; i < 5; i++) {
		ASSERT_EQ(0, kcm_ctl_write_msg(i < 3 ? self->a[1] : self->b[1],
					       i, 64));
		EXPECT_EQ(KCM_TEST_HDR_LEN + 64,
			  kcm_ctl_recv_msg(self->kcm, i, 64, KCM_WAIT_MS, &ok));
		EXPECT_TRUE(ok);
	}
	EXPECT_EQ(3, kcm_proc_value("psock-0", "RX-Msgs"));
	EXPECT_EQ(2, kcm_proc_value("psock-1", "RX-Msgs"));
	EXPECT_EQ(3 * (KCM_TEST_HDR_LEN + 64), kcm_proc_value("psock-0", "RX-Bytes"));
	EXPECT_EQ(5, kcm_proc_value("kcm-0", "RX-Msgs"));
	EXPECT_EQ(0, kcm_proc_value("kcm-1", "RX-Msgs"));
	EXPECT_EQ(5 * (KCM_TEST_HDR_LEN + 64), kcm_proc_value("kcm-0", "RX-Bytes"));

	/* Send: 4 from kcm-1, over whichever psock. */
	for (i = 0; i < 4; i++) {
		ASSERT_EQ(KCM_TEST_HDR_LEN + 64, kcm_test_msg(m, 10 + i, 64));
		ASSERT_EQ(KCM_TEST_HDR_LEN + 64,
			  send(k1, m, KCM_TEST_HDR_LEN + 64, 0));
	}
	EXPECT_EQ(4, kcm_ctl_read_msgs_any(self->a[1], self->b[1], 10, 4, 64));
	tx = kcm_proc_value("psock-0", "TX-Msgs") + kcm_proc_value("psock-1", "TX-Msgs");
	EXPECT_EQ(4, tx);
	EXPECT_EQ(4, kcm_proc_value("kcm-1", "TX-Msgs"));
	EXPECT_EQ(0, kcm_proc_value("kcm-0", "TX-Msgs"));
	EXPECT_EQ(4 * (KCM_TEST_HDR_LEN + 64), kcm_proc_value("kcm-1", "TX-Bytes"));

	/* Objects leave the listing as they go. */
	ASSERT_EQ(0, kcm_unattach(self->kcm, self->b[0]));
	ASSERT_TRUE(kcm_ctl_proc_mux(&kcms, &psocks));
	EXPECT_EQ(1, psocks);
	EXPECT_EQ(1, kcm_ctl_proc_count("psock-"));
	close(k1);
	ASSERT_TRUE(kcm_ctl_proc_mux(&kcms, &psocks));
	EXPECT_EQ(1, kcms);
	EXPECT_EQ(1, kcm_ctl_proc_count("kcm-"));
	kcm_close_fd(&self->kcm);
	EXPECT_EQ(0, kcm_ctl_proc_nmux());
	EXPECT_EQ(0, kcm_ctl_proc_count("psock-"));
}

/* kcm_stats counts attaches (failed ones not) and messages both ways. */
TEST_F(ctl, kcm_stats_attach_and_msgs)
{
	long long attach0 = kcm_stat("MUX", "Attach");
	long long rx0 = kcm_stat("Psock", "RX-Msgs");
	long long rxb0 = kcm_stat("Psock", "RX-Bytes");
	long long tx0 = kcm_stat("Psock", "TX-Msgs");
	long long txb0 = kcm_stat("Psock", "TX-Bytes");
	long long mtx0 = kcm_stat("MUX", "TX-Msgs");
	uint8_t m[KCM_TEST_HDR_LEN + 100];
	int i, rx_bytes = 0, tx_bytes = 0;
	bool ok;

	ASSERT_LE(0, attach0);
	ASSERT_LE(0, rx0);
	ASSERT_LE(0, tx0);
	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));
	EXPECT_EQ(-EALREADY, kcm_attach(self->kcm, self->a[0], self->bpf));
	ASSERT_EQ(0, kcm_attach(self->kcm, self->b[0], self->bpf));
	EXPECT_EQ(2, kcm_stat("MUX", "Attach") - attach0);

	for (i = 0; i < 6; i++) {
		int *p = i % 2 ? self->b : self->a;

		ASSERT_EQ(0, kcm_ctl_write_msg(p[1], i, 10 * i));
		EXPECT_EQ(KCM_TEST_HDR_LEN + 10 * i,
			  kcm_ctl_recv_msg(self->kcm, i, 10 * i, KCM_WAIT_MS, &ok));
		EXPECT_TRUE(ok);
		rx_bytes += KCM_TEST_HDR_LEN + 10 * i;
	}
	for (i = 0; i < 5; i++) {
		ssize_t n = kcm_test_msg(m, 100 + i, 20 * i);

		ASSERT_EQ(n, send(self->kcm, m, n, 0));
		tx_bytes += n;
		EXPECT_TRUE(kcm_ctl_read_either_msg(self->a[1], self->b[1],
						    100 + i, 20 * i));
	}
	EXPECT_EQ(6, kcm_stat("Psock", "RX-Msgs") - rx0);
	EXPECT_EQ(rx_bytes, kcm_stat("Psock", "RX-Bytes") - rxb0);
	EXPECT_EQ(5, kcm_stat("Psock", "TX-Msgs") - tx0);
	EXPECT_EQ(tx_bytes, kcm_stat("Psock", "TX-Bytes") - txb0);
	EXPECT_EQ(5, kcm_stat("MUX", "TX-Msgs") - mtx0);
	/* Totals survive the mux. */
	kcm_close_fd(&self->kcm);
	EXPECT_EQ(6, kcm_stat("Psock", "RX-Msgs") - rx0);
	EXPECT_EQ(5, kcm_stat("Psock", "TX-Msgs") - tx0);
	EXPECT_EQ(2, kcm_stat("MUX", "Attach") - attach0);
}

/* kcm_stats counts unattaches, explicit and at the mux's end. */
TEST_F(ctl, kcm_stats_unattach)
{
	long long un0 = kcm_stat("MUX", "Unattach");
	long long rsvd0 = kcm_stat("MUX", "UnattchRsvd");

	ASSERT_EQ(0, kcm_attach(self->kcm, self->a[0], self->bpf));
	ASSERT_EQ(0, kcm_attach(self->kcm, self->b[0], self->bpf));
	ASSERT_EQ(0, kcm_unattach(self->kcm, self->a[0]));
	EXPECT_EQ(-ENOENT, kcm_unattach(self->kcm, self->a[0]));
	if (kcmux_is_reference()) {
		/* The in-tree value is there, under the other name. */
		EXPECT_EQ(1, kcm_stat("MUX", "UnattchRsvd") - rsvd0);
		EXPECT_EQ(0, kcm_stat("MUX", "Unattach") - un0);
		SKIP(return, "in-tree kcm_stats prints psock_unattach under UnattchRsvd and psock_unattach_rsvd under Unattach (swapped)");
	}
	EXPECT_EQ(1, kcm_stat("MUX", "Unattach") - un0);
	EXPECT_EQ(0, kcm_stat("MUX", "UnattchRsvd") - rsvd0);
	kcm_close_fd(&self->kcm);	/* unattaches b */
	EXPECT_EQ(2, kcm_stat("MUX", "Unattach") - un0);
	EXPECT_EQ(0, kcm_stat("MUX", "UnattchRsvd") - rsvd0);
}

TEST_HARNESS_MAIN
