// SPDX-License-Identifier: GPL-2.0
/*
 * kcm-framing-demo: KCM without BPF, as an unprivileged user.
 *
 * The in-tree KCM needs a BPF program to find where messages end, and
 * loading one takes privileges on most systems (Debian, like most
 * distributions, sets kernel.unprivileged_bpf_disabled).  kcmux can
 * instead read the length from a fixed-width field of the message:
 * SIOCKCMATTACH_EXT with KCMUX_ATTACH_FRAMING and a struct kcmux_framing
 * saying where the field is, how wide, in which byte order, and what it
 * counts.  That covers most binary protocols.
 *
 * This demo, started as root, disables unprivileged BPF if it can (and
 * restores the setting at the end), then does everything else as user
 * nobody (65534) in a child process; started as another user it just
 * runs.  It shows that BPF is refused, then puts two TCP connections
 * speaking two different protocols on one multiplexor:
 *
 *   "tlv" connection: magic 0xcafe, type, flags, then a 32-bit
 *   little-endian length of the payload only:
 *
 *     +------+------+-----+-------+-----------+----------------+
 *     | 0xca | 0xfe | typ | flags | len (LE32)| payload (len)  |
 *     +------+------+-----+-------+-----------+----------------+
 *      offset 4, width 4, KCMUX_FRAMING_LITTLE_ENDIAN |
 *      KCMUX_FRAMING_EXCLUDES_HEADER, at most 4 KiB per message
 *
 *   "rec" connection: a 16-bit big-endian length of the whole record,
 *   itself included:
 *
 *     +-----------+---------------------+
 *     | len (BE16)| text (len - 2)      |
 *     +-----------+---------------------+
 *      offset 0, width 2, no flags
 *
 * A KCM socket then receives whole messages from both, however TCP cut
 * them (several in one write, one byte per write), and KCMUX_ORIGIN says
 * which connection each came from.  Last, a "tlv" header announcing 1 MiB
 * breaks the 4 KiB limit: the connection gets EMSGSIZE, the other
 * carries on.
 *
 * Build: make -C examples
 * Run:   examples/out/kcm-framing-demo     (kcmux.ko loaded)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/bpf.h>
#include <linux/sockios.h>	/* SIOCPROTOPRIVATE, SIOCINQ */
#include <linux/kcm.h>		/* AF_KCM, SIOCKCMATTACH_EXT, KCMUX_ORIGIN, ... */

#define BPF_SYSCTL	"/proc/sys/kernel/unprivileged_bpf_disabled"
#define NOBODY		65534
#define WAIT_MS		5000
#define TLV_HDR		8
#define TLV_MAX		4096

static int failures;

static void fail(const char *fmt, ...)
{
	va_list ap;

	printf("  !! ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	failures++;
}

static void step(const char *what)
{
	printf("\n== %s\n", what);
}

/* ---- privileges --------------------------------------------------------- */

static int read_sysctl(const char *path)
{
	char buf[16] = "";
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 0 ? atoi(buf) : -1;
}

static bool write_sysctl(const char *path, int v)
{
	char buf[16];
	int fd = open(path, O_WRONLY), n;
	bool ok;

	if (fd < 0)
		return false;
	n = snprintf(buf, sizeof(buf), "%d\n", v);
	ok = write(fd, buf, n) == n;
	close(fd);
	return ok;
}

/* Try to load a trivial socket filter: what a KCM BPF parser would be. */
static void try_bpf(void)
{
	static const struct bpf_insn prog[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 8 },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	union bpf_attr attr;
	int fd;

	memset(&attr, 0, sizeof(attr));
	attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
	attr.insns = (uintptr_t)prog;
	attr.insn_cnt = 2;
	attr.license = (uintptr_t)"GPL";
	fd = syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof(attr));
	if (fd < 0) {
		printf("   bpf(BPF_PROG_LOAD) is refused: %s\n", strerror(errno));
		printf("   so this process could not attach with SIOCKCMATTACH.\n");
	} else {
		printf("   bpf(BPF_PROG_LOAD) works here (unprivileged BPF is allowed);\n"
		       "   built-in framing does not need it anyway.\n");
		close(fd);
	}
}

