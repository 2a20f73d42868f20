/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Small helpers shared by the kcmux selftests.
 *
 * Every test must pass against the in-tree kcm.ko (the reference) and
 * against kcmux.ko: nothing here may depend on which one is loaded,
 * except kcmux_is_reference() itself.
 *
 * Skipping, the harness way: SKIP() ends the test, and its TAP line
 * states the reason, e.g.
 *
 *	ok 9 global.module_identity # SKIP kcmux-only: testing the in-tree kcm.ko
 *
 * run-all.sh counts such lines as skipped, never as passed.  Usage:
 *
 *	if (kcmux_is_reference())
 *		SKIP(return, "kcmux-only: testing the in-tree kcm.ko");
 */
#ifndef KCM_TEST_H
#define KCM_TEST_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <linux/bpf.h>
#include <linux/sockios.h>
/* The project's header (../include/uapi first, see Makefile): it also
 * defines AF_KCM, PF_KCM and SOL_KCM, which libc may not. */
#include <linux/kcm.h>

/* --- which module is under test --------------------------------------- */

/* True when we test the in-tree kcm.ko, i.e. kcmux is not loaded. */
static inline bool kcmux_is_reference(void)
{
	return access("/sys/module/kcmux", F_OK) != 0;
}

static inline const char *kcm_module_name(void)
{
	return kcmux_is_reference() ? "kcm" : "kcmux";
}

/*
 * Reference count of the module under test, -1 if it has none (built
 * into the kernel, or not loaded).
 */
static inline int kcm_module_refcnt(void)
{
	char path[64];
	FILE *f;
	int n = -1;

	snprintf(path, sizeof(path), "/sys/module/%s/refcnt", kcm_module_name());
	f = fopen(path, "re");
	if (!f)
		return -1;
	if (fscanf(f, "%d", &n) != 1)
		n = -1;
	fclose(f);
	return n;
}

/* --- KCM sockets ---------------------------------------------------------- */

/* socket(AF_KCM, type, KCMPROTO_CONNECTED); -errno on failure. */
static inline int kcm_socket(int type)
{
	int fd = socket(AF_KCM, type | SOCK_CLOEXEC, KCMPROTO_CONNECTED);

	return fd < 0 ? -errno : fd;
}

static inline int kcm_attach(int kcmfd, int tcpfd, int bpffd)
{
	struct kcm_attach a = { .fd = tcpfd, .bpf_fd = bpffd };

	return ioctl(kcmfd, SIOCKCMATTACH, &a) ? -errno : 0;
}

static inline int kcm_unattach(int kcmfd, int tcpfd)
{
	struct kcm_unattach u = { .fd = tcpfd };

	return ioctl(kcmfd, SIOCKCMUNATTACH, &u) ? -errno : 0;
}

/* SIOCKCMCLONE: the new KCM socket's fd, or -errno. */
static inline int kcm_clone(int kcmfd)
{
	struct kcm_clone c = { .fd = -1 };

	return ioctl(kcmfd, SIOCKCMCLONE, &c) ? -errno : c.fd;
}

/* KCM_RECV_DISABLE on a KCM socket.  0 or -errno. */
static inline int kcm_recv_disable(int kcmfd, int val)
{
	return setsockopt(kcmfd, SOL_KCM, KCM_RECV_DISABLE, &val, sizeof(val)) ?
	       -errno : 0;
}

/* --- time, waits, file descriptors -------------------------------------- */

#define KCM_WAIT_MS	5000	/* bound of every "it must happen" wait */
#define KCM_QUIET_MS	200	/* "nothing (more) arrives" */

static inline long long kcm_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static inline void kcm_msleep(int ms)
{
	poll(NULL, 0, ms);
}

/* Closes *fd if open and marks it closed. */
static inline void kcm_close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* --- /proc, /sys and cgroup files -------------------------------------- */

/* Writes s to a kernel control file: 0 or -errno. */
static inline int kcm_write_file(const char *path, const char *s)
{
	ssize_t n, len = strlen(s);
	int fd, err;

	fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = write(fd, s, len);
	err = n < 0 ? -errno : n == len ? 0 : -EIO;
	close(fd);
	return err;
}

