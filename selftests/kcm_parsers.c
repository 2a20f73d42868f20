// SPDX-License-Identifier: GPL-2.0
/*
 * kcm_parsers: the BPF parsers of bpf/ framing real protocol traffic on
 * a KCM multiplexor.
 *
 *   parsers.aligned  a recorded stream (bpf/fixtures), one message per
 *                    write, each read back from the KCM socket before the
 *                    next is written
 *   parsers.random   the same stream written in chunks of random sizes
 *                    (1 byte to 64 KiB, headers cut anywhere, several
 *                    messages per segment) by another thread
 *   verifier         every parser loads, in each configuration that
 *                    changes its code, on the kernel under test
 *   parser_errors.*  a malformed or oversized header after a good
 *                    message: the good one is delivered, then the TCP
 *                    socket gets the parser's errno posted
 *
 * Every message read must be, byte for byte, the next one of the stream
 * as the reference framer cut it (<proto>.<dir>.lens), and nothing more
 * may come.
 *
 * The parser objects and fixtures are found beside this program, in
 * bpf/ and fixtures/ (make -C selftests copies them there), and loaded
 * with libbpf (bpf/lib/parser_load.h), configured as the variant says.
 *
 * The in-tree kcm.ko runs the parser on the TCP skb a message starts in,
 * with the message's offset in that skb hidden from the program; the
 * parsers read from offset 0, so there they see the message only when it
 * starts its skb.  parsers.aligned arranges that (a message is written
 * only once the previous one has been consumed) and runs on both modules;
 * parsers.random cannot and skips on the in-tree module.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>

#include "kcm_test.h"
#include "../bpf/lib/parser_load.h"
/*
 * gcc -Wclobbered misfires on the harness's own setjmp-based TEST_F
 * wrapper (see kcm_ctl.c); not our code.
 */
#pragma GCC diagnostic ignored "-Wclobbered"
#include "kselftest_harness.h"

#define KP_ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))

/* A TCP receive buffer far above the largest recorded message (~100 KB). */
#define KP_RCVBUF	(4 * 1024 * 1024)

/* ------------------------------------------------------------------ */
/* Files beside the test program                                        */
/* ------------------------------------------------------------------ */

/* dir/sub/name, dir being this program's directory.  0 or -errno. */
static int kp_path(char *buf, size_t size, const char *sub, const char *name)
{
	char exe[PATH_MAX];
	ssize_t n;

	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n < 0)
		return -errno;
	exe[n] = '\0';
	if (snprintf(buf, size, "%s/%s/%s", dirname(exe), sub, name) >=
	    (int)size)
		return -ENAMETOOLONG;
	return 0;
}

/* The whole file, malloc'ed, in *data and *size.  0 or -errno. */
static int kp_slurp(const char *path, uint8_t **data, size_t *size)
{
	FILE *f = fopen(path, "rb");
	long len;
	int err = 0;

	if (!f)
		return -errno;
	if (fseek(f, 0, SEEK_END)) {
		err = -errno;
		goto out;
	}
	len = ftell(f);
	if (len < 0 || fseek(f, 0, SEEK_SET)) {
		err = -errno;
		goto out;
	}
	*data = malloc(len + 1);
	if (!*data) {
		err = -ENOMEM;
		goto out;
	}
	if (fread(*data, 1, len, f) != (size_t)len) {
		free(*data);
		err = -EIO;
		goto out;
	}
	(*data)[len] = '\0';
	*size = len;
out:
	fclose(f);
	return err;
}

/* A recorded stream and the length of each message in it. */
struct kp_stream {
	uint8_t *data;
	size_t size;
	uint32_t *lens;
	int count;
	uint32_t longest;
};

static void kp_stream_free(struct kp_stream *s)
{
	free(s->data);
	free(s->lens);
	memset(s, 0, sizeof(*s));
}

