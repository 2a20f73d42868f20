// SPDX-License-Identifier: GPL-2.0
/*
 * kcm_ext: the kcmux extensions of <linux/kcm.h>.  The in-tree module
 * has none of them, so every test skips on it (except probe_reference,
 * which checks that a program can tell the two apart).
 *
 *   framing_*      SIOCKCMATTACH_EXT with built-in length-field framing:
 *                  every width, byte order, header mode, adjust and
 *                  offset; framing errors; validation of the request;
 *                  use by an unprivileged process that cannot load BPF
 *   attach_ext_*   SIOCKCMATTACH_EXT in general, with a BPF program,
 *                  and the psock ids it returns
 *   psock_id_*     SIOCKCMPSOCKID
 *   origin_*       KCMUX_ORIGIN: the socket option and its control message
 *   target_*       targeted send: sendmsg with a KCMUX_ORIGIN control
 *                  message
 *   inq_*          FIONREAD (SIOCINQ) on a KCM socket
 *   nl_*           the generic netlink family "kcmux": dumps, events and
 *                  network namespaces
 *   trace_*        the kcmux tracepoints
 *   echo.origin    an echo server with one mux that answers every request
 *                  on the connection it came in on
 *
 * The semantics tested are those include/uapi/linux/kcm.h documents;
 * the comment of each test says which sentence it holds the module to.
 *
 * Each test runs in its own network namespace.  Framed messages here are
 * built by kx_frame(): pattern bytes everywhere, then the length field
 * written at its offset, so a module reading the field anywhere else, in
 * the other byte order or with another width, reads pattern bytes and
 * frames the stream wrongly.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <linux/bpf.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/sockios.h>

#include "kcm_test.h"
/*
 * gcc -Wclobbered misfires on the harness's own setjmp-based TEST_F
 * wrapper (see kcm_ctl.c); not our code.
 */
#pragma GCC diagnostic ignored "-Wclobbered"
#include "kselftest_harness.h"

#define KX_ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))

/* Every test starts with this: the in-tree module has no extension. */
#define KX_REQUIRE_KCMUX(what) do {					\
	if (kcmux_is_reference())					\
		SKIP(return, "kcmux extension: %s", what);		\
} while (0)

#define KX_MIB			(1024 * 1024)
#define KX_MSG_LIMIT		(64 * KX_MIB)	/* the module's message limit */

/* ------------------------------------------------------------------ */
/* TCP connections                                                     */
/* ------------------------------------------------------------------ */

/* A loopback TCP connection: tcp is attached to a mux, peer is the far end. */
struct kx_pair {
	int peer;
	int tcp;
};

/*
 * A pair with TCP_NODELAY on both ends; the peer has a bounded
 * SO_SNDTIMEO (a stalled mux fails a test instead of hanging it) and the
 * attached end an SO_RCVBUF of rcvbuf if > 0 (set on the listener, so
 * the window is sized for it from the handshake on).  0 or -errno.
 */
static int kx_pair_open_rcvbuf(struct kx_pair *p, int family, int rcvbuf)
{
	const struct kcm_tcp_opts o = {
		.rcvbuf = rcvbuf,
		.nodelay = true,
		.sndtimeo_ms = KCM_WAIT_MS,
	};
	int fds[2], err;

	p->peer = p->tcp = -1;
	err = kcm_tcp_pair_opts(family, fds, &o);
	if (err)
		return err;
	p->peer = fds[0];
	p->tcp = fds[1];
	return 0;
}

static int kx_pair_open(struct kx_pair *p)
{
	return kx_pair_open_rcvbuf(p, AF_INET, 0);
}

static void kx_pair_close(struct kx_pair *p)
{
	kcm_close_fd(&p->peer);
	kcm_close_fd(&p->tcp);
}

/* The inode number of a socket (what /proc/PID/fd shows as socket:[N]). */
static uint64_t kx_ino(int fd)
{
	struct stat st;

	return fstat(fd, &st) ? 0 : (uint64_t)st.st_ino;
}

/* The local (peer == false) or remote port of a TCP socket, host order. */
static int kx_port(int fd, bool peer)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int r;

	r = peer ? getpeername(fd, (struct sockaddr *)&ss, &len) :
		   getsockname(fd, (struct sockaddr *)&ss, &len);
	if (r)
		return -errno;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

/* True if no byte arrives on a stream socket within ms. */
static bool kx_stream_quiet(int fd, int ms)
{
	return kcm_quiet(fd, ms);
}

/*
 * The attached TCP socket is an ordinary one: bytes written by the peer
 * are read on it and bytes written on it reach the peer.
 */
static bool kx_plain_tcp_works(int tcp, int peer)
{
	static const char ping[] = "ping over plain TCP";
	static const char pong[] = "pong over plain TCP";
	char buf[64];

	if (kcm_send_all(peer, ping, sizeof(ping)) ||
	    kcm_read_exact(tcp, buf, sizeof(ping), KCM_WAIT_MS) != sizeof(ping) ||
	    memcmp(buf, ping, sizeof(ping)))
		return false;
	if (kcm_send_all(tcp, pong, sizeof(pong)) ||
	    kcm_read_exact(peer, buf, sizeof(pong), KCM_WAIT_MS) != sizeof(pong) ||
	    memcmp(buf, pong, sizeof(pong)))
		return false;
	return true;
}

/* How many psock lines /proc/net/kcm has (all muxes of the netns). */
static int kx_proc_psocks(void)
{
	char line[1024];
	int n = 0;
	FILE *f;

	f = fopen("/proc/net/kcm", "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line + strspn(line, " "), "psock-", 6))
			n++;
	fclose(f);
	return n;
}

/* ------------------------------------------------------------------ */
/* The extension ioctls                                                */
/* ------------------------------------------------------------------ */

static int kx_attach_ext(int kcm, void *req)
{
	return ioctl(kcm, SIOCKCMATTACH_EXT, req) ? -errno : 0;
}

static struct kcmux_attach kx_framing_req(int tcp, const struct kcmux_framing *f)
{
	struct kcmux_attach a;

	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	a.flags = KCMUX_ATTACH_FRAMING;
	a.fd = tcp;
	a.framing = *f;
	return a;
}

/* Attaches tcp with framing f; *id gets the psock id.  0 or -errno. */
static int kx_attach_framing(int kcm, int tcp, const struct kcmux_framing *f,
			     uint32_t *id)
{
	struct kcmux_attach a = kx_framing_req(tcp, f);
	int err;

	a.psock_id = 0;
	err = kx_attach_ext(kcm, &a);
	if (!err && id)
		*id = a.psock_id;
	return err;
}

/* Attaches tcp with BPF program bpf through SIOCKCMATTACH_EXT. */
static int kx_attach_bpf(int kcm, int tcp, int bpf, uint32_t *id)
{
	struct kcmux_attach a;
	int err;

	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	a.flags = KCMUX_ATTACH_BPF;
	a.fd = tcp;
	a.bpf_fd = bpf;
	err = kx_attach_ext(kcm, &a);
	if (!err && id)
		*id = a.psock_id;
	return err;
}

/* SIOCKCMPSOCKID: the id (> 0), or -errno. */
static int64_t kx_psock_id(int kcm, int tcp)
{
	struct kcmux_psock_id p = { .fd = tcp, .psock_id = 0 };

	if (ioctl(kcm, SIOCKCMPSOCKID, &p))
		return -errno;
	return p.psock_id;
}

/* The framing most tests use: a 4-byte big-endian length of the whole message. */
static const struct kcmux_framing kx_be32_framing = { .width = 4 };

/* ------------------------------------------------------------------ */
/* Framed messages                                                     */
/* ------------------------------------------------------------------ */

/* Byte i of the message with this seed. */
static uint8_t kx_pat(uint32_t seed, uint32_t i)
{
	uint32_t x = (seed ^ 0x5bd1e995u) * 2654435761u + i * 40503u;

	return (uint8_t)(x >> 13 ^ x >> 24 ^ i);
}

/*
 * The length field value that makes a message total bytes long under f:
 * total = value + adjust (+ offset + width when the field excludes the
 * header).  -1 if no value of the field's width gives total.
 */
static int64_t kx_value_for(const struct kcmux_framing *f, uint32_t total)
{
	int64_t v = (int64_t)total - f->adjust;

	if (f->flags & KCMUX_FRAMING_EXCLUDES_HEADER)
		v -= (int64_t)f->offset + f->width;
	if (v < 0)
		return -1;
	if (f->width < 8 && (uint64_t)v >> (8 * f->width))
		return -1;
	return v;
}

/* Writes v as a width-byte unsigned integer at p. */
static void kx_put_uint(uint8_t *p, unsigned int width, bool le, uint64_t v)
{
	unsigned int i;

	for (i = 0; i < width; i++)
		p[le ? i : width - 1 - i] = (uint8_t)(v >> (8 * i));
}

/*
 * total bytes of pattern seed in buf, then the length field of f holding
 * value (need not be consistent with total: error tests lie).
 */
static void kx_frame_value(uint8_t *buf, const struct kcmux_framing *f,
			   uint32_t total, uint32_t seed, uint64_t value)
{
	uint32_t i;

	for (i = 0; i < total; i++)
		buf[i] = kx_pat(seed, i);
	kx_put_uint(buf + f->offset, f->width,
		    f->flags & KCMUX_FRAMING_LITTLE_ENDIAN, value);
}

/* A correct message of total bytes under f; false if f cannot frame it. */
static bool kx_frame(uint8_t *buf, const struct kcmux_framing *f,
		     uint32_t total, uint32_t seed)
{
	int64_t v = kx_value_for(f, total);

	if (v < 0 || total < f->offset + f->width)
		return false;
	kx_frame_value(buf, f, total, seed, (uint64_t)v);
	return true;
}

/* Builds a be32-framed message of total bytes (>= 8) whose bytes 4..7 say tag. */
static uint32_t kx_tagged(uint8_t *buf, uint32_t total, uint32_t tag)
{
	uint32_t be = htonl(tag);

	kx_frame(buf, &kx_be32_framing, total, tag);
	memcpy(buf + 4, &be, 4);
	return total;
}

static uint32_t kx_tag_of(const uint8_t *buf)
{
	uint32_t be;

	memcpy(&be, buf + 4, 4);
	return ntohl(be);
}

/* Is (buf, n) what kx_tagged(total, tag) built? */
static bool kx_tagged_ok(const uint8_t *buf, ssize_t n, uint32_t total,
			 uint32_t tag)
{
	static uint8_t want[128 * 1024];

	if (n != (ssize_t)total || total > sizeof(want))
		return false;
	kx_tagged(want, total, tag);
	return !memcmp(buf, want, total);
}

/* ------------------------------------------------------------------ */
/* KCM sockets: receiving, KCMUX_ORIGIN                                */
/* ------------------------------------------------------------------ */

/* Receives one message within timeout_ms: its length, or -errno. */
static ssize_t kx_recv(int fd, void *buf, size_t cap, int timeout_ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	ssize_t n;

	if (poll(&pfd, 1, timeout_ms) != 1)
		return -ETIMEDOUT;
	n = recv(fd, buf, cap, MSG_DONTWAIT);
	return n < 0 ? -errno : n;
}

/* What kx_recvmsg() saw. */
struct kx_rcv {
	ssize_t n;		/* length, or -errno */
	int flags;		/* msg_flags */
	int ncmsg;		/* control messages returned */
	int norigin;		/* of which (SOL_KCM, KCMUX_ORIGIN) */
	size_t origin_len;	/* cmsg_len of the last one */
	uint32_t origin;	/* its id (if its length holds one) */
	size_t controllen;	/* msg_controllen on return */
};

/*
 * recvmsg of one message (waiting up to timeout_ms) with a control
 * buffer of ctl_len bytes (NULL if ctl_len is 0).
 */
static struct kx_rcv kx_recvmsg(int fd, void *buf, size_t cap, size_t ctl_len,
				int flags, int timeout_ms)
{
	union {
		char buf[256];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = buf, .iov_len = cap };
	struct msghdr mh = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = ctl_len ? ctl.buf : NULL,
		.msg_controllen = ctl_len,
	};
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	struct kx_rcv r = { .n = -ETIMEDOUT };
	struct cmsghdr *c;

	memset(&ctl, 0xa5, sizeof(ctl));
	if (ctl_len > sizeof(ctl.buf))
		abort();
	if (poll(&pfd, 1, timeout_ms) != 1)
		return r;
	r.n = recvmsg(fd, &mh, flags | MSG_DONTWAIT);
	if (r.n < 0) {
		r.n = -errno;
		return r;
	}
	r.flags = mh.msg_flags;
	r.controllen = mh.msg_controllen;
	if (!ctl_len || mh.msg_controllen < sizeof(struct cmsghdr))
		return r;
	for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		r.ncmsg++;
		if (c->cmsg_level != SOL_KCM || c->cmsg_type != KCMUX_ORIGIN)
			continue;
		r.norigin++;
		r.origin_len = c->cmsg_len;
		if (c->cmsg_len >= CMSG_LEN(sizeof(uint32_t)))
			memcpy(&r.origin, CMSG_DATA(c), sizeof(uint32_t));
	}
	return r;
}

/* The control buffer that carries an origin id. */
#define KX_ORIGIN_SPACE		CMSG_SPACE(sizeof(uint32_t))

static int kx_set_origin(int kcm, int on)
{
	return kcm_setint(kcm, SOL_KCM, KCMUX_ORIGIN, on);
}

/*
 * sendmsg of buf with a (SOL_KCM, KCMUX_ORIGIN) control message whose
 * cmsg_len is CMSG_LEN(data_len) and whose data starts with id; no
 * control message at all if data_len < 0.  MSG_NOSIGNAL always.  The
 * length sent, or -errno.
 */
static ssize_t kx_sendmsg_raw(int kcm, const void *buf, size_t len, uint32_t id,
			      int data_len, int flags)
{
	union {
		char buf[CMSG_SPACE(64)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c;
	ssize_t n;

	memset(&ctl, 0, sizeof(ctl));
	if (data_len >= 0) {
		if (data_len > 64)
			abort();
		mh.msg_control = ctl.buf;
		mh.msg_controllen = CMSG_SPACE(data_len);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_KCM;
		c->cmsg_type = KCMUX_ORIGIN;
		c->cmsg_len = CMSG_LEN(data_len);
		memcpy(CMSG_DATA(c), &id, data_len < 4 ? data_len : 4);
	}
	n = sendmsg(kcm, &mh, flags | MSG_NOSIGNAL);
	return n < 0 ? -errno : n;
}

/* Sends buf on psock id only (a whole message unless flags say otherwise). */
static ssize_t kx_send_to(int kcm, const void *buf, size_t len, uint32_t id,
			  int flags)
{
	return kx_sendmsg_raw(kcm, buf, len, id, sizeof(uint32_t), flags);
}

/* The flags that end a message on a KCM socket of this type. */
static int kx_eor(int type)
{
	return type == SOCK_SEQPACKET ? MSG_EOR : 0;
}

/* ------------------------------------------------------------------ */
/* Generic netlink: a minimal client of the "kcmux" family             */
/* ------------------------------------------------------------------ */

#define KX_NL_BUF	(64 * 1024)
#define KX_NL_MAXOBJ	128

struct kx_nl {
	int fd;
	uint32_t seq;
	uint16_t family;	/* the family's id, once resolved */
	uint32_t events;	/* multicast group id of "events" */
};

/* One object of a dump, or one event, decoded. */
struct kx_obj {
	uint8_t cmd;
	bool has[KCMUX_A_MAX + 1];
	uint16_t len[KCMUX_A_MAX + 1];		/* payload length */
	uint64_t val[KCMUX_A_MAX + 1];		/* integer attributes */
	uint8_t bin[KCMUX_A_MAX + 1][16];	/* first bytes of binary ones */
	bool has_stat[KCMUX_STAT_MAX + 1];
	uint16_t stat_len[KCMUX_STAT_MAX + 1];
	uint64_t stat[KCMUX_STAT_MAX + 1];
};

static int kx_nl_open(struct kx_nl *nl)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	struct timeval tv = { .tv_sec = KCM_WAIT_MS / 1000 };

	memset(nl, 0, sizeof(*nl));
	nl->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
	if (nl->fd < 0)
		return -errno;
	if (bind(nl->fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    setsockopt(nl->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv))) {
		int err = -errno;

		close(nl->fd);
		nl->fd = -1;
		return err;
	}
	nl->seq = 1;
	return 0;
}

static void kx_nl_close(struct kx_nl *nl)
{
	kcm_close_fd(&nl->fd);
}

/* Appends attribute (type, data, len) at *off of buf. */
static void kx_nla_put(char *buf, size_t *off, uint16_t type, const void *data,
		       uint16_t len)
{
	struct nlattr *a = (struct nlattr *)(buf + *off);

	a->nla_type = type;
	a->nla_len = NLA_HDRLEN + len;
	memcpy(buf + *off + NLA_HDRLEN, data, len);
	*off += NLA_ALIGN(a->nla_len);
}

/* Sends a generic netlink request; returns its sequence number or -errno. */
static int64_t kx_nl_send(struct kx_nl *nl, uint16_t family, uint16_t flags,
			  uint8_t cmd, uint8_t version, const char *attrs,
			  size_t alen)
{
	char buf[512];
	struct nlmsghdr *h = (struct nlmsghdr *)buf;
	struct genlmsghdr *g = NLMSG_DATA(h);
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };

	if (NLMSG_HDRLEN + GENL_HDRLEN + alen > sizeof(buf))
		return -E2BIG;
	memset(buf, 0, sizeof(buf));
	h->nlmsg_len = NLMSG_HDRLEN + GENL_HDRLEN + alen;
	h->nlmsg_type = family;
	h->nlmsg_flags = NLM_F_REQUEST | flags;
	h->nlmsg_seq = ++nl->seq;
	g->cmd = cmd;
	g->version = version;
	memcpy(buf + NLMSG_HDRLEN + GENL_HDRLEN, attrs, alen);
	if (sendto(nl->fd, buf, h->nlmsg_len, 0, (struct sockaddr *)&kernel,
		   sizeof(kernel)) < 0)
		return -errno;
	return h->nlmsg_seq;
}

typedef int (*kx_nl_cb)(const struct nlmsghdr *h, void *arg);

/*
 * Reads the reply to seq: calls cb for each data message; a dump ends
 * with NLMSG_DONE, a request with its one reply or an error.  0 or
 * -errno (the kernel's error, or -ETIMEDOUT).
 */
static int kx_nl_recv(struct kx_nl *nl, uint32_t seq, bool dump, kx_nl_cb cb,
		      void *arg)
{
	static char buf[KX_NL_BUF];
	struct nlmsghdr *h;
	ssize_t n;
	int err;

	for (;;) {
		n = recv(nl->fd, buf, sizeof(buf), 0);
		if (n < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		for (h = (struct nlmsghdr *)buf; NLMSG_OK(h, n);
		     h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_seq != seq)
				continue;
			if (h->nlmsg_type == NLMSG_DONE)
				return 0;
			if (h->nlmsg_type == NLMSG_ERROR) {
				struct nlmsgerr *e = NLMSG_DATA(h);

				if (e->error || !dump)
					return e->error;
				continue;
			}
			err = cb(h, arg);
			if (err)
				return err;
			if (!dump)
				return 0;
		}
	}
}

struct kx_family {
	uint16_t id;
	uint32_t events;
};

static int kx_nl_family_cb(const struct nlmsghdr *h, void *arg)
{
	struct kx_family *fam = arg;
	const char *p = (const char *)NLMSG_DATA(h) + GENL_HDRLEN;
	int left = h->nlmsg_len - NLMSG_HDRLEN - GENL_HDRLEN;
	const struct nlattr *a;

	for (a = (const void *)p; left >= NLA_HDRLEN && a->nla_len >= NLA_HDRLEN &&
	     a->nla_len <= left;
	     left -= NLA_ALIGN(a->nla_len),
	     a = (const void *)((const char *)a + NLA_ALIGN(a->nla_len))) {
		const char *data = (const char *)a + NLA_HDRLEN;
		int type = a->nla_type & NLA_TYPE_MASK;

		if (type == CTRL_ATTR_FAMILY_ID) {
			memcpy(&fam->id, data, sizeof(fam->id));
		} else if (type == CTRL_ATTR_MCAST_GROUPS) {
			/* A nest of nests, one per group. */
			const struct nlattr *grp = (const void *)data;
			int gleft = a->nla_len - NLA_HDRLEN;

			for (; gleft >= NLA_HDRLEN && grp->nla_len >= NLA_HDRLEN &&
			     grp->nla_len <= gleft;
			     gleft -= NLA_ALIGN(grp->nla_len),
			     grp = (const void *)((const char *)grp +
						  NLA_ALIGN(grp->nla_len))) {
				const struct nlattr *g = (const void *)
					((const char *)grp + NLA_HDRLEN);
				int ileft = grp->nla_len - NLA_HDRLEN;
				const char *name = NULL;
				uint32_t gid = 0;

				for (; ileft >= NLA_HDRLEN && g->nla_len >= NLA_HDRLEN &&
				     g->nla_len <= ileft;
				     ileft -= NLA_ALIGN(g->nla_len),
				     g = (const void *)((const char *)g +
							NLA_ALIGN(g->nla_len))) {
					const char *gd = (const char *)g + NLA_HDRLEN;

					if (g->nla_type == CTRL_ATTR_MCAST_GRP_NAME)
						name = gd;
					else if (g->nla_type == CTRL_ATTR_MCAST_GRP_ID)
						memcpy(&gid, gd, sizeof(gid));
				}
				if (name && !strcmp(name, KCMUX_GENL_MCGRP_EVENTS))
					fam->events = gid;
			}
		}
	}
	return 0;
}