/* The number a kernel control file starts with, or -errno. */
static inline long long kcm_read_number(const char *path)
{
	char buf[32];
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = '\0';
	return atoll(buf);
}

#define KCM_TRACEFS	"/sys/kernel/tracing"

/* tracefs at KCM_TRACEFS, mounted if needed: 0, or -errno if there is none. */
static inline int kcm_tracefs(void)
{
	if (!access(KCM_TRACEFS "/events", F_OK))
		return 0;
	if (mount("tracefs", KCM_TRACEFS, "tracefs", 0, NULL))
		return -errno;
	return access(KCM_TRACEFS "/events", F_OK) ? -errno : 0;
}

/* --- socket options --------------------------------------------------- */

static inline int kcm_setint(int fd, int level, int name, int val)
{
	return setsockopt(fd, level, name, &val, sizeof(val)) ? -errno : 0;
}

/* An int socket option, or -errno. */
static inline int kcm_getint(int fd, int level, int name)
{
	socklen_t len = sizeof(int);
	int val = -1;

	if (getsockopt(fd, level, name, &val, &len))
		return -errno;
	return val;
}

/* SO_RCVTIMEO or SO_SNDTIMEO (name) in microseconds.  0 or -errno. */
static inline int kcm_set_timeo_us(int fd, int name, unsigned int usec)
{
	struct timeval tv = { .tv_sec = usec / 1000000,
			      .tv_usec = usec % 1000000 };

	return setsockopt(fd, SOL_SOCKET, name, &tv, sizeof(tv)) ? -errno : 0;
}

static inline int kcm_set_timeo(int fd, int name, int ms)
{
	return kcm_set_timeo_us(fd, name, (unsigned int)ms * 1000);
}

#ifndef SO_RCVBUFFORCE
#define SO_RCVBUFFORCE	33
#endif

/* SO_RCVBUF, beyond net.core.rmem_max when we may (root in the VM). */
static inline int kcm_set_rcvbuf(int fd, int bytes)
{
	if (!kcm_setint(fd, SOL_SOCKET, SO_RCVBUFFORCE, bytes))
		return 0;
	return kcm_setint(fd, SOL_SOCKET, SO_RCVBUF, bytes);
}

/* SO_ERROR of a socket (clears it), or -errno. */
static inline int kcm_sock_error(int fd)
{
	return kcm_getint(fd, SOL_SOCKET, SO_ERROR);
}

/* Bytes waiting in a stream socket's receive queue (SIOCINQ), or -errno. */
static inline int kcm_inq(int fd)
{
	int n = -1;

	return ioctl(fd, FIONREAD, &n) ? -errno : n;
}

/* --- network namespace -------------------------------------------------- */

/* Brings loopback up in the current network namespace.  0 or -errno. */
static inline int kcm_lo_up(void)
{
	struct ifreq ifr;
	int fd, err = 0;

	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr)) {
		err = -errno;
	} else {
		ifr.ifr_flags |= IFF_UP;
		if (ioctl(fd, SIOCSIFFLAGS, &ifr))
			err = -errno;
	}
	close(fd);
	return err;
}

/*
 * A private network namespace with loopback up: /proc/net/kcm and
 * /proc/net/kcm_stats then show only the caller's sockets, and the
 * counters start at zero.  0 or -errno.
 */
static inline int kcm_netns_enter(void)
{
	if (unshare(CLONE_NEWNET))
		return -errno;
	return kcm_lo_up();
}

/* --- TCP over loopback ------------------------------------------------ */

/* Options of kcm_tcp_pair_opts(); zero means the default. */
struct kcm_tcp_opts {
	int sndbuf;		/* SO_SNDBUF of fds[0], set before connect() */
	int rcvbuf;		/* SO_RCVBUF(FORCE) of the listener, so fds[1]
				 * has it, and a window sized for it, from
				 * the handshake on */
	bool nodelay;		/* TCP_NODELAY on both ends: one write, one
				 * segment */
	int sndtimeo_ms;	/* SO_SNDTIMEO of fds[0]: a stalled receiver
				 * fails a test instead of hanging it */
};

