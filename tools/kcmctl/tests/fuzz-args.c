// SPDX-License-Identifier: GPL-2.0
/*
 * fuzz-args: runs kcmctl with many malformed and random command lines and
 * checks how it fails (TAP):
 *
 *   - it always exits, with status 0, 1 or 2: never by a signal, never
 *     with a sanitizer's exit status, never hanging;
 *   - status 0: nothing on stderr; with -j, stdout is one JSON value;
 *   - status 1 or 2: exactly one line on stderr, "kcmctl: ... (EXXX)";
 *   - status 2 (a bad command line): nothing on stdout either.
 *
 *	fuzz-args KCMCTL PARSER_DIR [RANDOM_VECTORS [SEED]]
 *
 * PARSER_DIR holds testlen.bpf.o, so parser keys and values are parsed
 * against a real object.  Safe on a development host: the only pids it
 * names are its own (which has no AF_KCM socket, so attach stops at the
 * check of the descriptors) and ones that do not exist, and it never names
 * a path on a BPF file system, so nothing is ever loaded or pinned.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

#include "json_check.h"

#define FUZZ_MAX_ARGS		24
#define FUZZ_TIMEOUT_MS		20000
#define FUZZ_BATCH		250
#define FUZZ_OUT_MAX		(1 << 20)

struct fuzz {
	const char *kcmctl;
	char parser_obj[4096];
	char self_pid[16];
	char dead_pid[16];
	unsigned int seed;	/* state of rand_r() */
	unsigned int first_seed;
	int tap_n;
	int failed;
};

struct run {
	int status;
	bool timed_out;
	char *out;
	size_t out_len;
	char *err;
	size_t err_len;
};

/* --- running kcmctl --------------------------------------------------- */

static void buf_append(char **buf, size_t *len, const char *data, size_t n)
{
	char *nb;

	if (*len + n > FUZZ_OUT_MAX)
		n = FUZZ_OUT_MAX - *len;
	nb = realloc(*buf, *len + n + 1);
	if (!nb)
		abort();
	memcpy(nb + *len, data, n);
	*len += n;
	nb[*len] = '\0';
	*buf = nb;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* Reads both pipes to their end, or until the deadline. */
static bool drain(int out_fd, int err_fd, struct run *r)
{
	struct pollfd pfd[2] = {
		{ .fd = out_fd, .events = POLLIN },
		{ .fd = err_fd, .events = POLLIN },
	};
	long long deadline = now_ms() + FUZZ_TIMEOUT_MS;
	char chunk[4096];
	int open_fds = 2, i;
	ssize_t n;

	while (open_fds) {
		long long left = deadline - now_ms();

		if (left <= 0 || poll(pfd, 2, (int)left) <= 0)
			return false;
		for (i = 0; i < 2; i++) {
			if (pfd[i].fd < 0 || !pfd[i].revents)
				continue;
			n = read(pfd[i].fd, chunk, sizeof(chunk));
			if (n <= 0) {
				pfd[i].fd = -1;
				open_fds--;
			} else if (i == 0) {
				buf_append(&r->out, &r->out_len, chunk, n);
			} else {
				buf_append(&r->err, &r->err_len, chunk, n);
			}
		}
	}
	return true;
}

static void run_kcmctl(const struct fuzz *f, char **args, int nargs,
		       struct run *r)
{
	char *argv[FUZZ_MAX_ARGS + 2];
	int out[2], err[2], i;
	pid_t pid;

	memset(r, 0, sizeof(*r));
	buf_append(&r->out, &r->out_len, "", 0);
	buf_append(&r->err, &r->err_len, "", 0);
	argv[0] = (char *)f->kcmctl;
	for (i = 0; i < nargs; i++)
		argv[i + 1] = args[i];
	argv[nargs + 1] = NULL;
	if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC))
		abort();
	pid = fork();
	if (pid < 0)
		abort();
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY);

		dup2(null, 0);
		dup2(out[1], 1);
		dup2(err[1], 2);
		execv(f->kcmctl, argv);
		_exit(127);
	}
	close(out[1]);
	close(err[1]);
	r->timed_out = !drain(out[0], err[0], r);
	if (r->timed_out)
		kill(pid, SIGKILL);
	close(out[0]);
	close(err[0]);
	while (waitpid(pid, &r->status, 0) < 0 && errno == EINTR)
		;
}

static void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
}

/* --- the rules -------------------------------------------------------- */