/* Resolves family "kcmux" with CTRL_CMD_GETFAMILY.  0 or -errno. */
static int kx_nl_resolve(struct kx_nl *nl)
{
	struct kx_family fam = { 0 };
	char attrs[64];
	size_t alen = 0;
	int64_t seq;
	int err;

	kx_nla_put(attrs, &alen, CTRL_ATTR_FAMILY_NAME, KCMUX_GENL_NAME,
		   sizeof(KCMUX_GENL_NAME));
	seq = kx_nl_send(nl, GENL_ID_CTRL, 0, CTRL_CMD_GETFAMILY, 1, attrs, alen);
	if (seq < 0)
		return (int)seq;
	err = kx_nl_recv(nl, (uint32_t)seq, false, kx_nl_family_cb, &fam);
	if (err)
		return err;
	if (!fam.id)
		return -ENOENT;
	nl->family = fam.id;
	nl->events = fam.events;
	return 0;
}

/* Opens a socket and resolves the family.  0 or -errno. */
static int kx_nl_open_family(struct kx_nl *nl)
{
	int err = kx_nl_open(nl);

	if (err)
		return err;
	err = kx_nl_resolve(nl);
	if (err)
		kx_nl_close(nl);
	return err;
}

/* Decodes one kcmux message (a dump object or an event). */
static void kx_obj_parse(const struct nlmsghdr *h, struct kx_obj *o)
{
	const struct genlmsghdr *g = NLMSG_DATA(h);
	const char *p = (const char *)g + GENL_HDRLEN;
	int left = h->nlmsg_len - NLMSG_HDRLEN - GENL_HDRLEN;
	const struct nlattr *a;

	memset(o, 0, sizeof(*o));
	o->cmd = g->cmd;
	for (a = (const void *)p; left >= NLA_HDRLEN && a->nla_len >= NLA_HDRLEN &&
	     a->nla_len <= left;
	     left -= NLA_ALIGN(a->nla_len),
	     a = (const void *)((const char *)a + NLA_ALIGN(a->nla_len))) {
		const uint8_t *data = (const uint8_t *)a + NLA_HDRLEN;
		int type = a->nla_type & NLA_TYPE_MASK;
		uint16_t len = a->nla_len - NLA_HDRLEN;

		if (type > KCMUX_A_MAX)
			continue;	/* newer than this test */
		o->has[type] = true;
		o->len[type] = len;
		memcpy(o->bin[type], data, len < 16 ? len : 16);
		if (len == 1)
			o->val[type] = data[0];
		else if (len == 2)
			o->val[type] = *(const uint16_t *)data;
		else if (len == 4)
			o->val[type] = *(const uint32_t *)data;
		else if (len == 8)
			memcpy(&o->val[type], data, 8);
		if (type == KCMUX_A_STATS) {
			const struct nlattr *s = (const void *)data;
			int sleft = len;

			for (; sleft >= NLA_HDRLEN && s->nla_len >= NLA_HDRLEN &&
			     s->nla_len <= sleft;
			     sleft -= NLA_ALIGN(s->nla_len),
			     s = (const void *)((const char *)s +
						NLA_ALIGN(s->nla_len))) {
				int st = s->nla_type & NLA_TYPE_MASK;

				if (st > KCMUX_STAT_MAX)
					continue;
				o->has_stat[st] = true;
				o->stat_len[st] = s->nla_len - NLA_HDRLEN;
				if (o->stat_len[st] == 8)
					memcpy(&o->stat[st],
					       (const char *)s + NLA_HDRLEN, 8);
			}
		}
	}
}

struct kx_dump {
	struct kx_obj obj[KX_NL_MAXOBJ];
	int n;
	int overflow;
};

static int kx_nl_dump_cb(const struct nlmsghdr *h, void *arg)
{
	struct kx_dump *d = arg;

	if (d->n == KX_NL_MAXOBJ) {
		/* A dump that does not end would hang the test: fail it. */
		if (++d->overflow > 10000)
			return -ELOOP;
		return 0;
	}
	kx_obj_parse(h, &d->obj[d->n++]);
	return 0;
}

/* Dumps cmd (GET_MUX, GET_SOCK or GET_PSOCK) into d.  0 or -errno. */
static int kx_nl_dump(struct kx_nl *nl, uint8_t cmd, struct kx_dump *d)
{
	int64_t seq;

	memset(d, 0, sizeof(*d));
	seq = kx_nl_send(nl, nl->family, NLM_F_DUMP, cmd, KCMUX_GENL_VERSION,
			 NULL, 0);
	if (seq < 0)
		return (int)seq;
	return kx_nl_recv(nl, (uint32_t)seq, true, kx_nl_dump_cb, d);
}

/* The object of d whose attribute attr is v, or NULL. */
static const struct kx_obj *kx_find(const struct kx_dump *d, int attr,
				    uint64_t v)
{
	int i;

	for (i = 0; i < d->n; i++)
		if (d->obj[i].has[attr] && d->obj[i].val[attr] == v)
			return &d->obj[i];
	return NULL;
}

static int kx_nl_join_events(struct kx_nl *nl)
{
	int grp = (int)nl->events;

	if (!nl->events)
		return -ENOENT;
	return setsockopt(nl->fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &grp,
			  sizeof(grp)) ? -errno : 0;
}

/*
 * The next event of family nl->family within timeout_ms: 1 and *o, 0 if
 * none came, -errno.  (The kernel multicasts each event as its own
 * datagram.)
 */
static int kx_nl_event(struct kx_nl *nl, struct kx_obj *o, int timeout_ms)
{
	static char buf[KX_NL_BUF];
	long long end = kcm_now_ms() + timeout_ms;
	struct nlmsghdr *h;
	ssize_t n;

	for (;;) {
		long long left = end - kcm_now_ms();

		if (left < 0 || !(kcm_poll(nl->fd, POLLIN, (int)left) & POLLIN))
			return 0;
		n = recv(nl->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN)
				continue;
			return -errno;
		}
		for (h = (struct nlmsghdr *)buf; NLMSG_OK(h, n);
		     h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_type != nl->family)
				continue;
			kx_obj_parse(h, o);
			return 1;
		}
	}
}

/* The size every attribute must have, per the uapi header; 0: variable. */
static int kx_attr_size(int type)
{
	switch (type) {
	case KCMUX_A_SOCK_INO:
	case KCMUX_A_TCP_INO:
		return 8;
	case KCMUX_A_FAMILY:
	case KCMUX_A_SPORT:
	case KCMUX_A_DPORT:
		return 2;
	case KCMUX_A_SADDR:
	case KCMUX_A_DADDR:
	case KCMUX_A_STATS:
	case KCMUX_A_PAD:
	case KCMUX_A_UNSPEC:
		return 0;
	default:
		return 4;
	}
}

/* Every attribute and counter of o has its documented size. */
static bool kx_obj_sizes_ok(const struct kx_obj *o, char *why, size_t whylen)
{
	int t, s;

	for (t = 1; t <= KCMUX_A_MAX; t++) {
		s = kx_attr_size(t);
		if (o->has[t] && s && o->len[t] != s) {
			snprintf(why, whylen, "attribute %d has %u bytes, not %d",
				 t, o->len[t], s);
			return false;
		}
	}
	for (t = KCMUX_STAT_RX_MSGS; t <= KCMUX_STAT_MAX; t++) {
		if (o->has_stat[t] && o->stat_len[t] != 8) {
			snprintf(why, whylen, "counter %d has %u bytes, not 8",
				 t, o->stat_len[t]);
			return false;
		}
	}
	return true;
}

/* The id the kernel gave a loaded BPF program, or 0. */
static uint32_t kx_bpf_prog_id(int fd)
{
	struct bpf_prog_info info;
	union bpf_attr attr;

	memset(&info, 0, sizeof(info));
	memset(&attr, 0, sizeof(attr));
	attr.info.bpf_fd = fd;
	attr.info.info_len = sizeof(info);
	attr.info.info = (uintptr_t)&info;
	if (syscall(__NR_bpf, BPF_OBJ_GET_INFO_BY_FD, &attr, sizeof(attr)))
		return 0;
	return info.id;
}

/* ------------------------------------------------------------------ */
/* A mux with some attached connections                                */
/* ------------------------------------------------------------------ */

#define KX_MAX_PAIRS	8

struct kx_env {
	int kcm;
	int npairs;
	struct kx_pair p[KX_MAX_PAIRS];
	uint32_t id[KX_MAX_PAIRS];
};

/*
 * A new network namespace, a KCM socket of type, npairs TCP connections
 * attached with the be32 framing (their psock ids in e->id).
 */
static void kx_env_open(struct __test_metadata *_metadata, struct kx_env *e,
			int type, int npairs)
{
	int i;

	memset(e, 0, sizeof(*e));
	e->kcm = -1;
	for (i = 0; i < KX_MAX_PAIRS; i++)
		e->p[i].peer = e->p[i].tcp = -1;
	ASSERT_EQ(0, kcm_netns_enter());
	ASSERT_EQ(0, kcm_sigpipe_catch());
	e->kcm = kcm_socket(type);
	ASSERT_LE(0, e->kcm);
	ASSERT_GE(KX_MAX_PAIRS, npairs);
	e->npairs = npairs;
	for (i = 0; i < npairs; i++) {
		ASSERT_EQ(0, kx_pair_open(&e->p[i]));
		ASSERT_EQ(0, kx_attach_framing(e->kcm, e->p[i].tcp,
					       &kx_be32_framing, &e->id[i]));
		ASSERT_NE(0u, e->id[i]);
	}
}

/* Nothing arrived on any peer of e except those in the mask "except". */
static bool kx_peers_quiet(const struct kx_env *e, unsigned int except, int ms)
{
	int i;

	kcm_msleep(ms);
	for (i = 0; i < e->npairs; i++)
		if (!(except & 1u << i) && e->p[i].peer >= 0 &&
		    !kx_stream_quiet(e->p[i].peer, 0))
			return false;
	return true;
}

/* ------------------------------------------------------------------ */
/* Probing: a program can tell kcmux from the in-tree module            */
/* ------------------------------------------------------------------ */

/*
 * The header promises that on the in-tree module the extension ioctls
 * fail with ENOTTY, the socket option with ENOPROTOOPT and the family
 * does not resolve; on kcmux all three exist.  Runs on both.
 */
TEST(probe_reference)
{
	struct kcmux_psock_id pid = { .fd = -1 };
	struct kcmux_attach a;
	struct kx_nl nl;
	int kcm, r, nlerr;

	ASSERT_EQ(0, kcm_netns_enter());
	kcm = kcm_socket(SOCK_DGRAM);
	ASSERT_LE(0, kcm);
	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	a.fd = -1;		/* refused by kcmux, but not as unknown */
	r = kx_attach_ext(kcm, &a);
	nlerr = kx_nl_open_family(&nl);
	if (kcmux_is_reference()) {
		EXPECT_EQ(-ENOTTY, r);
		EXPECT_EQ(-1, ioctl(kcm, SIOCKCMPSOCKID, &pid));
		EXPECT_EQ(ENOTTY, errno);
		EXPECT_EQ(-ENOPROTOOPT, kx_set_origin(kcm, 1));
		EXPECT_EQ(-ENOPROTOOPT, kcm_getint(kcm, SOL_KCM, KCMUX_ORIGIN));
		EXPECT_NE(0, nlerr);
	} else {
		EXPECT_NE(-ENOTTY, r);
		EXPECT_GT(0, r);
		EXPECT_EQ(-EBADF, kx_psock_id(kcm, -1));
		EXPECT_EQ(0, kx_set_origin(kcm, 1));
		EXPECT_EQ(1, kcm_getint(kcm, SOL_KCM, KCMUX_ORIGIN));
		EXPECT_EQ(0, nlerr);
		EXPECT_NE(0u, nl.events);
	}
	if (!nlerr)
		kx_nl_close(&nl);
	close(kcm);
}

/* ------------------------------------------------------------------ */
/* Built-in framing: messages flow                                      */
/* ------------------------------------------------------------------ */

FIXTURE(framing) {
	int kcm;
	struct kx_pair p;
	uint8_t *buf;
	uint8_t *rbuf;
	uint8_t *stream;
};

FIXTURE_VARIANT(framing) {
	uint8_t width;
	uint8_t flags;
	uint32_t offset;
	int32_t adjust;
};

#define KX_LE	KCMUX_FRAMING_LITTLE_ENDIAN
#define KX_EXCL	KCMUX_FRAMING_EXCLUDES_HEADER

/*
 * For every width, both byte orders and both header modes, with offset 0
 * and > 0, adjust 0, > 0 and < 0.
 */
#define KX_FRAMING_VARIANTS(w)						\
FIXTURE_VARIANT_ADD(framing, w##w##_be_incl) {				\
	.width = w, .flags = 0, .offset = 0, .adjust = 0,		\
};									\
FIXTURE_VARIANT_ADD(framing, w##w##_le_incl_off3_adjm5) {		\
	.width = w, .flags = KX_LE, .offset = 3, .adjust = -5,		\
};									\
FIXTURE_VARIANT_ADD(framing, w##w##_be_excl_off5_adj4) {		\
	.width = w, .flags = KX_EXCL, .offset = 5, .adjust = 4,		\
};									\
FIXTURE_VARIANT_ADD(framing, w##w##_le_excl_off1_adjm1) {		\
	.width = w, .flags = KX_LE | KX_EXCL, .offset = 1, .adjust = -1, \
}

KX_FRAMING_VARIANTS(1);
KX_FRAMING_VARIANTS(2);
KX_FRAMING_VARIANTS(3);
KX_FRAMING_VARIANTS(4);
KX_FRAMING_VARIANTS(8);

FIXTURE_VARIANT_ADD(framing, w4_be_excl_off1000) {
	.width = 4, .flags = KX_EXCL, .offset = 1000, .adjust = 0,
};

/* offset + width at the limit: every message is at least 64 KiB - 1. */
FIXTURE_VARIANT_ADD(framing, w4_le_incl_off_max) {
	.width = 4, .flags = KX_LE, .offset = KCMUX_FRAMING_MAX_OFFSET - 4,
	.adjust = 0,
};

#define KX_FLOW_MAX	70000		/* largest message of the flow tests */
#define KX_FLOW_STREAM	(20 * KX_FLOW_MAX)

FIXTURE_SETUP(framing)
{
	self->kcm = -1;
	self->p.peer = self->p.tcp = -1;
	self->buf = self->rbuf = self->stream = NULL;
	KX_REQUIRE_KCMUX("SIOCKCMATTACH_EXT built-in framing");
	ASSERT_EQ(0, kcm_netns_enter());
	self->buf = malloc(KX_FLOW_MAX);
	self->rbuf = malloc(KX_FLOW_MAX + 1);
	self->stream = malloc(KX_FLOW_STREAM);
	ASSERT_TRUE(self->buf && self->rbuf && self->stream);
	self->kcm = kcm_socket(SOCK_DGRAM);
	ASSERT_LE(0, self->kcm);
	/* Room for the whole stream in the KCM socket, and big TCP windows. */
	ASSERT_EQ(0, kcm_set_rcvbuf(self->kcm, 8 * KX_MIB));
	ASSERT_EQ(0, kx_pair_open_rcvbuf(&self->p, AF_INET, 2 * KX_MIB));
}

FIXTURE_TEARDOWN(framing)
{
	kx_pair_close(&self->p);
	kcm_close_fd(&self->kcm);
	free(self->buf);
	free(self->rbuf);
	free(self->stream);
}

/* Message sizes tried; those the variant cannot frame are left out. */
static const uint32_t kx_flow_sizes[] = {
	0, 1, 2, 13, 64, 100, 255, 256, 1000, 4097, 30000, 65535, 65545,
};

/*
 * The sizes of kx_flow_sizes[] the variant frames: entries below 64 are
 * taken relative to offset + width (the smallest message), the others
 * as they are.  Returns how many.
 */
static int kx_flow_pick(const struct kcmux_framing *f, uint32_t *sizes)
{
	uint32_t hdr = f->offset + f->width;
	unsigned int i;
	int n = 0;

	for (i = 0; i < KX_ARRAY_SIZE(kx_flow_sizes); i++) {
		uint32_t t = kx_flow_sizes[i];

		if (t < 64)
			t += hdr;
		if (t < hdr || t > KX_FLOW_MAX || kx_value_for(f, t) < 0)
			continue;
		if (n && sizes[n - 1] >= t)
			continue;
		sizes[n++] = t;
	}
	return n;
}

/*
 * Receives every message of the stream in order: want[] sizes with seeds
 * first_seed + i.  With wait_ms 0 only what is queued already.  Returns
 * the index of the next message expected, or -1 on a wrong one.
 */
static int kx_flow_drain(struct __test_metadata *_metadata, int kcm,
			 const struct kcmux_framing *f, uint8_t *want, uint8_t *got,
			 const uint32_t *sizes, int n, int next,
			 uint32_t first_seed, int wait_ms)
{
	while (next < n) {
		ssize_t r = kx_recv(kcm, got, KX_FLOW_MAX + 1,
				    wait_ms ? wait_ms : 0);

		if (r == -ETIMEDOUT && !wait_ms)
			break;
		kx_frame(want, f, sizes[next], first_seed + next);
		if (r != (ssize_t)sizes[next] || memcmp(got, want, sizes[next])) {
			TH_LOG("stream message %d: got %zd bytes, want %u%s", next,
			       r, sizes[next],
			       r == (ssize_t)sizes[next] ? " (content differs)" : "");
			return -1;
		}
		next++;
	}
	return next;
}

/*
 * Messages of every size the framing allows arrive whole and intact:
 * first one write per message, then all of them as one stream written
 * in odd-sized pieces (single bytes included, so the length field itself
 * arrives in pieces).  Sending is unaffected by the framing.
 */
TEST_F_TIMEOUT(framing, messages_flow, 60)
{
	const struct kcmux_framing f = {
		.offset = variant->offset,
		.width = variant->width,
		.flags = variant->flags,
		.adjust = variant->adjust,
	};
	static const uint32_t chunks[] = { 1, 2, 3, 5, 1, 8, 13, 400, 1, 1500, 9000 };
	uint32_t sizes[KX_ARRAY_SIZE(kx_flow_sizes)], id = 0, total = 0, off;
	int n, i, next, c;
	ssize_t r;

	n = kx_flow_pick(&f, sizes);
	ASSERT_LE(3, n);
	ASSERT_EQ(0, kx_attach_framing(self->kcm, self->p.tcp, &f, &id));
	ASSERT_NE(0u, id);
	EXPECT_EQ(id, kx_psock_id(self->kcm, self->p.tcp));

	/* One write per message. */
	for (i = 0; i < n; i++) {
		ASSERT_TRUE(kx_frame(self->buf, &f, sizes[i], i));
		ASSERT_EQ(0, kcm_send_all(self->p.peer, self->buf, sizes[i]));
		r = kx_recv(self->kcm, self->rbuf, KX_FLOW_MAX + 1, KCM_WAIT_MS);
		EXPECT_EQ((ssize_t)sizes[i], r) {
			TH_LOG("message %d of %u bytes", i, sizes[i]);
		}
		if (r != (ssize_t)sizes[i])
			break;
		EXPECT_EQ(0, memcmp(self->rbuf, self->buf, sizes[i])) {
			TH_LOG("message %d of %u bytes: content differs", i, sizes[i]);
		}
	}
	ASSERT_EQ(n, i);

	/* One stream in odd pieces, read as it goes. */
	for (i = 0; i < n; i++) {
		ASSERT_GE((uint32_t)KX_FLOW_STREAM, total + sizes[i]);
		kx_frame(self->stream + total, &f, sizes[i], 100 + i);
		total += sizes[i];
	}
	next = 0;
	for (off = 0, c = 0; off < total; c++) {
		uint32_t len = chunks[c % KX_ARRAY_SIZE(chunks)];

		if (len > total - off)
			len = total - off;
		ASSERT_EQ(0, kcm_send_all(self->p.peer, self->stream + off, len));
		off += len;
		next = kx_flow_drain(_metadata, self->kcm, &f, self->buf,
				     self->rbuf, sizes, n, next, 100, 0);
		ASSERT_LE(0, next);
	}
	next = kx_flow_drain(_metadata, self->kcm, &f, self->buf, self->rbuf,
			     sizes, n, next, 100, KCM_WAIT_MS);
	ASSERT_EQ(n, next);
	EXPECT_TRUE(kcm_quiet(self->kcm, KCM_QUIET_MS));
	EXPECT_EQ(0, kcm_sock_error(self->p.tcp));

	/* Sending: the mux writes what it is given, framing or not. */
	for (i = 0; i < 3; i++) {
		uint32_t len = 10 + 1000 * i;

		kx_frame_value(self->buf, &kx_be32_framing, len, 200 + i, len);
		ASSERT_EQ((ssize_t)len, send(self->kcm, self->buf, len, 0));
		ASSERT_EQ((ssize_t)len, kcm_read_exact(self->p.peer, self->rbuf,
						      len, KCM_WAIT_MS));
		EXPECT_EQ(0, memcmp(self->rbuf, self->buf, len));
	}
	EXPECT_TRUE(kx_stream_quiet(self->p.peer, KCM_QUIET_MS));
}