/*
 * A connected TCP pair over 127.0.0.1 (AF_INET) or ::1 (AF_INET6):
 * fds[0] is the connecting end, fds[1] the accepted one; o may be NULL.
 * 0 or -errno (nothing left open).
 */
static inline int kcm_tcp_pair_opts(int family, int fds[2],
				    const struct kcm_tcp_opts *o)
{
	static const struct kcm_tcp_opts none;
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	socklen_t len;
	int lfd, cfd = -1, afd = -1, err;

	if (!o)
		o = &none;
	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET) {
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(*sin);
	} else if (family == AF_INET6) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr = in6addr_loopback;
		len = sizeof(*sin6);
	} else {
		return -EAFNOSUPPORT;
	}

	lfd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		return -errno;
	if (o->rcvbuf > 0 && kcm_set_rcvbuf(lfd, o->rcvbuf))
		goto fail;
	/* Port 0: the kernel picks a free one, getsockname() tells which. */
	if (bind(lfd, (struct sockaddr *)&ss, len) || listen(lfd, 1) ||
	    getsockname(lfd, (struct sockaddr *)&ss, &len))
		goto fail;
	cfd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (cfd < 0)
		goto fail;
	if (o->sndbuf > 0 && kcm_setint(cfd, SOL_SOCKET, SO_SNDBUF, o->sndbuf))
		goto fail;
	if (connect(cfd, (struct sockaddr *)&ss, len))
		goto fail;
	afd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (afd < 0)
		goto fail;
	if (o->nodelay &&
	    (kcm_setint(cfd, IPPROTO_TCP, TCP_NODELAY, 1) ||
	     kcm_setint(afd, IPPROTO_TCP, TCP_NODELAY, 1)))
		goto fail;
	if (o->sndtimeo_ms > 0 &&
	    kcm_set_timeo(cfd, SO_SNDTIMEO, o->sndtimeo_ms))
		goto fail;
	close(lfd);
	fds[0] = cfd;
	fds[1] = afd;
	return 0;
fail:
	err = errno ? -errno : -EIO;
	if (afd >= 0)
		close(afd);
	if (cfd >= 0)
		close(cfd);
	close(lfd);
	return err;
}

static inline int kcm_tcp_pair(int family, int fds[2])
{
	return kcm_tcp_pair_opts(family, fds, NULL);
}

/* kcm_tcp_pair() with TCP_NODELAY on both ends. */
static inline int kcm_tcp_pair_nodelay(int family, int fds[2])
{
	const struct kcm_tcp_opts o = { .nodelay = true };

	return kcm_tcp_pair_opts(family, fds, &o);
}

/*
 * The peer resets the connection: close(*peer) with SO_LINGER 0, *peer
 * becomes -1, then waits until fd has seen the RST (POLLERR or POLLHUP).
 * 0, or -errno, -ETIMEDOUT if fd saw nothing within KCM_WAIT_MS.
 */
static inline int kcm_tcp_reset(int *peer, int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	if (setsockopt(*peer, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)))
		return -errno;
	close(*peer);
	*peer = -1;
	if (poll(&pfd, 1, KCM_WAIT_MS) != 1)
		return -ETIMEDOUT;
	return pfd.revents & (POLLERR | POLLHUP) ? 0 : -EPROTO;
}

/* --- reading and writing streams, polling --------------------------------- */

/* Writes all of buf on a (blocking) socket, without SIGPIPE.  0 or -errno. */
static inline int kcm_send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len) {
		n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= n;
	}
	return 0;
}

/*
 * Waits up to timeout_ms until TCP socket fd has nothing unacknowledged
 * (so TCP has let go of every page it sent); 0 then, else the bytes last
 * seen unacknowledged (-1 if SIOCOUTQ never answered).
 */
static inline int kcm_wait_outq_empty(int fd, int timeout_ms)
{
	long long deadline = kcm_now_ms() + timeout_ms;
	int outq = -1;

	while (!ioctl(fd, SIOCOUTQ, &outq) && outq && kcm_now_ms() < deadline)
		usleep(1000);
	return outq;
}

