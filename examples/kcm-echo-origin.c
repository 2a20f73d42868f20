// SPDX-License-Identifier: GPL-2.0
/*
 * kcm-echo-origin: a request/response server on ONE multiplexor that
 * answers every client on the connection its request came in on.
 *
 * A plain KCM mux treats its TCP connections as interchangeable paths to
 * one peer: send() puts a message on whichever connection is free.  That
 * is right for a pool of connections to one backend, and wrong for a
 * server with many different clients, where a reply must go back to the
 * client that asked.  kcmux adds two things for that (see the "kcmux
 * extensions" in <linux/kcm.h>):
 *
 *   - setsockopt(SOL_KCM, KCMUX_ORIGIN, 1): every message recvmsg()
 *     returns carries a control message (SOL_KCM, KCMUX_ORIGIN, __u32)
 *     with the id of the psock (attached connection) it arrived on;
 *   - sendmsg() with that same control message sends the message on
 *     that psock and no other.
 *
 * So a worker just hands the id it received back to sendmsg().  And
 * since SIOCKCMATTACH_EXT can frame messages by a length field without a
 * BPF program, the server needs no BPF at all.
 *
 *   client 0 --TCP--\                      /-- worker 0 (KCM socket)
 *   client 1 --TCP---+-- psocks -- mux ---+--- worker 1 (clone)
 *   ...             /                      \-- ...
 *   client N-1 -TCP/
 *
 * The wire format, all big-endian:
 *
 *   +--------+--------+--------+------------------------------+
 *   |  len   | client |  seq   | text                         |
 *   +--------+--------+--------+------------------------------+
 *    len counts the bytes after itself (the framing's EXCLUDES_HEADER)
 *
 * Clients are threads with one TCP connection each; they keep up to -w
 * requests in flight, and check that every reply names them and answers
 * one of their own requests exactly once.  With -u the workers reply
 * without the control message, to show what goes wrong then: the mux
 * spreads the replies over all connections and clients see each other's.
 *
 * Build: make -C examples
 * Run:   examples/out/kcm-echo-origin [-n clients] [-c requests] [-m workers]
 *                                     [-w window] [-u] [-v]
 *        with kcmux.ko loaded.  Exit status 0 when every client got
 *        exactly its own replies (with -u: 0 when that went wrong, as
 *        it should).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/sockios.h>	/* SIOCPROTOPRIVATE, base of the SIOCKCM* ioctls */
#include <linux/kcm.h>		/* AF_KCM, SIOCKCMATTACH_EXT, KCMUX_ORIGIN, ... */

#define HDR_LEN		12		/* len, client, seq */
#define MAX_MSG		512
#define STALL_MS	10000		/* a client gives up after this long */

static int nclients = 8;
static int nrequests = 500;
static int nworkers = 2;
static int window = 4;
static bool untargeted;
static bool verbose;

static void die(const char *fmt, ...)
{
	va_list ap;
	int err = errno;

	fprintf(stderr, "kcm-echo-origin: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, ": %s\n", strerror(err));
	exit(1);
}

static void put_be32(uint8_t *p, uint32_t v)
{
	v = htonl(v);
	memcpy(p, &v, 4);
}

static uint32_t get_be32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return ntohl(v);
}

/* The request of client c, number seq; returns its total length. */
static uint32_t build_request(uint8_t *buf, uint32_t c, uint32_t seq)
{
	int n = snprintf((char *)buf + HDR_LEN, MAX_MSG - HDR_LEN,
			 "request %u of client %u%*s", seq, c,
			 (int)((c * 7 + seq * 13) % 200), "");

	put_be32(buf, HDR_LEN - 4 + n);
	put_be32(buf + 4, c);
	put_be32(buf + 8, seq);
	return HDR_LEN + n;
}

/* ---- the server ------------------------------------------------------ */

struct worker {
	pthread_t thread;
	int kcm;
	long replies;
	int err;
};

static int stop_pipe[2];

/*
 * recvmsg() with room for the origin control message: the message
 * length, *origin set from the control message (0 if there was none).
 */