/* ------------------------------------------------------------------ */
/* Built-in framing: errors                                             */
/* ------------------------------------------------------------------ */

/*
 * "A message whose len is smaller than offset + width ... is a framing
 * error: the TCP socket gets EPROTO": a len of 0, one below offset +
 * width, and a negative one (value + adjust < 0).  Nothing is delivered,
 * and the psock takes nothing more (later good messages stay undelivered).
 */
TEST(framing_len_below_header_eproto)
{
	static const struct {
		struct kcmux_framing f;
		uint64_t value;
	} cases[] = {
		{ { .width = 4 }, 0 },
		{ { .width = 4 }, 3 },
		{ { .offset = 4, .width = 1 }, 4 },
		{ { .offset = 2, .width = 2, .flags = KX_EXCL, .adjust = -5 }, 0 },
		{ { .width = 2, .flags = KX_LE, .adjust = -10 }, 9 },
		{ { .offset = 6, .width = 8, .flags = KX_LE }, 13 },
	};
	uint8_t buf[64], good[64];
	unsigned int i;
	int kcm;

	KX_REQUIRE_KCMUX("built-in framing errors");
	ASSERT_EQ(0, kcm_netns_enter());
	kcm = kcm_socket(SOCK_DGRAM);
	ASSERT_LE(0, kcm);
	for (i = 0; i < KX_ARRAY_SIZE(cases); i++) {
		const struct kcmux_framing *f = &cases[i].f;
		struct kx_pair p;
		uint32_t id = 0, hdr = f->offset + f->width;

		ASSERT_EQ(0, kx_pair_open(&p));
		ASSERT_EQ(0, kx_attach_framing(kcm, p.tcp, f, &id));
		/* The bad header, then a good message: neither is delivered. */
		kx_frame_value(buf, f, hdr + 8, i, cases[i].value);
		ASSERT_EQ(0, kcm_send_all(p.peer, buf, hdr + 8));
		EXPECT_EQ(EPROTO, kcm_err_wait(p.tcp)) {
			TH_LOG("case %u", i);
		}
		ASSERT_TRUE(kx_frame(good, f, hdr + 20, 77));
		kcm_send_all(p.peer, good, hdr + 20);
		EXPECT_TRUE(kcm_quiet(kcm, KCM_QUIET_MS)) {
			TH_LOG("case %u: a message was delivered", i);
		}
		EXPECT_EQ(0, kcm_unattach(kcm, p.tcp));
		kx_pair_close(&p);
	}
	close(kcm);
}

/*
 * "... or larger than max_size is a framing error: the TCP socket gets
 * EMSGSIZE": a message of exactly max_size is delivered, one byte more
 * is refused; max_size 0 means 64 MiB.
 */
TEST(framing_len_above_max_emsgsize)
{
	struct kcmux_framing f = { .width = 4, .flags = KX_EXCL, .max_size = 1000 };
	static uint8_t buf[1100], rbuf[1100];
	struct kx_pair p, q;
	uint32_t id;
	int kcm;

	KX_REQUIRE_KCMUX("built-in framing errors");
	ASSERT_EQ(0, kcm_netns_enter());
	kcm = kcm_socket(SOCK_DGRAM);
	ASSERT_LE(0, kcm);
	ASSERT_EQ(0, kx_pair_open(&p));
	ASSERT_EQ(0, kx_attach_framing(kcm, p.tcp, &f, &id));
	ASSERT_TRUE(kx_frame(buf, &f, 1000, 1));
	ASSERT_EQ(0, kcm_send_all(p.peer, buf, 1000));
	ASSERT_EQ(1000, kx_recv(kcm, rbuf, sizeof(rbuf), KCM_WAIT_MS));
	EXPECT_EQ(0, memcmp(buf, rbuf, 1000));
	ASSERT_TRUE(kx_frame(buf, &f, 1001, 2));
	ASSERT_EQ(0, kcm_send_all(p.peer, buf, 1001));
	EXPECT_EQ(EMSGSIZE, kcm_err_wait(p.tcp));
	EXPECT_TRUE(kcm_quiet(kcm, KCM_QUIET_MS));

	/* The default limit: 64 MiB; only the header is needed to refuse. */
	f.max_size = 0;
	f.flags = 0;
	ASSERT_EQ(0, kx_pair_open(&q));
	ASSERT_EQ(0, kx_attach_framing(kcm, q.tcp, &f, &id));
	kx_frame_value(buf, &f, 16, 3, (uint64_t)KX_MSG_LIMIT + 1);
	ASSERT_EQ(0, kcm_send_all(q.peer, buf, 16));
	EXPECT_EQ(EMSGSIZE, kcm_err_wait(q.tcp));
	EXPECT_TRUE(kcm_quiet(kcm, KCM_QUIET_MS));
	kx_pair_close(&p);
	kx_pair_close(&q);
	close(kcm);
}

/*
 * The length is computed without overflow and without losing bits: a
 * field value that is huge only in its high bytes, a value with the top
 * bit set, and sums that would wrap in 32 or 64 bits are all lengths
 * above the limit (EMSGSIZE), not small lengths nor negative ones.
 */
TEST(framing_len_no_overflow)
{
	static const struct {
		struct kcmux_framing f;
		uint64_t value;
	} cases[] = {
		/* 2^32 + 16: 16 if only the low 32 bits were read */
		{ { .width = 8 }, (1ULL << 32) + 16 },
		{ { .width = 8, .flags = KX_LE }, (1ULL << 32) + 16 },
		/* 2^63 + 16: negative if read as signed */
		{ { .width = 8 }, (1ULL << 63) + 16 },
		/* 2^31 + 16 in 4 bytes: negative if read as a signed int */
		{ { .width = 4, .flags = KX_LE }, (1ULL << 31) + 16 },
		{ { .width = 4, .adjust = 16 }, 0xffffffffULL },
		/* 2^64 - 8, + 16: 8 after a 64-bit wrap */
		{ { .width = 8, .adjust = 16 }, 0xfffffffffffffff8ULL },
		/* 2^64 - 2, + offset + width 8: 6 after a 64-bit wrap */
		{ { .width = 8, .flags = KX_EXCL }, 0xfffffffffffffffeULL },
		/* 2^32 - 2, + 8: 6 after a 32-bit wrap */
		{ { .offset = 4, .width = 4, .flags = KX_EXCL }, 0xfffffffeULL },
	};
	uint8_t buf[64];
	unsigned int i;
	int kcm;

	KX_REQUIRE_KCMUX("built-in framing errors");
	ASSERT_EQ(0, kcm_netns_enter());
	kcm = kcm_socket(SOCK_DGRAM);
	ASSERT_LE(0, kcm);
	for (i = 0; i < KX_ARRAY_SIZE(cases); i++) {
		const struct kcmux_framing *f = &cases[i].f;
		struct kx_pair p;
		uint32_t id;
		int err;

		ASSERT_EQ(0, kx_pair_open(&p));
		ASSERT_EQ(0, kx_attach_framing(kcm, p.tcp, f, &id));
		/* 32 bytes: whole messages for every wrong reading above. */
		kx_frame_value(buf, f, 32, i, cases[i].value);
		ASSERT_EQ(0, kcm_send_all(p.peer, buf, 32));
		err = kcm_err_wait(p.tcp);
		EXPECT_EQ(EMSGSIZE, err) {
			TH_LOG("case %u: value %#llx: error %d", i,
			       (unsigned long long)cases[i].value, err);
		}
		EXPECT_TRUE(kcm_quiet(kcm, 50)) {
			TH_LOG("case %u: a message was delivered", i);
		}
		kcm_unattach(kcm, p.tcp);
		kx_pair_close(&p);
	}
	close(kcm);
}

/* ------------------------------------------------------------------ */
/* SIOCKCMATTACH_EXT: validation                                        */
/* ------------------------------------------------------------------ */

#define KX_FD_BPF	(-1000)		/* replaced by a loaded program's fd */

struct kx_bad_case {
	const char *what;
	uint32_t size;			/* 0: sizeof(struct kcmux_attach) */
	uint32_t flags;
	int32_t bpf_fd;
	struct kcmux_framing framing;
	uint32_t reserved;
	int err;
};

static const struct kx_bad_case kx_bad_cases[] = {
	{ "width 0", 0, KCMUX_ATTACH_FRAMING, 0, { .width = 0 }, 0, EINVAL },
	{ "width 5", 0, KCMUX_ATTACH_FRAMING, 0, { .width = 5 }, 0, EINVAL },
	{ "width 6", 0, KCMUX_ATTACH_FRAMING, 0, { .width = 6 }, 0, EINVAL },
	{ "width 7", 0, KCMUX_ATTACH_FRAMING, 0, { .width = 7 }, 0, EINVAL },
	{ "width 9", 0, KCMUX_ATTACH_FRAMING, 0, { .width = 9 }, 0, EINVAL },
	{ "width 16", 0, KCMUX_ATTACH_FRAMING, 0, { .width = 16 }, 0, EINVAL },
	{ "width 255", 0, KCMUX_ATTACH_FRAMING, 0, { .width = 255 }, 0, EINVAL },
	{ "framing flag 0x4", 0, KCMUX_ATTACH_FRAMING, 0,
	  { .width = 4, .flags = 0x4 }, 0, EINVAL },
	{ "framing flag 0x80", 0, KCMUX_ATTACH_FRAMING, 0,
	  { .width = 4, .flags = 0x80 | KX_LE }, 0, EINVAL },
	{ "framing reserved 1", 0, KCMUX_ATTACH_FRAMING, 0,
	  { .width = 4, .reserved = 1 }, 0, EINVAL },
	{ "framing reserved 0x8000", 0, KCMUX_ATTACH_FRAMING, 0,
	  { .width = 2, .reserved = 0x8000 }, 0, EINVAL },
	{ "offset + width 65536", 0, KCMUX_ATTACH_FRAMING, 0,
	  { .offset = 65532, .width = 4 }, 0, EINVAL },
	{ "offset + width 65536 (width 1)", 0, KCMUX_ATTACH_FRAMING, 0,
	  { .offset = 65535, .width = 1 }, 0, EINVAL },
	{ "offset 2^32 - 4 (wraps to 0 with width 4)", 0, KCMUX_ATTACH_FRAMING, 0,
	  { .offset = 0xfffffffc, .width = 4 }, 0, EINVAL },
	{ "offset 2^32 - 1", 0, KCMUX_ATTACH_FRAMING, 0,
	  { .offset = 0xffffffff, .width = 1 }, 0, EINVAL },
	{ "max_size 64 MiB + 1", 0, KCMUX_ATTACH_FRAMING, 0,
	  { .width = 4, .max_size = KX_MSG_LIMIT + 1 }, 0, EINVAL },
	{ "max_size 2^32 - 1", 0, KCMUX_ATTACH_FRAMING, 0,
	  { .width = 4, .max_size = 0xffffffff }, 0, EINVAL },
	{ "max_size 3 < offset + width 4", 0, KCMUX_ATTACH_FRAMING, 0,
	  { .width = 4, .max_size = 3 }, 0, EINVAL },
	{ "max_size 11 < offset + width 12", 0, KCMUX_ATTACH_FRAMING, 0,
	  { .offset = 8, .width = 4, .max_size = 11 }, 0, EINVAL },
	{ "both BPF and FRAMING", 0, KCMUX_ATTACH_BPF | KCMUX_ATTACH_FRAMING,
	  KX_FD_BPF, { .width = 4 }, 0, EINVAL },
	{ "both BPF and FRAMING, no program", 0,
	  KCMUX_ATTACH_BPF | KCMUX_ATTACH_FRAMING, 0, { .width = 4 }, 0, EINVAL },
	{ "neither BPF nor FRAMING", 0, 0, 0, { .width = 4 }, 0, EINVAL },
	{ "neither, framing zero", 0, 0, 0, { .width = 0 }, 0, EINVAL },
	{ "unknown attach flag 0x4", 0, 0x4, 0, { .width = 4 }, 0, EINVAL },
	{ "FRAMING | unknown flag 0x4", 0, KCMUX_ATTACH_FRAMING | 0x4, 0,
	  { .width = 4 }, 0, EINVAL },
	{ "BPF | unknown flag 0x80000000", 0, KCMUX_ATTACH_BPF | 0x80000000u,
	  KX_FD_BPF, { 0 }, 0, EINVAL },
	{ "FRAMING with a program", 0, KCMUX_ATTACH_FRAMING, KX_FD_BPF,
	  { .width = 4 }, 0, EINVAL },
	{ "FRAMING with bpf_fd -1", 0, KCMUX_ATTACH_FRAMING, -1,
	  { .width = 4 }, 0, EINVAL },
	{ "BPF with framing width", 0, KCMUX_ATTACH_BPF, KX_FD_BPF,
	  { .width = 4 }, 0, EINVAL },
	{ "BPF with framing offset", 0, KCMUX_ATTACH_BPF, KX_FD_BPF,
	  { .offset = 1 }, 0, EINVAL },
	{ "BPF with framing flags", 0, KCMUX_ATTACH_BPF, KX_FD_BPF,
	  { .flags = KX_LE }, 0, EINVAL },
	{ "BPF with framing adjust", 0, KCMUX_ATTACH_BPF, KX_FD_BPF,
	  { .adjust = -1 }, 0, EINVAL },
	{ "BPF with framing max_size", 0, KCMUX_ATTACH_BPF, KX_FD_BPF,
	  { .max_size = 100 }, 0, EINVAL },
	{ "BPF with framing reserved", 0, KCMUX_ATTACH_BPF, KX_FD_BPF,
	  { .reserved = 1 }, 0, EINVAL },
	{ "attach reserved 1 (framing)", 0, KCMUX_ATTACH_FRAMING, 0,
	  { .width = 4 }, 1, EINVAL },
	{ "attach reserved 2^31 (BPF)", 0, KCMUX_ATTACH_BPF, KX_FD_BPF,
	  { 0 }, 0x80000000u, EINVAL },
	{ "size 0", 0xffffffff, KCMUX_ATTACH_FRAMING, 0, { .width = 4 }, 0, EINVAL },
	{ "size 8", 8, KCMUX_ATTACH_FRAMING, 0, { .width = 4 }, 0, EINVAL },
	{ "size VER0 - 1", KCMUX_ATTACH_SIZE_VER0 - 1, KCMUX_ATTACH_FRAMING, 0,
	  { .width = 4 }, 0, EINVAL },
};

/*
 * Every malformed request is refused with its errno, and leaves nothing
 * behind: no psock, no id for the TCP socket, which still works as plain
 * TCP and can be attached properly afterwards.
 */
TEST(attach_ext_invalid)
{
	struct kcmux_attach a;
	struct kx_pair p;
	uint8_t buf[64], rbuf[64];
	unsigned int i;
	uint32_t id = 0;
	int kcm, bpf;

	KX_REQUIRE_KCMUX("SIOCKCMATTACH_EXT validation");
	ASSERT_EQ(0, kcm_netns_enter());
	bpf = kcm_bpf_load_parser();
	ASSERT_LE(0, bpf);
	ASSERT_NE(0, bpf);
	kcm = kcm_socket(SOCK_DGRAM);
	ASSERT_LE(0, kcm);
	ASSERT_EQ(0, kx_pair_open(&p));
	for (i = 0; i < KX_ARRAY_SIZE(kx_bad_cases); i++) {
		const struct kx_bad_case *c = &kx_bad_cases[i];
		int r;

		memset(&a, 0, sizeof(a));
		a.size = c->size == 0xffffffff ? 0 :
			 c->size ? c->size : sizeof(a);
		a.flags = c->flags;
		a.fd = p.tcp;
		a.bpf_fd = c->bpf_fd == KX_FD_BPF ? bpf : c->bpf_fd;
		a.framing = c->framing;
		a.reserved = c->reserved;
		r = kx_attach_ext(kcm, &a);
		EXPECT_EQ(-c->err, r) {
			TH_LOG("%s: got %s", c->what, r ? strerror(-r) : "success");
		}
		if (!r)
			kcm_unattach(kcm, p.tcp);
		EXPECT_EQ(-ENOENT, kx_psock_id(kcm, p.tcp)) {
			TH_LOG("%s: the TCP socket is attached", c->what);
		}
		EXPECT_EQ(0, kx_proc_psocks()) {
			TH_LOG("%s: a psock was left behind", c->what);
		}
	}
	EXPECT_TRUE(kx_plain_tcp_works(p.tcp, p.peer));

	/* And a correct request still attaches it. */
	ASSERT_EQ(0, kx_attach_framing(kcm, p.tcp, &kx_be32_framing, &id));
	EXPECT_NE(0u, id);
	ASSERT_TRUE(kx_frame(buf, &kx_be32_framing, 40, 9));
	ASSERT_EQ(0, kcm_send_all(p.peer, buf, 40));
	EXPECT_EQ(40, kx_recv(kcm, rbuf, sizeof(rbuf), KCM_WAIT_MS));
	EXPECT_EQ(0, memcmp(buf, rbuf, 40));
	kx_pair_close(&p);
	close(kcm);
	close(bpf);
}

/* The request with room for future fields. */
struct kx_attach_big {
	struct kcmux_attach a;
	uint8_t tail[64];
};

/*
 * Extensibility: a larger struct than the module knows is accepted only
 * if the bytes it does not know are zero (else E2BIG); the psock id is
 * returned in either case of success.
 */
TEST(attach_ext_size)
{
	static const uint32_t extra[] = { 1, 4, 8, 64 };
	struct kx_attach_big big;
	struct kx_pair p;
	unsigned int i, j;
	int kcm, r;

	KX_REQUIRE_KCMUX("SIOCKCMATTACH_EXT extensible size");
	ASSERT_EQ(0, kcm_netns_enter());
	kcm = kcm_socket(SOCK_DGRAM);
	ASSERT_LE(0, kcm);
	ASSERT_EQ(0, kx_pair_open(&p));
	for (i = 0; i < KX_ARRAY_SIZE(extra); i++) {
		/* A non-zero byte anywhere in the tail: first and last. */
		for (j = 0; j < 2; j++) {
			memset(&big, 0, sizeof(big));
			big.a = kx_framing_req(p.tcp, &kx_be32_framing);
			big.a.size = sizeof(big.a) + extra[i];
			big.tail[j ? extra[i] - 1 : 0] = 0x01;
			r = kx_attach_ext(kcm, &big);
			EXPECT_EQ(-E2BIG, r) {
				TH_LOG("size %u, tail byte %u set",
				       big.a.size, j ? extra[i] - 1 : 0);
			}
			if (!r)
				kcm_unattach(kcm, p.tcp);
			EXPECT_EQ(0, kx_proc_psocks());
		}
		memset(&big, 0, sizeof(big));
		big.a = kx_framing_req(p.tcp, &kx_be32_framing);
		big.a.size = sizeof(big.a) + extra[i];
		r = kx_attach_ext(kcm, &big);
		EXPECT_EQ(0, r) {
			TH_LOG("size %u, zero tail: %s", big.a.size, strerror(-r));
		}
		if (r)
			continue;
		EXPECT_NE(0u, big.a.psock_id);
		EXPECT_EQ(big.a.psock_id, kx_psock_id(kcm, p.tcp));
		/* The module writes back only what it knows. */
		for (j = 0; j < extra[i]; j++)
			if (big.tail[j])
				break;
		EXPECT_EQ(extra[i], j);
		EXPECT_EQ(0, kcm_unattach(kcm, p.tcp));
	}
	/* Exactly VER0 works too (it is today's size). */
	memset(&big, 0, sizeof(big));
	big.a = kx_framing_req(p.tcp, &kx_be32_framing);
	big.a.size = KCMUX_ATTACH_SIZE_VER0;
	EXPECT_EQ(0, kx_attach_ext(kcm, &big));
	EXPECT_NE(0u, big.a.psock_id);
	kx_pair_close(&p);
	close(kcm);
}