/* Reads fixtures/<name>.bin and .lens.  0 or -errno. */
static int kp_stream_load(struct kp_stream *s, const char *name)
{
	char path[PATH_MAX], file[128];
	uint8_t *text;
	size_t tsize, total = 0;
	char *p, *end;
	int err, cap;

	memset(s, 0, sizeof(*s));
	snprintf(file, sizeof(file), "%s.bin", name);
	err = kp_path(path, sizeof(path), "fixtures", file);
	if (!err)
		err = kp_slurp(path, &s->data, &s->size);
	if (err)
		return err;
	snprintf(file, sizeof(file), "%s.lens", name);
	err = kp_path(path, sizeof(path), "fixtures", file);
	if (!err)
		err = kp_slurp(path, &text, &tsize);
	if (err)
		goto fail;

	/* One length per line: at most one per two bytes of text. */
	cap = tsize / 2 + 1;
	s->lens = calloc(cap, sizeof(*s->lens));
	if (!s->lens) {
		free(text);
		err = -ENOMEM;
		goto fail;
	}
	for (p = (char *)text; s->count < cap; p = end) {
		unsigned long v = strtoul(p, &end, 10);

		if (end == p)
			break;
		s->lens[s->count++] = v;
		total += v;
		if (v > s->longest)
			s->longest = v;
	}
	free(text);
	/* The lengths must cover the stream: else the fixture is broken. */
	if (!s->count || total != s->size) {
		err = -EINVAL;
		goto fail;
	}
	return 0;
fail:
	kp_stream_free(s);
	return err;
}

/* ------------------------------------------------------------------ */
/* Parsers                                                              */
/* ------------------------------------------------------------------ */

/*
 * Loads bpf/<name>.bpf.o configured with "key=value ..." into *p: the
 * program fd (owned by *p), or -errno.
 */
static int kp_parser_load(struct kcmux_parser *p, const char *name,
			  const char *config)
{
	char path[PATH_MAX], file[64], buf[256], *save = NULL, *tok, *eq;
	int err;

	snprintf(file, sizeof(file), "%s.bpf.o", name);
	err = kp_path(path, sizeof(path), "bpf", file);
	if (!err)
		err = kcmux_parser_open(p, path);
	if (err) {
		fprintf(stderr, "# %s: %s\n", path, strerror(-err));
		return err;
	}
	snprintf(buf, sizeof(buf), "%s", config);
	for (tok = strtok_r(buf, " ", &save); tok;
	     tok = strtok_r(NULL, " ", &save)) {
		eq = strchr(tok, '=');
		err = -EINVAL;
		if (eq) {
			*eq = '\0';
			err = kcmux_parser_set(p, tok,
					       strtoll(eq + 1, NULL, 0));
		}
		if (err) {
			fprintf(stderr, "# %s: key %s: %s\n", name, tok,
				strerror(-err));
			goto fail;
		}
	}
	err = kcmux_parser_load(p);
	if (err >= 0)
		return err;
	fprintf(stderr, "# %s: load: %s\n", name, strerror(-err));
fail:
	kcmux_parser_close(p);
	return err;
}

/* libbpf's warnings as TAP comments; its debug chatter not at all. */
static int kp_libbpf_print(enum libbpf_print_level level, const char *fmt,
			   va_list ap)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	fputs("# libbpf: ", stderr);
	return vfprintf(stderr, fmt, ap);
}

/* ------------------------------------------------------------------ */
/* A KCM socket with one psock                                          */
/* ------------------------------------------------------------------ */

struct kp_mux {
	struct kcmux_parser parser;
	int prog;
	int kcm;
	int w;		/* the peer: we write the stream here */
	int r;		/* the attached end */
};

