// SPDX-License-Identifier: GPL-2.0
/*
 * Host unit tests of the kcmux BPF parsers, run in the host kernel with
 * BPF_PROG_TEST_RUN.
 *
 *	test_parsers OBJDIR FIXTUREDIR PARSERS_TXT
 *
 * OBJDIR holds the <name>.bpf.o objects, FIXTUREDIR the recorded streams
 * (<proto>.<dir>.bin) and the message lengths a reference framer found
 * in them (<proto>.<dir>.lens), PARSERS_TXT the list of parsers.  TAP
 * output; the exit status is 1 if any test failed.  Needs the right to
 * load BPF programs (root).
 *
 * What is tested:
 *  - list:  each object loads with its defaults, has exactly one socket
 *           filter program, and has the keys and defaults parsers.txt
 *           says, max_size among them;
 *  - walk:  every recorded message, seen from its first byte with the
 *           rest of the stream behind it, has the reference length; every
 *           prefix of it shorter than its header gives 0 (need more),
 *           every longer one the same length;
 *  - cases: hand-made headers at the edges: smallest and largest
 *           lengths, max_size and one byte above, lengths near 2^32 and
 *           2^64, malformed headers, configuration errors; each also cut
 *           at every byte, which must give 0;
 *  - fuzz:  random headers: the answer for a prefix is 0 up to some
 *           point and the same non-zero value from there on, reached
 *           within the longest header any parser needs (no stall), and
 *           a length is never shorter than the bytes needed to find it.
 *
 * BPF_PROG_TEST_RUN hands a socket filter its data as an Ethernet frame:
 * the first ETH_HLEN bytes become the MAC header and the program sees
 * the rest from offset 0 (checked at start-up with the lenprefix parser,
 * not assumed).  It also limits the data to about a page, so a message
 * is shown with at most SHOW_MAX bytes: parsers need only the header.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/if_ether.h>

#include "../lib/parser_load.h"

#define SHOW_MAX	2048	/* bytes of a message shown to the parser */
#define HEADER_MAX	32	/* no parser needs more to find a length */
#define MAX_PROGS	96
#define FUZZ_ROUNDS	400

/* ------------------------------------------------------------------ */
/* TAP                                                                  */
/* ------------------------------------------------------------------ */

static int tap_count, tap_failed;