/*
 * The limits themselves are valid: offset + width = 65535, max_size =
 * 64 MiB, max_size = offset + width.
 */
TEST(attach_ext_limits_accepted)
{
	static const struct kcmux_framing ok[] = {
		{ .offset = KCMUX_FRAMING_MAX_OFFSET - 4, .width = 4 },
		{ .offset = KCMUX_FRAMING_MAX_OFFSET - 1, .width = 1 },
		{ .width = 8, .max_size = KX_MSG_LIMIT },
		{ .width = 4, .max_size = 4 },
		{ .offset = 9, .width = 3, .max_size = 12 },
		{ .width = 2, .flags = KX_LE | KX_EXCL, .adjust = INT32_MIN },
		{ .width = 2, .adjust = INT32_MAX },
	};
	struct kx_pair p;
	unsigned int i;
	uint32_t id;
	int kcm, r;

	KX_REQUIRE_KCMUX("SIOCKCMATTACH_EXT validation");
	ASSERT_EQ(0, kcm_netns_enter());
	kcm = kcm_socket(SOCK_DGRAM);
	ASSERT_LE(0, kcm);
	ASSERT_EQ(0, kx_pair_open(&p));
	for (i = 0; i < KX_ARRAY_SIZE(ok); i++) {
		id = 0;
		r = kx_attach_framing(kcm, p.tcp, &ok[i], &id);
		EXPECT_EQ(0, r) {
			TH_LOG("framing %u: %s", i, strerror(-r));
		}
		if (r)
			continue;
		EXPECT_NE(0u, id);
		EXPECT_EQ(0, kcm_unattach(kcm, p.tcp));
	}
	EXPECT_TRUE(kx_plain_tcp_works(p.tcp, p.peer));
	kx_pair_close(&p);
	close(kcm);
}

/*
 * SIOCKCMATTACH_EXT refuses what SIOCKCMATTACH refuses, with the same
 * errno: an attached socket (EALREADY), a non-socket fd (ENOENT), a
 * listening socket (EOPNOTSUPP).
 */
TEST(attach_ext_same_checks)
{
	struct sockaddr_in sin = {
		.sin_family = AF_INET,
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	struct kx_pair p;
	int kcm, kcm2, lfd, pfd[2];
	uint32_t id;

	KX_REQUIRE_KCMUX("SIOCKCMATTACH_EXT");
	ASSERT_EQ(0, kcm_netns_enter());
	kcm = kcm_socket(SOCK_DGRAM);
	kcm2 = kcm_socket(SOCK_DGRAM);
	ASSERT_LE(0, kcm);
	ASSERT_LE(0, kcm2);
	ASSERT_EQ(0, kx_pair_open(&p));
	ASSERT_EQ(0, kx_attach_framing(kcm, p.tcp, &kx_be32_framing, &id));
	EXPECT_EQ(-EALREADY, kx_attach_framing(kcm, p.tcp, &kx_be32_framing, &id));
	EXPECT_EQ(-EALREADY, kx_attach_framing(kcm2, p.tcp, &kx_be32_framing, &id));
	ASSERT_EQ(0, pipe(pfd));
	EXPECT_EQ(-ENOENT, kx_attach_framing(kcm, pfd[0], &kx_be32_framing, &id));
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	ASSERT_LE(0, lfd);
	ASSERT_EQ(0, bind(lfd, (struct sockaddr *)&sin, sizeof(sin)));
	ASSERT_EQ(0, listen(lfd, 1));
	EXPECT_EQ(-EOPNOTSUPP, kx_attach_framing(kcm, lfd, &kx_be32_framing, &id));
	EXPECT_EQ(1, kx_proc_psocks());
	close(lfd);
	close(pfd[0]);
	close(pfd[1]);
	kx_pair_close(&p);
	close(kcm);
	close(kcm2);
}

/*
 * KCMUX_ATTACH_BPF through the extended ioctl works like SIOCKCMATTACH
 * (the test parser frames the messages) and returns the psock id.
 */
TEST(attach_ext_bpf)
{
	uint8_t m[KCM_TEST_HDR_LEN + 300];
	struct kx_pair p, q;
	uint32_t id = 0, id2 = 0;
	int kcm, bpf, i;
	bool ok;

	KX_REQUIRE_KCMUX("SIOCKCMATTACH_EXT with KCMUX_ATTACH_BPF");
	ASSERT_EQ(0, kcm_netns_enter());
	bpf = kcm_bpf_load_parser();
	ASSERT_LE(0, bpf);
	kcm = kcm_socket(SOCK_DGRAM);
	ASSERT_LE(0, kcm);
	ASSERT_EQ(0, kx_pair_open(&p));
	ASSERT_EQ(0, kx_attach_bpf(kcm, p.tcp, bpf, &id));
	EXPECT_NE(0u, id);
	EXPECT_EQ(id, kx_psock_id(kcm, p.tcp));
	for (i = 0; i < 4; i++) {
		uint32_t len = 50 * i;
		ssize_t n = kcm_test_msg(m, i, len);

		ASSERT_EQ(0, kcm_send_all(p.peer, m, n));
		ASSERT_EQ(n, kx_recv(kcm, m, sizeof(m), KCM_WAIT_MS));
		ok = kcm_test_msg_ok(m, n, i, len);
		EXPECT_TRUE(ok);
	}
	/* The classic ioctl's psock gets an id too, and a different one. */
	ASSERT_EQ(0, kx_pair_open(&q));
	ASSERT_EQ(0, kcm_attach(kcm, q.tcp, bpf));
	id2 = (uint32_t)kx_psock_id(kcm, q.tcp);
	EXPECT_LT(0, kx_psock_id(kcm, q.tcp));
	EXPECT_NE(id, id2);
	/* A bad program fd: as with SIOCKCMATTACH. */
	kx_pair_close(&q);
	ASSERT_EQ(0, kx_pair_open(&q));
	EXPECT_EQ(-EBADF, kx_attach_bpf(kcm, q.tcp, 12345, &id2));
	EXPECT_EQ(-ENOENT, kx_psock_id(kcm, q.tcp));
	kx_pair_close(&p);
	kx_pair_close(&q);
	close(kcm);
	close(bpf);
}

/*
 * "Psock ids are unique within a network namespace while the psock
 * exists, never 0, and not reused soon": across two muxes, and after
 * unattach.
 */
TEST(attach_ext_ids_unique)
{
	struct kx_pair p[10];
	uint32_t ids[20];
	int kcm[2], i, j, n = 0;

	KX_REQUIRE_KCMUX("psock ids");
	ASSERT_EQ(0, kcm_netns_enter());
	kcm[0] = kcm_socket(SOCK_DGRAM);
	kcm[1] = kcm_socket(SOCK_SEQPACKET);
	ASSERT_LE(0, kcm[0]);
	ASSERT_LE(0, kcm[1]);
	for (i = 0; i < 10; i++) {
		ASSERT_EQ(0, kx_pair_open(&p[i]));
		ASSERT_EQ(0, kx_attach_framing(kcm[i % 2], p[i].tcp,
					       &kx_be32_framing, &ids[n]));
		n++;
	}
	/* Unattach and attach again: each gets a new id. */
	for (i = 0; i < 10; i += 3) {
		ASSERT_EQ(0, kcm_unattach(kcm[i % 2], p[i].tcp));
		ASSERT_EQ(0, kx_attach_framing(kcm[(i + 1) % 2], p[i].tcp,
					       &kx_be32_framing, &ids[n]));
		EXPECT_EQ(ids[n], kx_psock_id(kcm[(i + 1) % 2], p[i].tcp));
		n++;
	}
	for (i = 0; i < n; i++) {
		EXPECT_NE(0u, ids[i]);
		for (j = 0; j < i; j++)
			EXPECT_NE(ids[i], ids[j]) {
				TH_LOG("psock %d and %d have id %u", i, j, ids[i]);
			}
	}
	for (i = 0; i < 10; i++)
		kx_pair_close(&p[i]);
	close(kcm[0]);
	close(kcm[1]);
}

/* ------------------------------------------------------------------ */
/* Unprivileged use of built-in framing                                 */
/* ------------------------------------------------------------------ */

#define KX_BPF_SYSCTL	"/proc/sys/kernel/unprivileged_bpf_disabled"
#define KX_NOBODY	65534

static int kx_write_sysctl(const char *path, int v)
{
	char buf[16];

	snprintf(buf, sizeof(buf), "%d\n", v);
	return kcm_write_file(path, buf);
}

/*
 * The unprivileged child: returns 0, or the step that failed (its exit
 * status), after saying why on stderr.  No harness macros in here: they
 * belong to the test process.
 */
static int kx_unpriv_child(void)
{
	uint8_t buf[2048], rbuf[2048];
	const struct kcmux_framing f = {
		.offset = 2, .width = 2, .flags = KX_LE | KX_EXCL,
	};
	struct kx_pair p;
	uint32_t id = 0;
	int kcm, bpf, i;
	ssize_t r;

	if (setgroups(0, NULL) || setgid(KX_NOBODY) || setuid(KX_NOBODY)) {
		fprintf(stderr, "# dropping privileges: %s\n", strerror(errno));
		return 10;
	}
	if (getuid() != KX_NOBODY || geteuid() != KX_NOBODY ||
	    getegid() != KX_NOBODY) {
		fprintf(stderr, "# still privileged\n");
		return 11;
	}
	bpf = kcm_bpf_prog_load((const struct bpf_insn[]){
		KCM_INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 8),
		KCM_INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
	}, 2, NULL, 0);
	if (bpf >= 0) {
		fprintf(stderr, "# an unprivileged BPF_PROG_LOAD succeeded\n");
		return 12;
	}
	kcm = kcm_socket(SOCK_SEQPACKET);
	if (kcm < 0) {
		fprintf(stderr, "# socket(AF_KCM): %s\n", strerror(-kcm));
		return 13;
	}
	if (kx_pair_open(&p)) {
		fprintf(stderr, "# TCP pair: %s\n", strerror(errno));
		return 14;
	}
	i = kx_attach_framing(kcm, p.tcp, &f, &id);
	if (i || !id) {
		fprintf(stderr, "# framing attach: %s, id %u\n", strerror(-i), id);
		return 15;
	}
	for (i = 0; i < 5; i++) {
		uint32_t len = 4 + 300 * i;

		kx_frame(buf, &f, len, i);
		if (kcm_send_all(p.peer, buf, len))
			return 16;
		r = kx_recv(kcm, rbuf, sizeof(rbuf), KCM_WAIT_MS);
		if (r != (ssize_t)len || memcmp(buf, rbuf, len)) {
			fprintf(stderr, "# message %d: got %zd bytes, want %u\n",
				i, r, len);
			return 17;
		}
	}
	if (send(kcm, "hello", 5, MSG_EOR) != 5 ||
	    kcm_read_exact(p.peer, rbuf, 5, KCM_WAIT_MS) != 5 ||
	    memcmp(rbuf, "hello", 5)) {
		fprintf(stderr, "# sending failed\n");
		return 18;
	}
	if (kx_psock_id(kcm, p.tcp) != id)
		return 19;
	return 0;
}

/*
 * A process that cannot load BPF programs (uid 65534, no capabilities,
 * unprivileged BPF disabled) still uses KCM with built-in framing.
 */
TEST(framing_unprivileged)
{
	int old, status = -1;
	bool restore = false;
	pid_t pid;

	KX_REQUIRE_KCMUX("built-in framing needs no BPF");
	ASSERT_EQ(0, kcm_netns_enter());
	old = (int)kcm_read_number(KX_BPF_SYSCTL);
	if (old == 0) {
		/* 2 can be set back to 0 (1 cannot, until reboot). */
		restore = !kx_write_sysctl(KX_BPF_SYSCTL, 2);
		if (!restore)
			SKIP(return, "cannot disable unprivileged BPF (%s is 0, read-only)",
			     KX_BPF_SYSCTL);
	} else if (old < 0) {
		SKIP(return, "%s: %s", KX_BPF_SYSCTL, strerror(-old));
	}
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid)
		_exit(kx_unpriv_child());
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	if (restore)
		EXPECT_EQ(0, kx_write_sysctl(KX_BPF_SYSCTL, 0));
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status)) {
		TH_LOG("the unprivileged child failed at step %d (see above)",
		       WEXITSTATUS(status));
	}
}

/* ------------------------------------------------------------------ */
/* SIOCKCMPSOCKID                                                       */
/* ------------------------------------------------------------------ */

/*
 * The id of a psock, from any KCM socket of its mux; ENOENT for a TCP
 * socket attached to another mux, never attached, or unattached, and for
 * any other socket; EBADF and ENOTSOCK for an fd that is no socket.
 */
TEST(psock_id_lookup)
{
	struct kx_pair a, b, c, d, e;
	uint32_t ida, idc, ide;
	int kcm1, clone1, kcm2, bpf, pfd[2], udp, closed;
	int64_t idb;

	KX_REQUIRE_KCMUX("SIOCKCMPSOCKID");
	ASSERT_EQ(0, kcm_netns_enter());
	bpf = kcm_bpf_load_parser();
	ASSERT_LE(0, bpf);
	kcm1 = kcm_socket(SOCK_DGRAM);
	kcm2 = kcm_socket(SOCK_DGRAM);
	ASSERT_LE(0, kcm1);
	ASSERT_LE(0, kcm2);
	clone1 = kcm_clone(kcm1);
	ASSERT_LE(0, clone1);
	ASSERT_EQ(0, kx_pair_open(&a));
	ASSERT_EQ(0, kx_pair_open(&b));
	ASSERT_EQ(0, kx_pair_open(&c));
	ASSERT_EQ(0, kx_pair_open(&d));
	ASSERT_EQ(0, kx_pair_open(&e));
	ASSERT_EQ(0, kx_attach_framing(kcm1, a.tcp, &kx_be32_framing, &ida));
	ASSERT_EQ(0, kcm_attach(kcm1, b.tcp, bpf));
	ASSERT_EQ(0, kx_attach_framing(kcm2, c.tcp, &kx_be32_framing, &idc));
	ASSERT_EQ(0, kx_attach_framing(clone1, e.tcp, &kx_be32_framing, &ide));

	EXPECT_EQ(ida, kx_psock_id(kcm1, a.tcp));
	EXPECT_EQ(ida, kx_psock_id(clone1, a.tcp));
	EXPECT_EQ(ide, kx_psock_id(kcm1, e.tcp));
	idb = kx_psock_id(kcm1, b.tcp);
	EXPECT_LT(0, idb);
	EXPECT_NE(ida, idb);
	EXPECT_EQ(idb, kx_psock_id(clone1, b.tcp));
	EXPECT_EQ(idc, kx_psock_id(kcm2, c.tcp));

	/* Another mux's psock. */
	EXPECT_EQ(-ENOENT, kx_psock_id(kcm1, c.tcp));
	EXPECT_EQ(-ENOENT, kx_psock_id(clone1, c.tcp));
	EXPECT_EQ(-ENOENT, kx_psock_id(kcm2, a.tcp));
	EXPECT_EQ(-ENOENT, kx_psock_id(kcm2, b.tcp));
	/* Never attached: either end of a pair. */
	EXPECT_EQ(-ENOENT, kx_psock_id(kcm1, d.tcp));
	EXPECT_EQ(-ENOENT, kx_psock_id(kcm1, d.peer));
	EXPECT_EQ(-ENOENT, kx_psock_id(kcm1, a.peer));
	/* Unattached. */
	ASSERT_EQ(0, kcm_unattach(kcm1, e.tcp));
	EXPECT_EQ(-ENOENT, kx_psock_id(kcm1, e.tcp));
	EXPECT_EQ(-ENOENT, kx_psock_id(clone1, e.tcp));

	/*
	 * A socket that is not an attached TCP socket: ENOENT.  An fd that
	 * is no socket: ENOTSOCK; no open file at all: EBADF (what fd
	 * lookups say everywhere, unlike SIOCKCMATTACH's ENOENT).
	 */
	ASSERT_EQ(0, pipe(pfd));
	udp = socket(AF_INET, SOCK_DGRAM, 0);
	ASSERT_LE(0, udp);
	closed = dup(pfd[0]);
	ASSERT_LE(0, closed);
	close(closed);
	EXPECT_EQ(-ENOENT, kx_psock_id(kcm1, udp));
	EXPECT_EQ(-ENOENT, kx_psock_id(kcm1, kcm1));
	EXPECT_EQ(-ENOTSOCK, kx_psock_id(kcm1, pfd[0]));
	EXPECT_EQ(-EBADF, kx_psock_id(kcm1, -1));
	EXPECT_EQ(-EBADF, kx_psock_id(kcm1, closed));
	/* Still the same answers for the good ones. */
	EXPECT_EQ(ida, kx_psock_id(kcm1, a.tcp));

	close(udp);
	close(pfd[0]);
	close(pfd[1]);
	kx_pair_close(&a);
	kx_pair_close(&b);
	kx_pair_close(&c);
	kx_pair_close(&d);
	kx_pair_close(&e);
	close(clone1);
	close(kcm1);
	close(kcm2);
	close(bpf);
}

/* ------------------------------------------------------------------ */
/* KCMUX_ORIGIN on receive                                              */
/* ------------------------------------------------------------------ */

/* The option is per KCM socket, off by default, and reads back. */
TEST(origin_sockopt)
{
	int kcm, clone;
	short s = 1;

	KX_REQUIRE_KCMUX("KCMUX_ORIGIN socket option");
	ASSERT_EQ(0, kcm_netns_enter());
	kcm = kcm_socket(SOCK_DGRAM);
	ASSERT_LE(0, kcm);
	clone = kcm_clone(kcm);
	ASSERT_LE(0, clone);
	EXPECT_EQ(0, kcm_getint(kcm, SOL_KCM, KCMUX_ORIGIN));
	EXPECT_EQ(0, kx_set_origin(kcm, 1));
	EXPECT_EQ(1, kcm_getint(kcm, SOL_KCM, KCMUX_ORIGIN));
	EXPECT_EQ(0, kcm_getint(clone, SOL_KCM, KCMUX_ORIGIN));
	EXPECT_EQ(0, kx_set_origin(kcm, 0));
	EXPECT_EQ(0, kcm_getint(kcm, SOL_KCM, KCMUX_ORIGIN));
	EXPECT_EQ(0, kx_set_origin(clone, 1));
	EXPECT_EQ(1, kcm_getint(clone, SOL_KCM, KCMUX_ORIGIN));
	EXPECT_EQ(0, kcm_getint(kcm, SOL_KCM, KCMUX_ORIGIN));
	/* optlen < sizeof(int), as for KCM_RECV_DISABLE. */
	EXPECT_EQ(-1, setsockopt(kcm, SOL_KCM, KCMUX_ORIGIN, &s, sizeof(s)));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(0, kcm_getint(kcm, SOL_KCM, KCMUX_ORIGIN));
	close(clone);
	close(kcm);
}

/*
 * With the option on, every message carries (SOL_KCM, KCMUX_ORIGIN,
 * __u32) naming the psock it came in on; with it off, no control
 * message at all.
 */
TEST(origin_cmsg)
{
	uint8_t buf[4096], rbuf[4096];
	int count[3] = { 0 }, i, k;
	struct kx_env e;
	struct kx_rcv r;

	KX_REQUIRE_KCMUX("KCMUX_ORIGIN control message");
	kx_env_open(_metadata, &e, SOCK_DGRAM, 3);
	ASSERT_EQ(0, kx_set_origin(e.kcm, 1));
	/* Peer i sends messages tagged 10 * i + k, k = 0..4. */
	for (k = 0; k < 5; k++)
		for (i = 0; i < 3; i++) {
			uint32_t tag = 10 * i + k, len = 8 + 97 * tag;

			kx_tagged(buf, len, tag);
			ASSERT_EQ(0, kcm_send_all(e.p[i].peer, buf, len));
		}
	for (k = 0; k < 15; k++) {
		uint32_t tag;

		r = kx_recvmsg(e.kcm, rbuf, sizeof(rbuf), KX_ORIGIN_SPACE, 0,
			       KCM_WAIT_MS);
		ASSERT_LE(8, r.n);
		tag = kx_tag_of(rbuf);
		ASSERT_GT(30u, tag);
		EXPECT_TRUE(kx_tagged_ok(rbuf, r.n, 8 + 97 * tag, tag));
		EXPECT_EQ(1, r.ncmsg);
		EXPECT_EQ(1, r.norigin);
		EXPECT_EQ(CMSG_LEN(sizeof(uint32_t)), r.origin_len);
		EXPECT_EQ(e.id[tag / 10], r.origin) {
			TH_LOG("message %u from peer %u: origin %u, not %u",
			       tag, tag / 10, r.origin, e.id[tag / 10]);
		}
		EXPECT_EQ(0, r.flags & MSG_CTRUNC);
		count[tag / 10]++;
	}
	EXPECT_EQ(5, count[0]);
	EXPECT_EQ(5, count[1]);
	EXPECT_EQ(5, count[2]);

	/* Off again: no control message. */
	ASSERT_EQ(0, kx_set_origin(e.kcm, 0));
	for (i = 0; i < 3; i++) {
		kx_tagged(buf, 100, 90 + i);
		ASSERT_EQ(0, kcm_send_all(e.p[i].peer, buf, 100));
		r = kx_recvmsg(e.kcm, rbuf, sizeof(rbuf), KX_ORIGIN_SPACE, 0,
			       KCM_WAIT_MS);
		ASSERT_EQ(100, r.n);
		EXPECT_EQ(90u + i, kx_tag_of(rbuf));
		EXPECT_EQ(0, r.ncmsg);
		EXPECT_EQ(0u, r.controllen);
		EXPECT_EQ(0, r.flags & MSG_CTRUNC);
	}
}