/* ---- sockets -------------------------------------------------------------- */

/* A connected TCP pair over loopback: *peer writes, *tcp gets attached. */
static int tcp_pair(int *peer, int *tcp)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int lfd, one = 1;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) ||
	    listen(lfd, 1) || getsockname(lfd, (struct sockaddr *)&a, &len))
		return -1;
	*peer = socket(AF_INET, SOCK_STREAM, 0);
	if (*peer < 0 || connect(*peer, (struct sockaddr *)&a, sizeof(a)))
		return -1;
	*tcp = accept(lfd, NULL, NULL);
	close(lfd);
	if (*tcp < 0)
		return -1;
	/*
	 * One write, one segment: so the byte-by-byte writes below really
	 * arrive byte by byte.
	 */
	setsockopt(*peer, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return 0;
}

/* Attach tcp to the mux of kcm with framing f; returns the psock id or 0. */
static uint32_t attach(int kcm, int tcp, const struct kcmux_framing *f)
{
	struct kcmux_attach a;

	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	a.flags = KCMUX_ATTACH_FRAMING;
	a.fd = tcp;
	a.framing = *f;
	if (ioctl(kcm, SIOCKCMATTACH_EXT, &a) < 0) {
		fail("ioctl(SIOCKCMATTACH_EXT): %s%s", strerror(errno),
		     errno == ENOTTY ? " (no kcmux extensions: is kcmux.ko loaded?)" : "");
		return 0;
	}
	return a.psock_id;
}

static bool send_all(int fd, const void *buf, size_t len)
{
	return send(fd, buf, len, MSG_NOSIGNAL) == (ssize_t)len;
}

/* sendmsg() of one message on the psock with this id only. */
static ssize_t send_to(int kcm, const void *buf, size_t len, uint32_t id)
{
	union {
		char buf[CMSG_SPACE(sizeof(uint32_t))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr mh = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf),
	};
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

	memset(&ctl, 0, sizeof(ctl));
	c->cmsg_level = SOL_KCM;
	c->cmsg_type = KCMUX_ORIGIN;
	c->cmsg_len = CMSG_LEN(sizeof(id));
	memcpy(CMSG_DATA(c), &id, sizeof(id));
	return sendmsg(kcm, &mh, MSG_EOR | MSG_NOSIGNAL);
}

/* A "tlv" message in buf; returns its length. */
static size_t tlv(uint8_t *buf, uint8_t type, const char *payload)
{
	uint32_t len = strlen(payload);

	buf[0] = 0xca;
	buf[1] = 0xfe;
	buf[2] = type;
	buf[3] = 0;
	buf[4] = len;			/* little endian */
	buf[5] = len >> 8;
	buf[6] = len >> 16;
	buf[7] = len >> 24;
	memcpy(buf + TLV_HDR, payload, len);
	return TLV_HDR + len;
}

/* A "rec" message in buf; returns its length. */
static size_t rec(uint8_t *buf, const char *text)
{
	uint16_t len = 2 + strlen(text);

	buf[0] = len >> 8;		/* big endian, counting itself */
	buf[1] = len;
	memcpy(buf + 2, text, len - 2);
	return len;
}

/*
 * Receive one message and print it, naming the connection it came from.
 * Returns its length (0 on failure).
 */