static void __attribute__((format(printf, 2, 3)))
tap(bool pass, const char *fmt, ...)
{
	va_list ap;

	tap_count++;
	if (!pass)
		tap_failed++;
	printf("%sok %d - ", pass ? "" : "not ", tap_count);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

/* A diagnostic line, at most a few per test so a failure stays readable. */
static int diag_budget;

static void __attribute__((format(printf, 1, 2))) diag(const char *fmt, ...)
{
	va_list ap;

	if (diag_budget-- <= 0)
		return;
	fputs("# ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

/* ------------------------------------------------------------------ */
/* Loading and running parsers                                          */
/* ------------------------------------------------------------------ */

static const char *obj_dir, *fixture_dir, *list_path;

struct loaded {
	char name[32];
	char config[160];
	struct kcmux_parser parser;
	int fd;
};

static struct loaded progs[MAX_PROGS];
static int nprogs;

static int libbpf_quiet(enum libbpf_print_level level, const char *fmt,
			va_list ap)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	fputs("# libbpf: ", stdout);
	return vprintf(fmt, ap);
}

/*
 * Applies "key=value key=value" to an opened parser: 0, or -errno with
 * a diagnostic.
 */
static int configure(struct kcmux_parser *p, const char *config)
{
	char buf[160], *save = NULL, *tok, *eq;
	long long value;
	int err;

	snprintf(buf, sizeof(buf), "%s", config);
	for (tok = strtok_r(buf, " ", &save); tok;
	     tok = strtok_r(NULL, " ", &save)) {
		eq = strchr(tok, '=');
		if (!eq)
			return -EINVAL;
		*eq = '\0';
		value = strtoll(eq + 1, NULL, 0);
		err = kcmux_parser_set(p, tok, value);
		if (err) {
			printf("# set %s=%lld: %s\n", tok, value, strerror(-err));
			return err;
		}
	}
	return 0;
}

/* The program fd of parser name loaded with config, loaded once. */
static int prog(const char *name, const char *config)
{
	struct loaded *l;
	char path[512];
	int i, err;

	for (i = 0; i < nprogs; i++)
		if (!strcmp(progs[i].name, name) &&
		    !strcmp(progs[i].config, config))
			return progs[i].fd;
	if (nprogs == MAX_PROGS)
		return -ENOSPC;
	l = &progs[nprogs];
	snprintf(l->name, sizeof(l->name), "%s", name);
	snprintf(l->config, sizeof(l->config), "%s", config);
	snprintf(path, sizeof(path), "%s/%s.bpf.o", obj_dir, name);
	err = kcmux_parser_open(&l->parser, path);
	if (err) {
		printf("# open %s: %s\n", path, strerror(-err));
		return err;
	}
	err = configure(&l->parser, config);
	if (!err) {
		l->fd = kcmux_parser_load(&l->parser);
		err = l->fd;
	}
	if (err < 0) {
		printf("# load %s [%s]: %s\n", name, config, strerror(-err));
		kcmux_parser_close(&l->parser);
		return err;
	}
	nprogs++;
	return l->fd;
}

/*
 * Runs the program on the first len bytes of msg (len <= SHOW_MAX):
 * 0 and its return value in *ret, or -errno if the run failed.
 */
static int run(int fd, const void *msg, size_t len, int *ret)
{
	static uint8_t frame[ETH_HLEN + SHOW_MAX];
	int err;

	if (len > SHOW_MAX)
		return -E2BIG;
	/* The MAC header the kernel strips; its contents do not matter. */
	memset(frame, 0, ETH_HLEN);
	memcpy(frame + ETH_HLEN, msg, len);
	LIBBPF_OPTS(bpf_test_run_opts, opts,
		    .data_in = frame,
		    .data_size_in = ETH_HLEN + len,
		    .repeat = 1);
	err = bpf_prog_test_run_opts(fd, &opts);
	if (err)
		return err;
	*ret = (int)opts.retval;
	return 0;
}

static const char *result_str(int r)
{
	static char buf[4][32];
	static int n;
	char *s = buf[n++ % 4];

	if (r >= 0)
		snprintf(s, 32, "%d", r);
	else if (r == -EPROTO)
		snprintf(s, 32, "-EPROTO");
	else if (r == -EMSGSIZE)
		snprintf(s, 32, "-EMSGSIZE");
	else if (r == -EINVAL)
		snprintf(s, 32, "-EINVAL");
	else
		snprintf(s, 32, "%d", r);
	return s;
}

/* ------------------------------------------------------------------ */
/* Files                                                                */
/* ------------------------------------------------------------------ */

/* The whole file; NULL if it cannot be read. */
static uint8_t *slurp(const char *path, size_t *size)
{
	uint8_t *buf = NULL, *bigger;
	size_t cap = 0, n = 0, got;
	FILE *f = fopen(path, "rb");

	if (!f)
		return NULL;
	for (;;) {
		if (n == cap) {
			cap = cap ? 2 * cap : 65536;
			bigger = realloc(buf, cap + 1);
			if (!bigger) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = bigger;
		}
		got = fread(buf + n, 1, cap - n, f);
		if (!got)
			break;
		n += got;
	}
	fclose(f);
	buf[n] = '\0';
	*size = n;
	return buf;
}

/* ------------------------------------------------------------------ */
/* list: objects against parsers.txt                                    */
/* ------------------------------------------------------------------ */

#define MAX_PARSERS	16

static char parser_names[MAX_PARSERS][32];
static int nparsers;

/* Checks one line of parsers.txt (modified) against its object. */
static void check_listed(char *line)
{
	char *name = line, *desc, *keys, *save = NULL, *tok, *eq;
	struct kcmux_parser_key key;
	struct kcmux_parser p;
	int listed = 0, found, i, err, fd;
	bool ok = true, has_max = false;
	char path[512];
	long long def;

	desc = strchr(name, '\t');
	keys = desc ? strchr(desc + 1, '\t') : NULL;
	if (!desc || !keys) {
		tap(false, "list: malformed line: %s", line);
		return;
	}
	*desc++ = '\0';
	*keys++ = '\0';
	if (nparsers < MAX_PARSERS)
		snprintf(parser_names[nparsers++], 32, "%s", name);

	diag_budget = 8;
	snprintf(path, sizeof(path), "%s/%s.bpf.o", obj_dir, name);
	err = kcmux_parser_open(&p, path);
	if (err) {
		tap(false, "list: %s: open %s: %s", name, path, strerror(-err));
		return;
	}
	if (!*desc) {
		diag("no description");
		ok = false;
	}
	for (tok = strtok_r(keys, " ", &save); tok;
	     tok = strtok_r(NULL, " ", &save)) {
		listed++;
		eq = strchr(tok, '=');
		if (!eq) {
			diag("%s: not key=default", tok);
			ok = false;
			continue;
		}
		*eq = '\0';
		if (!strcmp(tok, "max_size"))
			has_max = true;
		err = kcmux_parser_get(&p, tok, &def);
		if (err) {
			diag("key %s: not in the object (%s)", tok, strerror(-err));
			ok = false;
		} else if (def != strtoll(eq + 1, NULL, 0)) {
			diag("key %s: default %lld in the object, %s listed",
			     tok, def, eq + 1);
			ok = false;
		}
	}
	for (found = 0; !(err = kcmux_parser_key_at(&p, found, &key)); found++)
		;
	if (err != -ENOENT) {
		diag("key %d: not a 32- or 64-bit integer", found);
		ok = false;
	}
	if (found != listed) {
		diag("%d keys in the object, %d listed", found, listed);
		ok = false;
	}
	if (!has_max) {
		diag("no max_size key");
		ok = false;
	}
	fd = kcmux_parser_load(&p);
	if (fd < 0) {
		diag("load with the defaults: %s", strerror(-fd));
		ok = false;
	}
	for (i = 0; fd >= 0 && i < 1; i++) {
		struct bpf_prog_info info = {};
		__u32 len = sizeof(info);

		if (bpf_obj_get_info_by_fd(fd, &info, &len) ||
		    info.type != BPF_PROG_TYPE_SOCKET_FILTER) {
			diag("not a socket filter program");
			ok = false;
		}
	}
	kcmux_parser_close(&p);
	tap(ok, "list: %s: loads, %d keys as listed, max_size among them",
	    name, listed);
}

static void test_list(void)
{
	char *text, *line, *save = NULL;
	size_t size;

	text = (char *)slurp(list_path, &size);
	if (!text) {
		tap(false, "list: read %s: %s", list_path, strerror(errno));
		return;
	}
	for (line = strtok_r(text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save))
		if (line[0] != '#')
			check_listed(line);
	free(text);
}

/* ------------------------------------------------------------------ */
/* walk: the recorded fixtures                                          */
/* ------------------------------------------------------------------ */

/* How many bytes of a message a parser needs to find its length. */
enum need_kind {
	NEED_FIXED,	/* .arg bytes */
	NEED_HTTP2,	/* 9, or 24 if it begins like the preface */
	NEED_MQTT,	/* 1 + the bytes of the Remaining Length */
	NEED_POSTGRES,	/* 4 without a type byte, else 5 */
};

struct walk {
	const char *parser;
	const char *config;
	const char *fixture;	/* <proto>.<dir> */
	enum need_kind need;
	unsigned int arg;
};

static const struct walk walks[] = {
	{ "http2", "", "http2.c2s", NEED_HTTP2, 0 },
	{ "http2", "", "http2.s2c", NEED_HTTP2, 0 },
	{ "thrift", "", "thrift.c2s", NEED_FIXED, 4 },
	{ "thrift", "", "thrift.s2c", NEED_FIXED, 4 },
	{ "kafka", "", "kafka.c2s", NEED_FIXED, 4 },
	{ "dns", "", "dns.c2s", NEED_FIXED, 2 },
	{ "dns", "", "dns.s2c", NEED_FIXED, 2 },
	{ "memcached", "", "memcached.c2s", NEED_FIXED, 24 },
	{ "memcached", "", "memcached.s2c", NEED_FIXED, 24 },
	{ "mqtt", "", "mqtt.c2s", NEED_MQTT, 0 },
	{ "mqtt", "", "mqtt.s2c", NEED_MQTT, 0 },
	{ "postgres", "", "postgres.c2s", NEED_POSTGRES, 0 },
	{ "postgres", "", "postgres.s2c", NEED_POSTGRES, 0 },
	/* The generic parser, configured for the protocols it can frame. */
	{ "lenprefix", "", "thrift.c2s", NEED_FIXED, 4 },
	{ "lenprefix", "", "thrift.s2c", NEED_FIXED, 4 },
	{ "lenprefix", "", "kafka.c2s", NEED_FIXED, 4 },
	{ "lenprefix", "width=2", "dns.c2s", NEED_FIXED, 2 },
	{ "lenprefix", "width=2", "dns.s2c", NEED_FIXED, 2 },
	{ "lenprefix", "width=3 adjust=6", "http2.s2c", NEED_FIXED, 3 },
	{ "lenprefix", "offset=8 adjust=12", "memcached.c2s", NEED_FIXED, 12 },
	{ "lenprefix", "offset=8 adjust=12", "memcached.s2c", NEED_FIXED, 12 },
	/* Typed messages only: the server never sends untyped ones. */
	{ "lenprefix", "offset=1 includes_header=1 adjust=1", "postgres.s2c",
	  NEED_FIXED, 5 },
};

static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static unsigned int need_of(const struct walk *w, const uint8_t *msg,
			    size_t len)
{
	unsigned int i;

	switch (w->need) {
	case NEED_FIXED:
		return w->arg;
	case NEED_HTTP2:
		/* A frame header that begins like the preface waits for 24. */
		for (i = 0; i < 9 && i < len; i++)
			if (msg[i] != (uint8_t)h2_preface[i])
				return 9;
		return 24;
	case NEED_MQTT:
		for (i = 1; i < 5 && i < len; i++)
			if (!(msg[i] & 0x80))
				return i + 1;
		return 5;
	case NEED_POSTGRES:
		return msg[0] ? 5 : 4;
	}
	return 0;
}

/* The lengths file: how many it read into *lens (malloc'ed), or -1. */
static int read_lens(const char *path, long **lens)
{
	size_t size;
	char *text = (char *)slurp(path, &size), *p, *end;
	int n = 0, cap = 0;
	long *l = NULL, *bigger;

	if (!text)
		return -1;
	for (p = text; *p; p = end) {
		long v = strtol(p, &end, 10);

		if (end == p)
			break;
		if (n == cap) {
			cap = cap ? 2 * cap : 256;
			bigger = realloc(l, cap * sizeof(*l));
			if (!bigger)
				break;
			l = bigger;
		}
		l[n++] = v;
	}
	free(text);
	*lens = l;
	return n;
}

static void test_walk(const struct walk *w)
{
	char path[512];
	size_t size, pos = 0, show, cut, need;
	uint8_t *data;
	long *lens = NULL;
	int fd, n, i, r, bad = 0, cuts = 0;

	diag_budget = 6;
	snprintf(path, sizeof(path), "%s/%s.bin", fixture_dir, w->fixture);
	data = slurp(path, &size);
	snprintf(path, sizeof(path), "%s/%s.lens", fixture_dir, w->fixture);
	n = data ? read_lens(path, &lens) : -1;
	fd = prog(w->parser, w->config);
	if (n <= 0 || fd < 0) {
		tap(false, "walk: %s [%s] on %s: no fixture or parser",
		    w->parser, w->config, w->fixture);
		goto out;
	}

	for (i = 0; i < n; i++) {
		const uint8_t *msg = data + pos;

		if (lens[i] <= 0 || pos + lens[i] > size) {
			diag("message %d: length %ld beyond the fixture", i,
			     lens[i]);
			bad++;
			break;
		}
		/* The message with whatever follows it, then alone. */
		show = size - pos < SHOW_MAX ? size - pos : SHOW_MAX;
		if (run(fd, msg, show, &r) || r != lens[i]) {
			diag("message %d at %zu: %s, reference %ld", i, pos,
			     result_str(r), lens[i]);
			bad++;
		}
		if (lens[i] <= SHOW_MAX &&
		    (run(fd, msg, lens[i], &r) || r != lens[i])) {
			diag("message %d alone: %s, reference %ld", i,
			     result_str(r), lens[i]);
			bad++;
		}
		/* Every cut through the header, and a few bytes beyond. */
		need = need_of(w, msg, size - pos);
		for (cut = 0; cut < need + 8 && cut <= show; cut++, cuts++) {
			long want = cut < need ? 0 : lens[i];

			if (run(fd, msg, cut, &r) || r != want) {
				diag("message %d cut at %zu: %s, want %ld", i,
				     cut, result_str(r), want);
				bad++;
			}
		}
		pos += lens[i];
	}
	if (pos != size) {
		diag("the lengths cover %zu of %zu bytes", pos, size);
		bad++;
	}
	tap(!bad, "walk: %s [%s] on %s: %d messages, %d cuts", w->parser,
	    w->config, w->fixture, n, cuts);
out:
	free(data);
	free(lens);
}

/* ------------------------------------------------------------------ */
/* cases: hand-made headers                                             */
/* ------------------------------------------------------------------ */

/* A message head as hex digits (blanks ignored) and the answer to it. */
struct edge {
	const char *parser;
	const char *config;
	const char *bytes;	/* hex */
	int want;
	const char *what;
};

#define H2_PREFACE_HEX	"50 52 49 20 2a 20 48 54 54 50 2f 32 2e 30 0d 0a " \
			"0d 0a 53 4d 0d 0a 0d 0a"
#define MC_HDR(magic, keylen, extlen, body) \
	magic " 00 " keylen " " extlen " 00 00 00 " body " 00 00 00 00 " \
	"00 00 00 00 00 00 00 00"
#define MC_REQ(keylen, extlen, body)	MC_HDR("80", keylen, extlen, body)

static const struct edge edges[] = {
	/* lenprefix: default 4-byte big-endian length of what follows */
	{ "lenprefix", "", "00 00 00 00", 4, "empty payload" },
	{ "lenprefix", "", "00 00 00 05", 9, "5-byte payload" },
	{ "lenprefix", "", "00 ff ff fc", 16777216, "exactly max_size" },
	{ "lenprefix", "", "00 ff ff fd", -EMSGSIZE, "max_size + 1" },
	{ "lenprefix", "", "ff ff ff ff", -EMSGSIZE, "2^32 - 1" },
	{ "lenprefix", "max_size=0", "7f ff ff fb", 0x7fffffff,
	  "no max_size: the largest int" },
	{ "lenprefix", "max_size=0", "7f ff ff fc", -EMSGSIZE,
	  "no max_size: 2^31 is too large" },
	{ "lenprefix", "max_size=0", "ff ff ff ff", -EMSGSIZE,
	  "no max_size: 2^32 + 3 does not wrap" },
	{ "lenprefix", "max_size=4294967295", "7f ff ff fc", -EMSGSIZE,
	  "max_size above 2^31 - 1 acts as 2^31 - 1" },
	{ "lenprefix", "max_size=100", "00 00 00 60", 100, "max_size 100" },
	{ "lenprefix", "max_size=100", "00 00 00 61", -EMSGSIZE,
	  "max_size 100, 101" },
	{ "lenprefix", "width=1", "05", 6, "width 1" },
	{ "lenprefix", "width=1", "ff", 256, "width 1, largest" },
	{ "lenprefix", "width=2", "01 05", 263, "width 2" },
	{ "lenprefix", "width=2 little_endian=1", "05 01", 263,
	  "width 2 little endian" },
	{ "lenprefix", "width=3", "01 00 00", 65539, "width 3" },
	{ "lenprefix", "width=3 little_endian=1", "01 00 00", 4,
	  "width 3 little endian" },
	{ "lenprefix", "width=4 little_endian=1", "05 00 00 00", 9,
	  "width 4 little endian" },
	{ "lenprefix", "width=8", "00 00 00 00 00 00 01 00", 264, "width 8" },
	{ "lenprefix", "width=8 little_endian=1", "00 01 00 00 00 00 00 00",
	  264, "width 8 little endian" },
	{ "lenprefix", "width=8 max_size=0", "00 00 00 00 7f ff ff f7",
	  0x7fffffff, "width 8, the largest int" },
	{ "lenprefix", "width=8 max_size=0", "00 00 00 01 00 00 00 00",
	  -EMSGSIZE, "width 8, 2^32" },
	{ "lenprefix", "width=8 max_size=0", "00 00 01 00 00 00 00 00",
	  -EMSGSIZE, "width 8, 2^40" },
	{ "lenprefix", "width=8 max_size=0", "ff ff ff ff ff ff ff ff",
	  -EMSGSIZE, "width 8, 2^64 - 1 does not wrap" },
	{ "lenprefix", "width=8 max_size=0 adjust=-2147483648",
	  "00 00 00 00 ff ff ff ff", -EMSGSIZE,
	  "width 8, adjust -2^31 cannot bring 2^32 back" },
	{ "lenprefix", "width=8 max_size=0 adjust=-2147483648",
	  "00 00 00 00 ff ff ff f7", 0x7fffffff,
	  "width 8, adjust -2^31" },
	{ "lenprefix", "offset=2 width=2", "aa bb 00 10", 20, "offset 2" },
	{ "lenprefix", "offset=65531 width=4", "", 0,
	  "largest offset: waits for the header" },
	{ "lenprefix", "includes_header=1", "00 00 00 04", 4,
	  "includes_header: the header alone" },
	{ "lenprefix", "includes_header=1", "00 00 00 0a", 10,
	  "includes_header" },
	{ "lenprefix", "includes_header=1", "00 00 00 03", -EPROTO,
	  "includes_header: shorter than the header" },
	{ "lenprefix", "includes_header=1", "00 00 00 00", -EPROTO,
	  "includes_header: 0" },
	{ "lenprefix", "offset=2 width=2 includes_header=1", "aa bb 00 04", 4,
	  "includes_header counts the bytes before the field" },
	{ "lenprefix", "offset=2 width=2 includes_header=1", "aa bb 00 03",
	  -EPROTO, "includes_header, offset 2: 3 is too short" },
	{ "lenprefix", "adjust=-4", "00 00 00 04", 4,
	  "adjust -4: the value counts itself" },
	{ "lenprefix", "adjust=-4", "00 00 00 03", -EPROTO,
	  "adjust -4: shorter than the header" },
	{ "lenprefix", "adjust=-5", "00 00 00 00", -EPROTO,
	  "adjust: negative length" },
	{ "lenprefix", "width=2 includes_header=1 adjust=2", "00 08", 10,
	  "adjust 2: a trailer" },
	{ "lenprefix", "width=5", "00 00 00 00 00", -EINVAL, "width 5" },
	{ "lenprefix", "width=0", "00 00 00 00", -EINVAL, "width 0" },
	{ "lenprefix", "offset=65532 width=4", "00", -EINVAL,
	  "offset + width beyond 65535" },

	/* http2 */
	{ "http2", "", "00 00 00 04 00 00 00 00 00", 9, "empty SETTINGS" },
	{ "http2", "", "00 40 00 00 00 00 00 00 01", 16393,
	  "16384-byte DATA" },
	{ "http2", "", "ff ff ff 00 00 00 00 00 01", 16777224,
	  "largest frame" },
	{ "http2", "max_size=16393", "00 40 00 00 00 00 00 00 01", 16393,
	  "max_size 9 + 16384" },
	{ "http2", "max_size=16393", "00 40 01 00 00 00 00 00 01", -EMSGSIZE,
	  "max_size 9 + 16384, one byte more" },
	{ "http2", "", H2_PREFACE_HEX, 24, "client connection preface" },
	{ "http2", "", H2_PREFACE_HEX " 00 00 00 04 00 00 00 00 00", 24,
	  "preface, then SETTINGS" },
	{ "http2", "", "50 52 49 20 2a 20 48 54 54 50 2f 32 2e 30 0d 0a "
	  "0d 0a 53 4d 0d 0a 0d 0b", 0x505249 + 9,
	  "almost the preface: a frame" },
	{ "http2", "", "50 52 58 00 00 00 00 00 00", 0x505258 + 9,
	  "begins like the preface: a frame" },
	{ "http2", "max_size=16393", "50 52 58 00 00 00 00 00 00", -EMSGSIZE,
	  "begins like the preface: too large a frame" },

	/* thrift and kafka: int32 size of what follows */
	{ "thrift", "", "00 00 00 00", 4, "empty frame" },
	{ "thrift", "", "00 fa 00 00", 16384004, "16384000, Thrift's limit" },
	{ "thrift", "", "00 fa 00 01", -EMSGSIZE, "beyond Thrift's limit" },
	{ "thrift", "", "80 00 00 00", -EPROTO, "negative size" },
	{ "thrift", "", "ff ff ff ff", -EPROTO, "size -1" },
	{ "thrift", "max_size=0", "7f ff ff fb", 0x7fffffff, "largest int" },
	{ "thrift", "max_size=0", "7f ff ff fc", -EMSGSIZE, "2^31" },
	{ "kafka", "", "00 00 00 0a", 14, "10-byte request" },
	{ "kafka", "", "06 40 00 00", 104857604, "100 MiB" },
	{ "kafka", "", "06 40 00 01", -EMSGSIZE, "above 100 MiB" },
	{ "kafka", "", "80 00 00 00", -EPROTO, "negative size" },
	{ "kafka", "", "ff ff ff fe", -EPROTO, "size -2" },
	{ "kafka", "max_size=14", "00 00 00 0a", 14, "max_size 14" },
	{ "kafka", "max_size=14", "00 00 00 0b", -EMSGSIZE, "max_size 14 + 1" },

	/* dns */
	{ "dns", "", "00 0c", 14, "bare 12-byte header" },
	{ "dns", "", "00 0b", -EPROTO, "shorter than a DNS header" },
	{ "dns", "", "00 00", -EPROTO, "length 0" },
	{ "dns", "", "ff ff", 65537, "largest" },
	{ "dns", "max_size=100", "00 62", 100, "max_size 100" },
	{ "dns", "max_size=100", "00 63", -EMSGSIZE, "max_size 100 + 1" },

	/* memcached */
	{ "memcached", "", MC_REQ("00 05", "00", "00 00 00 05"), 29,
	  "request, 5-byte key" },
	{ "memcached", "", MC_HDR("81", "00 00", "04", "00 00 00 04"), 28,
	  "response, 4-byte extras" },
	{ "memcached", "", MC_REQ("00 05", "04", "00 00 00 09"), 33,
	  "body = key + extras" },
	{ "memcached", "", MC_REQ("00 05", "04", "00 00 00 08"), -EPROTO,
	  "body shorter than key + extras" },
	{ "memcached", "", MC_REQ("ff ff", "ff", "00 01 00 fe"), 65560 + 254,
	  "largest key and extras" },
	{ "memcached", "", MC_REQ("00 00", "00", "00 ff ff e8"), 16777216,
	  "exactly max_size" },
	{ "memcached", "", MC_REQ("00 00", "00", "00 ff ff e9"), -EMSGSIZE,
	  "max_size + 1" },
	{ "memcached", "max_size=0", MC_REQ("00 00", "00", "ff ff ff ff"),
	  -EMSGSIZE, "body 2^32 - 1 does not wrap" },
	{ "memcached", "", "00", -EPROTO, "magic 0x00, at once" },
	{ "memcached", "", "82", -EPROTO, "magic 0x82" },
	{ "memcached", "", "7f", -EPROTO, "magic 0x7f" },
	{ "memcached", "", "67 65 74 20", -EPROTO, "text protocol: get" },

	/* mqtt */
	{ "mqtt", "", "c0 00", 2, "PINGREQ" },
	{ "mqtt", "", "30 7f", 129, "1-byte length, largest" },
	{ "mqtt", "", "30 80 01", 131, "2-byte length, smallest" },
	{ "mqtt", "", "30 ff 7f", 16386, "2-byte length, largest" },
	{ "mqtt", "", "30 80 80 01", 16388, "3-byte length, smallest" },
	{ "mqtt", "", "30 ff ff 7f", 2097155, "3-byte length, largest" },
	{ "mqtt", "", "30 80 80 80 01", 2097157, "4-byte length, smallest" },
	{ "mqtt", "", "30 ff ff ff 7f", 268435460, "4-byte length, largest" },
	{ "mqtt", "", "30 ff ff ff ff", -EPROTO, "a fifth length byte" },
	{ "mqtt", "", "30 80 80 80 80", -EPROTO, "a fifth length byte, 0" },
	{ "mqtt", "", "00 00", -EPROTO, "packet type 0" },
	{ "mqtt", "", "0f", -EPROTO, "packet type 0, at once" },
	{ "mqtt", "", "f0 00", 2, "packet type 15 (AUTH)" },
	{ "mqtt", "", "30 80 00", -EPROTO, "0 in two bytes (not minimal)" },
	{ "mqtt", "", "30 ff 00", -EPROTO, "127 in two bytes" },
	{ "mqtt", "", "30 80 80 80 00", -EPROTO, "0 in four bytes" },
	{ "mqtt", "strict_length=0", "30 80 00", 3, "0 in two bytes, lax" },
	{ "mqtt", "strict_length=0", "30 ff 00", 130, "127 in two bytes, lax" },
	{ "mqtt", "strict_length=0", "30 80 80 80 00", 5,
	  "0 in four bytes, lax" },
	{ "mqtt", "strict_length=0", "30 ff ff ff ff", -EPROTO,
	  "lax still refuses a fifth byte" },
	{ "mqtt", "max_size=131", "30 80 01", 131, "max_size 131" },
	{ "mqtt", "max_size=131", "30 81 01", -EMSGSIZE, "max_size 131 + 1" },

	/* postgres */
	{ "postgres", "", "51 00 00 00 04", 5, "empty Query" },
	{ "postgres", "", "5a 00 00 00 05", 6, "ReadyForQuery" },
	{ "postgres", "", "31 00 00 00 04", 5, "ParseComplete (type '1')" },
	{ "postgres", "", "51 00 00 00 03", -EPROTO, "length 3" },
	{ "postgres", "", "51 00 00 00 00", -EPROTO, "length 0" },
	{ "postgres", "", "51 3f ff ff ff", 1073741824, "exactly max_size" },
	{ "postgres", "", "51 40 00 00 00", -EMSGSIZE, "max_size + 1" },
	{ "postgres", "", "51 ff ff ff ff", -EMSGSIZE, "length 2^32 - 1" },
	{ "postgres", "max_size=0", "51 7f ff ff fe", 0x7fffffff,
	  "largest int" },
	{ "postgres", "max_size=0", "51 7f ff ff ff", -EMSGSIZE, "2^31" },
	{ "postgres", "", "21", -EPROTO, "type '!', at once" },
	{ "postgres", "", "ff 00 00 00 04", -EPROTO, "type 0xff" },
	{ "postgres", "", "00 00 00 08 04 d2 16 2f", 8, "SSLRequest" },
	{ "postgres", "", "00 00 00 08 04 d2 16 30", 8, "GSSENCRequest" },
	{ "postgres", "", "00 00 00 10 04 d2 16 2e 00 00 00 01 00 00 00 02",
	  16, "CancelRequest" },
	{ "postgres", "", "00 00 00 07", -EPROTO, "untyped, length 7" },
	{ "postgres", "", "00 00 00 00", -EPROTO, "untyped, length 0" },
	{ "postgres", "", "00 00 27 10", 10000, "untyped, max_startup" },
	{ "postgres", "", "00 00 27 11", -EMSGSIZE, "untyped, max_startup + 1" },
	{ "postgres", "max_startup=20000", "00 00 27 11", 10001,
	  "untyped, max_startup raised" },
	{ "postgres", "max_startup=4294967295 max_size=1000", "00 00 03 e9",
	  -EMSGSIZE, "untyped, above max_size" },
	{ "postgres", "max_startup=4294967295", "00 ff ff ff", 16777215,
	  "untyped, largest" },
};

/* Parses a struct edge's bytes; how many, or -1. */
static int parse_hex(const char *s, uint8_t *out, int max)
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
			continue;
		}
		if (n == max)
			return -1;
		out[n++] = hi << 4 | v;
		hi = -1;
	}
	return hi < 0 ? n : -1;
}