static ssize_t recv_with_origin(int kcm, void *buf, size_t len,
				uint32_t *origin)
{
	union {
		char buf[CMSG_SPACE(sizeof(uint32_t))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr mh = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf),
	};
	struct cmsghdr *c;
	ssize_t n;

	*origin = 0;
	n = recvmsg(kcm, &mh, MSG_DONTWAIT);
	if (n < 0)
		return n;
	for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_KCM && c->cmsg_type == KCMUX_ORIGIN &&
		    c->cmsg_len == CMSG_LEN(sizeof(uint32_t)))
			memcpy(origin, CMSG_DATA(c), sizeof(*origin));
	return n;
}

/* sendmsg() of one message on psock target only. */
static ssize_t send_to_psock(int kcm, const void *buf, size_t len,
			     uint32_t target)
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
	c->cmsg_len = CMSG_LEN(sizeof(target));
	memcpy(CMSG_DATA(c), &target, sizeof(target));
	return sendmsg(kcm, &mh, MSG_NOSIGNAL);
}

/*
 * A worker: take any request from any connection, answer it where it
 * came from.  Workers share nothing; the mux hands each request to one
 * of them.
 */
static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct pollfd pfd[2] = {
		{ .fd = w->kcm, .events = POLLIN },
		{ .fd = stop_pipe[0], .events = POLLIN },
	};
	uint8_t buf[MAX_MSG];

	for (;;) {
		uint32_t origin;
		ssize_t n;

		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			w->err = errno;
			break;
		}
		if (pfd[1].revents)
			break;
		n = recv_with_origin(w->kcm, buf, sizeof(buf), &origin);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;	/* another worker took it */
			w->err = errno;
			break;
		}
		if (n < HDR_LEN || !origin) {
			w->err = EPROTO;
			break;
		}
		/* The reply is the request with "request" turned into "REPLY  ". */
		memcpy(buf + HDR_LEN, "REPLY  ", 7);
		if (untargeted)
			n = send(w->kcm, buf, n, MSG_NOSIGNAL) == n ? n : -1;
		else
			n = send_to_psock(w->kcm, buf, n, origin) == n ? n : -1;
		if (n < 0) {
			w->err = errno;
			break;
		}
		w->replies++;
	}
	return NULL;
}

/* ---- the clients ----------------------------------------------------- */

struct client {
	pthread_t thread;
	uint32_t idx;
	int fd;
	uint32_t psock_id;		/* the server's psock for our connection */
	long sent, replies;
	long foreign;			/* replies to another client's request */
	long bad;			/* malformed, duplicate or never asked */
	int err;
	uint8_t *seen;
};

/*
 * Reads exactly len bytes, giving up after STALL_MS without progress.
 * 0 or -errno.
 */
static int read_full(int fd, uint8_t *buf, size_t len)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	size_t got = 0;
	ssize_t n;

	while (got < len) {
		if (poll(&pfd, 1, STALL_MS) != 1)
			return -ETIMEDOUT;
		n = recv(fd, buf + got, len - got, 0);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += n;
	}
	return 0;
}

static void check_reply(struct client *c, const uint8_t *msg, uint32_t total)
{
	uint32_t who = get_be32(msg + 4), seq = get_be32(msg + 8);
	uint8_t want[MAX_MSG];

	c->replies++;
	if (who != c->idx) {
		if (verbose || c->foreign < 3)
			printf("  client %u got a reply for client %u (request %u)\n",
			       c->idx, who, seq);
		c->foreign++;
		return;
	}
	if (seq >= (uint32_t)c->sent || c->seen[seq] ||
	    build_request(want, who, seq) != total ||
	    memcmp(want + HDR_LEN + 7, msg + HDR_LEN + 7, total - HDR_LEN - 7) ||
	    memcmp(msg + HDR_LEN, "REPLY  ", 7)) {
		c->bad++;
		return;
	}
	c->seen[seq] = 1;
}