static size_t show_one(int kcm, uint32_t tlv_id, uint32_t rec_id)
{
	union {
		char buf[CMSG_SPACE(sizeof(uint32_t))];
		struct cmsghdr align;
	} ctl;
	uint8_t buf[TLV_MAX];
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	struct msghdr mh = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf),
	};
	struct pollfd pfd = { .fd = kcm, .events = POLLIN };
	struct cmsghdr *c;
	uint32_t origin = 0;
	int inq = -1;
	ssize_t n;

	if (poll(&pfd, 1, WAIT_MS) != 1) {
		fail("no message within %d ms", WAIT_MS);
		return 0;
	}
	/* FIONREAD on a KCM socket: the size of the next message. */
	ioctl(kcm, SIOCINQ, &inq);
	n = recvmsg(kcm, &mh, MSG_DONTWAIT);
	if (n <= 0) {
		fail("recvmsg: %s", n ? strerror(errno) : "empty");
		return 0;
	}
	for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_KCM && c->cmsg_type == KCMUX_ORIGIN)
			memcpy(&origin, CMSG_DATA(c), sizeof(origin));
	if (origin == tlv_id && n >= TLV_HDR && buf[0] == 0xca && buf[1] == 0xfe)
		printf("   from tlv (psock %u): %3zd bytes, type %u: \"%.*s\"\n",
		       origin, n, buf[2], (int)(n - TLV_HDR), buf + TLV_HDR);
	else if (origin == rec_id && n >= 2 && (buf[0] << 8 | buf[1]) == n)
		printf("   from rec (psock %u): %3zd bytes: \"%.*s\"\n",
		       origin, n, (int)(n - 2), buf + 2);
	else
		fail("unexpected message of %zd bytes from psock %u", n, origin);
	if (inq != n)
		fail("FIONREAD said %d, the message has %zd bytes", inq, n);
	return n;
}

static int demo(void)
{
	const struct kcmux_framing tlv_framing = {
		.offset = 4,
		.width = 4,
		.flags = KCMUX_FRAMING_LITTLE_ENDIAN | KCMUX_FRAMING_EXCLUDES_HEADER,
		.max_size = TLV_MAX,
	};
	const struct kcmux_framing rec_framing = { .offset = 0, .width = 2 };
	uint8_t buf[3 * 256];
	int kcm, tlv_peer, tlv_tcp, rec_peer, rec_tcp, one = 1, i, err;
	uint32_t tlv_id, rec_id;
	socklen_t len = sizeof(err);
	struct pollfd pfd;
	uint8_t got[64];
	size_t n = 0, m;

	printf("   running as uid %d, gid %d\n", (int)getuid(), (int)getgid());
	try_bpf();

	step("A KCM socket and two TCP connections, attached with built-in framing");
	kcm = socket(AF_KCM, SOCK_SEQPACKET, KCMPROTO_CONNECTED);
	if (kcm < 0) {
		fail("socket(AF_KCM): %s (is kcmux.ko loaded?)", strerror(errno));
		return 1;
	}
	if (setsockopt(kcm, SOL_KCM, KCMUX_ORIGIN, &one, sizeof(one)))
		fail("setsockopt(KCMUX_ORIGIN): %s", strerror(errno));
	if (tcp_pair(&tlv_peer, &tlv_tcp) || tcp_pair(&rec_peer, &rec_tcp)) {
		fail("TCP over loopback: %s", strerror(errno));
		return 1;
	}
	tlv_id = attach(kcm, tlv_tcp, &tlv_framing);
	rec_id = attach(kcm, rec_tcp, &rec_framing);
	if (!tlv_id || !rec_id)
		return 1;
	printf("   tlv: LE32 length of the payload at offset 4, max 4 KiB -> psock %u\n",
	       tlv_id);
	printf("   rec: BE16 length of the record at offset 0             -> psock %u\n",
	       rec_id);

	step("Three tlv messages in one write, and a rec record in the middle of them");
	n = tlv(buf, 1, "hello");
	n += tlv(buf + n, 2, "three messages, one write");
	n += tlv(buf + n, 3, "");
	if (!send_all(tlv_peer, buf, n))
		fail("send: %s", strerror(errno));
	m = rec(buf, "a record on the other connection");
	if (!send_all(rec_peer, buf, m))
		fail("send: %s", strerror(errno));
	for (i = 0; i < 4; i++)
		show_one(kcm, tlv_id, rec_id);

	step("A tlv message written one byte at a time");
	n = tlv(buf, 4, "dribbled in byte by byte");
	for (i = 0; i < (int)n; i++) {
		if (!send_all(tlv_peer, buf + i, 1))
			fail("send: %s", strerror(errno));
		usleep(1000);
	}
	show_one(kcm, tlv_id, rec_id);

	step("Replying: the KCM socket sends whole messages, here on the rec connection");
	m = rec(buf, "reply");
	if (send_to(kcm, buf, m, rec_id) != (ssize_t)m)
		fail("sendmsg: %s", strerror(errno));
	pfd.fd = rec_peer;
	pfd.events = POLLIN;
	if (poll(&pfd, 1, WAIT_MS) != 1 ||
	    recv(rec_peer, got, sizeof(got), 0) != (ssize_t)m ||
	    memcmp(got, buf, m))
		fail("the rec peer did not get the reply");
	else
		printf("   the rec peer read %zu bytes: \"%.*s\"\n", m,
		       (int)m - 2, got + 2);

	step("A tlv header announcing 1 MiB: over the 4 KiB limit");
	n = tlv(buf, 5, "");
	buf[4] = 0;
	buf[5] = 0;
	buf[6] = 0x10;			/* 0x100000 = 1 MiB, little endian */
	if (!send_all(tlv_peer, buf, n))
		fail("send: %s", strerror(errno));
	/* POLLERR is reported without being asked for. */
	pfd.fd = tlv_tcp;
	pfd.events = 0;
	if (poll(&pfd, 1, WAIT_MS) != 1 || !(pfd.revents & POLLERR))
		fail("no error reported on the tlv connection");
	if (getsockopt(tlv_tcp, SOL_SOCKET, SO_ERROR, &err, &len))
		fail("SO_ERROR: %s", strerror(errno));
	else if (err != EMSGSIZE)
		fail("SO_ERROR is %d (%s), expected EMSGSIZE", err, strerror(err));
	else
		printf("   the tlv connection reports POLLERR, SO_ERROR = EMSGSIZE (%s);\n"
		       "   the mux stopped reading it, the application should close it\n",
		       strerror(err));
	m = rec(buf, "the rec connection still works");
	if (!send_all(rec_peer, buf, m))
		fail("send: %s", strerror(errno));
	show_one(kcm, tlv_id, rec_id);

	close(tlv_peer);
	close(tlv_tcp);
	close(rec_peer);
	close(rec_tcp);
	close(kcm);
	return failures ? 1 : 0;
}