static void test_edge(const struct edge *e)
{
	uint8_t msg[64];
	int n, fd, r, cut, bad = 0;
	bool settled;

	diag_budget = 6;
	n = parse_hex(e->bytes, msg, sizeof(msg));
	fd = prog(e->parser, e->config);
	if (n < 0 || fd < 0) {
		tap(false, "case: %s [%s] %s: bad test or parser", e->parser,
		    e->config, e->what);
		return;
	}
	if (run(fd, msg, n, &r) || r != e->want) {
		diag("got %s, want %s", result_str(r), result_str(e->want));
		bad++;
	}
	/*
	 * Every shorter cut: 0 (need more) until the parser has seen
	 * enough, then the same answer; never a different one.  (Some
	 * cases carry bytes beyond the header, and an error in the first
	 * byte, or in the configuration, shows at once.)
	 */
	settled = false;
	for (cut = 0; cut < n; cut++) {
		if (run(fd, msg, cut, &r) || (r && r != e->want) ||
		    (settled && !r)) {
			diag("cut at %d: %s", cut, result_str(r));
			bad++;
		}
		settled = settled || r;
	}
	tap(!bad, "case: %s [%s] %s: %s", e->parser, e->config, e->what,
	    result_str(e->want));
}

/* ------------------------------------------------------------------ */
/* fuzz: random headers                                                 */
/* ------------------------------------------------------------------ */

