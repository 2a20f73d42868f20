// SPDX-License-Identifier: GPL-2.0
/*
 * kcm-demo: a guided tour of the Kernel Connection Multiplexor (AF_KCM).
 *
 * KCM turns TCP byte streams into messages.  You give the kernel some TCP
 * connections and a tiny BPF program that tells where each message ends;
 * your threads then send and receive whole messages on KCM sockets, and
 * the kernel spreads the work over the connections and the threads.
 *
 * This program is an echo service and its client, in one process, over
 * loopback:
 *
 *   client (N TCP connections)           server (one multiplexor, "mux")
 *
 *   sender 0 --\                       /-- psock 0 --\      /-- KCM socket 0
 *   sender 1 ---+-- TCP connections --+--- psock 1 ---+ mux +-- ...
 *   ...        /   (framed messages)   \-- psock N-1 /      \-- KCM socket M-1
 *   receiver --                                              (one worker
 *   (reads all N)                                             thread each)
 *
 * Every TCP connection the server accepts is "attached" to the mux, which
 * wraps it in a psock.  Each worker thread owns one KCM socket: recv() on
 * it returns exactly one complete message, whichever connection it came
 * in on; send() on it transmits one complete message on whichever
 * connection the mux picks.  No locking, no framing code in the server.
 *
 * The wire format (all fields big-endian):
 *
 *   +--------+--------+--------+--------+------------------------+
 *   |  len   |  conn  |  seq   |  csum  |  payload (len-12 B)    |
 *   +--------+--------+--------+--------+------------------------+
 *    4 bytes: the number of bytes that follow, what the BPF parser reads
 *
 * A whole message is 16 B .. 64 KiB; the sizes and payload bytes come
 * from a pseudo-random generator with a fixed seed, so every run sends
 * the same traffic and the client can recompute what it expects.
 *
 * Pipelining (-w): by default a connection has one message in flight:
 * its sender sends the next one when the echo of the previous one is back
 * (on whatever connection).  This works with kcmux and with the in-tree
 * kcm module alike.  With -w W > 1, up to W messages follow each other on
 * a connection and often share a TCP segment.  kcmux always runs the BPF
 * parser with the message at offset 0; the in-tree module runs it on the
 * TCP segment, where the message may start at an offset the program has
 * no way to learn, so a parser reading offset 0 reads the wrong bytes.
 * Use -w > 1 with kcmux only.
 *
 * Build: make -C examples     (needs only libc and the uapi headers)
 * Run:   examples/out/kcm-demo [-n conns] [-m sockets] [-c msgs | -t secs]
 *                              [-w window] [-d] [-v]
 *        with AF_KCM available (modprobe kcm, or insmod kcmux.ko).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/bpf.h>
#include <linux/sockios.h>	/* SIOCPROTOPRIVATE, base of the SIOCKCM* ioctls */
#include <linux/kcm.h>		/* AF_KCM, struct kcm_attach, SIOCKCMATTACH, ... */

#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))

#define HDR_LEN		16		/* len, conn, seq, csum */
#define MIN_MSG		16		/* smallest whole message */
#define MAX_MSG		65536		/* largest whole message */
#define SEED		0x6b636d21u	/* "kcm!": same traffic every run */
#define STALL_SECS	15		/* client gives up: no reply that long */

/* Command line, with the defaults of the help text. */
static int nconns = 4;
static int nsocks = 2;
static long msgs_per_conn = 2000;
static double seconds;			/* 0: bounded by msgs_per_conn */
static int window = 1;			/* messages in flight per connection */
static int kcm_type = SOCK_SEQPACKET;
static bool verbose;