/*
 * The same on SOCK_SEQPACKET, where a message may take several reads:
 * the origin comes with the message, MSG_PEEK included.
 */
TEST(origin_cmsg_seqpacket)
{
	uint8_t buf[512], rbuf[512];
	struct kx_env e;
	struct kx_rcv r;
	int i;

	KX_REQUIRE_KCMUX("KCMUX_ORIGIN control message");
	kx_env_open(_metadata, &e, SOCK_SEQPACKET, 2);
	ASSERT_EQ(0, kx_set_origin(e.kcm, 1));
	for (i = 0; i < 2; i++) {
		kx_tagged(buf, 300, i);
		ASSERT_EQ(0, kcm_send_all(e.p[i].peer, buf, 300));
		r = kx_recvmsg(e.kcm, rbuf, sizeof(rbuf), KX_ORIGIN_SPACE,
			       MSG_PEEK, KCM_WAIT_MS);
		ASSERT_EQ(300, r.n);
		EXPECT_EQ(1, r.norigin);
		EXPECT_EQ(e.id[i], r.origin);
		r = kx_recvmsg(e.kcm, rbuf, sizeof(rbuf), KX_ORIGIN_SPACE, 0,
			       KCM_WAIT_MS);
		ASSERT_EQ(300, r.n);
		EXPECT_TRUE(kx_tagged_ok(rbuf, r.n, 300, i));
		EXPECT_EQ(1, r.norigin);
		EXPECT_EQ(e.id[i], r.origin);
		EXPECT_TRUE(r.flags & MSG_EOR);
	}
}

/*
 * A control buffer too small for the origin: the message itself is
 * delivered whole and MSG_CTRUNC says the control data was cut, as
 * every Linux socket does (put_cmsg); no buffer at all is too small too.
 */
TEST(origin_ctrunc)
{
	uint8_t buf[256], rbuf[256];
	struct kx_env e;
	struct kx_rcv r;
	int i;
	static const size_t small[] = { 0, sizeof(struct cmsghdr),
					CMSG_LEN(sizeof(uint32_t)) - 1 };

	KX_REQUIRE_KCMUX("KCMUX_ORIGIN control message");
	kx_env_open(_metadata, &e, SOCK_DGRAM, 1);
	ASSERT_EQ(0, kx_set_origin(e.kcm, 1));
	for (i = 0; i < 3; i++) {
		kx_tagged(buf, 200, i);
		ASSERT_EQ(0, kcm_send_all(e.p[0].peer, buf, 200));
		r = kx_recvmsg(e.kcm, rbuf, sizeof(rbuf), small[i], 0, KCM_WAIT_MS);
		ASSERT_EQ(200, r.n) {
			TH_LOG("control buffer of %zu bytes", small[i]);
		}
		EXPECT_TRUE(kx_tagged_ok(rbuf, r.n, 200, i));
		EXPECT_TRUE(r.flags & MSG_CTRUNC) {
			TH_LOG("control buffer of %zu bytes: no MSG_CTRUNC",
			       small[i]);
		}
		EXPECT_EQ(0, r.flags & MSG_TRUNC);
	}
	/* Large enough again: no MSG_CTRUNC. */
	kx_tagged(buf, 200, 7);
	ASSERT_EQ(0, kcm_send_all(e.p[0].peer, buf, 200));
	r = kx_recvmsg(e.kcm, rbuf, sizeof(rbuf), KX_ORIGIN_SPACE, 0, KCM_WAIT_MS);
	ASSERT_EQ(200, r.n);
	EXPECT_EQ(0, r.flags & MSG_CTRUNC);
	EXPECT_EQ(e.id[0], r.origin);
}

/* ------------------------------------------------------------------ */
/* Targeted send                                                        */
/* ------------------------------------------------------------------ */

FIXTURE(target) {
	struct kx_env e;
};

FIXTURE_VARIANT(target) {
	int type;
};

FIXTURE_VARIANT_ADD(target, dgram) {
	.type = SOCK_DGRAM,
};

FIXTURE_VARIANT_ADD(target, seqpacket) {
	.type = SOCK_SEQPACKET,
};

FIXTURE_SETUP(target)
{
	KX_REQUIRE_KCMUX("targeted send (KCMUX_ORIGIN control message)");
	kx_env_open(_metadata, &self->e, variant->type, 3);
}

FIXTURE_TEARDOWN(target)
{
	int i;

	for (i = 0; i < self->e.npairs; i++)
		kx_pair_close(&self->e.p[i]);
	kcm_close_fd(&self->e.kcm);
}

#define KX_TGT_MSGS	90

/* Which psock message k of the many-messages test goes to. */
static int kx_tgt_of(int k)
{
	return (k * 7 + k / 5) % 3;
}

static uint32_t kx_tgt_len(int k)
{
	return 8 + (uint32_t)(k * 131) % 1900;
}

/*
 * "sends that message on that psock only": many messages, spread over
 * three psocks; each peer receives exactly its own, whole and in order.
 */
TEST_F(target, each_peer_gets_its_own)
{
	static uint8_t buf[4096];
	int k, i, expect[3] = { 0 };

	for (k = 0; k < KX_TGT_MSGS; k++) {
		uint32_t len = kx_tgt_len(k);

		kx_tagged(buf, len, k);
		ASSERT_EQ((ssize_t)len,
			  kx_send_to(self->e.kcm, buf, len,
				     self->e.id[kx_tgt_of(k)],
				     kx_eor(variant->type)));
	}
	for (i = 0; i < 3; i++) {
		for (k = 0; k < KX_TGT_MSGS; k++) {
			uint32_t len = kx_tgt_len(k);
			ssize_t n;

			if (kx_tgt_of(k) != i)
				continue;
			n = kcm_read_exact(self->e.p[i].peer, buf, len,
					   KCM_WAIT_MS);
			EXPECT_TRUE(kx_tagged_ok(buf, n, len, k)) {
				TH_LOG("peer %d: expected message %d (%u bytes), got %zd bytes tagged %u",
				       i, k, len, n, n >= 8 ? kx_tag_of(buf) : 0);
			}
			if (n != (ssize_t)len)
				break;
			expect[i]++;
		}
		EXPECT_TRUE(kx_stream_quiet(self->e.p[i].peer, KCM_QUIET_MS));
	}
	EXPECT_EQ(KX_TGT_MSGS, expect[0] + expect[1] + expect[2]);
	EXPECT_EQ(0, kcm_sigpipes());
}

/*
 * ENOENT: "no psock with that id in this multiplexor (unknown, or
 * unattached)"; a psock of another mux is not in this one.  Nothing is
 * sent anywhere.
 */
TEST_F(target, unknown_id_enoent)
{
	uint32_t max = 0, other = 0;
	uint8_t buf[64];
	struct kx_pair q;
	int i, kcm2;

	for (i = 0; i < 3; i++)
		if (self->e.id[i] > max)
			max = self->e.id[i];
	kx_tagged(buf, 64, 1);
	EXPECT_EQ(-ENOENT, kx_send_to(self->e.kcm, buf, 64, 0xffffffff,
				      kx_eor(variant->type)));
	EXPECT_EQ(-ENOENT, kx_send_to(self->e.kcm, buf, 64, max + 1000,
				      kx_eor(variant->type)));
	/* Unattached. */
	ASSERT_EQ(0, kcm_unattach(self->e.kcm, self->e.p[2].tcp));
	EXPECT_EQ(-ENOENT, kx_send_to(self->e.kcm, buf, 64, self->e.id[2],
				      kx_eor(variant->type)));
	/* Another mux's psock. */
	kcm2 = kcm_socket(variant->type);
	ASSERT_LE(0, kcm2);
	ASSERT_EQ(0, kx_pair_open(&q));
	ASSERT_EQ(0, kx_attach_framing(kcm2, q.tcp, &kx_be32_framing, &other));
	EXPECT_EQ(-ENOENT, kx_send_to(self->e.kcm, buf, 64, other,
				      kx_eor(variant->type)));
	EXPECT_EQ(-ENOENT, kx_send_to(kcm2, buf, 64, self->e.id[0],
				      kx_eor(variant->type)));
	EXPECT_TRUE(kx_peers_quiet(&self->e, 0, KCM_QUIET_MS));
	EXPECT_TRUE(kx_stream_quiet(q.peer, 0));
	/* The socket is fine: a good id still works. */
	EXPECT_EQ(64, kx_send_to(self->e.kcm, buf, 64, self->e.id[1],
				 kx_eor(variant->type)));
	EXPECT_EQ(64, kcm_read_exact(self->e.p[1].peer, buf, 64, KCM_WAIT_MS));
	EXPECT_TRUE(kx_tagged_ok(buf, 64, 64, 1));
	EXPECT_TRUE(kx_peers_quiet(&self->e, 0, KCM_QUIET_MS));
	kx_pair_close(&q);
	close(kcm2);
}

/*
 * Waits (KCM_WAIT_MS) until the psock dump shows psock id in state;
 * returns the state last seen, -1 if the psock is not listed.
 */
static int kx_wait_psock_state(struct kx_nl *nl, uint32_t id, uint32_t state)
{
	static struct kx_dump d;
	long long end = kcm_now_ms() + KCM_WAIT_MS;

	for (;;) {
		const struct kx_obj *o;
		int last;

		if (kx_nl_dump(nl, KCMUX_CMD_GET_PSOCK, &d))
			return -1;
		o = kx_find(&d, KCMUX_A_PSOCK_ID, id);
		last = o ? (int)o->val[KCMUX_A_STATE] : -1;
		if (last == (int)state || kcm_now_ms() > end)
			return last;
		kcm_msleep(2);
	}
}

/* Which of peers i and j has data first (within KCM_WAIT_MS), or -1. */
static int kx_readable_peer(const struct kx_env *e, int i, int j)
{
	struct pollfd pfd[2] = {
		{ .fd = e->p[i].peer, .events = POLLIN },
		{ .fd = e->p[j].peer, .events = POLLIN },
	};

	if (poll(pfd, 2, KCM_WAIT_MS) <= 0)
		return -1;
	return pfd[0].revents ? i : j;
}

/*
 * EPIPE: "the psock has stopped (its TCP socket failed or was closed by
 * the peer)".  Once the error is posted on the TCP socket (POLLERR), a
 * targeted send fails and nothing goes to the other psocks; untargeted
 * sends still work.  how: 0 reset, 1 FIN, 2 framing error.
 */
static void kx_target_stopped(struct __test_metadata *_metadata,
			      struct kx_env *e, int type, int how)
{
	uint8_t buf[128];
	struct kx_nl nl;
	int which;

	switch (how) {
	case 0:
		ASSERT_EQ(0, kcm_tcp_reset(&e->p[0].peer, e->p[0].tcp));
		break;
	case 1:
		kcm_close_fd(&e->p[0].peer);
		break;
	case 2:
		kx_frame_value(buf, &kx_be32_framing, 8, 1, 2);
		ASSERT_EQ(0, kcm_send_all(e->p[0].peer, buf, 8));
		break;
	}
	ASSERT_EQ(0, kcm_wait_pollerr(e->p[0].tcp, KCM_WAIT_MS));
	/*
	 * POLLERR may come from TCP itself (a reset) before the mux has
	 * seen anything: wait for the psock to be STOPPED as the mux says.
	 * target_epipe_once_error_visible holds the module to the
	 * stronger promise that POLLERR alone suffices.
	 */
	ASSERT_EQ(0, kx_nl_open_family(&nl));
	ASSERT_EQ(KCMUX_PSOCK_STATE_STOPPED,
		  kx_wait_psock_state(&nl, e->id[0], KCMUX_PSOCK_STATE_STOPPED));
	kx_nl_close(&nl);
	kx_tagged(buf, 100, 5);
	EXPECT_EQ(-EPIPE, kx_send_to(e->kcm, buf, 100, e->id[0], kx_eor(type)));
	EXPECT_EQ(-EPIPE, kx_send_to(e->kcm, buf, 100, e->id[0], kx_eor(type)));
	EXPECT_TRUE(kx_peers_quiet(e, 1, KCM_QUIET_MS));
	/* The other psocks carry on, targeted or not. */
	EXPECT_EQ(100, kx_send_to(e->kcm, buf, 100, e->id[2], kx_eor(type)));
	EXPECT_EQ(100, kcm_read_exact(e->p[2].peer, buf, 100, KCM_WAIT_MS));
	EXPECT_TRUE(kx_tagged_ok(buf, 100, 100, 5));
	kx_tagged(buf, 60, 6);
	EXPECT_EQ(60, send(e->kcm, buf, 60, kx_eor(type) | MSG_NOSIGNAL));
	which = kx_readable_peer(e, 1, 2);
	ASSERT_LE(0, which);
	EXPECT_EQ(60, kcm_read_exact(e->p[which].peer, buf, 60, KCM_WAIT_MS));
	EXPECT_TRUE(kx_tagged_ok(buf, 60, 60, 6));
	EXPECT_TRUE(kx_peers_quiet(e, 1, KCM_QUIET_MS));
	EXPECT_EQ(0, kcm_sigpipes());
	/* Unattaching makes the id unknown: ENOENT from then on. */
	ASSERT_EQ(0, kcm_unattach(e->kcm, e->p[0].tcp));
	EXPECT_EQ(-ENOENT, kx_send_to(e->kcm, buf, 100, e->id[0], kx_eor(type)));
}

TEST_F(target, peer_reset_epipe)
{
	kx_target_stopped(_metadata, &self->e, variant->type, 0);
}

TEST_F(target, peer_closed_epipe)
{
	kx_target_stopped(_metadata, &self->e, variant->type, 1);
}

TEST_F(target, framing_error_epipe)
{
	kx_target_stopped(_metadata, &self->e, variant->type, 2);
}

/*
 * "EPIPE: the psock has stopped (its TCP socket failed or was closed by
 * the peer)": so once the failure shows on the TCP socket (POLLERR), a
 * targeted send fails at once, with no window where it is accepted (and
 * then silently dropped).  Many rounds of each cause, since such a
 * window is a race; a message accepted anyway must still never reach
 * another psock.
 */
#define KX_EPIPE_ROUNDS	200
#define KX_EPIPE_MS	15000		/* slow (debug) kernels do fewer */

TEST(target_epipe_once_error_visible)
{
	static const char *const causes[] = { "reset", "FIN", "framing error" };
	int accepted[3] = { 0 }, rounds[3] = { 0 }, kcm, round;
	long long end = kcm_now_ms() + KX_EPIPE_MS;
	struct kx_pair other;
	uint32_t other_id;
	uint8_t buf[64];

	KX_REQUIRE_KCMUX("targeted send");
	ASSERT_EQ(0, kcm_netns_enter());
	ASSERT_EQ(0, kcm_sigpipe_catch());
	kcm = kcm_socket(SOCK_DGRAM);
	ASSERT_LE(0, kcm);
	ASSERT_EQ(0, kx_pair_open(&other));
	ASSERT_EQ(0, kx_attach_framing(kcm, other.tcp, &kx_be32_framing,
				       &other_id));
	for (round = 0; round < 3 * KX_EPIPE_ROUNDS && kcm_now_ms() < end;
	     round++) {
		int cause = round % 3;
		struct kx_pair p;
		uint32_t id;
		ssize_t r;

		rounds[cause]++;
		ASSERT_EQ(0, kx_pair_open(&p));
		ASSERT_EQ(0, kx_attach_framing(kcm, p.tcp, &kx_be32_framing, &id));
		if (cause == 0) {
			ASSERT_EQ(0, kcm_tcp_reset(&p.peer, p.tcp));
		} else if (cause == 1) {
			kcm_close_fd(&p.peer);
		} else {
			kx_frame_value(buf, &kx_be32_framing, 8, 1, 2);
			ASSERT_EQ(0, kcm_send_all(p.peer, buf, 8));
		}
		ASSERT_EQ(0, kcm_wait_pollerr(p.tcp, KCM_WAIT_MS));
		kx_tagged(buf, 64, round);
		r = kx_send_to(kcm, buf, 64, id, 0);
		if (r != -EPIPE) {
			accepted[cause]++;
			EXPECT_EQ(64, r);
		}
		EXPECT_EQ(0, kcm_unattach(kcm, p.tcp));
		kx_pair_close(&p);
	}
	for (round = 0; round < 3; round++) {
		const char *cause = causes[round];
		int n = accepted[round], of = rounds[round];

		EXPECT_EQ(0, n) {
			TH_LOG("%s: %d of %d targeted sends accepted after POLLERR",
			       cause, n, of);
		}
	}
	EXPECT_TRUE(kx_stream_quiet(other.peer, KCM_QUIET_MS));
	EXPECT_EQ(0, kcm_sigpipes());
	kx_pair_close(&other);
	close(kcm);
}

/* EINVAL: "malformed control message": its length does not hold a __u32. */
TEST_F(target, malformed_cmsg_einval)
{
	static const int lens[] = { 0, 1, 2, 3, 5, 8, 16 };
	uint8_t buf[64];
	unsigned int i;
	ssize_t r;

	kx_tagged(buf, 64, 3);
	for (i = 0; i < KX_ARRAY_SIZE(lens); i++) {
		r = kx_sendmsg_raw(self->e.kcm, buf, 64, self->e.id[0], lens[i],
				   kx_eor(variant->type));
		EXPECT_EQ(-EINVAL, r) {
			TH_LOG("cmsg data of %d bytes: got %zd", lens[i], r);
		}
	}
	EXPECT_TRUE(kx_peers_quiet(&self->e, 0, KCM_QUIET_MS));
	/* A failed call added nothing: the next message goes out alone. */
	kx_tagged(buf, 40, 4);
	EXPECT_EQ(40, kx_send_to(self->e.kcm, buf, 40, self->e.id[0],
				 kx_eor(variant->type)));
	EXPECT_EQ(40, kcm_read_exact(self->e.p[0].peer, buf, 64, KCM_QUIET_MS * 2));
	EXPECT_TRUE(kx_tagged_ok(buf, 40, 40, 4));
	EXPECT_TRUE(kx_peers_quiet(&self->e, 0, KCM_QUIET_MS));
}

/* The flags of a call that does not end the message. */
static int kx_more(int type)
{
	return type == SOCK_SEQPACKET ? 0 : MSG_MORE;
}

/*
 * A message written in several calls: "a later call naming a different
 * psock fails with EINVAL" (and adds nothing); naming the same psock, or
 * none, continues it, and the whole message goes to that psock.
 */
TEST_F(target, continuation_other_id_einval)
{
	uint8_t msg[300], buf[400];
	int more = kx_more(variant->type), eor = kx_eor(variant->type);

	kx_tagged(msg, 300, 11);
	ASSERT_EQ(100, kx_send_to(self->e.kcm, msg, 100, self->e.id[0], more));
	EXPECT_EQ(-EINVAL, kx_send_to(self->e.kcm, msg + 100, 100,
				      self->e.id[1], more));
	EXPECT_EQ(-EINVAL, kx_send_to(self->e.kcm, msg + 100, 100,
				      self->e.id[2], eor));
	/* Same id, then no id at all. */
	ASSERT_EQ(100, kx_send_to(self->e.kcm, msg + 100, 100, self->e.id[0],
				  more));
	ASSERT_EQ(100, send(self->e.kcm, msg + 200, 100, eor | MSG_NOSIGNAL));
	EXPECT_EQ(300, kcm_read_exact(self->e.p[0].peer, buf, 300, KCM_WAIT_MS));
	EXPECT_TRUE(kx_tagged_ok(buf, 300, 300, 11));
	EXPECT_TRUE(kx_peers_quiet(&self->e, 0, KCM_QUIET_MS));

	/* The next message is free to go elsewhere. */
	kx_tagged(msg, 50, 12);
	ASSERT_EQ(50, kx_send_to(self->e.kcm, msg, 50, self->e.id[1], eor));
	EXPECT_EQ(50, kcm_read_exact(self->e.p[1].peer, buf, 50, KCM_WAIT_MS));
	EXPECT_TRUE(kx_tagged_ok(buf, 50, 50, 12));
	EXPECT_TRUE(kx_peers_quiet(&self->e, 0, KCM_QUIET_MS));
}