int main(void)
{
	int old = -1, status, rc;
	bool restore = false;
	pid_t pid;

	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("kcm-framing-demo: KCM with built-in length framing, no BPF, no privileges\n");
	step("Privileges");
	if (geteuid() != 0) {
		rc = demo();
		printf("\nkcm-framing-demo: %s\n", rc ? "FAIL" : "PASS");
		return rc;
	}

	/*
	 * As root: make sure the unprivileged child really cannot use BPF.
	 * 2 ("disabled, root may re-enable") can be undone at the end; 1
	 * could not until reboot, so it is never written here.
	 */
	old = read_sysctl(BPF_SYSCTL);
	if (old == 0) {
		restore = write_sysctl(BPF_SYSCTL, 2);
		printf("   %s: 0 -> %s\n", BPF_SYSCTL,
		       restore ? "2 for this demo" : "unchanged (not writable)");
	} else if (old > 0) {
		printf("   %s is already %d\n", BPF_SYSCTL, old);
	}
	printf("   started as root: the demo runs in a child as nobody (%d:%d)\n",
	       NOBODY, NOBODY);
	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		perror("fork");
		return 1;
	}
	if (pid == 0) {
		if (setgroups(0, NULL) || setgid(NOBODY) || setuid(NOBODY)) {
			perror("kcm-framing-demo: dropping privileges");
			_exit(1);
		}
		_exit(demo());
	}
	rc = waitpid(pid, &status, 0) == pid && WIFEXITED(status) ?
	     WEXITSTATUS(status) : 1;
	if (restore && !write_sysctl(BPF_SYSCTL, old)) {
		fprintf(stderr, "kcm-framing-demo: could not restore %s to %d\n",
			BPF_SYSCTL, old);
		rc = 1;
	}
	printf("\nkcm-framing-demo: %s\n", rc ? "FAIL" : "PASS");
	return rc;
}