static uint64_t rng_state = 0x6b636d7578ULL;	/* fixed: reproducible */

static uint32_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 16);
}

struct fuzz {
	const char *parser;
	const char *config;
	const char *firsts;	/* likely first bytes (hex), to reach deep */
};

static const struct fuzz fuzzes[] = {
	{ "lenprefix", "", "00" },
	{ "lenprefix", "width=8 little_endian=1 offset=3", "00" },
	{ "lenprefix", "width=3 includes_header=1 adjust=-7", "00" },
	{ "http2", "", "00 50" },
	{ "thrift", "", "00 80" },
	{ "kafka", "", "00 ff" },
	{ "dns", "", "00" },
	{ "memcached", "", "80 81" },
	{ "mqtt", "", "30 82 c0" },
	{ "mqtt", "strict_length=0", "30" },
	{ "postgres", "", "00 51 44 5a" },
};

static void test_fuzz(const struct fuzz *f)
{
	uint8_t msg[HEADER_MAX], firsts[8];
	int nfirst, fd, round, cut, i, r, settled_at, final, bad = 0;
	int lengths = 0, errors = 0;

	diag_budget = 6;
	nfirst = parse_hex(f->firsts, firsts, sizeof(firsts));
	fd = prog(f->parser, f->config);
	if (nfirst <= 0 || fd < 0) {
		tap(false, "fuzz: %s [%s]: bad test or parser", f->parser,
		    f->config);
		return;
	}
	for (round = 0; round < FUZZ_ROUNDS; round++) {
		/* Half the bytes 0, for lengths that fit; useful firsts. */
		for (i = 0; i < HEADER_MAX; i++)
			msg[i] = rng() & 1 ? rng() : 0;
		if (rng() & 1)
			msg[0] = firsts[rng() % nfirst];
		if (!strcmp(f->parser, "http2") && rng() % 4 == 0)
			memcpy(msg, h2_preface, rng() % 25);

		settled_at = -1;
		final = 0;
		for (cut = 0; cut <= HEADER_MAX; cut++) {
			if (run(fd, msg, cut, &r)) {
				bad++;
				break;
			}
			if (settled_at < 0 && r) {
				settled_at = cut;
				final = r;
			} else if (settled_at >= 0 && r != final) {
				diag("round %d: %s at %d bytes, %s at %d",
				     round, result_str(final), settled_at,
				     result_str(r), cut);
				bad++;
				break;
			}
		}
		if (settled_at < 0) {
			diag("round %d: still 0 with %d bytes", round,
			     HEADER_MAX);
			bad++;
		} else if (final > 0 && final < settled_at) {
			diag("round %d: length %d, shorter than the %d bytes it needed",
			     round, final, settled_at);
			bad++;
		}
		if (final > 0)
			lengths++;
		else
			errors++;
	}
	tap(!bad, "fuzz: %s [%s]: %d headers (%d lengths, %d errors)",
	    f->parser, f->config, FUZZ_ROUNDS, lengths, errors);
}