static void kp_mux_open(struct __test_metadata *_metadata, struct kp_mux *m,
			const char *parser, const char *config)
{
	const struct kcm_tcp_opts o = {
		.rcvbuf = KP_RCVBUF,
		.nodelay = true,
		.sndtimeo_ms = KCM_WAIT_MS,
	};
	int fds[2] = { -1, -1 };

	m->prog = -1;
	m->kcm = -1;
	m->w = -1;
	m->r = -1;
	libbpf_set_print(kp_libbpf_print);
	ASSERT_EQ(kcm_netns_enter(), 0);
	m->prog = kp_parser_load(&m->parser, parser, config);
	ASSERT_GE(m->prog, 0) TH_LOG("parser %s [%s]", parser, config);
	m->kcm = kcm_socket(SOCK_DGRAM);
	ASSERT_GE(m->kcm, 0) TH_LOG("socket(AF_KCM): %s", strerror(-m->kcm));
	ASSERT_EQ(kcm_set_timeo(m->kcm, SO_RCVTIMEO, KCM_WAIT_MS), 0);
	ASSERT_EQ(kcm_tcp_pair_opts(AF_INET, fds, &o), 0);
	m->w = fds[0];
	m->r = fds[1];
	ASSERT_EQ(kcm_attach(m->kcm, m->r, m->prog), 0);
	/* The mux holds the program now: every test runs without ours. */
	kcmux_parser_close(&m->parser);
	m->prog = -1;
}

static void kp_mux_close(struct kp_mux *m)
{
	kcm_close_fd(&m->w);
	kcm_close_fd(&m->r);
	kcm_close_fd(&m->kcm);
	if (m->prog >= 0)
		kcmux_parser_close(&m->parser);
	m->prog = -1;
}

/*
 * Reads one message from the KCM socket and compares it with want.
 * NULL if it is the same, else why not (buf holds what came).
 */
static const char *kp_recv_msg(int kcm, uint8_t *buf, size_t bufsize,
			       const uint8_t *want, uint32_t len, ssize_t *got)
{
	struct iovec iov = { .iov_base = buf, .iov_len = bufsize };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	*got = recvmsg(kcm, &mh, 0);
	if (*got < 0)
		return errno == EAGAIN ? "no message within the timeout" :
		       "recvmsg failed";
	if (mh.msg_flags & MSG_TRUNC)
		return "truncated: longer than expected";
	if (*got != (ssize_t)len)
		return "wrong length";
	if (memcmp(buf, want, len))
		return "wrong bytes";
	return NULL;
}

/* ------------------------------------------------------------------ */
/* parsers: recorded streams                                            */
/* ------------------------------------------------------------------ */

FIXTURE(parsers)
{
	struct kp_mux m;
	struct kp_stream s;
	uint8_t *buf;
	size_t bufsize;
};

FIXTURE_VARIANT(parsers)
{
	const char *parser;
	const char *config;
	const char *fixture;
};

#define KP_STREAM(name, p, cfg, fix)			\
FIXTURE_VARIANT_ADD(parsers, name) {			\
	.parser = p, .config = cfg, .fixture = fix,	\
}

KP_STREAM(http2_c2s, "http2", "", "http2.c2s");
KP_STREAM(http2_s2c, "http2", "", "http2.s2c");
KP_STREAM(thrift_c2s, "thrift", "", "thrift.c2s");
KP_STREAM(thrift_s2c, "thrift", "", "thrift.s2c");
KP_STREAM(kafka_c2s, "kafka", "", "kafka.c2s");
KP_STREAM(dns_c2s, "dns", "", "dns.c2s");
KP_STREAM(dns_s2c, "dns", "", "dns.s2c");
KP_STREAM(memcached_c2s, "memcached", "", "memcached.c2s");
KP_STREAM(memcached_s2c, "memcached", "", "memcached.s2c");
KP_STREAM(mqtt_c2s, "mqtt", "", "mqtt.c2s");
KP_STREAM(mqtt_s2c, "mqtt", "", "mqtt.s2c");
KP_STREAM(postgres_c2s, "postgres", "", "postgres.c2s");
KP_STREAM(postgres_s2c, "postgres", "", "postgres.s2c");
/* The generic parser, configured for protocols it can frame. */
KP_STREAM(lenprefix_thrift_s2c, "lenprefix", "", "thrift.s2c");
KP_STREAM(lenprefix_dns_s2c, "lenprefix", "width=2", "dns.s2c");
KP_STREAM(lenprefix_http2_s2c, "lenprefix", "width=3 adjust=6", "http2.s2c");
KP_STREAM(lenprefix_memcached_c2s, "lenprefix", "offset=8 adjust=12",
	  "memcached.c2s");