/*
 * "targeted by the first call that carries the control message": the
 * first part untargeted, a later one targeted; the whole message goes to
 * the psock that call names.
 */
TEST_F(target, continuation_targeted_later)
{
	uint8_t msg[300], buf[400];
	int more = kx_more(variant->type), eor = kx_eor(variant->type);

	kx_tagged(msg, 300, 21);
	ASSERT_EQ(100, send(self->e.kcm, msg, 100, more | MSG_NOSIGNAL));
	ASSERT_EQ(100, kx_send_to(self->e.kcm, msg + 100, 100, self->e.id[2],
				  more));
	EXPECT_EQ(-EINVAL, kx_send_to(self->e.kcm, msg + 200, 100,
				      self->e.id[1], eor));
	ASSERT_EQ(100, send(self->e.kcm, msg + 200, 100, eor | MSG_NOSIGNAL));
	EXPECT_EQ(300, kcm_read_exact(self->e.p[2].peer, buf, 300, KCM_WAIT_MS));
	EXPECT_TRUE(kx_tagged_ok(buf, 300, 300, 21));
	EXPECT_TRUE(kx_peers_quiet(&self->e, 0, KCM_QUIET_MS));
}

/*
 * "A targeted message still queued when its psock stops or is
 * unattached is dropped and counted in the mux's
 * KCMUX_STAT_TX_TARGET_DROPS; it is never sent on another psock."
 *
 * Psock A's peer does not read, so A's TCP buffers fill and targeted
 * messages queue up in the KCM socket.  Then A stops (its peer resets)
 * or is unattached (its peer then drains what A still sends).  Every
 * message was either sent on A or dropped and counted; none ever shows
 * up on B; the socket works again afterwards.
 */
#define KX_DROP_LEN	8192
#define KX_DROP_MAX	400

static uint64_t kx_mux_stat(struct __test_metadata *_metadata,
			    struct kx_nl *nl, int stat)
{
	struct kx_dump *d = malloc(sizeof(*d));
	uint64_t v;

	ASSERT_NE(NULL, d);
	ASSERT_EQ(0, kx_nl_dump(nl, KCMUX_CMD_GET_MUX, d));
	ASSERT_EQ(1, d->n);
	ASSERT_TRUE(d->obj[0].has_stat[stat]) {
		TH_LOG("mux dump lacks counter %d", stat);
	}
	v = d->obj[0].stat[stat];
	free(d);
	return v;
}

/* TX_MSGS of the psock with this id, or -1 if it is gone from the dump. */
static int64_t kx_psock_tx_msgs(struct __test_metadata *_metadata,
				struct kx_nl *nl, uint32_t id)
{
	struct kx_dump *d = malloc(sizeof(*d));
	const struct kx_obj *o;
	int64_t v = -1;

	ASSERT_NE(NULL, d);
	ASSERT_EQ(0, kx_nl_dump(nl, KCMUX_CMD_GET_PSOCK, d));
	o = kx_find(d, KCMUX_A_PSOCK_ID, id);
	if (o && o->has_stat[KCMUX_STAT_TX_MSGS])
		v = (int64_t)o->stat[KCMUX_STAT_TX_MSGS];
	free(d);
	return v;
}

static void kx_target_drops(struct __test_metadata *_metadata, bool unattach)
{
	const struct kcm_tcp_opts small = {
		.sndbuf = 4096, .rcvbuf = 4096, .nodelay = true,
	};
	static uint8_t buf[KX_DROP_LEN];
	int kcm, fds[2], a_tcp, a_peer, sent = 0, on_a = 0;
	struct kx_pair b;
	uint32_t ida, idb;
	struct kx_nl nl;
	int64_t tx_a;
	uint64_t drops;
	ssize_t r;

	ASSERT_EQ(0, kcm_netns_enter());
	ASSERT_EQ(0, kcm_sigpipe_catch());
	ASSERT_EQ(0, kx_nl_open_family(&nl));
	kcm = kcm_socket(SOCK_DGRAM);
	ASSERT_LE(0, kcm);
	/* A: the attached end sends through a small buffer to a small one. */
	ASSERT_EQ(0, kcm_tcp_pair_opts(AF_INET, fds, &small));
	a_tcp = fds[0];
	a_peer = fds[1];
	ASSERT_EQ(0, kx_attach_framing(kcm, a_tcp, &kx_be32_framing, &ida));
	ASSERT_EQ(0, kx_pair_open(&b));
	ASSERT_EQ(0, kx_attach_framing(kcm, b.tcp, &kx_be32_framing, &idb));

	while (sent < KX_DROP_MAX) {
		kx_tagged(buf, KX_DROP_LEN, sent);
		r = kx_send_to(kcm, buf, KX_DROP_LEN, ida, MSG_DONTWAIT);
		if (r == -EAGAIN)
			break;
		ASSERT_EQ(KX_DROP_LEN, r);
		sent++;
	}
	ASSERT_GT(KX_DROP_MAX, sent) {
		TH_LOG("%d messages never filled the KCM socket", sent);
	}
	TH_LOG("%d targeted messages queued before EAGAIN", sent);
	/* Stuck: nothing of it on B meanwhile. */
	EXPECT_TRUE(kx_stream_quiet(b.peer, KCM_QUIET_MS));

	if (unattach) {
		ASSERT_EQ(0, kcm_unattach(kcm, a_tcp));
		/* A is stuck in the middle of a message: it finishes it first. */
		EXPECT_EQ(KCMUX_PSOCK_STATE_UNATTACHING,
			  kx_wait_psock_state(&nl, ida,
					      KCMUX_PSOCK_STATE_UNATTACHING));
		/* Drain A: whole messages, in order, then nothing. */
		for (;;) {
			r = kcm_read_exact(a_peer, buf, KX_DROP_LEN, KCM_QUIET_MS * 2);
			if (r == 0)
				break;
			ASSERT_EQ(KX_DROP_LEN, r) {
				TH_LOG("message %d arrived cut on A", on_a);
			}
			EXPECT_TRUE(kx_tagged_ok(buf, r, KX_DROP_LEN, on_a));
			on_a++;
		}
		ASSERT_GT(sent, on_a);
		tx_a = on_a;
	} else {
		ASSERT_EQ(0, kcm_tcp_reset(&a_peer, a_tcp));
		/* Counted by the psock, which stays until unattached. */
		kcm_msleep(KCM_QUIET_MS);
		tx_a = kx_psock_tx_msgs(_metadata, &nl, ida);
		ASSERT_LE(0, tx_a);
	}
	/* The queue empties: the socket can send again. */
	EXPECT_TRUE(kcm_poll(kcm, POLLOUT, KCM_WAIT_MS) & POLLOUT);
	drops = kx_mux_stat(_metadata, &nl, KCMUX_STAT_TX_TARGET_DROPS);
	TH_LOG("%lld sent on A, %llu dropped, of %d", (long long)tx_a,
	       (unsigned long long)drops, sent);
	EXPECT_LE(1u, drops);
	/* Sent or dropped; a message cut by the reset may count as either. */
	EXPECT_LE(sent - 1, tx_a + (int64_t)drops);
	EXPECT_GE(sent, tx_a + (int64_t)drops);
	EXPECT_TRUE(kx_stream_quiet(b.peer, KCM_QUIET_MS));

	/* B carries the next message, and only that one. */
	kx_tagged(buf, 500, 999);
	ASSERT_EQ(500, send(kcm, buf, 500, MSG_NOSIGNAL));
	EXPECT_EQ(500, kcm_read_exact(b.peer, buf, 500, KCM_WAIT_MS));
	EXPECT_TRUE(kx_tagged_ok(buf, 500, 500, 999));
	EXPECT_TRUE(kx_stream_quiet(b.peer, KCM_QUIET_MS));
	EXPECT_EQ(0, kcm_sigpipes());
	kcm_close_fd(&a_peer);
	close(a_tcp);
	kx_pair_close(&b);
	close(kcm);
	kx_nl_close(&nl);
}

TEST(target_dropped_when_stopped)
{
	KX_REQUIRE_KCMUX("targeted send");
	kx_target_drops(_metadata, false);
}

TEST(target_dropped_when_unattached)
{
	KX_REQUIRE_KCMUX("targeted send");
	kx_target_drops(_metadata, true);
}

/* ------------------------------------------------------------------ */
/* FIONREAD                                                             */
/* ------------------------------------------------------------------ */

FIXTURE(inq) {
	struct kx_env e;
};

FIXTURE_VARIANT(inq) {
	int type;
};

FIXTURE_VARIANT_ADD(inq, dgram) {
	.type = SOCK_DGRAM,
};

FIXTURE_VARIANT_ADD(inq, seqpacket) {
	.type = SOCK_SEQPACKET,
};

FIXTURE_SETUP(inq)
{
	KX_REQUIRE_KCMUX("FIONREAD on a KCM socket");
	kx_env_open(_metadata, &self->e, variant->type, 1);
}

FIXTURE_TEARDOWN(inq)
{
	kx_pair_close(&self->e.p[0]);
	kcm_close_fd(&self->e.kcm);
}

/*
 * "the number of bytes of the next message still to be read, 0 if none
 * is queued": not the total of the queue, and on SEQPACKET what a short
 * read left of the message.
 */
TEST_F(inq, next_message)
{
	uint8_t buf[512], rbuf[512];
	int r;

	EXPECT_EQ(0, kcm_inq(self->e.kcm));
	kx_tagged(buf, 108, 1);
	ASSERT_EQ(0, kcm_send_all(self->e.p[0].peer, buf, 108));
	ASSERT_TRUE(kcm_poll(self->e.kcm, POLLIN, KCM_WAIT_MS) & POLLIN);
	kx_tagged(buf, 308, 2);
	ASSERT_EQ(0, kcm_send_all(self->e.p[0].peer, buf, 308));
	/* Both on the socket's receive queue. */
	ASSERT_EQ(2, kcm_wait_proc("kcm-0", "Recv-Q", 2));
	EXPECT_EQ(108, kcm_inq(self->e.kcm));
	/* MSG_PEEK changes nothing. */
	ASSERT_EQ(108, recv(self->e.kcm, rbuf, sizeof(rbuf), MSG_PEEK));
	EXPECT_EQ(108, kcm_inq(self->e.kcm));
	ASSERT_EQ(108, recv(self->e.kcm, rbuf, sizeof(rbuf), 0));
	EXPECT_TRUE(kx_tagged_ok(rbuf, 108, 108, 1));
	EXPECT_EQ(308, kcm_inq(self->e.kcm));
	r = recv(self->e.kcm, rbuf, 30, 0);
	ASSERT_EQ(30, r);
	if (variant->type == SOCK_SEQPACKET) {
		EXPECT_EQ(278, kcm_inq(self->e.kcm));
		ASSERT_EQ(278, recv(self->e.kcm, rbuf + 30, sizeof(rbuf) - 30, 0));
		EXPECT_TRUE(kx_tagged_ok(rbuf, 308, 308, 2));
	}
	/* DGRAM dropped the rest of the short read. */
	EXPECT_EQ(0, kcm_inq(self->e.kcm));
	EXPECT_TRUE(kcm_quiet(self->e.kcm, 0));
}

/* ------------------------------------------------------------------ */
/* Generic netlink                                                      */
/* ------------------------------------------------------------------ */

/* Resolves family "kcmux", or fails the test. */
static void kx_nl_setup(struct __test_metadata *_metadata, struct kx_nl *nl)
{
	int err = kx_nl_open_family(nl);

	ASSERT_EQ(0, err) {
		TH_LOG("resolving generic netlink family %s: %s",
		       KCMUX_GENL_NAME, strerror(-err));
	}
	ASSERT_NE(0u, nl->events);
}

/*
 * The start of a netlink test, in a netns of its own: the family open on
 * nl, the test parser in *bpf and a new DGRAM KCM socket, returned.
 */
static int kx_nl_start(struct __test_metadata *_metadata, struct kx_nl *nl,
		       int *bpf)
{
	int kcm;

	ASSERT_EQ(0, kcm_netns_enter());
	kx_nl_setup(_metadata, nl);
	*bpf = kcm_bpf_load_parser();
	ASSERT_LE(0, *bpf);
	kcm = kcm_socket(SOCK_DGRAM);
	ASSERT_LE(0, kcm);
	return kcm;
}

/* Every object of the dump has well-sized attributes. */
static void kx_dump_sizes_ok(struct __test_metadata *_metadata,
			     const struct kx_dump *d)
{
	char why[128];
	int i;

	EXPECT_EQ(0, d->overflow);
	for (i = 0; i < d->n; i++)
		EXPECT_TRUE(kx_obj_sizes_ok(&d->obj[i], why, sizeof(why))) {
			TH_LOG("object %d of cmd %u: %s", i, d->obj[i].cmd, why);
		}
}

/* One psock as the dump must show it. */
static void kx_check_psock(struct __test_metadata *_metadata,
			   const struct kx_dump *d, uint32_t id, uint32_t mux_id,
			   const struct kx_pair *p, uint32_t parser,
			   uint32_t prog_id)
{
	const struct kx_obj *o = kx_find(d, KCMUX_A_PSOCK_ID, id);
	const uint8_t lo4[4] = { 127, 0, 0, 1 };
	const void *lo = lo4;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	int alen = 4;

	ASSERT_EQ(0, getsockname(p->tcp, (struct sockaddr *)&ss, &sslen));
	if (ss.ss_family == AF_INET6) {
		lo = &in6addr_loopback;
		alen = 16;
	}
	ASSERT_NE(NULL, o) {
		TH_LOG("psock %u missing from the dump", id);
	}
	EXPECT_EQ(KCMUX_CMD_GET_PSOCK, o->cmd);
	EXPECT_TRUE(o->has[KCMUX_A_MUX_ID]);
	EXPECT_EQ(mux_id, o->val[KCMUX_A_MUX_ID]);
	EXPECT_EQ(kx_ino(p->tcp), o->val[KCMUX_A_TCP_INO]);
	EXPECT_EQ((uint64_t)ss.ss_family, o->val[KCMUX_A_FAMILY]);
	EXPECT_EQ(alen, o->len[KCMUX_A_SADDR]);
	EXPECT_EQ(alen, o->len[KCMUX_A_DADDR]);
	EXPECT_EQ(0, memcmp(o->bin[KCMUX_A_SADDR], lo, alen));
	EXPECT_EQ(0, memcmp(o->bin[KCMUX_A_DADDR], lo, alen));
	EXPECT_EQ(kx_port(p->tcp, false), (int)o->val[KCMUX_A_SPORT]);
	EXPECT_EQ(kx_port(p->tcp, true), (int)o->val[KCMUX_A_DPORT]);
	EXPECT_TRUE(o->has[KCMUX_A_STATE]);
	EXPECT_EQ((uint64_t)KCMUX_PSOCK_STATE_ACTIVE, o->val[KCMUX_A_STATE]);
	EXPECT_TRUE(o->has[KCMUX_A_PARSER]);
	EXPECT_EQ(parser, o->val[KCMUX_A_PARSER]);
	if (parser == KCMUX_PARSER_BPF) {
		EXPECT_TRUE(o->has[KCMUX_A_BPF_PROG_ID]);
		EXPECT_EQ(prog_id, o->val[KCMUX_A_BPF_PROG_ID]);
	} else {
		EXPECT_FALSE(o->has[KCMUX_A_BPF_PROG_ID]);
	}
	EXPECT_TRUE(o->has[KCMUX_A_STATS]);
	EXPECT_TRUE(o->has_stat[KCMUX_STAT_RX_MSGS]);
	EXPECT_TRUE(o->has_stat[KCMUX_STAT_TX_MSGS]);
}

/*
 * The three dumps show our mux, KCM sockets and psocks, linked by ids
 * and inode numbers, with ports, parser, flags, and counters that move
 * with the traffic.
 */
TEST(nl_dump)
{
	static struct kx_dump d;
	uint8_t buf[1024];
	struct kx_pair a, b;
	const struct kx_obj *o, *s1, *s2;
	uint32_t ida, idb, mux_id, rx_bytes = 0, tx_bytes = 0;
	int kcm, kcm2, bpf, i;
	struct kx_nl nl;

	KX_REQUIRE_KCMUX("generic netlink family kcmux");
	kcm = kx_nl_start(_metadata, &nl, &bpf);
	kcm2 = kcm_clone(kcm);
	ASSERT_LE(0, kcm2);
	ASSERT_EQ(0, kcm_recv_disable(kcm, 1));
	ASSERT_EQ(0, kx_set_origin(kcm2, 1));
	ASSERT_EQ(0, kx_pair_open(&a));
	ASSERT_EQ(0, kx_pair_open_rcvbuf(&b, AF_INET6, 0));
	ASSERT_EQ(0, kx_attach_framing(kcm, a.tcp, &kx_be32_framing, &ida));
	ASSERT_EQ(0, kx_attach_bpf(kcm2, b.tcp, bpf, &idb));

	/* KCM sockets: both, one mux. */
	ASSERT_EQ(0, kx_nl_dump(&nl, KCMUX_CMD_GET_SOCK, &d));
	kx_dump_sizes_ok(_metadata, &d);
	ASSERT_EQ(2, d.n);
	s1 = kx_find(&d, KCMUX_A_SOCK_INO, kx_ino(kcm));
	s2 = kx_find(&d, KCMUX_A_SOCK_INO, kx_ino(kcm2));
	ASSERT_NE(NULL, s1);
	ASSERT_NE(NULL, s2);
	ASSERT_TRUE(s1->has[KCMUX_A_MUX_ID]);
	mux_id = (uint32_t)s1->val[KCMUX_A_MUX_ID];
	EXPECT_EQ(mux_id, s2->val[KCMUX_A_MUX_ID]);
	EXPECT_EQ((uint64_t)SOCK_DGRAM, s1->val[KCMUX_A_SOCK_TYPE]);
	EXPECT_EQ((uint64_t)SOCK_DGRAM, s2->val[KCMUX_A_SOCK_TYPE]);
	EXPECT_TRUE(s1->has[KCMUX_A_SOCK_FLAGS]);
	EXPECT_EQ((uint64_t)KCMUX_SOCK_F_RECV_DISABLED, s1->val[KCMUX_A_SOCK_FLAGS]);
	EXPECT_EQ((uint64_t)KCMUX_SOCK_F_ORIGIN, s2->val[KCMUX_A_SOCK_FLAGS]);

	/* The mux. */
	ASSERT_EQ(0, kx_nl_dump(&nl, KCMUX_CMD_GET_MUX, &d));
	kx_dump_sizes_ok(_metadata, &d);
	ASSERT_EQ(1, d.n);
	o = &d.obj[0];
	EXPECT_EQ(KCMUX_CMD_GET_MUX, o->cmd);
	EXPECT_EQ(mux_id, o->val[KCMUX_A_MUX_ID]);
	EXPECT_EQ(2u, o->val[KCMUX_A_NR_SOCKS]);
	EXPECT_EQ(2u, o->val[KCMUX_A_NR_PSOCKS]);
	EXPECT_EQ(2u, o->stat[KCMUX_STAT_ATTACHED]);
	EXPECT_EQ(0u, o->stat[KCMUX_STAT_RX_MSGS]);

	/* The psocks. */
	ASSERT_EQ(0, kx_nl_dump(&nl, KCMUX_CMD_GET_PSOCK, &d));
	kx_dump_sizes_ok(_metadata, &d);
	ASSERT_EQ(2, d.n);
	kx_check_psock(_metadata, &d, ida, mux_id, &a, KCMUX_PARSER_FRAMING, 0);
	kx_check_psock(_metadata, &d, idb, mux_id, &b, KCMUX_PARSER_BPF,
		       kx_bpf_prog_id(bpf));
	o = kx_find(&d, KCMUX_A_PSOCK_ID, ida);
	EXPECT_EQ(0u, o->stat[KCMUX_STAT_RX_MSGS]);
	EXPECT_EQ(0u, o->stat[KCMUX_STAT_TX_MSGS]);

	/* Traffic: 3 messages in on A (to kcm2), 2 out on B (from kcm2). */
	for (i = 0; i < 3; i++) {
		kx_tagged(buf, 100 + i, i);
		rx_bytes += 100 + i;
		ASSERT_EQ(0, kcm_send_all(a.peer, buf, 100 + i));
		ASSERT_EQ(100 + i, kx_recv(kcm2, buf, sizeof(buf), KCM_WAIT_MS));
	}
	for (i = 0; i < 2; i++) {
		kx_tagged(buf, 200 + i, i);
		tx_bytes += 200 + i;
		ASSERT_EQ(200 + i, kx_send_to(kcm2, buf, 200 + i, idb, 0));
		ASSERT_EQ(200 + i, kcm_read_exact(b.peer, buf, 200 + i,
						  KCM_WAIT_MS));
	}
	ASSERT_EQ(0, kx_nl_dump(&nl, KCMUX_CMD_GET_PSOCK, &d));
	o = kx_find(&d, KCMUX_A_PSOCK_ID, ida);
	ASSERT_NE(NULL, o);
	EXPECT_EQ(3u, o->stat[KCMUX_STAT_RX_MSGS]);
	EXPECT_EQ(rx_bytes, o->stat[KCMUX_STAT_RX_BYTES]);
	EXPECT_EQ(0u, o->stat[KCMUX_STAT_TX_MSGS]);
	o = kx_find(&d, KCMUX_A_PSOCK_ID, idb);
	ASSERT_NE(NULL, o);
	EXPECT_EQ(0u, o->stat[KCMUX_STAT_RX_MSGS]);
	EXPECT_EQ(2u, o->stat[KCMUX_STAT_TX_MSGS]);
	EXPECT_EQ(tx_bytes, o->stat[KCMUX_STAT_TX_BYTES]);

	ASSERT_EQ(0, kx_nl_dump(&nl, KCMUX_CMD_GET_SOCK, &d));
	s1 = kx_find(&d, KCMUX_A_SOCK_INO, kx_ino(kcm));
	s2 = kx_find(&d, KCMUX_A_SOCK_INO, kx_ino(kcm2));
	ASSERT_NE(NULL, s1);
	ASSERT_NE(NULL, s2);
	EXPECT_EQ(0u, s1->stat[KCMUX_STAT_RX_MSGS]);
	EXPECT_EQ(3u, s2->stat[KCMUX_STAT_RX_MSGS]);
	EXPECT_EQ(rx_bytes, s2->stat[KCMUX_STAT_RX_BYTES]);
	EXPECT_EQ(2u, s2->stat[KCMUX_STAT_TX_MSGS]);
	EXPECT_EQ(tx_bytes, s2->stat[KCMUX_STAT_TX_BYTES]);
	EXPECT_EQ(0u, s2->val[KCMUX_A_RX_QUEUE]);

	ASSERT_EQ(0, kx_nl_dump(&nl, KCMUX_CMD_GET_MUX, &d));
	ASSERT_EQ(1, d.n);
	EXPECT_EQ(3u, d.obj[0].stat[KCMUX_STAT_RX_MSGS]);
	EXPECT_EQ(rx_bytes, d.obj[0].stat[KCMUX_STAT_RX_BYTES]);

	/* A message left queued shows in the socket's RX_QUEUE. */
	ASSERT_EQ(0, kx_set_origin(kcm2, 0));
	kx_tagged(buf, 321, 9);
	ASSERT_EQ(0, kcm_send_all(a.peer, buf, 321));
	ASSERT_TRUE(kcm_poll(kcm2, POLLIN, KCM_WAIT_MS) & POLLIN);
	ASSERT_EQ(0, kx_nl_dump(&nl, KCMUX_CMD_GET_SOCK, &d));
	s2 = kx_find(&d, KCMUX_A_SOCK_INO, kx_ino(kcm2));
	ASSERT_NE(NULL, s2);
	EXPECT_EQ(0u, s2->val[KCMUX_A_SOCK_FLAGS]);
	/* Memory charged for received data: at least the message. */
	EXPECT_LE(321u, s2->val[KCMUX_A_RX_QUEUE]);

	/* Unattach B: gone from the dump, counted by the mux. */
	ASSERT_EQ(0, kcm_unattach(kcm, b.tcp));
	ASSERT_EQ(0, kx_nl_dump(&nl, KCMUX_CMD_GET_PSOCK, &d));
	EXPECT_EQ(1, d.n);
	EXPECT_EQ(NULL, kx_find(&d, KCMUX_A_PSOCK_ID, idb));
	ASSERT_EQ(0, kx_nl_dump(&nl, KCMUX_CMD_GET_MUX, &d));
	EXPECT_EQ(1u, d.obj[0].val[KCMUX_A_NR_PSOCKS]);
	EXPECT_EQ(1u, d.obj[0].stat[KCMUX_STAT_UNATTACHED]);

	kx_pair_close(&a);
	kx_pair_close(&b);
	close(kcm2);
	close(kcm);
	/* All closed: nothing left to dump. */
	kcm_msleep(KCM_QUIET_MS);
	ASSERT_EQ(0, kx_nl_dump(&nl, KCMUX_CMD_GET_MUX, &d));
	EXPECT_EQ(0, d.n);
	ASSERT_EQ(0, kx_nl_dump(&nl, KCMUX_CMD_GET_PSOCK, &d));
	EXPECT_EQ(0, d.n);
	close(bpf);
	kx_nl_close(&nl);
}