static void *client_main(void *arg)
{
	struct client *c = arg;
	uint8_t buf[MAX_MSG];

	while (c->replies < nrequests) {
		uint32_t len;

		/* Keep up to `window` requests in flight. */
		while (c->sent < nrequests && c->sent - c->replies < window) {
			len = build_request(buf, c->idx, c->sent);
			if (send(c->fd, buf, len, MSG_NOSIGNAL) != (ssize_t)len) {
				c->err = errno;
				return NULL;
			}
			c->sent++;
		}
		c->err = -read_full(c->fd, buf, 4);
		if (c->err)
			return NULL;
		len = get_be32(buf) + 4;
		if (len < HDR_LEN + 7 || len > MAX_MSG) {
			c->err = EPROTO;
			return NULL;
		}
		c->err = -read_full(c->fd, buf + 4, len - 4);
		if (c->err)
			return NULL;
		check_reply(c, buf, len);
	}
	return NULL;
}

/* ---- setup and report ------------------------------------------------ */

static void usage(int status)
{
	fprintf(status ? stderr : stdout,
		"usage: kcm-echo-origin [-n clients] [-c requests] [-m workers] [-w window] [-u] [-v]\n"
		"  -n N   clients, one TCP connection each (default 8)\n"
		"  -c C   requests per client (default 500)\n"
		"  -m M   server workers, one KCM socket each (default 2)\n"
		"  -w W   requests in flight per client (default 4)\n"
		"  -u     reply WITHOUT targeting, to see replies go astray\n"
		"  -v     say more\n");
	exit(status);
}

static void parse_args(int argc, char **argv)
{
	int opt;

	while ((opt = getopt(argc, argv, "n:c:m:w:uvh")) != -1) {
		switch (opt) {
		case 'n':
			nclients = atoi(optarg);
			break;
		case 'c':
			nrequests = atoi(optarg);
			break;
		case 'm':
			nworkers = atoi(optarg);
			break;
		case 'w':
			window = atoi(optarg);
			break;
		case 'u':
			untargeted = true;
			break;
		case 'v':
			verbose = true;
			break;
		case 'h':
			usage(0);
			break;
		default:
			usage(2);
		}
	}
	if (optind != argc || nclients < 1 || nclients > 1000 ||
	    nrequests < 1 || nrequests > 1000000 || nworkers < 1 ||
	    nworkers > 64 || window < 1 || window > 1000)
		usage(2);
}

/*
 * Attach a TCP connection with built-in framing: a 4-byte big-endian
 * length at offset 0 that counts the bytes after it.  Returns the psock id.
 */
static uint32_t attach_framed(int kcm, int tcp)
{
	struct kcmux_attach a;

	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);		/* lets future kcmux versions grow it */
	a.flags = KCMUX_ATTACH_FRAMING;
	a.fd = tcp;
	a.framing.offset = 0;
	a.framing.width = 4;
	a.framing.flags = KCMUX_FRAMING_EXCLUDES_HEADER;	/* big endian */
	a.framing.max_size = MAX_MSG;
	if (ioctl(kcm, SIOCKCMATTACH_EXT, &a) < 0) {
		if (errno == ENOTTY) {
			fprintf(stderr, "kcm-echo-origin: this AF_KCM has no kcmux extensions (the in-tree kcm.ko?): load kcmux.ko\n");
			exit(1);
		}
		die("ioctl(SIOCKCMATTACH_EXT)");
	}
	return a.psock_id;
}