KP_STREAM(lenprefix_postgres_s2c, "lenprefix",
	  "offset=1 includes_header=1 adjust=1", "postgres.s2c");

FIXTURE_SETUP(parsers)
{
	int err;

	self->buf = NULL;
	err = kp_stream_load(&self->s, variant->fixture);
	ASSERT_EQ(err, 0) TH_LOG("fixture %s: %s", variant->fixture,
				 strerror(-err));
	/* Room for one byte more than the longest: a longer one shows. */
	self->bufsize = self->s.longest + 1;
	self->buf = malloc(self->bufsize);
	ASSERT_NE(self->buf, NULL);
	kp_mux_open(_metadata, &self->m, variant->parser, variant->config);
}

FIXTURE_TEARDOWN(parsers)
{
	kp_mux_close(&self->m);
	kp_stream_free(&self->s);
	free(self->buf);
}

/* After the last message: nothing more, and no error on the psock. */
static void kp_check_end(struct __test_metadata *_metadata, struct kp_mux *m)
{
	ASSERT_TRUE(kcm_quiet(m->kcm, KCM_QUIET_MS));
	ASSERT_EQ(kcm_sock_error(m->r), 0);
}

/*
 * One message per write, each read back before the next is written: on
 * the in-tree module too, every message then starts its own TCP skb.
 */
TEST_F(parsers, aligned)
{
	const char *why;
	size_t off = 0;
	ssize_t got;
	int i;

	for (i = 0; i < self->s.count; i++) {
		uint32_t len = self->s.lens[i];

		ASSERT_EQ(kcm_send_all(self->m.w, self->s.data + off, len), 0);
		why = kp_recv_msg(self->m.kcm, self->buf, self->bufsize,
				  self->s.data + off, len, &got);
		ASSERT_EQ(why, NULL) TH_LOG("message %d (at %zu, %u bytes): %s, got %zd bytes",
					    i, off, len, why, got);
		off += len;
	}
	kp_check_end(_metadata, &self->m);
}

/* The writer thread of parsers.random. */
struct kp_writer {
	int fd;
	const uint8_t *data;
	size_t size;
	unsigned int seed;
	int err;
	int chunks;
};

static void *kp_writer_fn(void *arg)
{
	struct kp_writer *wr = arg;
	unsigned int seed = wr->seed;
	size_t off = 0, chunk;

	while (off < wr->size) {
		/* Mostly small: headers are cut, and every stream in pieces. */
		switch (rand_r(&seed) % 10) {
		case 0: case 1: case 2: case 3:
			chunk = 1 + rand_r(&seed) % 8;
			break;
		case 4: case 5: case 6:
			chunk = 1 + rand_r(&seed) % 64;
			break;
		case 7: case 8:
			chunk = 1 + rand_r(&seed) % 1024;
			break;
		default:
			chunk = 1 + rand_r(&seed) % 65536;
			break;
		}
		if (chunk > wr->size - off)
			chunk = wr->size - off;
		wr->err = kcm_send_all(wr->fd, wr->data + off, chunk);
		if (wr->err)
			break;
		off += chunk;
		wr->chunks++;
		/* Now and then let the receiver catch up: separate segments. */
		if (rand_r(&seed) % 4 == 0)
			usleep(200);
	}
	return NULL;
}

/*
 * The stream in random chunks: headers split at any byte, messages
 * sharing segments, long messages in pieces.  The seed is printed; set
 * KCM_PARSERS_SEED to replay one.
 */