static void die(const char *fmt, ...)
{
	va_list ap;
	int err = errno;

	fprintf(stderr, "kcm-demo: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, ": %s\n", strerror(err));
	exit(1);
}

static void vlog(const char *fmt, ...)
{
	va_list ap;

	if (!verbose)
		return;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fflush(stdout);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- the messages --------------------------------------------------- */

/* xorshift32: tiny, fast, and good enough for test traffic. */
static uint32_t rnd(uint32_t *state)
{
	uint32_t x = *state;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return *state = x;
}

/* Every message has its own generator state, derived from (conn, seq):
 * sender and receiver can both compute it independently.
 */
static uint32_t msg_state(uint32_t conn, uint32_t seq)
{
	uint32_t x = SEED ^ (conn * 0x9e3779b9u) ^ (seq * 0x85ebca6bu);

	x ^= x >> 16;
	x *= 0x7feb352du;
	x ^= x >> 15;
	return x ? x : 1;	/* xorshift must not start at zero */
}

/* Mixed sizes: first an octave [b, 2b] with b one of 16 B, 32 B, ...
 * 32 KiB, then a size inside it.  Every octave is equally likely, so
 * small messages are as common as large ones (the mean is about 8 KiB),
 * and both 16 B and 64 KiB occur.
 */
static uint32_t msg_size(uint32_t *state)
{
	uint32_t base = 16u << (rnd(state) % 12);

	return base + rnd(state) % (base + 1);
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

/* FNV-1a over len, conn, seq and the payload: everything but csum. */
static uint32_t fnv1a(uint32_t h, const uint8_t *p, size_t n)
{
	while (n--) {
		h ^= *p++;
		h *= 16777619u;
	}
	return h;
}

static uint32_t msg_csum(const uint8_t *msg, uint32_t total)
{
	uint32_t h = fnv1a(2166136261u, msg, 12);

	return fnv1a(h, msg + HDR_LEN, total - HDR_LEN);
}

/* Write message (conn, seq) into buf; returns its total length. */
static uint32_t msg_build(uint8_t *buf, uint32_t conn, uint32_t seq)
{
	uint32_t state = msg_state(conn, seq);
	uint32_t total = msg_size(&state);
	uint32_t i;

	put_be32(buf, total - 4);
	put_be32(buf + 4, conn);
	put_be32(buf + 8, seq);
	for (i = HDR_LEN; i < total; i++)
		buf[i] = rnd(&state) >> 24;
	put_be32(buf + 12, msg_csum(buf, total));
	return total;
}

/* ---- the BPF message parser ---------------------------------------- */

/*
 * When a TCP socket is attached, KCM needs a BPF program of type
 * BPF_PROG_TYPE_SOCKET_FILTER that returns the length of the message
 * starting at offset 0 of the buffer it is given (always so with kcmux;
 * for the in-tree module see "Pipelining" at the top):
 *
 *   > 0   the whole message is this many bytes (header included);
 *   0     not enough bytes yet to tell, call me again with more;
 *   < 0   the stream is broken: the error is reported on the TCP socket.
 *
 * Ours is four instructions.  BPF_LD_ABS loads a big-endian word and
 * converts it to host order; if the buffer holds fewer than 4 bytes it
 * ends the program with return value 0, which is exactly "need more".
 * It is written out as raw struct bpf_insn so that no compiler for BPF
 * and no libbpf are needed: the bpf() system call takes this array.
 */
static int load_parser(void)
{
	static const struct bpf_insn prog[] = {
		/* r6 = r1 (the skb): BPF_LD_ABS implicitly reads from r6 */
		{ .code = BPF_ALU64 | BPF_MOV | BPF_X,
		  .dst_reg = BPF_REG_6, .src_reg = BPF_REG_1 },
		/* r0 = ntohl(*(u32 *)(skb + 0)): the len field */
		{ .code = BPF_LD | BPF_W | BPF_ABS, .imm = 0 },
		/* r0 += 4: the length field counts only what follows it */
		{ .code = BPF_ALU64 | BPF_ADD | BPF_K,
		  .dst_reg = BPF_REG_0, .imm = 4 },
		/* return r0 */
		{ .code = BPF_JMP | BPF_EXIT },
	};
	static char log[4096];
	union bpf_attr attr;
	int fd;

	memset(&attr, 0, sizeof(attr));
	attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
	attr.insns = (uintptr_t)prog;
	attr.insn_cnt = ARRAY_SIZE(prog);
	attr.license = (uintptr_t)"GPL";
	attr.log_buf = (uintptr_t)log;
	attr.log_size = sizeof(log);
	attr.log_level = 1;
	fd = syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof(attr));
	if (fd < 0) {
		if (log[0])
			fprintf(stderr, "kcm-demo: verifier says:\n%s", log);
		die("bpf(BPF_PROG_LOAD)");
	}
	return fd;
}

/* ---- the server: one mux, M KCM sockets, one worker each ------------ */

struct worker {
	pthread_t thread;
	int kcm;			/* this worker's KCM socket */
	long echoed;			/* messages it echoed */
	int err;			/* errno of the failure that ended it */
};

static int stop_pipe[2];		/* closing [1] stops the workers */

/*
 * A worker is the whole server logic: take a message, send it back.
 * recv() on a KCM socket returns one complete message (given a buffer
 * large enough; never two), steered to us by the mux from any of the N
 * connections.
 * send() hands one complete message to the mux, which writes it out
 * atomically on one connection: not necessarily the one the request came
 * in on (a connected-mode mux treats all its connections as equivalent
 * paths to the same peer).
 */
static void *worker_main(void *arg)
{
	struct worker *w = arg;
	/* SOCK_SEQPACKET: a message ends with the send() that has MSG_EOR;
	 * SOCK_DGRAM: with the send() that does not have MSG_MORE.
	 */
	int flags = kcm_type == SOCK_SEQPACKET ? MSG_EOR : 0;
	struct pollfd pfd[2] = {
		{ .fd = w->kcm, .events = POLLIN },
		{ .fd = stop_pipe[0], .events = POLLIN },
	};
	uint8_t *buf = malloc(MAX_MSG);
	ssize_t n;

	if (!buf) {
		w->err = ENOMEM;
		return NULL;
	}
	for (;;) {
		/* A KCM socket works with poll/epoll like any datagram
		 * socket; poll also lets us notice the stop request.
		 */
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			w->err = errno;
			break;
		}
		if (pfd[1].revents)
			break;
		/* The buffer fits the largest message.  A smaller one would
		 * truncate: DGRAM drops the rest (MSG_TRUNC), SEQPACKET keeps
		 * it for the next recv on kcmux (in-tree 6.1+ drops it).
		 */
		n = recv(w->kcm, buf, MAX_MSG, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			w->err = errno;
			break;
		}
		if (send(w->kcm, buf, n, flags) != n) {
			w->err = errno ? errno : EIO;
			break;
		}
		w->echoed++;
	}
	free(buf);
	return NULL;
}

/* ---- the client: N senders and one receiver ------------------------- */

struct conn {
	pthread_t thread;
	int idx;
	int fd;				/* client end of the TCP connection */
	sem_t credits;			/* free slots of the in-flight window */
	long sent;			/* messages sent on it */
	long received;			/* replies that came back on it */
	int err;
	/* receive side: stream reassembly and duplicate detection */
	uint8_t *rx;
	size_t rx_have;
	uint8_t *seen;			/* seen[seq] for messages of this conn */
	size_t seen_cap;
};

static struct conn *conns;
static double t_start, t_end;
static atomic_bool sending_done;
static atomic_long total_sent;
static atomic_bool receiver_failed;
static long total_bytes;		/* sum of the sizes of all messages */
static long good, bad;			/* replies verified / rejected */

static void *sender_main(void *arg)
{
	struct conn *c = arg;
	uint8_t *buf = malloc(MAX_MSG);
	uint32_t seq;

	if (!buf) {
		c->err = ENOMEM;
		return NULL;
	}
	for (seq = 0; msgs_per_conn < 0 || seq < msgs_per_conn; seq++) {
		uint32_t total, off = 0;

		if (seconds > 0 && now() - t_start >= seconds)
			break;
		/* Wait until fewer than `window` messages of this connection
		 * are waiting for their echo.
		 */
		while (sem_wait(&c->credits) && errno == EINTR)
			;
		if (atomic_load(&receiver_failed))
			break;
		total = msg_build(buf, c->idx, seq);
		while (off < total) {
			/* Plain TCP: the client knows nothing about KCM. */
			ssize_t n = send(c->fd, buf + off, total - off, MSG_NOSIGNAL);

			if (n < 0) {
				if (errno == EINTR)
					continue;
				c->err = errno;
				goto out;
			}
			off += n;
		}
		c->sent++;
		atomic_fetch_add(&total_sent, 1);
	}
out:
	free(buf);
	return NULL;
}

/* Check one echoed message that arrived on connection c. */
static bool check_reply(struct conn *c, const uint8_t *msg, uint32_t total)
{
	uint32_t conn = get_be32(msg + 4), seq = get_be32(msg + 8);
	uint32_t state, want;
	struct conn *from;

	c->received++;
	if (conn >= (uint32_t)nconns)
		goto reject;
	from = &conns[conn];
	state = msg_state(conn, seq);
	want = msg_size(&state);
	if (total != want || get_be32(msg + 12) != msg_csum(msg, total))
		goto reject;
	if (seq >= from->seen_cap) {
		size_t cap = from->seen_cap ? from->seen_cap : 1024;
		uint8_t *p;

		while (cap <= seq)
			cap *= 2;
		p = realloc(from->seen, cap);
		if (!p)
			goto reject;
		memset(p + from->seen_cap, 0, cap - from->seen_cap);
		from->seen = p;
		from->seen_cap = cap;
	}
	if (from->seen[seq])
		goto reject;		/* duplicate */
	from->seen[seq] = 1;
	sem_post(&from->credits);	/* its sender may send one more */
	good++;
	total_bytes += total;
	return true;
reject:
	bad++;
	fprintf(stderr, "kcm-demo: bad reply on connection %d: conn %u seq %u, %u bytes\n",
		c->idx, conn, seq, total);
	return false;
}

/* Read what is there on c and verify every complete message in it. */
static bool receive_some(struct conn *c)
{
	const size_t cap = 4 * MAX_MSG;
	size_t off = 0;
	ssize_t n;

	n = recv(c->fd, c->rx + c->rx_have, cap - c->rx_have, MSG_DONTWAIT);
	if (n == 0) {
		fprintf(stderr, "kcm-demo: connection %d closed by the server\n", c->idx);
		return false;
	}
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return true;
		c->err = errno;
		return false;
	}
	c->rx_have += n;
	while (c->rx_have - off >= 4) {
		uint32_t total = get_be32(c->rx + off) + 4;

		if (total < MIN_MSG || total > MAX_MSG) {
			fprintf(stderr, "kcm-demo: connection %d: bad length field %u\n",
				c->idx, total - 4);
			return false;
		}
		if (c->rx_have - off < total)
			break;
		if (!check_reply(c, c->rx + off, total))
			return false;
		off += total;
	}
	memmove(c->rx, c->rx + off, c->rx_have - off);
	c->rx_have -= off;
	return true;
}