int main(int argc, char **argv)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	socklen_t alen = sizeof(addr);
	long foreign = 0, bad = 0, replies = 0, served = 0;
	struct worker *workers;
	struct client *clients;
	int *server_fds, lfd, one = 1, i;
	bool ok = true;

	parse_args(argc, argv);
	signal(SIGPIPE, SIG_IGN);
	workers = calloc(nworkers, sizeof(*workers));
	clients = calloc(nclients, sizeof(*clients));
	server_fds = calloc(nclients, sizeof(*server_fds));
	if (!workers || !clients || !server_fds)
		die("calloc");

	printf("kcm-echo-origin: %d clients x %d requests (%d in flight each), %d workers, %s replies\n",
	       nclients, nrequests, window, nworkers,
	       untargeted ? "UNTARGETED" : "targeted");

	/* The mux and its workers' sockets, each asking for the origin. */
	workers[0].kcm = socket(AF_KCM, SOCK_DGRAM, KCMPROTO_CONNECTED);
	if (workers[0].kcm < 0)
		die("socket(AF_KCM) (is kcmux.ko loaded?)");
	for (i = 1; i < nworkers; i++) {
		struct kcm_clone clone = { 0 };

		if (ioctl(workers[0].kcm, SIOCKCMCLONE, &clone) < 0)
			die("ioctl(SIOCKCMCLONE)");
		workers[i].kcm = clone.fd;
	}
	for (i = 0; i < nworkers; i++)
		if (setsockopt(workers[i].kcm, SOL_KCM, KCMUX_ORIGIN, &one,
			       sizeof(one)))
			die("setsockopt(KCMUX_ORIGIN)");

	/* Every client connection becomes a psock of the one mux. */
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) ||
	    listen(lfd, nclients) ||
	    getsockname(lfd, (struct sockaddr *)&addr, &alen))
		die("listening socket");
	for (i = 0; i < nclients; i++) {
		struct client *c = &clients[i];

		c->idx = i;
		c->seen = calloc(nrequests, 1);
		c->fd = socket(AF_INET, SOCK_STREAM, 0);
		if (!c->seen || c->fd < 0 ||
		    connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)))
			die("client %d", i);
		server_fds[i] = accept(lfd, NULL, NULL);
		if (server_fds[i] < 0)
			die("accept");
		if (setsockopt(server_fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) ||
		    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)))
			die("TCP_NODELAY");
		c->psock_id = attach_framed(workers[0].kcm, server_fds[i]);
		if (verbose)
			printf("  client %d: psock id %u\n", i, c->psock_id);
	}
	close(lfd);

	if (pipe(stop_pipe))
		die("pipe");
	for (i = 0; i < nworkers; i++)
		if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]))
			die("pthread_create");
	for (i = 0; i < nclients; i++)
		if (pthread_create(&clients[i].thread, NULL, client_main, &clients[i]))
			die("pthread_create");

	for (i = 0; i < nclients; i++) {
		struct client *c = &clients[i];
		long missing = 0, seq;

		pthread_join(c->thread, NULL);
		for (seq = 0; seq < c->sent; seq++)
			missing += !c->seen[seq];
		if (c->err) {
			fprintf(stderr, "  client %d: %s after %ld replies\n",
				i, strerror(c->err), c->replies);
			ok = false;
		}
		if (verbose || c->foreign || c->bad || missing)
			printf("  client %2d (psock %u): %ld sent, %ld replies, %ld for others, %ld bad, %ld unanswered\n",
			       i, c->psock_id, c->sent, c->replies, c->foreign,
			       c->bad, missing);
		foreign += c->foreign;
		bad += c->bad + missing;
		replies += c->replies;
	}
	/* Untargeted replies may be stuck behind clients that gave up. */
	for (i = 0; i < nclients; i++)
		shutdown(clients[i].fd, SHUT_RDWR);
	close(stop_pipe[1]);
	for (i = 0; i < nworkers; i++) {
		pthread_join(workers[i].thread, NULL);
		if (workers[i].err && !untargeted) {
			fprintf(stderr, "  worker %d: %s\n", i, strerror(workers[i].err));
			ok = false;
		}
		served += workers[i].replies;
	}

	printf("\n  requests   %ld sent by %d clients\n",
	       (long)nclients * nrequests, nclients);
	printf("  replies    %ld sent by the workers:", served);
	for (i = 0; i < nworkers; i++)
		printf(" %ld", workers[i].replies);
	printf("\n  received   %ld, of which %ld went to the wrong client, %ld bad or missing\n",
	       replies, foreign, bad);

	for (i = 0; i < nclients; i++) {
		close(clients[i].fd);
		close(server_fds[i]);
		free(clients[i].seen);
	}
	for (i = 0; i < nworkers; i++)
		close(workers[i].kcm);

	if (untargeted) {
		/* The point of -u is that it goes wrong. */
		bool astray = foreign > 0 || bad > 0 || !ok;

		printf("\nkcm-echo-origin: %s\n", astray ?
		       "replies went astray without targeting, as expected" :
		       "no reply went astray (try more clients)");
		return astray ? 0 : 1;
	}
	ok = ok && !foreign && !bad && replies == (long)nclients * nrequests;
	printf("\nkcm-echo-origin: %s\n", ok ?
	       "PASS: every client got exactly its own replies" : "FAIL");
	return ok ? 0 : 1;
}