/* Reads up to exactly n bytes within timeout_ms in all; how many it got. */
static inline ssize_t kcm_read_exact(int fd, void *buf, size_t n,
				     int timeout_ms)
{
	long long deadline = kcm_now_ms() + timeout_ms;
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	size_t got = 0;

	while (got < n) {
		long long left = deadline - kcm_now_ms();
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

/* True if nothing becomes readable on fd within ms. */
static inline bool kcm_quiet(int fd, int ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	return poll(&pfd, 1, ms) == 0;
}

/* revents of fd after waiting up to ms for events; -errno on error. */
static inline int kcm_poll(int fd, short events, int ms)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int n = poll(&pfd, 1, ms);

	if (n < 0)
		return -errno;
	return n ? pfd.revents : 0;
}

/* Waits for POLLERR on fd: 0, or -ETIMEDOUT after ms. */
static inline int kcm_wait_pollerr(int fd, int ms)
{
	long long end = kcm_now_ms() + ms;
	int rev;

	for (;;) {
		long long left = end - kcm_now_ms();

		if (left < 0)
			return -ETIMEDOUT;
		/* POLLERR and POLLHUP are reported without being asked. */
		rev = kcm_poll(fd, 0, (int)left);
		if (rev < 0)
			return rev;
		if (rev & POLLERR)
			return 0;
		if (rev)	/* POLLHUP alone: would not block again */
			kcm_msleep(1);
	}
}

/*
 * The error posted on a socket: waits (KCM_WAIT_MS) for POLLERR, then
 * returns SO_ERROR; -1 if no error came.
 */
static inline int kcm_err_wait(int fd)
{
	if (kcm_wait_pollerr(fd, KCM_WAIT_MS))
		return -1;
	return kcm_sock_error(fd);
}

/* --- SIGPIPE ------------------------------------------------------------ */

/*
 * KCM transmits on a psock in the context of whoever pushes, and TCP
 * raises SIGPIPE there when the psock's peer is gone.  kcm_sigpipe_catch()
 * counts them from now on (the count starts at 0); kcm_sigpipes() is the
 * count.  0 or -errno.
 */
static atomic_uint kcm_sigpipe_count;

static inline void kcm_on_sigpipe(int sig)
{
	(void)sig;
	atomic_fetch_add(&kcm_sigpipe_count, 1);
}

static inline int kcm_sigpipe_catch(void)
{
	struct sigaction sa = { .sa_handler = kcm_on_sigpipe };

	atomic_store(&kcm_sigpipe_count, 0);
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	return sigaction(SIGPIPE, &sa, NULL) ? -errno : 0;
}

static inline int kcm_sigpipes(void)
{
	return (int)atomic_load(&kcm_sigpipe_count);
}

/* --- the message format and its BPF parser ------------------------------ */

/*
 * Every test message: a 4-byte big-endian length of the payload, a
 * 4-byte header the tests may use as they like (id, sequence number),
 * then the payload.  The parser returns the whole length, 8 + payload.
 */
#define KCM_TEST_HDR_LEN	8

/* Build a message in buf (at least KCM_TEST_HDR_LEN + len bytes). */
static inline size_t kcm_test_frame(void *buf, uint32_t hdr,
				    const void *payload, uint32_t len)
{
	uint32_t be_len = htonl(len), be_hdr = htonl(hdr);
	char *p = buf;

	memcpy(p, &be_len, 4);
	memcpy(p + 4, &be_hdr, 4);
	if (len)
		memcpy(p + KCM_TEST_HDR_LEN, payload, len);
	return KCM_TEST_HDR_LEN + len;
}

/* Payload byte i of the test message with header word hdr. */
static inline uint8_t kcm_pattern(uint32_t hdr, uint32_t i)
{
	return (uint8_t)(hdr * 131 + i * 7 + (i >> 8));
}

/* A test message with header word hdr and len pattern bytes; its size. */
static inline ssize_t kcm_test_msg(void *buf, uint32_t hdr, uint32_t len)
{
	uint32_t be_len = htonl(len), be_hdr = htonl(hdr);
	uint8_t *p = buf;
	uint32_t i;

	memcpy(p, &be_len, 4);
	memcpy(p + 4, &be_hdr, 4);
	for (i = 0; i < len; i++)
		p[KCM_TEST_HDR_LEN + i] = kcm_pattern(hdr, i);
	return KCM_TEST_HDR_LEN + len;
}

/* Is (buf, n) exactly kcm_test_msg(hdr, len)? */
static inline bool kcm_test_msg_ok(const void *buf, ssize_t n, uint32_t hdr,
				   uint32_t len)
{
	const uint8_t *p = buf;
	uint32_t be_len, be_hdr, i;

	if (n != (ssize_t)(KCM_TEST_HDR_LEN + len))
		return false;
	memcpy(&be_len, p, 4);
	memcpy(&be_hdr, p + 4, 4);
	if (ntohl(be_len) != len || ntohl(be_hdr) != hdr)
		return false;
	for (i = 0; i < len; i++)
		if (p[KCM_TEST_HDR_LEN + i] != kcm_pattern(hdr, i))
			return false;
	return true;
}

#define KCM_TEST_MAX_PAYLOAD	((1 << 20) + 3)

/*
 * Reads one message from the stream fd and checks it is the one
 * kcm_test_msg(hdr, len) built.  NULL if so, else a short reason.
 * Not thread-safe (one static buffer).
 */
static inline const char *kcm_read_msg(int fd, uint32_t hdr, uint32_t len,
				       int timeout_ms)
{
	static uint8_t buf[KCM_TEST_HDR_LEN + KCM_TEST_MAX_PAYLOAD];
	uint32_t be_len, be_hdr, i;

	if (len > KCM_TEST_MAX_PAYLOAD)
		return "test bug: message too long";
	if (kcm_read_exact(fd, buf, KCM_TEST_HDR_LEN, timeout_ms) !=
	    KCM_TEST_HDR_LEN)
		return "no message header within the timeout";
	memcpy(&be_len, buf, 4);
	memcpy(&be_hdr, buf + 4, 4);
	if (ntohl(be_len) != len)
		return "wrong length in the header";
	if (ntohl(be_hdr) != hdr)
		return "wrong sequence number in the header";
	if (kcm_read_exact(fd, buf + KCM_TEST_HDR_LEN, len, timeout_ms) !=
	    (ssize_t)len)
		return "payload incomplete within the timeout";
	for (i = 0; i < len; i++)
		if (buf[KCM_TEST_HDR_LEN + i] != kcm_pattern(hdr, i))
			return "payload corrupted";
	return NULL;
}

/*
 * The parser, as raw eBPF (BPF_PROG_TYPE_SOCKET_FILTER):
 *
 *	r6 = r1				LD_ABS takes the skb from r6
 *	r0 = skb->len
 *	if r0 >= 4 goto +2
 *	r0 = 0				fewer than 4 bytes: need more
 *	exit
 *	r0 = ntohl(*(u32 *)skb[0])	LD_ABS|W converts from big endian
 *	r0 += 8
 *	exit
 *
 * Caveat, true of the in-tree kcm.ko and hence part of the ABI: the
 * program sees the skb from the start of the TCP data the strparser was
 * handed, not from the start of the message (the message's offset in
 * the skb is not visible to socket filters).  So offset 0 is the message
 * start only for the first message of a segment; tests should send one
 * message per write and let it be consumed before the next one.
 */
#define KCM_INSN(c, d, s, o, i) \
	((struct bpf_insn){ .code = (c), .dst_reg = (d), .src_reg = (s), \
			    .off = (o), .imm = (i) })

static inline int kcm_bpf_prog_load(const struct bpf_insn *insns,
				    unsigned int cnt, char *log,
				    unsigned int log_size)
{
	union bpf_attr attr;
	int fd;

	memset(&attr, 0, sizeof(attr));
	attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
	attr.insns = (uintptr_t)insns;
	attr.insn_cnt = cnt;
	attr.license = (uintptr_t)"GPL";
	if (log && log_size) {
		log[0] = '\0';
		attr.log_buf = (uintptr_t)log;
		attr.log_size = log_size;
		attr.log_level = 1;
	}
	fd = syscall(__NR_bpf, BPF_PROG_LOAD, &attr, sizeof(attr));
	return fd < 0 ? -errno : fd;
}

/*
 * kcm_bpf_prog_load() that, on failure, loads again only to print the
 * verifier's explanation on stderr (as TAP comments, tagged with what).
 */
static inline int kcm_bpf_load_logged(const struct bpf_insn *insns,
				      unsigned int cnt, const char *what)
{
	static char log[16384];
	int fd;

	fd = kcm_bpf_prog_load(insns, cnt, NULL, 0);
	if (fd >= 0)
		return fd;
	kcm_bpf_prog_load(insns, cnt, log, sizeof(log));
	fprintf(stderr, "# BPF_PROG_LOAD%s: %s\n# %s\n", what, strerror(-fd),
		log);
	return fd;
}

/*
 * The parser above for a 4-byte big-endian length prefix, returning
 * that length + extra: extra is KCM_TEST_HDR_LEN for the test messages
 * (a length of the payload only), 4 for a length prefix and payload.
 */
static inline int kcm_bpf_len_parser(uint32_t extra)
{
	const struct bpf_insn insns[] = {
		KCM_INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_6, BPF_REG_1, 0, 0),
		KCM_INSN(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_0, BPF_REG_6,
			 offsetof(struct __sk_buff, len), 0),
		KCM_INSN(BPF_JMP | BPF_JGE | BPF_K, BPF_REG_0, 0, 2, 4),
		KCM_INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0),
		KCM_INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
		KCM_INSN(BPF_LD | BPF_ABS | BPF_W, 0, 0, 0, 0),
		KCM_INSN(BPF_ALU | BPF_ADD | BPF_K, BPF_REG_0, 0, 0, (int32_t)extra),
		KCM_INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
	};

	return kcm_bpf_load_logged(insns, sizeof(insns) / sizeof(insns[0]), "");
}