/*
 * The receiver reads the echoes from all N connections.  Because the
 * server's mux may send a reply on any of its connections, the replies to
 * the messages of connection 0 can arrive on connection 3: the per-
 * connection counts of sent and received messages need not match, and
 * only the totals can be compared.  What must hold for every message is
 * that it comes back exactly once, whole, with its checksum intact, and
 * every message is a single piece on a single connection (KCM never
 * interleaves two messages on one TCP stream).
 */
static void *receiver_main(void *arg)
{
	struct pollfd *pfd = calloc(nconns, sizeof(*pfd));
	double last_progress = now();
	long replies = 0;
	int i;

	(void)arg;
	if (!pfd)
		goto fail;
	for (i = 0; i < nconns; i++) {
		pfd[i].fd = conns[i].fd;
		pfd[i].events = POLLIN;
	}
	for (;;) {
		/* Done when the senders are and everything came back. */
		if (atomic_load(&sending_done) &&
		    good + bad >= atomic_load(&total_sent))
			break;
		if (now() - last_progress > STALL_SECS) {
			fprintf(stderr, "kcm-demo: no reply for %d s, giving up\n",
				STALL_SECS);
			goto fail;
		}
		if (poll(pfd, nconns, 100) < 0 && errno != EINTR)
			goto fail;
		for (i = 0; i < nconns; i++) {
			if (pfd[i].revents && !receive_some(&conns[i]))
				goto fail;
		}
		if (good + bad != replies) {
			replies = good + bad;
			last_progress = now();
		}
	}
	t_end = now();
	free(pfd);
	return NULL;
fail:
	/* Nobody reads the echoes any more: wake up senders that wait for
	 * room on their connection, so that the failure can be reported.
	 */
	t_end = now();
	atomic_store(&receiver_failed, true);
	for (i = 0; i < nconns; i++) {
		sem_post(&conns[i].credits);
		shutdown(conns[i].fd, SHUT_RDWR);
	}
	free(pfd);
	return NULL;
}