static bool has_json_option(char **args, int nargs)
{
	int i;

	for (i = 0; i < nargs; i++) {
		if (args[i][0] != '-')
			return false;	/* options come first */
		if (!strcmp(args[i], "-j") || !strcmp(args[i], "-p") ||
		    !strcmp(args[i], "--json") || !strcmp(args[i], "--pretty"))
			return true;
		if (!strcmp(args[i], "-n") || !strcmp(args[i], "-P"))
			i++;
	}
	return false;
}

/* "kcmctl: what: strerror (ENAME)\n" and nothing more. */
static const char *check_error_line(const struct run *r)
{
	const char *nl = memchr(r->err, '\n', r->err_len);
	const char *open;

	if (!r->err_len)
		return "an error without a message";
	if (!nl || nl != r->err + r->err_len - 1)
		return "the error is not exactly one line";
	if (strlen(r->err) != r->err_len)
		return "a NUL byte on stderr";
	if (strncmp(r->err, "kcmctl: ", 8))
		return "the error does not start with 'kcmctl: '";
	open = strrchr(r->err, '(');
	if (!open || open[1] != 'E' || nl[-1] != ')' ||
	    strspn(open + 1, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") !=
	    (size_t)(nl - 1 - (open + 1)))
		return "the error does not end with '(ERRNO)'";
	return NULL;
}

static const char *check_run(const struct run *r, char **args, int nargs)
{
	int code;

	if (r->timed_out)
		return "timed out";
	if (WIFSIGNALED(r->status))
		return "killed by a signal";
	code = WEXITSTATUS(r->status);
	if (code == 0) {
		if (r->err_len)
			return "success with output on stderr";
		if (has_json_option(args, nargs) && r->out_len &&
		    strncmp(r->out, "Usage:", 6) &&
		    json_check(r->out, NULL))
			return "-j output is not one JSON value";
		return NULL;
	}
	if (code != 1 && code != 2)
		return "exit status other than 0, 1, 2 (a sanitizer?)";
	if (code == 2 && r->out_len)
		return "a usage error after output on stdout";
	return check_error_line(r);
}

/* --- TAP -------------------------------------------------------------- */

static void print_escaped(FILE *out, const char *s)
{
	size_t n = 0;

	for (; *s && n < 120; s++, n++) {
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			fprintf(out, "\\x%02x", (unsigned char)*s);
		else
			fputc(*s, out);
	}
	if (*s)
		fprintf(out, "...(%zu bytes)", n + strlen(s));
}

static void print_vector(char **args, int nargs)
{
	int i;

	printf("#   kcmctl");
	for (i = 0; i < nargs; i++) {
		printf(" '");
		print_escaped(stdout, args[i]);
		printf("'");
	}
	printf("\n");
}

/* Runs one vector; prints why it failed as TAP comments. */
static bool fuzz_one(const struct fuzz *f, char **args, int nargs)
{
	const char *why;
	struct run r;

	run_kcmctl(f, args, nargs, &r);
	why = check_run(&r, args, nargs);
	if (why) {
		printf("# FAIL: %s (status 0x%x)\n", why, r.status);
		print_vector(args, nargs);
		printf("#   stderr: ");
		print_escaped(stdout, r.err);
		printf("\n");
	}
	run_free(&r);
	return !why;
}

static void tap(struct fuzz *f, bool ok, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void tap(struct fuzz *f, bool ok, const char *fmt, ...)
{
	va_list ap;

	printf("%sok %d - ", ok ? "" : "not ", ++f->tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (!ok)
		f->failed++;
}

/* --- hand-written vectors --------------------------------------------- */

#define V(...)	{ __VA_ARGS__, NULL }
#define SELF	"@self"		/* replaced by our pid */
#define DEAD	"@dead"		/* by a pid that has exited */
#define OBJ	"@obj"		/* by the test parser object */
#define LONG	"@long"		/* by a 100000-byte argument */

static const char *const curated[][FUZZ_MAX_ARGS + 1] = {
	V(""), V("", ""), V("-"), V("--"), V("-x"), V("--bogus"), V("-n"),
	V("-P"), V("-n", ""), V("-n", "nonexistent-netns", "show"),
	V("-n", "/dev/null", "show"), V("-n", LONG, "show"), V("-P", "", "parser"),
	V("s"), V("sh", "bogus"), V("st", "x"), V("zzz"), V(LONG),
	V("p", "l"), V("parser", ""), V("parser", "lo"), V("parser", "load"),
	V("parser", "load", "testlen"), V("parser", "load", "testlen", "pin"),
	V("parser", "load", "pinned", "/x", "pin", "/y"),
	V("parser", "load", "testlen", "offset"),
	V("parser", "load", "testlen", "offset", "-1", "pin", "/x"),
	V("parser", "load", "testlen", "offset", "4294967296", "pin", "/x"),
	V("parser", "load", "testlen", "extra", "-2147483649", "pin", "/x"),
	V("parser", "load", "testlen", "max", "18446744073709551616", "pin", "/x"),
	V("parser", "load", "testlen", "max", "1", "max", "2", "pin", "/x"),
	V("parser", "load", "testlen", "bogus", "1", "pin", "/x"),
	V("parser", "load", "testlen", "", "", "pin", "/x"),
	V("parser", "load", "../testlen", "pin", "/x"),
	V("parser", "load", "testlen", "pin", "/nonexistent-dir/x"),
	V("parser", "load", "testlen", "pin", ""),
	V("parser", "load", "testlen", "pin", "/"),
	V("parser", "load", "obj", "/dev/null", "pin", "/x"),
	V("parser", "load", "obj", OBJ, "prog", "nosuch", "pin", "/x"),
	V("parser", "load", "obj", OBJ, "prog"), V("parser", "list", "nosuch"),
	V("parser", "list", "testlen", "extra"), V("parser", "list", "/etc"),
	V("parser", "show", "/nonexistent"), V("parser", "show", "/proc/self/exe"),
	V("parser", "show", "a", "b"),
	V("attach"), V("attach", "pid"), V("attach", "pid", "x"),
	V("attach", "pid", "0", "kcm", "0", "tcp", "1", "framing"),
	V("attach", "pid", "-5", "kcm", "0", "tcp", "1", "framing"),
	V("attach", "pid", DEAD, "kcm", "0", "tcp", "1", "framing"),
	V("attach", "pid", SELF, "kcm", "0", "tcp", "1"),
	V("attach", "pid", SELF, "kcm", "0", "tcp", "1", "framing"),
	V("attach", "pid", SELF, "kcm", "999999", "tcp", "1", "framing"),
	V("attach", "pid", SELF, "kcm", "0", "kcm", "1", "tcp", "1", "framing"),
	V("attach", "p", SELF, "kcm", "0", "tcp", "1", "framing"),
	V("attach", "pid", SELF, "kcm", "0", "tcp", "1", "framing", "width", "5"),
	V("attach", "pid", SELF, "kcm", "0", "tcp", "1", "framing", "width", "0"),
	V("attach", "pid", SELF, "kcm", "0", "tcp", "1", "framing", "offset",
	  "65535"),
	V("attach", "pid", SELF, "kcm", "0", "tcp", "1", "framing", "adjust",
	  "2147483648"),
	V("attach", "pid", SELF, "kcm", "0", "tcp", "1", "framing", "endian",
	  "middle"),
	V("attach", "pid", SELF, "kcm", "0", "tcp", "1", "framing", "header"),
	V("attach", "pid", SELF, "kcm", "0", "tcp", "1", "framing", "max", "-1"),
	V("attach", "pid", SELF, "kcm", "0", "tcp", "1", "framing", "e", "l",
	  "h", "e", "o", "3", "w", "1", "a", "-3", "m", "9"),
	V("attach", "pid", SELF, "kcm", "0", "tcp", "1", "parser"),
	V("attach", "pid", SELF, "kcm", "0", "tcp", "1", "parser", "nosuch"),
	V("attach", "pid", SELF, "kcm", "0", "tcp", "1", "parser", "testlen",
	  "offset"),
	V("attach", "pid", SELF, "kcm", "0", "tcp", "1", "parser", "testlen",
	  "extra", "0x80000000"),
	V("attach", "pid", SELF, "kcm", "0", "tcp", "1", "parser", "pinned"),
	V("attach", "pid", SELF, "kcm", "0", "tcp", "1", "parser", "pinned",
	  "/x", "k", "v"),
	V("attach", "pid", SELF, "kcm", "0", "tcp", "1", "parser", "obj", OBJ,
	  "prog", "testlen", "max", "7"),
	V("unattach"), V("unattach", "pid", SELF, "kcm", "0", "tcp", "1", "x"),
	V("unattach", "pid", SELF, "kcm", "0", "tcp", "1", "parser", "x"),
	V("unattach", "pid", DEAD, "kcm", "0", "tcp", "1"),
	V("show", "source"), V("show", "source", "x"), V("show", "source", ""),
	V("show", "source", "proc", "source", "netlink", "x"),
	V("-j", "show", "source", "proc"), V("-p", "stats"), V("stats", "x"),
	V("monitor", "count"), V("monitor", "count", "0"),
	V("monitor", "count", "x"), V("monitor", "bogus"),
	V("version", "x"), V("-j", "version"), V("-p", "v"), V("-V"), V("-h"),
	V("help"), V("parser", "help"), V("attach", "help"), V("show", "help"),
	V("-j", "parser", "list"), V("-p", "parser", "list", "testlen"),
};

/* The placeholders of a curated vector made real. */
static const char *resolve(const struct fuzz *f, const char *arg,
			   char *long_arg)
{
	if (!strcmp(arg, SELF))
		return f->self_pid;
	if (!strcmp(arg, DEAD))
		return f->dead_pid;
	if (!strcmp(arg, OBJ))
		return f->parser_obj;
	if (!strcmp(arg, LONG))
		return long_arg;
	return arg;
}

static void run_curated(struct fuzz *f, char *long_arg)
{
	char *args[FUZZ_MAX_ARGS];
	size_t i;
	int n;

	for (i = 0; i < sizeof(curated) / sizeof(curated[0]); i++) {
		for (n = 0; curated[i][n]; n++)
			args[n] = (char *)resolve(f, curated[i][n], long_arg);
		tap(f, fuzz_one(f, args, n), "vector %zu: kcmctl %s%s%s %s",
		    i, n ? curated[i][0] : "", n > 1 ? " " : "",
		    n > 1 ? curated[i][1] : "", n > 2 ? "..." : "");
	}
}

/* --- random vectors --------------------------------------------------- */

static const char *const words[] = {
	"parser", "attach", "unattach", "show", "stats", "monitor", "version",
	"help", "list", "load", "pid", "kcm", "tcp", "framing", "pinned", "obj",
	"prog", "pin", "offset", "width", "endian", "adjust", "header", "max",
	"source", "count", "big", "little", "included", "excluded", "auto",
	"netlink", "proc", "testlen", "extra", "-j", "-p", "-n", "-P", "-d",
	"--json", "--netns=x", "--parser-dir", "0", "1", "2", "3", "4", "8",
	"-1", "65535", "65536", "4294967295", "4294967296",
	"18446744073709551615", "18446744073709551616", "-9223372036854775809",
	"99999999999999999999999999999", "0x10", "0x", "0xg", "1e3", " 1",
	"+5", "-", "--", "", "/", ".", "..", "/dev/null", "/nonexistent/x",
	"/proc/self/ns/net", "%s%n%x%p", "a\nb", "\x1b[31mred", "\xff\xfe",
	"caf\xc3\xa9", SELF, DEAD, OBJ,
};

static const char *const templates[][12] = {
	{ "parser", "list", "testlen" },
	{ "parser", "load", "testlen", "offset", "4", "pin", "/nonexistent/x" },
	{ "parser", "show", "/nonexistent" },
	{ "attach", "pid", SELF, "kcm", "0", "tcp", "1", "parser", "testlen",
	  "extra", "8" },
	{ "attach", "pid", SELF, "kcm", "0", "tcp", "1", "framing", "offset",
	  "2", "width", "2" },
	{ "attach", "pid", SELF, "kcm", "0", "tcp", "1", "parser", "obj", OBJ,
	  "prog", "testlen" },
	{ "attach", "pid", SELF, "kcm", "2", "tcp", "1", "parser", "pinned",
	  "/nonexistent" },
	{ "unattach", "pid", SELF, "kcm", "0", "tcp", "1" },
	{ "-j", "show", "source", "proc" },
	{ "stats" },
	{ "monitor", "count", "1" },
	{ "-n", "/proc/self/ns/net", "show" },
};

/* A random string of bytes 1..255 (argv cannot hold NUL). */
static char *random_bytes(unsigned int *seed)
{
	size_t n = rand_r(seed) % 24 + 1, i;
	char *s = malloc(n + 1);

	if (!s)
		abort();
	for (i = 0; i < n; i++)
		s[i] = (char)(rand_r(seed) % 255 + 1);
	s[n] = '\0';
	return s;
}

static const char *random_word(unsigned int *seed)
{
	return words[rand_r(seed) % (sizeof(words) / sizeof(words[0]))];
}

/*
 * A template with a few mutations (a word replaced, dropped, inserted,
 * cut to a prefix), or words drawn at random.  Strings the vector owns
 * are in owned[] (freed by the caller).
 */
static int random_vector(struct fuzz *f, const char **args, char **owned,
			 int *nowned)
{
	unsigned int *seed = &f->seed;
	int n = 0, i, m, at;
	const char *const *t;
	char *cut;

	if (rand_r(seed) % 3) {
		t = templates[rand_r(seed) %
			      (sizeof(templates) / sizeof(templates[0]))];
		while (n < 12 && t[n])
			args[n] = t[n], n++;
	} else {
		m = rand_r(seed) % 9;
		while (n < m)
			args[n++] = random_word(seed);
	}
	for (m = rand_r(seed) % 4; m > 0; m--) {
		at = n ? rand_r(seed) % n : 0;
		switch (rand_r(seed) % 5) {
		case 0:
			if (n)
				args[at] = random_word(seed);
			break;
		case 1:
			if (n) {
				for (i = at; i < n - 1; i++)
					args[i] = args[i + 1];
				n--;
			}
			break;
		case 2:
			if (n < FUZZ_MAX_ARGS) {
				for (i = n; i > at; i--)
					args[i] = args[i - 1];
				args[at] = random_word(seed);
				n++;
			}
			break;
		case 3:
			if (n && args[at][0]) {
				cut = strndup(args[at],
					      rand_r(seed) % strlen(args[at]));
				if (!cut)
					abort();
				owned[(*nowned)++] = cut;
				args[at] = cut;
			}
			break;
		default:
			if (n) {
				owned[*nowned] = random_bytes(seed);
				args[at] = owned[(*nowned)++];
			}
			break;
		}
	}
	return n;
}

static void run_random(struct fuzz *f, int count, char *long_arg)
{
	const char *args[FUZZ_MAX_ARGS];
	char *owned[8], *real[FUZZ_MAX_ARGS];
	int i, j, n, nowned, bad = 0, batch = 0;

	for (i = 0; i < count; i++) {
		nowned = 0;
		n = random_vector(f, args, owned, &nowned);
		for (j = 0; j < n; j++)
			real[j] = (char *)resolve(f, args[j], long_arg);
		if (!fuzz_one(f, real, n))
			bad++;
		for (j = 0; j < nowned; j++)
			free(owned[j]);
		if ((i + 1) % FUZZ_BATCH == 0 || i + 1 == count) {
			tap(f, !bad, "random vectors %d..%d (seed %u)%s",
			    batch * FUZZ_BATCH, i, f->first_seed,
			    bad ? ": failures above" : "");
			batch++;
			bad = 0;
		}
	}
}

/* --- main ------------------------------------------------------------- */

static void setup(struct fuzz *f, const char *parser_dir)
{
	pid_t pid;

	snprintf(f->parser_obj, sizeof(f->parser_obj), "%s/testlen.bpf.o",
		 parser_dir);
	snprintf(f->self_pid, sizeof(f->self_pid), "%d", (int)getpid());
	/* A pid that existed and is gone (and reaped). */
	pid = fork();
	if (pid == 0)
		_exit(0);
	waitpid(pid, NULL, 0);
	snprintf(f->dead_pid, sizeof(f->dead_pid), "%d", (int)pid);
	/* Parser names resolve in the test's directory. */
	setenv("KCMUX_PARSER_DIR", parser_dir, 1);
}

int main(int argc, char **argv)
{
	struct fuzz f = { 0 };
	int count = 3000;
	char *long_arg;

	if (argc < 3 || argc > 5) {
		fprintf(stderr, "usage: %s KCMCTL PARSER_DIR [RANDOM_VECTORS [SEED]]\n",
			argv[0]);
		return 2;
	}
	f.kcmctl = argv[1];
	f.seed = argc > 4 ? (unsigned int)strtoul(argv[4], NULL, 0) : 20240601;
	f.first_seed = f.seed;
	if (argc > 3)
		count = atoi(argv[3]);
	setup(&f, argv[2]);
	if (access(f.parser_obj, R_OK)) {
		printf("Bail out! %s: %s\n", f.parser_obj, strerror(errno));
		return 1;
	}
	long_arg = malloc(100001);
	if (!long_arg)
		abort();
	memset(long_arg, 'A', 100000);
	long_arg[100000] = '\0';

	printf("# kcmctl: %s\n", f.kcmctl);
	run_curated(&f, long_arg);
	run_random(&f, count, long_arg);
	printf("1..%d\n", f.tap_n);
	free(long_arg);
	return f.failed ? 1 : 0;
}