TEST_F(parsers, random)
{
	struct kp_writer wr = { .fd = self->m.w, .data = self->s.data,
				.size = self->s.size };
	const char *env = getenv("KCM_PARSERS_SEED"), *why = NULL;
	pthread_t thr;
	size_t off = 0;
	ssize_t got = 0;
	int i;

	if (kcmux_is_reference())
		SKIP(return, "in-tree kcm.ko hides the message's offset in the TCP skb from the parser: a message not starting its skb is misframed");

	wr.seed = env ? strtoul(env, NULL, 0) :
		  (unsigned int)time(NULL) ^ (unsigned int)getpid();
	TH_LOG("seed %u", wr.seed);
	ASSERT_EQ(pthread_create(&thr, NULL, kp_writer_fn, &wr), 0);
	for (i = 0; i < self->s.count; i++) {
		why = kp_recv_msg(self->m.kcm, self->buf, self->bufsize,
				  self->s.data + off, self->s.lens[i], &got);
		if (why)
			break;
		off += self->s.lens[i];
	}
	if (why)
		shutdown(self->m.w, SHUT_RDWR);
	pthread_join(thr, NULL);
	ASSERT_EQ(why, NULL) TH_LOG("seed %u, message %d (at %zu, %u bytes): %s, got %zd bytes",
				    wr.seed, i, off, self->s.lens[i], why, got);
	ASSERT_EQ(wr.err, 0);
	TH_LOG("%d messages from %d writes", self->s.count, wr.chunks);
	kp_check_end(_metadata, &self->m);
}

/* ------------------------------------------------------------------ */
/* verifier: every parser, in every shape a configuration gives it      */
/* ------------------------------------------------------------------ */

/*
 * The configuration keys are constants to the verifier, so each value
 * of a key that steers the code is a different program to verify; the
 * kernel under test must accept all of them (the host's newer verifier
 * accepting them proves nothing about an older one).
 */
TEST(verifier)
{
	static const struct {
		const char *parser;
		const char *config;
	} loads[] = {
		{ "lenprefix", "width=1" },
		{ "lenprefix", "width=2 little_endian=1" },
		{ "lenprefix", "width=3 includes_header=1 adjust=-3" },
		{ "lenprefix", "width=4 offset=65531 max_size=0" },
		{ "lenprefix", "width=8" },
		{ "lenprefix", "width=8 little_endian=1 includes_header=1" },
		{ "lenprefix", "width=5" },
		{ "http2", "" },
		{ "http2", "max_size=16393" },
		{ "thrift", "" },
		{ "kafka", "" },
		{ "dns", "" },
		{ "memcached", "" },
		{ "mqtt", "" },
		{ "mqtt", "strict_length=0" },
		{ "postgres", "" },
		{ "postgres", "max_startup=0 max_size=0" },
	};
	struct kcmux_parser p;
	unsigned int i;
	int fd;

	libbpf_set_print(kp_libbpf_print);
	for (i = 0; i < KP_ARRAY_SIZE(loads); i++) {
		fd = kp_parser_load(&p, loads[i].parser, loads[i].config);
		EXPECT_GE(fd, 0) TH_LOG("%s [%s]", loads[i].parser,
					loads[i].config);
		if (fd >= 0)
			kcmux_parser_close(&p);
	}
}

/* ------------------------------------------------------------------ */
/* parser_errors: what a parser refuses reaches the application         */
/* ------------------------------------------------------------------ */

FIXTURE(parser_errors)
{
	struct kp_mux m;
};

FIXTURE_VARIANT(parser_errors)
{
	const char *parser;
	const char *config;
	const char *good;	/* a message the parser accepts, hex */
	const char *bad;	/* then a header it refuses, hex */
	int err;		/* and the errno that gives */
};

#define KP_ERROR(name, p, cfg, g, b, e)				\
FIXTURE_VARIANT_ADD(parser_errors, name) {			\
	.parser = p, .config = cfg, .good = g, .bad = b, .err = e,	\
}