/* ---- setup, reporting ---------------------------------------------- */

static void usage(int status)
{
	fprintf(status ? stderr : stdout,
		"usage: kcm-demo [-n conns] [-m kcm-sockets] [-c msgs | -t secs] [-w window] [-d] [-v]\n"
		"  -n N   TCP connections attached to the mux (default 4)\n"
		"  -m M   KCM sockets, one worker thread each (default 2)\n"
		"  -c C   messages per connection (default 2000)\n"
		"  -t S   send for S seconds instead (with -c: whichever ends first)\n"
		"  -w W   messages in flight per connection (default 1; more than 1\n"
		"         needs kcmux: see \"Pipelining\" in the source)\n"
		"  -d     SOCK_DGRAM KCM sockets (default SOCK_SEQPACKET)\n"
		"  -v     say what is being done\n");
	exit(status);
}

static void parse_args(int argc, char **argv)
{
	bool count_given = false;
	int opt;

	while ((opt = getopt(argc, argv, "n:m:c:t:w:dvh")) != -1) {
		switch (opt) {
		case 'n':
			nconns = atoi(optarg);
			break;
		case 'm':
			nsocks = atoi(optarg);
			break;
		case 'c':
			msgs_per_conn = atol(optarg);
			count_given = true;
			break;
		case 't':
			seconds = atof(optarg);
			break;
		case 'w':
			window = atoi(optarg);
			break;
		case 'd':
			kcm_type = SOCK_DGRAM;
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
	if (optind != argc || nconns < 1 || nconns > 1024 || nsocks < 1 ||
	    nsocks > 1024 || msgs_per_conn < 1 || msgs_per_conn > UINT32_MAX ||
	    seconds < 0 || window < 1 || window > 65536)
		usage(2);
	if (seconds > 0 && !count_given)
		msgs_per_conn = -1;	/* only the clock bounds the run */
}

static void print_file(const char *path)
{
	char line[512];
	FILE *f = fopen(path, "r");

	printf("\n--- %s ---\n", path);
	if (!f) {
		printf("(cannot open: %s)\n", strerror(errno));
		return;
	}
	while (fgets(line, sizeof(line), f))
		fputs(line, stdout);
	fclose(f);
}

int main(int argc, char **argv)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	socklen_t alen = sizeof(addr);
	struct worker *workers;
	int *server_fds, lfd, bpf_fd, one = 1, i;
	pthread_t receiver;
	bool ok = true;
	double elapsed;
	long sent, uneven = 0;

	parse_args(argc, argv);
	signal(SIGPIPE, SIG_IGN);
	workers = calloc(nsocks, sizeof(*workers));
	conns = calloc(nconns, sizeof(*conns));
	server_fds = calloc(nconns, sizeof(*server_fds));
	if (!workers || !conns || !server_fds)
		die("calloc");

	printf("kcm-demo: %d TCP connections, %d KCM sockets (%s), ",
	       nconns, nsocks, kcm_type == SOCK_SEQPACKET ? "SOCK_SEQPACKET" : "SOCK_DGRAM");
	if (msgs_per_conn > 0)
		printf("%ld messages per connection", msgs_per_conn);
	if (seconds > 0)
		printf("%sfor %.1f s", msgs_per_conn > 0 ? " or " : "", seconds);
	printf(", %d in flight per connection, 16 B .. 64 KiB each\n", window);
	fflush(stdout);

	/*
	 * 1. The mux.  socket(AF_KCM, ...) creates a multiplexor together
	 * with its first KCM socket; SIOCKCMCLONE adds more sockets to the
	 * same mux.  All KCM sockets of a mux are equivalent: any of them
	 * may receive any message, and threads need no locking between
	 * them.  KCMPROTO_CONNECTED (0) is the only protocol.
	 */
	workers[0].kcm = socket(AF_KCM, kcm_type, KCMPROTO_CONNECTED);
	if (workers[0].kcm < 0 && errno == EAFNOSUPPORT) {
		fprintf(stderr, "kcm-demo: no AF_KCM in this kernel: %s\n",
			"load kcmux.ko (or the in-tree kcm module)");
		return 1;
	}
	if (workers[0].kcm < 0)
		die("socket(AF_KCM)");
	for (i = 1; i < nsocks; i++) {
		struct kcm_clone clone = { 0 };

		if (ioctl(workers[0].kcm, SIOCKCMCLONE, &clone) < 0)
			die("ioctl(SIOCKCMCLONE)");
		workers[i].kcm = clone.fd;	/* a new file descriptor */
	}
	vlog("mux: %d KCM sockets\n", nsocks);

	/* 2. The message parser, shared by all the connections. */
	bpf_fd = load_parser();
	vlog("BPF length parser loaded (fd %d)\n", bpf_fd);

	/*
	 * 3. The connections.  The server accepts ordinary TCP connections
	 * and attaches each to the mux with SIOCKCMATTACH (on any KCM socket
	 * of the mux).  From then on, the mux owns the data path of the
	 * socket: do not read or write it yourself.  Keep the descriptor,
	 * though: it is how you unattach the socket later, watch it for
	 * errors (POLLERR, SO_ERROR) and read its TCP statistics.
	 *
	 * A message may not be larger than the receive buffer (SO_RCVBUF)
	 * of the TCP socket it arrives on; 64 KiB fits the default.
	 */
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) ||
	    listen(lfd, nconns) ||
	    getsockname(lfd, (struct sockaddr *)&addr, &alen))
		die("listening socket");
	for (i = 0; i < nconns; i++) {
		struct kcm_attach attach = { 0 };

		conns[i].idx = i;
		if (sem_init(&conns[i].credits, 0, window))
			die("sem_init");
		conns[i].rx = malloc(4 * MAX_MSG);
		conns[i].fd = socket(AF_INET, SOCK_STREAM, 0);
		if (!conns[i].rx || conns[i].fd < 0 ||
		    connect(conns[i].fd, (struct sockaddr *)&addr, sizeof(addr)))
			die("client connection %d", i);
		server_fds[i] = accept(lfd, NULL, NULL);
		if (server_fds[i] < 0)
			die("accept");

		/* The mux writes each message out as soon as it is complete;
		 * without TCP_NODELAY, Nagle would hold back the last segment
		 * of a message until the previous one is acknowledged, which
		 * costs request/response traffic a delayed ACK per reply.
		 */
		if (setsockopt(server_fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) ||
		    setsockopt(conns[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)))
			die("setsockopt(TCP_NODELAY)");

		attach.fd = server_fds[i];
		attach.bpf_fd = bpf_fd;
		if (ioctl(workers[0].kcm, SIOCKCMATTACH, &attach) < 0)
			die("ioctl(SIOCKCMATTACH) of connection %d", i);
	}
	close(lfd);
	/* Each psock holds its own reference to the program. */
	close(bpf_fd);
	vlog("attached %d TCP connections to the mux\n", nconns);

	/* 4. The server threads. */
	if (pipe(stop_pipe))
		die("pipe");
	for (i = 0; i < nsocks; i++)
		if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]))
			die("pthread_create");

	/* 5. The client: traffic in, echoes out, until everything is back. */
	t_start = now();
	if (pthread_create(&receiver, NULL, receiver_main, NULL))
		die("pthread_create");
	for (i = 0; i < nconns; i++)
		if (pthread_create(&conns[i].thread, NULL, sender_main, &conns[i]))
			die("pthread_create");
	for (i = 0; i < nconns; i++)
		pthread_join(conns[i].thread, NULL);
	atomic_store(&sending_done, true);
	vlog("senders done after %.2f s\n", now() - t_start);
	pthread_join(receiver, NULL);

	/* 6. The verdict: each message came back exactly once, intact. */
	sent = atomic_load(&total_sent);
	for (i = 0; i < nconns; i++) {
		struct conn *c = &conns[i];
		long seq, missing = 0;

		for (seq = 0; seq < c->sent; seq++)
			missing += seq >= (long)c->seen_cap || !c->seen[seq];
		if (missing) {
			fprintf(stderr, "kcm-demo: %ld messages of connection %d never came back\n",
				missing, i);
			ok = false;
		}
		if (c->err) {
			fprintf(stderr, "kcm-demo: connection %d: %s\n", i, strerror(c->err));
			ok = false;
		}
		uneven += c->received != c->sent;
	}
	for (i = 0; i < nsocks; i++) {
		if (workers[i].err) {
			fprintf(stderr, "kcm-demo: worker %d: %s\n", i, strerror(workers[i].err));
			ok = false;
		}
	}
	if (bad || good != sent || atomic_load(&receiver_failed))
		ok = false;

	elapsed = t_end > t_start ? t_end - t_start : 1 / 1e9;
	printf("\n");
	printf("  messages   %ld sent, %ld echoed back and verified, %ld bad\n",
	       sent, good, bad);
	printf("  bytes      %ld each way (%.1f KiB per message on average)\n",
	       total_bytes, good ? total_bytes / 1024.0 / good : 0.0);
	printf("  elapsed    %.2f s\n", elapsed);
	printf("  rate       %.0f msgs/s, %.1f MB/s (echoed messages, one way)\n",
	       good / elapsed, total_bytes / elapsed / 1e6);
	printf("  server     messages echoed per KCM socket:");
	for (i = 0; i < nsocks; i++)
		printf(" %ld", workers[i].echoed);
	printf("\n  client     sent / replies received per connection:");
	for (i = 0; i < nconns; i++)
		printf(" %ld/%ld", conns[i].sent, conns[i].received);
	printf("\n");
	if (uneven)
		printf("             (replies are spread over the connections by the mux:\n"
		       "              only the totals have to match)\n");
	printf("  verified   %s\n", ok ? "OK: every message came back once, intact" :
	       "FAILED");

	/* The mux is still open: its state is visible in procfs. */
	print_file("/proc/net/kcm");
	print_file("/proc/net/kcm_stats");
	fflush(stdout);

	if (atomic_load(&receiver_failed)) {
		/* Workers may be stuck sending echoes nobody reads: leave
		 * the cleanup to exit().
		 */
		printf("\nkcm-demo: FAIL\n");
		return 1;
	}

	/*
	 * 7. Teardown.  SIOCKCMUNATTACH hands a TCP socket back to us (we
	 * simply close it then); closing the last KCM socket of a mux would
	 * unattach every remaining psock anyway.
	 */
	if (close(stop_pipe[1]))
		die("close");
	for (i = 0; i < nsocks; i++)
		pthread_join(workers[i].thread, NULL);
	for (i = 0; i < nconns; i++) {
		struct kcm_unattach unattach = { .fd = server_fds[i] };

		if (ioctl(workers[0].kcm, SIOCKCMUNATTACH, &unattach) < 0) {
			fprintf(stderr, "kcm-demo: ioctl(SIOCKCMUNATTACH) of connection %d: %s\n",
				i, strerror(errno));
			ok = false;
		}
		close(server_fds[i]);
		close(conns[i].fd);
		free(conns[i].rx);
		free(conns[i].seen);
	}
	for (i = 0; i < nsocks; i++)
		close(workers[i].kcm);

	printf("\nkcm-demo: %s\n", ok ? "PASS" : "FAIL");
	return ok ? 0 : 1;
}