/*
 * The same parser through bpf_skb_load_bytes(skb, 0, buf, 4) instead of
 * LD_ABS: "need more" (0) while fewer than 4 bytes are there.
 */
static inline int kcm_bpf_len_parser_helper(uint32_t extra)
{
	const struct bpf_insn insns[] = {
		KCM_INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_2, 0, 0, 0),
		KCM_INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_3, BPF_REG_10, 0, 0),
		KCM_INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_3, 0, 0, -4),
		KCM_INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_4, 0, 0, 4),
		KCM_INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_skb_load_bytes),
		KCM_INSN(BPF_JMP | BPF_JEQ | BPF_K, BPF_REG_0, 0, 2, 0),
		KCM_INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0),
		KCM_INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
		KCM_INSN(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_0, BPF_REG_10, -4, 0),
		KCM_INSN(BPF_ALU | BPF_END | BPF_TO_BE, BPF_REG_0, 0, 0, 32),
		KCM_INSN(BPF_ALU | BPF_ADD | BPF_K, BPF_REG_0, 0, 0, (int32_t)extra),
		KCM_INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
	};

	return kcm_bpf_load_logged(insns, sizeof(insns) / sizeof(insns[0]),
				   "(skb_load_bytes)");
}

/* Load the parser for the test messages: a program fd, or -errno. */
static inline int kcm_bpf_load_parser(void)
{
	return kcm_bpf_len_parser(KCM_TEST_HDR_LEN);
}