KP_ERROR(lenprefix_max_size, "lenprefix", "max_size=100",
	 "00 00 00 02 aa bb", "00 00 00 61", EMSGSIZE);
KP_ERROR(lenprefix_short, "lenprefix", "includes_header=1",
	 "00 00 00 06 aa bb", "00 00 00 03", EPROTO);
KP_ERROR(http2_max_frame, "http2", "max_size=16393",
	 "00 00 00 04 00 00 00 00 00", "00 40 01 00 00 00 00 00 01", EMSGSIZE);
KP_ERROR(thrift_negative, "thrift", "", "00 00 00 01 ff", "80 00 00 00",
	 EPROTO);
KP_ERROR(kafka_negative, "kafka", "", "00 00 00 02 00 12", "ff ff ff ff",
	 EPROTO);
KP_ERROR(dns_short, "dns", "",
	 "00 0c 12 34 01 00 00 00 00 00 00 00 00 00", "00 05", EPROTO);
KP_ERROR(memcached_text, "memcached", "",
	 "80 0a 00 00 00 00 00 00 00 00 00 00 00 00 00 00 "
	 "00 00 00 00 00 00 00 00", "67 65 74 20 6b 0d 0a", EPROTO);
KP_ERROR(mqtt_fifth_byte, "mqtt", "", "c0 00", "30 ff ff ff ff", EPROTO);
KP_ERROR(mqtt_not_minimal, "mqtt", "", "c0 00", "30 80 00", EPROTO);
KP_ERROR(postgres_type, "postgres", "", "51 00 00 00 04",
	 "21 00 00 00 04", EPROTO);
KP_ERROR(postgres_startup_size, "postgres", "",
	 "00 00 00 08 04 d2 16 2f", "00 01 00 00", EMSGSIZE);

/* Parses hex (blanks ignored) into buf; how many bytes, or -1. */
static int kp_hex(const char *s, uint8_t *buf, int max)
{
	int n = 0, hi = -1, v;

	for (; *s; s++) {
		if (*s == ' ')
			continue;
		if (*s >= '0' && *s <= '9')
			v = *s - '0';
		else if (*s >= 'a' && *s <= 'f')
			v = *s - 'a' + 10;
		else
			return -1;
		if (hi < 0) {
			hi = v;
		} else if (n < max) {
			buf[n++] = hi << 4 | v;
			hi = -1;
		} else {
			return -1;
		}
	}
	return hi < 0 ? n : -1;
}

FIXTURE_SETUP(parser_errors)
{
	kp_mux_open(_metadata, &self->m, variant->parser, variant->config);
}

FIXTURE_TEARDOWN(parser_errors)
{
	kp_mux_close(&self->m);
}

/*
 * The good message comes out whole; the bad header then stops the psock
 * with the parser's errno on the TCP socket, and nothing else comes out.
 */
TEST_F(parser_errors, posted)
{
	uint8_t good[64], bad[64], buf[128];
	const char *why;
	int ngood, nbad;
	ssize_t got;

	ngood = kp_hex(variant->good, good, sizeof(good));
	nbad = kp_hex(variant->bad, bad, sizeof(bad));
	ASSERT_GT(ngood, 0);
	ASSERT_GT(nbad, 0);

	ASSERT_EQ(kcm_send_all(self->m.w, good, ngood), 0);
	why = kp_recv_msg(self->m.kcm, buf, sizeof(buf), good, ngood, &got);
	ASSERT_EQ(why, NULL) TH_LOG("good message: %s, got %zd bytes", why,
				    got);
	ASSERT_EQ(kcm_send_all(self->m.w, bad, nbad), 0);
	ASSERT_EQ(kcm_err_wait(self->m.r), variant->err)
		TH_LOG("want %s", strerror(variant->err));
	ASSERT_TRUE(kcm_quiet(self->m.kcm, KCM_QUIET_MS));
}

TEST_HARNESS_MAIN