/* ------------------------------------------------------------------ */

#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))

/*
 * What this whole file relies on: test_run strips ETH_HLEN bytes and the
 * program sees the rest at offset 0, skb->len being its length.
 */
static bool test_run_layout_ok(void)
{
	static const uint8_t msg[] = { 0x00, 0x00, 0x00, 0x07, 0xee };
	int fd = prog("lenprefix", ""), r3 = -1, r4 = -1, r5 = -1;

	if (fd < 0) {
		tap(false, "load lenprefix from %s", obj_dir);
		return false;
	}
	run(fd, msg, 3, &r3);
	run(fd, msg, 4, &r4);
	run(fd, msg + 1, 4, &r5);
	tap(r3 == 0 && r4 == 11 && r5 == (0x000007ee + 4),
	    "test_run shows the data after %d MAC header bytes at offset 0 (%d %d %d)",
	    ETH_HLEN, r3, r4, r5);
	return r3 == 0 && r4 == 11;
}

int main(int argc, char **argv)
{
	unsigned int i;
	int fd;

	if (argc != 4) {
		fprintf(stderr, "usage: %s OBJDIR FIXTUREDIR PARSERS_TXT\n",
			argv[0]);
		return 2;
	}
	obj_dir = argv[1];
	fixture_dir = argv[2];
	list_path = argv[3];
	libbpf_set_print(libbpf_quiet);

	printf("TAP version 13\n");
	/* No right to load BPF programs: nothing here can run. */
	fd = bpf_prog_load(BPF_PROG_TYPE_SOCKET_FILTER, NULL, "GPL",
			   (struct bpf_insn[]){
				{ .code = 0xb7, .dst_reg = 0, .imm = 0 },
				{ .code = 0x95 } }, 2, NULL);
	if (fd < 0 && (errno == EPERM || errno == EACCES)) {
		printf("1..0 # SKIP loading BPF programs is not permitted (%s): run as root\n",
		       strerror(errno));
		return 0;
	}
	if (fd >= 0)
		close(fd);

	if (!test_run_layout_ok()) {
		printf("Bail out! cannot test parsers with BPF_PROG_TEST_RUN here\n");
		return 1;
	}
	test_list();
	for (i = 0; i < ARRAY_SIZE(walks); i++)
		test_walk(&walks[i]);
	for (i = 0; i < ARRAY_SIZE(edges); i++)
		test_edge(&edges[i]);
	for (i = 0; i < ARRAY_SIZE(fuzzes); i++)
		test_fuzz(&fuzzes[i]);

	printf("1..%d\n", tap_count);
	printf("# %d passed, %d failed\n", tap_count - tap_failed, tap_failed);
	for (i = 0; i < (unsigned int)nprogs; i++)
		kcmux_parser_close(&progs[i].parser);
	return tap_failed ? 1 : 0;
}