/*
 * A parser that frames every message as len bytes whatever it sees: it
 * needs no offset, so it frames any stream on both implementations.
 */
static inline int kcm_bpf_fixed_parser(uint32_t len)
{
	const struct bpf_insn insns[] = {
		KCM_INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, (int32_t)len),
		KCM_INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
	};

	return kcm_bpf_prog_load(insns, 2, NULL, 0);
}

/* --- /proc/net/kcm and /proc/net/kcm_stats -------------------------------- */

#define KCM_PROC_MAXWORDS	32

/* Splits line (modified) into at most max blank-separated words. */
static inline int kcm_words(char *line, char **w, int max)
{
	char *save = NULL, *t;
	int n = 0;

	for (t = strtok_r(line, " \t\n", &save); t && n < max;
	     t = strtok_r(NULL, " \t\n", &save))
		w[n++] = t;
	return n;
}

/*
 * A total of /proc/net/kcm_stats: section "MUX" or "Psock" (the first
 * word of a header line), col a column name of that header, found by
 * name (the in-tree file has an extra RX-Aborts column).  The value line
 * under a header has no first word.  -1 if not found.
 */
static inline long long kcm_stat(const char *section, const char *col)
{
	char hdr[1024], val[1024];
	char *hw[KCM_PROC_MAXWORDS], *vw[KCM_PROC_MAXWORDS];
	long long res = -1;
	int nh, nv, i;
	FILE *f;

	f = fopen("/proc/net/kcm_stats", "re");
	if (!f)
		return -1;
	while (fgets(hdr, sizeof(hdr), f)) {
		nh = kcm_words(hdr, hw, KCM_PROC_MAXWORDS);
		if (nh < 2 || strcmp(hw[0], section))
			continue;
		if (!fgets(val, sizeof(val), f))
			break;
		nv = kcm_words(val, vw, KCM_PROC_MAXWORDS);
		for (i = 1; i < nh; i++)
			if (!strcmp(hw[i], col) && i - 1 < nv) {
				res = strtoll(vw[i - 1], NULL, 10);
				break;
			}
		break;
	}
	fclose(f);
	return res;
}