/*
 * "Dumps give one message per object, so the size of a multiplexor never
 * limits a reply": three muxes with more objects than one dump skb
 * holds; every object is listed exactly once, under its own mux.
 */
#define KX_MANY_MUX	3
#define KX_MANY_SOCKS	5
#define KX_MANY_PSOCKS	12

TEST(nl_dump_many)
{
	static struct kx_dump d;
	int kcm[KX_MANY_MUX][KX_MANY_SOCKS], m, i, j;
	struct kx_pair p[KX_MANY_MUX][KX_MANY_PSOCKS];
	uint32_t id[KX_MANY_MUX][KX_MANY_PSOCKS], mux_id[KX_MANY_MUX];
	struct kx_nl nl;

	KX_REQUIRE_KCMUX("generic netlink family kcmux");
	ASSERT_EQ(0, kcm_netns_enter());
	kx_nl_setup(_metadata, &nl);
	for (m = 0; m < KX_MANY_MUX; m++) {
		kcm[m][0] = kcm_socket(m ? SOCK_SEQPACKET : SOCK_DGRAM);
		ASSERT_LE(0, kcm[m][0]);
		for (i = 1; i < KX_MANY_SOCKS; i++) {
			kcm[m][i] = kcm_clone(kcm[m][0]);
			ASSERT_LE(0, kcm[m][i]);
		}
		for (i = 0; i < KX_MANY_PSOCKS; i++) {
			ASSERT_EQ(0, kx_pair_open(&p[m][i]));
			ASSERT_EQ(0, kx_attach_framing(kcm[m][i % KX_MANY_SOCKS],
						       p[m][i].tcp,
						       &kx_be32_framing, &id[m][i]));
		}
	}

	ASSERT_EQ(0, kx_nl_dump(&nl, KCMUX_CMD_GET_SOCK, &d));
	kx_dump_sizes_ok(_metadata, &d);
	EXPECT_EQ(KX_MANY_MUX * KX_MANY_SOCKS, d.n);
	for (m = 0; m < KX_MANY_MUX; m++) {
		const struct kx_obj *o = kx_find(&d, KCMUX_A_SOCK_INO,
						 kx_ino(kcm[m][0]));

		ASSERT_NE(NULL, o);
		mux_id[m] = (uint32_t)o->val[KCMUX_A_MUX_ID];
		for (i = 0; i < KX_MANY_SOCKS; i++) {
			uint64_t ino = kx_ino(kcm[m][i]);
			int seen = 0;

			for (j = 0; j < d.n; j++)
				if (d.obj[j].val[KCMUX_A_SOCK_INO] == ino) {
					seen++;
					EXPECT_EQ(mux_id[m],
						  d.obj[j].val[KCMUX_A_MUX_ID]);
				}
			EXPECT_EQ(1, seen) {
				TH_LOG("socket %d of mux %d listed %d times", i, m,
				       seen);
			}
		}
	}
	EXPECT_NE(mux_id[0], mux_id[1]);
	EXPECT_NE(mux_id[1], mux_id[2]);
	EXPECT_NE(mux_id[0], mux_id[2]);

	ASSERT_EQ(0, kx_nl_dump(&nl, KCMUX_CMD_GET_MUX, &d));
	kx_dump_sizes_ok(_metadata, &d);
	EXPECT_EQ(KX_MANY_MUX, d.n);
	for (m = 0; m < KX_MANY_MUX; m++) {
		const struct kx_obj *o = kx_find(&d, KCMUX_A_MUX_ID, mux_id[m]);

		ASSERT_NE(NULL, o);
		EXPECT_EQ((uint64_t)KX_MANY_SOCKS, o->val[KCMUX_A_NR_SOCKS]);
		EXPECT_EQ((uint64_t)KX_MANY_PSOCKS, o->val[KCMUX_A_NR_PSOCKS]);
	}

	ASSERT_EQ(0, kx_nl_dump(&nl, KCMUX_CMD_GET_PSOCK, &d));
	kx_dump_sizes_ok(_metadata, &d);
	EXPECT_EQ(KX_MANY_MUX * KX_MANY_PSOCKS, d.n);
	for (m = 0; m < KX_MANY_MUX; m++)
		for (i = 0; i < KX_MANY_PSOCKS; i++) {
			int seen = 0;

			for (j = 0; j < d.n; j++)
				if (d.obj[j].val[KCMUX_A_PSOCK_ID] == id[m][i]) {
					seen++;
					EXPECT_EQ(mux_id[m],
						  d.obj[j].val[KCMUX_A_MUX_ID]);
					EXPECT_EQ(kx_ino(p[m][i].tcp),
						  d.obj[j].val[KCMUX_A_TCP_INO]);
				}
			EXPECT_EQ(1, seen) {
				TH_LOG("psock %u listed %d times", id[m][i], seen);
			}
		}

	for (m = 0; m < KX_MANY_MUX; m++) {
		for (i = 0; i < KX_MANY_PSOCKS; i++)
			kx_pair_close(&p[m][i]);
		for (i = 0; i < KX_MANY_SOCKS; i++)
			close(kcm[m][i]);
	}
	kx_nl_close(&nl);
}

/*
 * The send pages a mux keeps for reuse (KCMUX_A_TX_PAGE_CACHE).  While
 * the peer reads nothing, TCP holds the pages sent, so full pages join
 * the mux's and the mux keeps more than the four it keeps when idle (on
 * 6.12 all but the page being filled; on 6.1 about every second page
 * comes back from TCP before the peer reads it).  Once TCP has let go of
 * them all and the mux has sent nothing for a while, its trim work frees
 * all but four (KCMUX_TX_PAGES_KEEP, 32 KiB each); memory pressure frees
 * them all at once.
 */
#define KX_CACHE_MSGS		32
#define KX_CACHE_LEN		(24 * 1024)
#define KX_CACHE_KEEP		(4 * 32 * 1024)
#define KX_CACHE_TRIM_MS	10000	/* the trim runs once a second */

struct kx_cache {
	struct kx_nl nl;
	struct kx_pair p;
	struct kx_dump d;
	int kcm, bpf;
};

static uint64_t kx_tx_page_cache(struct __test_metadata *_metadata,
				 struct kx_cache *c)
{
	EXPECT_EQ(0, kx_nl_dump(&c->nl, KCMUX_CMD_GET_MUX, &c->d));
	EXPECT_EQ(1, c->d.n);
	if (c->d.n != 1 || !c->d.obj[0].has[KCMUX_A_TX_PAGE_CACHE])
		return UINT64_MAX;
	return c->d.obj[0].val[KCMUX_A_TX_PAGE_CACHE];
}

/*
 * Sends while the peer reads nothing (the mux keeps the full pages), then
 * has the peer read it all and waits until TCP has let go of every page.
 */
static void kx_cache_fill(struct __test_metadata *_metadata,
			  struct kx_cache *c)
{
	static uint8_t m[KCM_TEST_HDR_LEN + KX_CACHE_LEN];
	const uint64_t written = KX_CACHE_MSGS * sizeof(m);
	int big = 4 * KX_MIB, i;
	uint64_t cached;
	uint32_t id;

	c->kcm = kx_nl_start(_metadata, &c->nl, &c->bpf);
	ASSERT_EQ(0, kx_pair_open(&c->p));
	ASSERT_EQ(0, setsockopt(c->kcm, SOL_SOCKET, SO_SNDBUFFORCE, &big,
				sizeof(big)));
	ASSERT_EQ(0, setsockopt(c->p.tcp, SOL_SOCKET, SO_SNDBUFFORCE, &big,
				sizeof(big)));
	ASSERT_EQ(0, setsockopt(c->p.peer, SOL_SOCKET, SO_RCVBUFFORCE, &big,
				sizeof(big)));
	ASSERT_EQ(0, kx_attach_bpf(c->kcm, c->p.tcp, c->bpf, &id));
	EXPECT_EQ(0u, kx_tx_page_cache(_metadata, c));

	for (i = 0; i < KX_CACHE_MSGS; i++) {
		ssize_t n = kcm_test_msg(m, i, KX_CACHE_LEN);

		ASSERT_EQ(n, send(c->kcm, m, n, MSG_DONTWAIT))
			TH_LOG("message %d: %s", i, strerror(errno));
	}
	cached = kx_tx_page_cache(_metadata, c);
	EXPECT_LT((uint64_t)KX_CACHE_KEEP, cached);
	EXPECT_GE(written, cached);

	for (i = 0; i < KX_CACHE_MSGS; i++) {
		const char *why = kcm_read_msg(c->p.peer, i, KX_CACHE_LEN,
					       KCM_WAIT_MS);

		ASSERT_EQ(NULL, why) TH_LOG("message %d: %s", i, why);
	}
	ASSERT_EQ(0, kcm_wait_outq_empty(c->p.tcp, KCM_WAIT_MS));
}

static void kx_cache_close(struct kx_cache *c)
{
	kx_pair_close(&c->p);
	close(c->kcm);
	close(c->bpf);
	kx_nl_close(&c->nl);
}

TEST(nl_tx_page_cache)
{
	static struct kx_cache c;
	long long deadline;
	uint64_t cached;

	KX_REQUIRE_KCMUX("generic netlink family kcmux");
	kx_cache_fill(_metadata, &c);

	deadline = kcm_now_ms() + KX_CACHE_TRIM_MS;
	do {
		cached = kx_tx_page_cache(_metadata, &c);
		if (cached <= KX_CACHE_KEEP)
			break;
		usleep(100 * 1000);
	} while (kcm_now_ms() < deadline);
	EXPECT_GE((uint64_t)KX_CACHE_KEEP, cached);
	EXPECT_LT(0u, cached);
	kx_cache_close(&c);
}

/*
 * drop_caches runs every shrinker: the mux's must free every page TCP has
 * let go of at once, without waiting for the trim work (which would keep
 * four).
 */
TEST(nl_tx_page_cache_shrinker)
{
	static struct kx_cache c;
	int fd;

	KX_REQUIRE_KCMUX("generic netlink family kcmux");
	fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		SKIP(return, "/proc/sys/vm/drop_caches: %s (needs root)",
		     strerror(errno));
	kx_cache_fill(_metadata, &c);
	EXPECT_EQ(1, write(fd, "2", 1));
	close(fd);
	EXPECT_EQ(0u, kx_tx_page_cache(_metadata, &c));
	kx_cache_close(&c);
}

/*
 * The states a psock goes through: ACTIVE; PAUSED while it holds a
 * message no KCM socket takes (every socket has receiving disabled);
 * ACTIVE again once one takes it; STOPPED after an error.
 */
TEST(nl_psock_states)
{
	uint8_t buf[128];
	struct kx_nl nl;
	struct kx_env e;

	KX_REQUIRE_KCMUX("generic netlink family kcmux");
	kx_env_open(_metadata, &e, SOCK_DGRAM, 1);
	kx_nl_setup(_metadata, &nl);
	EXPECT_EQ(KCMUX_PSOCK_STATE_ACTIVE,
		  kx_wait_psock_state(&nl, e.id[0], KCMUX_PSOCK_STATE_ACTIVE));
	ASSERT_EQ(0, kcm_recv_disable(e.kcm, 1));
	kx_tagged(buf, 100, 1);
	ASSERT_EQ(0, kcm_send_all(e.p[0].peer, buf, 100));
	EXPECT_EQ(KCMUX_PSOCK_STATE_PAUSED,
		  kx_wait_psock_state(&nl, e.id[0], KCMUX_PSOCK_STATE_PAUSED));
	ASSERT_EQ(0, kcm_recv_disable(e.kcm, 0));
	ASSERT_EQ(100, kx_recv(e.kcm, buf, sizeof(buf), KCM_WAIT_MS));
	EXPECT_TRUE(kx_tagged_ok(buf, 100, 100, 1));
	EXPECT_EQ(KCMUX_PSOCK_STATE_ACTIVE,
		  kx_wait_psock_state(&nl, e.id[0], KCMUX_PSOCK_STATE_ACTIVE));
	kx_frame_value(buf, &kx_be32_framing, 8, 0, 1);
	ASSERT_EQ(0, kcm_send_all(e.p[0].peer, buf, 8));
	EXPECT_EQ(KCMUX_PSOCK_STATE_STOPPED,
		  kx_wait_psock_state(&nl, e.id[0], KCMUX_PSOCK_STATE_STOPPED));
	kx_nl_close(&nl);
	kx_pair_close(&e.p[0]);
	close(e.kcm);
}

/* The next event must be cmd for psock id (within KCM_WAIT_MS). */
static void kx_expect_event(struct __test_metadata *_metadata, struct kx_nl *nl,
			    uint8_t cmd, uint32_t id, const struct kx_pair *p,
			    uint32_t mux_id)
{
	struct kx_obj ev;
	int r = kx_nl_event(nl, &ev, KCM_WAIT_MS);
	char why[128];

	ASSERT_EQ(1, r) {
		TH_LOG("no event %u for psock %u (%d)", cmd, id, r);
	}
	EXPECT_EQ(cmd, ev.cmd);
	EXPECT_TRUE(ev.has[KCMUX_A_PSOCK_ID]);
	EXPECT_EQ(id, ev.val[KCMUX_A_PSOCK_ID]) {
		TH_LOG("event %u for psock %llu, not %u", ev.cmd,
		       (unsigned long long)ev.val[KCMUX_A_PSOCK_ID], id);
	}
	EXPECT_EQ(mux_id, ev.val[KCMUX_A_MUX_ID]);
	EXPECT_EQ(kx_ino(p->tcp), ev.val[KCMUX_A_TCP_INO]);
	EXPECT_EQ(kx_port(p->tcp, false), (int)ev.val[KCMUX_A_SPORT]);
	EXPECT_TRUE(kx_obj_sizes_ok(&ev, why, sizeof(why))) {
		TH_LOG("%s", why);
	}
	if (cmd == KCMUX_CMD_PSOCK_ERROR) {
		EXPECT_TRUE(ev.has[KCMUX_A_ERROR]);
		EXPECT_EQ((uint64_t)EPROTO, ev.val[KCMUX_A_ERROR]);
	}
}

/*
 * The "events" group: PSOCK_ATTACHED, PSOCK_UNATTACHED and PSOCK_ERROR,
 * in order, each with the psock's id and attributes.
 */
TEST(nl_events)
{
	static struct kx_dump d;
	struct kx_pair a, b;
	uint32_t ida, idb, mux_id;
	struct kx_nl nl, ev;
	struct kx_obj o;
	uint8_t buf[16];
	int kcm;

	KX_REQUIRE_KCMUX("generic netlink events");
	ASSERT_EQ(0, kcm_netns_enter());
	kx_nl_setup(_metadata, &nl);
	kx_nl_setup(_metadata, &ev);
	ASSERT_EQ(0, kx_nl_join_events(&ev));
	kcm = kcm_socket(SOCK_DGRAM);
	ASSERT_LE(0, kcm);
	ASSERT_EQ(0, kx_nl_dump(&nl, KCMUX_CMD_GET_SOCK, &d));
	ASSERT_EQ(1, d.n);
	mux_id = (uint32_t)d.obj[0].val[KCMUX_A_MUX_ID];
	ASSERT_EQ(0, kx_pair_open(&a));
	ASSERT_EQ(0, kx_pair_open(&b));

	ASSERT_EQ(0, kx_attach_framing(kcm, a.tcp, &kx_be32_framing, &ida));
	kx_expect_event(_metadata, &ev, KCMUX_CMD_PSOCK_ATTACHED, ida, &a, mux_id);
	ASSERT_EQ(0, kcm_unattach(kcm, a.tcp));
	kx_expect_event(_metadata, &ev, KCMUX_CMD_PSOCK_UNATTACHED, ida, &a, mux_id);

	ASSERT_EQ(0, kx_attach_framing(kcm, b.tcp, &kx_be32_framing, &idb));
	kx_expect_event(_metadata, &ev, KCMUX_CMD_PSOCK_ATTACHED, idb, &b, mux_id);
	kx_frame_value(buf, &kx_be32_framing, 8, 0, 1);	/* len 1 < 4 */
	ASSERT_EQ(0, kcm_send_all(b.peer, buf, 8));
	kx_expect_event(_metadata, &ev, KCMUX_CMD_PSOCK_ERROR, idb, &b, mux_id);
	EXPECT_EQ(EPROTO, kcm_err_wait(b.tcp));
	/* Nothing else happened, so nothing else is said. */
	EXPECT_EQ(0, kx_nl_event(&ev, &o, KCM_QUIET_MS));

	/* The stopped psock's state shows in the dump, with its error. */
	ASSERT_EQ(0, kx_nl_dump(&nl, KCMUX_CMD_GET_PSOCK, &d));
	ASSERT_EQ(1, d.n);
	EXPECT_EQ((uint64_t)KCMUX_PSOCK_STATE_STOPPED, d.obj[0].val[KCMUX_A_STATE]);
	EXPECT_EQ((uint64_t)EPROTO, d.obj[0].val[KCMUX_A_ERROR]);

	/* Closing the mux unattaches b. */
	close(kcm);
	kx_expect_event(_metadata, &ev, KCMUX_CMD_PSOCK_UNATTACHED, idb, &b, mux_id);
	kx_pair_close(&a);
	kx_pair_close(&b);
	kx_nl_close(&nl);
	kx_nl_close(&ev);
}