/*
 * Column col of an object line of /proc/net/kcm (under the last
 * "Object" header line): with nth < 0 the first whose name is name
 * ("mux", "kcm-0", "psock-1"), else the nth (from 0) whose name starts
 * with name ("kcm-").  -1 if there is no such line.
 */
static inline long long kcm_proc_find(const char *name, int nth,
				      const char *col)
{
	char line[1024], *w[KCM_PROC_MAXWORDS];
	long long res = -1;
	int idx = -1, n, i;
	FILE *f;

	f = fopen("/proc/net/kcm", "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		n = kcm_words(line, w, KCM_PROC_MAXWORDS);
		if (n < 2)
			continue;
		if (!strcmp(w[0], "Object")) {
			for (i = 1; i < n; i++)
				if (!strcmp(w[i], col))
					idx = i;
			continue;
		}
		if (nth < 0 ? strcmp(w[0], name) :
			      strncmp(w[0], name, strlen(name)) || nth--)
			continue;
		if (idx > 0 && idx < n) {
			res = strtoll(w[idx], NULL, 10);
			break;
		}
		if (nth >= 0)
			break;
	}
	fclose(f);
	return res;
}

/* Column col of object obj ("mux", "kcm-0", "psock-1") in /proc/net/kcm. */
static inline long long kcm_proc_value(const char *obj, const char *col)
{
	return kcm_proc_find(obj, -1, col);
}

/* Column col of the nth line of /proc/net/kcm whose name starts with prefix. */
static inline long long kcm_proc_nth(const char *prefix, int nth,
				     const char *col)
{
	return kcm_proc_find(prefix, nth, col);
}

/*
 * Waits (bounded by KCM_WAIT_MS) until a counter reaches at least min:
 * there is no event to poll for "the mux has taken a message".  Both
 * return the last value seen.
 */
static inline long long kcm_wait_stat(const char *section, const char *col,
				      long long min)
{
	long long end = kcm_now_ms() + KCM_WAIT_MS, v;

	while ((v = kcm_stat(section, col)) < min && kcm_now_ms() <= end)
		kcm_msleep(1);
	return v;
}

static inline long long kcm_wait_proc(const char *obj, const char *col,
				      long long min)
{
	long long end = kcm_now_ms() + KCM_WAIT_MS, v;

	while ((v = kcm_proc_value(obj, col)) < min && kcm_now_ms() <= end)
		kcm_msleep(1);
	return v;
}

/* Copies a file (/proc/net/kcm...) to stderr as TAP comments. */
static inline void kcm_dump_file(const char *path)
{
	char line[512];
	FILE *f = fopen(path, "re");

	if (!f) {
		fprintf(stderr, "# %s: %s\n", path, strerror(errno));
		return;
	}
	fprintf(stderr, "# --- %s\n", path);
	while (fgets(line, sizeof(line), f))
		fprintf(stderr, "#   %s", line);
	fclose(f);
}

#endif /* KCM_TEST_H */