/* What the child of nl_netns reports about its own namespace. */
struct kx_netns_report {
	int status;			/* 0, or the step that failed */
	uint64_t kcm_ino, tcp_ino;
	uint32_t psock_id;
};

/*
 * The child: a mux in a namespace of its own; its dumps show that mux
 * and nothing of the parent's.  Writes its report on fd, then waits for
 * the parent to close hold before leaving.
 */
/*
 * The child's checks in its own namespace: 0, or the step that failed.
 * On success the sockets stay open in *kcm and *p for the parent to look
 * for.
 */
static int kx_netns_child_check(int *kcm, struct kx_pair *p, uint32_t *id,
				uint64_t parent_kcm_ino, uint64_t parent_tcp_ino)
{
	static struct kx_dump d;
	struct kx_nl nl;
	int step = 0;

	if (kcm_netns_enter())
		return 1;
	*kcm = kcm_socket(SOCK_DGRAM);
	if (*kcm < 0 || kx_pair_open(p) ||
	    kx_attach_framing(*kcm, p->tcp, &kx_be32_framing, id))
		return 2;
	if (kx_nl_open_family(&nl))
		return 3;
	if (kx_nl_dump(&nl, KCMUX_CMD_GET_SOCK, &d) || d.n != 1 ||
	    d.obj[0].val[KCMUX_A_SOCK_INO] != kx_ino(*kcm) ||
	    kx_find(&d, KCMUX_A_SOCK_INO, parent_kcm_ino))
		step = 4;
	else if (kx_nl_dump(&nl, KCMUX_CMD_GET_PSOCK, &d) || d.n != 1 ||
		 d.obj[0].val[KCMUX_A_TCP_INO] != kx_ino(p->tcp) ||
		 kx_find(&d, KCMUX_A_TCP_INO, parent_tcp_ino))
		step = 5;
	else if (kx_nl_dump(&nl, KCMUX_CMD_GET_MUX, &d) || d.n != 1)
		step = 6;
	kx_nl_close(&nl);
	return step;
}

/*
 * The child: a mux in a namespace of its own, whose dumps show that mux
 * and nothing of the parent's.  Writes its report on fd, then waits for
 * the parent to close hold before leaving.
 */
static int kx_netns_child(int fd, int hold, uint64_t parent_kcm_ino,
			  uint64_t parent_tcp_ino)
{
	struct kx_netns_report rep = { 0 };
	struct kx_pair p = { .peer = -1, .tcp = -1 };
	int kcm = -1;
	char c;

	rep.status = kx_netns_child_check(&kcm, &p, &rep.psock_id,
					  parent_kcm_ino, parent_tcp_ino);
	if (!rep.status) {
		rep.kcm_ino = kx_ino(kcm);
		rep.tcp_ino = kx_ino(p.tcp);
	}
	if (write(fd, &rep, sizeof(rep)) != sizeof(rep))
		return 1;
	/* Keep everything alive until the parent has looked. */
	if (read(hold, &c, 1) < 0)
		return 1;
	return 0;
}

/*
 * "one network namespace at a time": the objects and events of another
 * namespace are invisible, both ways.
 */
TEST(nl_netns)
{
	static struct kx_dump d;
	struct kx_netns_report rep;
	int rfd[2], hold[2], kcm, status;
	struct kx_nl nl, ev;
	struct kx_obj o;
	struct kx_pair p;
	uint32_t id;
	pid_t pid;

	KX_REQUIRE_KCMUX("generic netlink and network namespaces");
	ASSERT_EQ(0, kcm_netns_enter());
	kx_nl_setup(_metadata, &nl);
	kx_nl_setup(_metadata, &ev);
	kcm = kcm_socket(SOCK_DGRAM);
	ASSERT_LE(0, kcm);
	ASSERT_EQ(0, kx_pair_open(&p));
	ASSERT_EQ(0, kx_attach_framing(kcm, p.tcp, &kx_be32_framing, &id));
	/* From now on every event in this namespace would be the child's. */
	ASSERT_EQ(0, kx_nl_join_events(&ev));
	ASSERT_EQ(0, pipe(rfd));
	ASSERT_EQ(0, pipe(hold));
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		close(rfd[0]);
		close(hold[1]);
		_exit(kx_netns_child(rfd[1], hold[0], kx_ino(kcm), kx_ino(p.tcp)));
	}
	close(rfd[1]);
	close(hold[0]);
	ASSERT_EQ((ssize_t)sizeof(rep), read(rfd[0], &rep, sizeof(rep)));
	EXPECT_EQ(0, rep.status) {
		TH_LOG("the child failed at step %d", rep.status);
	}
	ASSERT_EQ(0, kx_nl_dump(&nl, KCMUX_CMD_GET_MUX, &d));
	EXPECT_EQ(1, d.n);
	ASSERT_EQ(0, kx_nl_dump(&nl, KCMUX_CMD_GET_SOCK, &d));
	EXPECT_EQ(1, d.n);
	EXPECT_NE(NULL, kx_find(&d, KCMUX_A_SOCK_INO, kx_ino(kcm)));
	EXPECT_EQ(NULL, kx_find(&d, KCMUX_A_SOCK_INO, rep.kcm_ino));
	ASSERT_EQ(0, kx_nl_dump(&nl, KCMUX_CMD_GET_PSOCK, &d));
	EXPECT_EQ(1, d.n);
	EXPECT_NE(NULL, kx_find(&d, KCMUX_A_TCP_INO, kx_ino(p.tcp)));
	EXPECT_EQ(NULL, kx_find(&d, KCMUX_A_TCP_INO, rep.tcp_ino));
	/* The child's attach (and, below, its teardown) is not ours to see. */
	EXPECT_EQ(0, kx_nl_event(&ev, &o, KCM_QUIET_MS));
	close(hold[1]);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status) && !WEXITSTATUS(status));
	EXPECT_EQ(0, kx_nl_event(&ev, &o, KCM_QUIET_MS));
	close(rfd[0]);
	kx_pair_close(&p);
	close(kcm);
	kx_nl_close(&nl);
	kx_nl_close(&ev);
}

/* ------------------------------------------------------------------ */
/* Tracepoints                                                          */
/* ------------------------------------------------------------------ */

#define KX_TRACE_INST	KCM_TRACEFS "/instances/kcm_ext"

/* The value of "name=" in a trace line, or -1. */
static int64_t kx_trace_field(const char *line, const char *name)
{
	size_t len = strlen(name);
	const char *p = line;

	while ((p = strstr(p, name))) {
		if ((p == line || p[-1] == ' ') && p[len] == '=')
			return strtoll(p + len + 1, NULL, 0);
		p += len;
	}
	return -1;
}

/* What the trace of the instance holds for one event. */
struct kx_trace_count {
	int match;		/* records with every field as wanted */
	int other;		/* records of the event with other values */
};

/*
 * Counts the records of event ("kcmux_msg_rx") whose fields mux, psock
 * and vname (len or err) are mux_id, psock_id and value.  The format is
 * kcm/kcmux_trace.h's: "mux=%u psock=%u len=%u" ("err=%d").
 */
static void kx_trace_scan(struct kx_trace_count *c, const char *event,
			  uint32_t mux_id, uint32_t psock_id, const char *vname,
			  int64_t value)
{
	char line[1024], tag[64];
	FILE *f;

	memset(c, 0, sizeof(*c));
	snprintf(tag, sizeof(tag), " %s:", event);
	f = fopen(KX_TRACE_INST "/trace", "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (!strstr(line, tag))
			continue;
		if (kx_trace_field(line, "mux") == mux_id &&
		    kx_trace_field(line, "psock") == psock_id &&
		    kx_trace_field(line, vname) == value) {
			c->match++;
		} else {
			fprintf(stderr, "# unexpected: %s", line);
			c->other++;
		}
	}
	fclose(f);
}

static int kx_trace_enable(const char *event, const char *on)
{
	char path[256];

	snprintf(path, sizeof(path), KX_TRACE_INST "/events/kcmux/%s/enable",
		 event);
	return kcm_write_file(path, on);
}

/* The mux id of the (only) mux in this namespace, by generic netlink. */
static uint32_t kx_only_mux_id(struct __test_metadata *_metadata)
{
	static struct kx_dump d;
	struct kx_nl nl;

	kx_nl_setup(_metadata, &nl);
	ASSERT_EQ(0, kx_nl_dump(&nl, KCMUX_CMD_GET_MUX, &d));
	ASSERT_EQ(1, d.n);
	kx_nl_close(&nl);
	return (uint32_t)d.obj[0].val[KCMUX_A_MUX_ID];
}

/*
 * kcmux_msg_rx and kcmux_msg_tx record every message with its mux, psock
 * id and length; kcmux_psock_error records a stopped psock with its
 * errno.  A private trace instance keeps the test away from whatever
 * else uses tracing.
 */
TEST(trace_events)
{
	static const char *const events[] = {
		"kcmux_msg_rx", "kcmux_msg_tx", "kcmux_psock_error",
		"kcmux_requeue",
	};
	struct kx_trace_count c;
	struct kx_pair bad;
	uint32_t mux_id, bad_id;
	uint8_t buf[512];
	struct kx_env e;
	unsigned int i;
	int err, k;

	KX_REQUIRE_KCMUX("tracepoints");
	err = kcm_tracefs();
	if (err)
		SKIP(return, "no tracefs in this kernel: %s", strerror(-err));
	ASSERT_EQ(0, access(KCM_TRACEFS "/events/kcmux", F_OK)) {
		TH_LOG("kcmux is loaded but there is no events/kcmux");
	}
	rmdir(KX_TRACE_INST);
	ASSERT_EQ(0, mkdir(KX_TRACE_INST, 0755));
	for (i = 0; i < KX_ARRAY_SIZE(events); i++) {
		const char *ev = events[i];

		EXPECT_EQ(0, kx_trace_enable(ev, "1")) {
			TH_LOG("enabling %s", ev);
		}
	}
	kx_env_open(_metadata, &e, SOCK_DGRAM, 1);
	mux_id = kx_only_mux_id(_metadata);
	for (k = 0; k < 5; k++) {
		kx_tagged(buf, 123, k);
		ASSERT_EQ(0, kcm_send_all(e.p[0].peer, buf, 123));
		ASSERT_EQ(123, kx_recv(e.kcm, buf, sizeof(buf), KCM_WAIT_MS));
		kx_tagged(buf, 77, k);
		ASSERT_EQ(77, send(e.kcm, buf, 77, 0));
		ASSERT_EQ(77, kcm_read_exact(e.p[0].peer, buf, 77, KCM_WAIT_MS));
	}
	/* A second psock stops on a framing error. */
	ASSERT_EQ(0, kx_pair_open(&bad));
	ASSERT_EQ(0, kx_attach_framing(e.kcm, bad.tcp, &kx_be32_framing, &bad_id));
	kx_frame_value(buf, &kx_be32_framing, 8, 0, 2);
	ASSERT_EQ(0, kcm_send_all(bad.peer, buf, 8));
	ASSERT_EQ(EPROTO, kcm_err_wait(bad.tcp));

	kx_trace_scan(&c, "kcmux_msg_rx", mux_id, e.id[0], "len", 123);
	EXPECT_EQ(5, c.match);
	EXPECT_EQ(0, c.other);
	kx_trace_scan(&c, "kcmux_msg_tx", mux_id, e.id[0], "len", 77);
	EXPECT_EQ(5, c.match);
	EXPECT_EQ(0, c.other);
	kx_trace_scan(&c, "kcmux_psock_error", mux_id, bad_id, "err", EPROTO);
	EXPECT_EQ(1, c.match);
	EXPECT_EQ(0, c.other);
	/* Nothing was requeued: one KCM socket that kept receiving. */
	kx_trace_scan(&c, "kcmux_requeue", mux_id, 0, "len", 0);
	EXPECT_EQ(0, c.match + c.other);

	for (i = 0; i < KX_ARRAY_SIZE(events); i++)
		kx_trace_enable(events[i], "0");
	kx_pair_close(&bad);
	kx_pair_close(&e.p[0]);
	close(e.kcm);
	EXPECT_EQ(0, rmdir(KX_TRACE_INST));
}

/* ------------------------------------------------------------------ */
/* The echo-origin scenario                                             */
/* ------------------------------------------------------------------ */

#define KX_ECHO_CLIENTS		6
#define KX_ECHO_WORKERS		2
#define KX_ECHO_REQUESTS	60
#define KX_ECHO_WINDOW		4
#define KX_ECHO_HDR		12	/* be32 length, be32 client, be32 seq */

struct kx_echo_worker {
	pthread_t thread;
	int kcm;
	int stop;			/* read end of the stop pipe */
	int replies;
	int err;
};

struct kx_echo_client {
	pthread_t thread;
	int idx;
	int fd;
	int replies;
	int foreign;			/* replies meant for another client */
	int bad;			/* malformed, duplicate or unasked */
	int err;
};

static void kx_put_be32(uint8_t *p, uint32_t v)
{
	v = htonl(v);
	memcpy(p, &v, 4);
}

static uint32_t kx_get_be32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return ntohl(v);
}

static uint32_t kx_echo_len(int client, int seq)
{
	return KX_ECHO_HDR + 1 + (uint32_t)(client * 37 + seq * 101) % 700;
}

/* Each worker answers every request on the psock it came from. */
static void *kx_echo_worker_main(void *arg)
{
	struct kx_echo_worker *w = arg;
	uint8_t buf[1024];

	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = w->kcm, .events = POLLIN },
			{ .fd = w->stop, .events = POLLIN },
		};
		struct kx_rcv r;

		if (poll(pfd, 2, -1) < 0) {
			w->err = errno;
			break;
		}
		if (pfd[1].revents)
			break;
		r = kx_recvmsg(w->kcm, buf, sizeof(buf), KX_ORIGIN_SPACE, 0, 0);
		if (r.n == -EAGAIN || r.n == -ETIMEDOUT)
			continue;
		if (r.n < KX_ECHO_HDR || r.norigin != 1) {
			w->err = r.n < 0 ? (int)-r.n : EPROTO;
			break;
		}
		/* The reply: the request with its first payload byte marked. */
		buf[KX_ECHO_HDR] ^= 0xff;
		if (kx_send_to(w->kcm, buf, r.n, r.origin, 0) != r.n) {
			w->err = errno ? errno : EIO;
			break;
		}
		w->replies++;
	}
	return NULL;
}

static void *kx_echo_client_main(void *arg)
{
	struct kx_echo_client *c = arg;
	uint8_t seen[KX_ECHO_REQUESTS] = { 0 };
	uint8_t buf[1024], want[1024];
	int sent = 0, i;

	while (c->replies < KX_ECHO_REQUESTS) {
		uint32_t len, client, seq;

		while (sent < KX_ECHO_REQUESTS && sent - c->replies < KX_ECHO_WINDOW) {
			len = kx_echo_len(c->idx, sent);
			kx_frame(buf, &kx_be32_framing, len, c->idx * 1000 + sent);
			kx_put_be32(buf + 4, c->idx);
			kx_put_be32(buf + 8, sent);
			if (kcm_send_all(c->fd, buf, len)) {
				c->err = errno;
				return NULL;
			}
			sent++;
		}
		if (kcm_read_exact(c->fd, buf, KX_ECHO_HDR, KCM_WAIT_MS) != KX_ECHO_HDR) {
			c->err = ETIMEDOUT;
			return NULL;
		}
		len = kx_get_be32(buf);
		client = kx_get_be32(buf + 4);
		seq = kx_get_be32(buf + 8);
		if (len < KX_ECHO_HDR + 1 || len > sizeof(buf) ||
		    kcm_read_exact(c->fd, buf + KX_ECHO_HDR, len - KX_ECHO_HDR,
				   KCM_WAIT_MS) != len - KX_ECHO_HDR) {
			c->bad++;
			c->err = EPROTO;
			return NULL;
		}
		c->replies++;
		if (client != (uint32_t)c->idx) {
			c->foreign++;
			continue;
		}
		if (seq >= (uint32_t)sent || seen[seq] ||
		    len != kx_echo_len(c->idx, seq)) {
			c->bad++;
			continue;
		}
		seen[seq] = 1;
		kx_frame(want, &kx_be32_framing, len, c->idx * 1000 + seq);
		kx_put_be32(want + 4, c->idx);
		kx_put_be32(want + 8, seq);
		want[KX_ECHO_HDR] ^= 0xff;
		if (memcmp(buf, want, len))
			c->bad++;
	}
	for (i = 0; i < KX_ECHO_REQUESTS; i++)
		if (!seen[i])
			c->bad++;
	return NULL;
}

/*
 * One mux, several worker KCM sockets, several clients each on its own
 * connection with requests in flight: every reply goes back to the
 * client that asked, because the workers send it on the psock the
 * request came from.  Without targeting, the mux would spread replies
 * over all connections.
 */
FIXTURE(echo) {
	int unused;
};

FIXTURE_SETUP(echo)
{
	self->unused = 0;
}

FIXTURE_TEARDOWN(echo)
{
}

TEST_F_TIMEOUT(echo, origin, 60)
{
	struct kx_echo_worker w[KX_ECHO_WORKERS];
	struct kx_echo_client c[KX_ECHO_CLIENTS];
	struct kx_pair p[KX_ECHO_CLIENTS];
	int stop[2], kcm, i, total = 0;
	uint32_t id;

	KX_REQUIRE_KCMUX("KCMUX_ORIGIN echo server");
	ASSERT_EQ(0, kcm_netns_enter());
	ASSERT_EQ(0, kcm_sigpipe_catch());
	ASSERT_EQ(0, pipe(stop));
	kcm = kcm_socket(SOCK_DGRAM);
	ASSERT_LE(0, kcm);
	memset(w, 0, sizeof(w));
	memset(c, 0, sizeof(c));
	for (i = 0; i < KX_ECHO_WORKERS; i++) {
		w[i].kcm = i ? kcm_clone(kcm) : kcm;
		ASSERT_LE(0, w[i].kcm);
		ASSERT_EQ(0, kx_set_origin(w[i].kcm, 1));
		w[i].stop = stop[0];
	}
	for (i = 0; i < KX_ECHO_CLIENTS; i++) {
		ASSERT_EQ(0, kx_pair_open(&p[i]));
		ASSERT_EQ(0, kx_attach_framing(kcm, p[i].tcp, &kx_be32_framing, &id));
		c[i].idx = i;
		c[i].fd = p[i].peer;
	}
	for (i = 0; i < KX_ECHO_WORKERS; i++)
		ASSERT_EQ(0, pthread_create(&w[i].thread, NULL,
					    kx_echo_worker_main, &w[i]));
	for (i = 0; i < KX_ECHO_CLIENTS; i++)
		ASSERT_EQ(0, pthread_create(&c[i].thread, NULL,
					    kx_echo_client_main, &c[i]));
	for (i = 0; i < KX_ECHO_CLIENTS; i++) {
		pthread_join(c[i].thread, NULL);
		EXPECT_EQ(0, c[i].err) {
			TH_LOG("client %d: %s after %d replies", i,
			       strerror(c[i].err), c[i].replies);
		}
		EXPECT_EQ(KX_ECHO_REQUESTS, c[i].replies);
		EXPECT_EQ(0, c[i].foreign) {
			TH_LOG("client %d got %d replies meant for others", i,
			       c[i].foreign);
		}
		EXPECT_EQ(0, c[i].bad);
	}
	close(stop[1]);
	for (i = 0; i < KX_ECHO_WORKERS; i++) {
		pthread_join(w[i].thread, NULL);
		EXPECT_EQ(0, w[i].err) {
			TH_LOG("worker %d: %s", i, strerror(w[i].err));
		}
		total += w[i].replies;
	}
	EXPECT_EQ(KX_ECHO_CLIENTS * KX_ECHO_REQUESTS, total);
	for (i = 0; i < KX_ECHO_CLIENTS; i++) {
		EXPECT_TRUE(kx_stream_quiet(p[i].peer, 0));
		kx_pair_close(&p[i]);
	}
	for (i = 0; i < KX_ECHO_WORKERS; i++)
		close(w[i].kcm);
	EXPECT_EQ(0, kcm_sigpipes());
}

TEST_HARNESS_MAIN
