// SPDX-License-Identifier: GPL-2.0
/*
 * kcm_kcmctl: the kcmctl tool (tools/kcmctl) against a live module.
 *
 * A separate process, the owner, has a multiplexor (one KCM socket) and
 * two TCP connections in a network namespace of its own, as a server
 * would.  The tests run bin/kcmctl (next to this binary) to attach the
 * owner's TCP sockets by pid and descriptor number, check that messages
 * then flow, unattach them, and read show, stats and monitor of the
 * owner's namespace (-n /proc/PID/ns/net) in text and JSON.  Every error
 * kcmctl reports must be one line on stderr with a non-zero exit status.
 *
 * To move messages the test takes its own copies of the owner's sockets
 * (pidfd_getfd), exactly as kcmctl does.
 *
 * The parser: lenprefix from the project's parser objects (bpf/ next to
 * this binary) if they were built, else bin/parsers/testlen.bpf.o, a
 * parser kcmctl's own build provides.  Built-in framing, netlink (show
 * by netlink, monitor) and psock ids need kcmux: on the in-tree kcm.ko
 * those tests skip, or check that kcmctl says why it cannot.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "kcm_test.h"
#include "../tools/kcmctl/tests/json_check.h"
/* See kcm_ctl.c: a false positive on the harness's own setjmp wrapper. */
#pragma GCC diagnostic ignored "-Wclobbered"
#include "kselftest_harness.h"

#define KT_ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#define KT_OUT_MAX		(256 * 1024)
#define KT_RUN_TIMEOUT_MS	60000
#define KT_MAX_ARGS		40
#define KT_NR_TCP		2

/* --- where things are -------------------------------------------------- */

#define KT_DIR_MAX	1024

struct kt_paths {
	char dir[KT_DIR_MAX];		/* of this binary */
	char kcmctl[PATH_MAX];
	char parser_dir[PATH_MAX];	/* for "parser NAME" */
	char parser_name[32];		/* lenprefix or testlen */
	char testlen_dir[KT_DIR_MAX + 16];	/* bin/parsers */
	char testlen_obj[PATH_MAX];
};

static void kt_paths(struct kt_paths *p)
{
	char exe[KT_DIR_MAX], probe[KT_DIR_MAX + 32];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	memset(p, 0, sizeof(*p));
	exe[n > 0 ? n : 0] = '\0';
	snprintf(p->dir, sizeof(p->dir), "%s", dirname(exe));
	snprintf(p->kcmctl, sizeof(p->kcmctl), "%s/bin/kcmctl", p->dir);
	snprintf(p->testlen_dir, sizeof(p->testlen_dir), "%s/bin/parsers",
		 p->dir);
	snprintf(p->testlen_obj, sizeof(p->testlen_obj), "%s/testlen.bpf.o",
		 p->testlen_dir);
	snprintf(probe, sizeof(probe), "%s/bpf/lenprefix.bpf.o", p->dir);
	if (!access(probe, R_OK)) {
		snprintf(p->parser_dir, sizeof(p->parser_dir), "%s/bpf", p->dir);
		snprintf(p->parser_name, sizeof(p->parser_name), "lenprefix");
	} else {
		snprintf(p->parser_dir, sizeof(p->parser_dir), "%s",
			 p->testlen_dir);
		snprintf(p->parser_name, sizeof(p->parser_name), "testlen");
	}
}

/*
 * The parser and the keys that frame the test messages (a 4-byte length
 * of the payload, then 4 more header bytes): lenprefix counts the field
 * itself, so adjust 4 adds the rest; testlen's default extra is 8.
 */
static int kt_parser_args(const struct kt_paths *p, const char **argv)
{
	int n = 0;

	argv[n++] = p->parser_name;
	if (!strcmp(p->parser_name, "lenprefix")) {
		argv[n++] = "adjust";
		argv[n++] = "4";
	}
	return n;
}

/* --- running kcmctl ------------------------------------------------------ */

struct kt_run {
	int status;		/* exit status, or 128 + signal, -1: timeout */
	char out[KT_OUT_MAX];
	size_t out_len;
	char err[KT_OUT_MAX];
	size_t err_len;
};

/* Runs argv (argv[0] is kcmctl's path) as user uid if uid >= 0. */
static pid_t kt_spawn(char *const *argv, int uid, int *out_fd, int *err_fd)
{
	int out[2], err[2];
	pid_t pid;

	if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC))
		return -1;
	pid = fork();
	if (pid == 0) {
		dup2(out[1], 1);
		dup2(err[1], 2);
		if (uid >= 0 && (setgroups(0, NULL) || setgid(uid) ||
				 setuid(uid)))
			_exit(126);
		execv(argv[0], argv);
		_exit(127);
	}
	close(out[1]);
	close(err[1]);
	*out_fd = out[0];
	*err_fd = err[0];
	return pid;
}

static void kt_append(char *buf, size_t *len, const char *data, size_t n)
{
	if (*len + n >= KT_OUT_MAX)
		n = KT_OUT_MAX - 1 - *len;
	memcpy(buf + *len, data, n);
	*len += n;
	buf[*len] = '\0';
}

static void kt_collect(struct kt_run *r, pid_t pid, int out_fd, int err_fd)
{
	struct pollfd pfd[2] = {
		{ .fd = out_fd, .events = POLLIN },
		{ .fd = err_fd, .events = POLLIN },
	};
	long long deadline = kcm_now_ms() + KT_RUN_TIMEOUT_MS;
	int open_fds = 2, status, i;
	char chunk[4096];
	ssize_t n;

	while (open_fds && kcm_now_ms() < deadline) {
		if (poll(pfd, 2, (int)(deadline - kcm_now_ms())) <= 0)
			break;
		for (i = 0; i < 2; i++) {
			if (pfd[i].fd < 0 || !pfd[i].revents)
				continue;
			n = read(pfd[i].fd, chunk, sizeof(chunk));
			if (n <= 0) {
				pfd[i].fd = -1;
				open_fds--;
			} else if (i == 0) {
				kt_append(r->out, &r->out_len, chunk, n);
			} else {
				kt_append(r->err, &r->err_len, chunk, n);
			}
		}
	}
	if (open_fds)
		kill(pid, SIGKILL);
	close(out_fd);
	close(err_fd);
	waitpid(pid, &status, 0);
	if (open_fds)
		r->status = -1;
	else if (WIFSIGNALED(status))
		r->status = 128 + WTERMSIG(status);
	else
		r->status = WEXITSTATUS(status);
}

/* kcmctl with the NULL-terminated arguments after kt, as user uid. */
static struct kt_run *kt_vrun(const struct kt_paths *p, int uid, va_list ap)
{
	static struct kt_run r;
	char *argv[KT_MAX_ARGS + 2];
	const char *arg;
	int n = 0, out_fd, err_fd;
	pid_t pid;

	memset(&r, 0, sizeof(r));
	argv[n++] = (char *)p->kcmctl;
	while ((arg = va_arg(ap, const char *)) && n <= KT_MAX_ARGS)
		argv[n++] = (char *)arg;
	argv[n] = NULL;
	fprintf(stderr, "#   $");
	for (int i = 1; i < n; i++)
		fprintf(stderr, " %s", argv[i]);
	fprintf(stderr, "\n");
	pid = kt_spawn(argv, uid, &out_fd, &err_fd);
	if (pid < 0) {
		r.status = -1;
		return &r;
	}
	kt_collect(&r, pid, out_fd, err_fd);
	if (r.err_len)
		fprintf(stderr, "#   stderr: %s%s", r.err,
			r.err[r.err_len - 1] == '\n' ? "" : "\n");
	return &r;
}

static struct kt_run *kt_run(const struct kt_paths *p, ...)
{
	struct kt_run *r;
	va_list ap;

	va_start(ap, p);
	r = kt_vrun(p, -1, ap);
	va_end(ap);
	return r;
}

static struct kt_run *kt_run_as(const struct kt_paths *p, int uid, ...)
{
	struct kt_run *r;
	va_list ap;

	va_start(ap, uid);
	r = kt_vrun(p, uid, ap);
	va_end(ap);
	return r;
}

/* kcmctl with an argument vector (argv[0] is ignored). */
static struct kt_run *kt_run_argv(const struct kt_paths *p, const char **v,
				  int n)
{
	const char *a[KT_MAX_ARGS + 1] = { NULL };
	int i;

	for (i = 0; i < n && i < KT_MAX_ARGS; i++)
		a[i] = v[i];
	return kt_run(p, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8],
		      a[9], a[10], a[11], a[12], a[13], a[14], a[15], a[16],
		      a[17], a[18], a[19], a[20], a[21], a[22], a[23], NULL);
}

/* Success: status 0, nothing on stderr.  NULL, or what is wrong. */
static const char *kt_ok(const struct kt_run *r)
{
	if (r->status)
		return "non-zero exit status";
	if (r->err_len)
		return "output on stderr";
	return NULL;
}

/*
 * A reported error: status 1 or 2 (usage), exactly one stderr line
 * "kcmctl: ... (ERRNO)" naming errname.  NULL, or what is wrong.
 */
static const char *kt_failed(const struct kt_run *r, int status,
			     const char *errname)
{
	char tail[64];
	const char *nl = memchr(r->err, '\n', r->err_len);

	if (r->status != status)
		return status == 2 ? "exit status is not 2" :
				     "exit status is not 1";
	if (!nl || nl != r->err + r->err_len - 1)
		return "the error is not exactly one line";
	if (strncmp(r->err, "kcmctl: ", 8))
		return "the error does not start with 'kcmctl: '";
	snprintf(tail, sizeof(tail), " (%s)\n", errname);
	if (r->err_len < strlen(tail) ||
	    strcmp(r->err + r->err_len - strlen(tail), tail))
		return "the error does not end with the expected (ERRNO)";
	return NULL;
}

static const char *kt_json(const struct kt_run *r)
{
	size_t at = 0;
	const char *why = json_check(r->out, &at);

	if (why)
		fprintf(stderr, "# JSON error at %zu: %s: %.80s\n", at, why,
			r->out + at);
	return why;
}

/* The unsigned number after key in text (e.g. "\"psock_id\":"), or -1. */
static long long kt_number_after(const char *text, const char *key)
{
	const char *p = strstr(text, key);

	if (!p)
		return -1;
	p += strlen(key);
	if (*p < '0' || *p > '9')
		return -1;
	return strtoll(p, NULL, 10);
}

/* --- the owner of the sockets -------------------------------------------- */

struct kt_fds {
	int kcm;		/* the KCM socket */
	int tcp[KT_NR_TCP];	/* accepted ends, to be attached */
	int peer[KT_NR_TCP];	/* their peers */
	int pipe;		/* a descriptor that is not a socket */
	int err;		/* setup failure, -errno */
};

struct kt_owner {
	pid_t pid;
	int ctl;		/* closing it ends the owner */
	struct kt_fds num;	/* descriptor numbers in the owner */
	struct kt_fds fd;	/* our copies */
	char netns[64];		/* /proc/PID/ns/net */
	char pid_str[16];
	char kcm_str[16];
	char tcp_str[KT_NR_TCP][16];
	char pipe_str[16];
};

static void kt_owner_main(int report, int ctl)
{
	struct kt_fds f = { .err = 0 };
	int i, p[2];
	char c;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	f.err = kcm_netns_enter();
	if (!f.err) {
		f.kcm = kcm_socket(SOCK_DGRAM);
		if (f.kcm < 0)
			f.err = f.kcm;
	}
	for (i = 0; !f.err && i < KT_NR_TCP; i++) {
		int pair[2] = { -1, -1 };

		f.err = kcm_tcp_pair_nodelay(i ? AF_INET6 : AF_INET, pair);
		f.peer[i] = pair[0];
		f.tcp[i] = pair[1];
	}
	if (!f.err && pipe(p))
		f.err = -errno;
	f.pipe = p[0];
	if (write(report, &f, sizeof(f)) != sizeof(f))
		_exit(1);
	while (read(ctl, &c, 1) < 0 && errno == EINTR)
		;
	_exit(0);
}

static int kt_take(pid_t pid, int num)
{
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0), fd;

	if (pidfd < 0)
		return -errno;
	fd = (int)syscall(SYS_pidfd_getfd, pidfd, num, 0);
	fd = fd < 0 ? -errno : fd;
	close(pidfd);
	return fd;
}

static int kt_owner_start(struct kt_owner *o)
{
	int report[2], ctl[2], i;

	memset(o, 0, sizeof(*o));
	if (pipe2(report, O_CLOEXEC) || pipe2(ctl, O_CLOEXEC))
		return -errno;
	o->pid = fork();
	if (o->pid < 0)
		return -errno;
	if (o->pid == 0) {
		close(ctl[1]);
		kt_owner_main(report[1], ctl[0]);
	}
	close(report[1]);
	close(ctl[0]);
	o->ctl = ctl[1];
	if (read(report[0], &o->num, sizeof(o->num)) != sizeof(o->num))
		o->num.err = -EIO;
	close(report[0]);
	if (o->num.err)
		return o->num.err;
	o->fd.kcm = kt_take(o->pid, o->num.kcm);
	for (i = 0; i < KT_NR_TCP; i++) {
		o->fd.tcp[i] = kt_take(o->pid, o->num.tcp[i]);
		o->fd.peer[i] = kt_take(o->pid, o->num.peer[i]);
		snprintf(o->tcp_str[i], sizeof(o->tcp_str[i]), "%d",
			 o->num.tcp[i]);
		if (o->fd.tcp[i] < 0 || o->fd.peer[i] < 0)
			return -EBADF;
	}
	snprintf(o->netns, sizeof(o->netns), "/proc/%d/ns/net", o->pid);
	snprintf(o->pid_str, sizeof(o->pid_str), "%d", o->pid);
	snprintf(o->kcm_str, sizeof(o->kcm_str), "%d", o->num.kcm);
	snprintf(o->pipe_str, sizeof(o->pipe_str), "%d", o->num.pipe);
	kcm_set_timeo(o->fd.kcm, SO_SNDTIMEO, KCM_WAIT_MS);
	return o->fd.kcm < 0 ? o->fd.kcm : 0;
}

static void kt_owner_stop(struct kt_owner *o)
{
	int i;

	kcm_close_fd(&o->fd.kcm);
	for (i = 0; i < KT_NR_TCP; i++) {
		kcm_close_fd(&o->fd.tcp[i]);
		kcm_close_fd(&o->fd.peer[i]);
	}
	if (o->pid > 0) {
		close(o->ctl);
		waitpid(o->pid, NULL, 0);
		o->pid = 0;
	}
}

/* --- messages -------------------------------------------------------------- */

/* A message from TCP peer i arrives whole on the KCM socket. */
static bool kt_peer_to_kcm(struct kt_owner *o, int i, uint32_t hdr,
			   uint32_t len)
{
	static uint8_t buf[KCM_TEST_HDR_LEN + 4096];
	struct pollfd pfd = { .fd = o->fd.kcm, .events = POLLIN };
	ssize_t n;

	n = kcm_test_msg(buf, hdr, len);
	if (kcm_send_all(o->fd.peer[i], buf, n))
		return false;
	if (poll(&pfd, 1, KCM_WAIT_MS) != 1)
		return false;
	n = recv(o->fd.kcm, buf, sizeof(buf), MSG_DONTWAIT);
	return kcm_test_msg_ok(buf, n, hdr, len);
}

/* A message sent on the KCM socket arrives whole at TCP peer i. */
static bool kt_kcm_to_peer(struct kt_owner *o, int i, uint32_t hdr,
			   uint32_t len)
{
	static uint8_t buf[KCM_TEST_HDR_LEN + 4096];
	ssize_t n = kcm_test_msg(buf, hdr, len);
	const char *why;

	if (send(o->fd.kcm, buf, n, 0) != n)
		return false;
	why = kcm_read_msg(o->fd.peer[i], hdr, len, KCM_WAIT_MS);
	if (why)
		fprintf(stderr, "# %s\n", why);
	return !why;
}

/* Unattached: a message from peer i stays in the owner's TCP socket. */
static bool kt_stays_in_tcp(struct kt_owner *o, int i, uint32_t hdr)
{
	static uint8_t buf[KCM_TEST_HDR_LEN + 16];
	ssize_t n = kcm_test_msg(buf, hdr, 16);

	if (kcm_send_all(o->fd.peer[i], buf, n))
		return false;
	return !kcm_read_msg(o->fd.tcp[i], hdr, 16, KCM_WAIT_MS) &&
	       kcm_quiet(o->fd.kcm, KCM_QUIET_MS);
}

/* --- kcmctl attach / unattach ------------------------------------------- */

/* kcmctl [-j] attach ... parser <the parser>: the run. */
static struct kt_run *kt_attach_parser(const struct kt_paths *p,
				       struct kt_owner *o, int i, bool json)
{
	const char *v[KT_MAX_ARGS];
	int n = 0;

	if (json)
		v[n++] = "-j";
	v[n++] = "-P";
	v[n++] = p->parser_dir;
	v[n++] = "attach";
	v[n++] = "pid";
	v[n++] = o->pid_str;
	v[n++] = "kcm";
	v[n++] = o->kcm_str;
	v[n++] = "tcp";
	v[n++] = o->tcp_str[i];
	v[n++] = "parser";
	n += kt_parser_args(p, v + n);
	return kt_run_argv(p, v, n);
}

static struct kt_run *kt_unattach(const struct kt_paths *p, struct kt_owner *o,
				  int i)
{
	return kt_run(p, "unattach", "pid", o->pid_str, "kcm", o->kcm_str,
		      "tcp", o->tcp_str[i], NULL);
}

/* The psock id kcmctl printed (text or JSON), -1 if none. */
static long long kt_psock_id(const struct kt_run *r)
{
	long long id = kt_number_after(r->out, "\"psock_id\":");

	return id >= 0 ? id : kt_number_after(r->out, "attached psock ");
}

FIXTURE(kcmctl) {
	struct kt_paths p;
	struct kt_owner o;
};

FIXTURE_SETUP(kcmctl)
{
	int err;

	kt_paths(&self->p);
	if (access(self->p.kcmctl, X_OK))
		SKIP(return, "bin/kcmctl not built: %s", strerror(errno));
	err = kt_owner_start(&self->o);
	ASSERT_EQ(0, err) TH_LOG("owner: %s", strerror(-err));
	TH_LOG("parser: %s from %s", self->p.parser_name, self->p.parser_dir);
}

FIXTURE_TEARDOWN(kcmctl)
{
	kt_owner_stop(&self->o);
}

/* --- attach and unattach ------------------------------------------------- */

/* attach ... parser NAME: messages flow both ways; unattach gives it back. */
TEST_F(kcmctl, attach_parser_messages_flow)
{
	struct kt_run *r;
	long long id;

	r = kt_attach_parser(&self->p, &self->o, 0, false);
	ASSERT_EQ(NULL, kt_ok(r)) TH_LOG("%s", r->err);
	ASSERT_NE(NULL, strstr(r->out, "attached")) TH_LOG("%s", r->out);
	ASSERT_NE(NULL, strstr(r->out, "parser bpf prog_id "));
	id = kt_psock_id(r);
	if (kcmux_is_reference()) {
		ASSERT_EQ(-1, id) TH_LOG("in-tree kcm has no psock ids");
	} else {
		ASSERT_LT(0, id) TH_LOG("%s", r->out);
	}

	ASSERT_TRUE(kt_peer_to_kcm(&self->o, 0, 1, 100));
	ASSERT_TRUE(kt_peer_to_kcm(&self->o, 0, 2, 0));
	ASSERT_TRUE(kt_kcm_to_peer(&self->o, 0, 3, 200));

	r = kt_unattach(&self->p, &self->o, 0);
	ASSERT_EQ(NULL, kt_ok(r));
	ASSERT_NE(NULL, strstr(r->out, "unattached"));
	if (!kcmux_is_reference()) {
		ASSERT_EQ(id, kt_number_after(r->out, "unattached psock "));
	}
	ASSERT_TRUE(kt_stays_in_tcp(&self->o, 0, 4));
}

/* -j attach: one JSON object with the psock id and the program id. */
TEST_F(kcmctl, attach_json)
{
	struct kt_run *r = kt_attach_parser(&self->p, &self->o, 1, true);

	ASSERT_EQ(NULL, kt_ok(r));
	ASSERT_EQ(NULL, kt_json(r)) TH_LOG("%s", r->out);
	ASSERT_NE(NULL, strstr(r->out, "\"parser\":\"bpf\""));
	ASSERT_LT(0, kt_number_after(r->out, "\"prog_id\":"));
	if (kcmux_is_reference()) {
		ASSERT_NE(NULL, strstr(r->out, "\"psock_id\":null"));
	} else {
		ASSERT_LT(0, kt_psock_id(r));
	}
	ASSERT_TRUE(kt_peer_to_kcm(&self->o, 1, 7, 50));
}

/* attach ... parser obj FILE prog NAME KEY VALUE: any object file. */
TEST_F(kcmctl, attach_obj)
{
	struct kt_run *r;

	r = kt_run(&self->p, "attach", "pid", self->o.pid_str, "tcp",
		   self->o.tcp_str[0], "kcm", self->o.kcm_str, "parser", "obj",
		   self->p.testlen_obj, "prog", "testlen", "extra", "8", "max",
		   "100000", NULL);
	ASSERT_EQ(NULL, kt_ok(r));
	ASSERT_TRUE(kt_peer_to_kcm(&self->o, 0, 11, 300));
	ASSERT_TRUE(kt_kcm_to_peer(&self->o, 0, 12, 30));
}

/* A key changes what the parser does: a limit below the message size. */
TEST_F(kcmctl, attach_key_takes_effect)
{
	struct kt_run *r;

	r = kt_run(&self->p, "attach", "pid", self->o.pid_str, "kcm",
		   self->o.kcm_str, "tcp", self->o.tcp_str[0], "parser", "obj",
		   self->p.testlen_obj, "max", "20", NULL);
	ASSERT_EQ(NULL, kt_ok(r));
	ASSERT_TRUE(kt_peer_to_kcm(&self->o, 0, 1, 12));	/* 20 bytes */
	/* 21 bytes: the parser returns -EMSGSIZE, posted on the TCP socket. */
	ASSERT_FALSE(kt_peer_to_kcm(&self->o, 0, 2, 13));
	ASSERT_EQ(EMSGSIZE, kcm_err_wait(self->o.fd.tcp[0]));
}

/* attach ... framing: kcmux's built-in length field, every keyword. */
TEST_F(kcmctl, attach_framing)
{
	struct kt_run *r;

	r = kt_run(&self->p, "-j", "attach", "pid", self->o.pid_str, "kcm",
		   self->o.kcm_str, "tcp", self->o.tcp_str[0], "framing",
		   "offset", "0", "width", "4", "endian", "big", "adjust", "4",
		   "header", "excluded", "max", "100000", NULL);
	if (kcmux_is_reference()) {
		/* kcmctl must say why it cannot, not crash or pretend. */
		ASSERT_EQ(NULL, kt_failed(r, 1, "ENOTTY"));
		ASSERT_NE(NULL, strstr(r->err, "needs kcmux"));
		SKIP(return, "kcmux extension: built-in framing");
	}
	ASSERT_EQ(NULL, kt_ok(r));
	ASSERT_EQ(NULL, kt_json(r));
	ASSERT_NE(NULL, strstr(r->out, "\"parser\":\"framing\""));
	ASSERT_LT(0, kt_psock_id(r));
	ASSERT_TRUE(kt_peer_to_kcm(&self->o, 0, 21, 1000));
	ASSERT_TRUE(kt_kcm_to_peer(&self->o, 0, 22, 10));
	/* Little endian and an adjust instead of the header: the same. */
	r = kt_run(&self->p, "at", "pid", self->o.pid_str, "kcm",
		   self->o.kcm_str, "tcp", self->o.tcp_str[1], "fr", "e",
		   "big", "a", "8", NULL);
	ASSERT_EQ(NULL, kt_ok(r));
	ASSERT_TRUE(kt_peer_to_kcm(&self->o, 1, 23, 10));
}

/* --- show, stats --------------------------------------------------------- */

static void kt_attach_both(struct __test_metadata *_metadata,
			   struct kt_paths *p, struct kt_owner *o)
{
	int i;

	for (i = 0; i < KT_NR_TCP; i++)
		ASSERT_EQ(NULL, kt_ok(kt_attach_parser(p, o, i, false)));
	ASSERT_TRUE(kt_peer_to_kcm(o, 0, 1, 10));
	ASSERT_TRUE(kt_peer_to_kcm(o, 1, 2, 20));
}

/* show -j: one JSON document with the mux, its socket and two psocks. */
TEST_F(kcmctl, show_json)
{
	struct kt_run *r;

	kt_attach_both(_metadata, &self->p, &self->o);
	r = kt_run(&self->p, "-n", self->o.netns, "-j", "show", NULL);
	ASSERT_EQ(NULL, kt_ok(r));
	ASSERT_EQ(NULL, kt_json(r)) TH_LOG("%s", r->out);
	ASSERT_NE(NULL, strstr(r->out, "\"nr_psocks\":2"));
	ASSERT_NE(NULL, strstr(r->out, "\"nr_socks\":1"));
	if (kcmux_is_reference()) {
		ASSERT_NE(NULL, strstr(r->out, "\"source\":\"proc\""));
	} else {
		ASSERT_NE(NULL, strstr(r->out, "\"source\":\"netlink\""));
		ASSERT_NE(NULL, strstr(r->out, "\"saddr\":\"127.0.0.1\""));
		ASSERT_NE(NULL, strstr(r->out, "\"daddr\":\"::1\""));
		ASSERT_NE(NULL, strstr(r->out, "\"state\":\"active\""));
		ASSERT_NE(NULL, strstr(r->out, "\"parser\":\"bpf\""));
		ASSERT_NE(NULL, strstr(r->out, "\"type\":\"dgram\""));
	}
	/* The /proc source on both modules, pretty-printed. */
	r = kt_run(&self->p, "-n", self->o.netns, "-p", "show", "source",
		   "proc", NULL);
	ASSERT_EQ(NULL, kt_ok(r));
	ASSERT_EQ(NULL, kt_json(r));
	ASSERT_NE(NULL, strstr(r->out, "\"source\": \"proc\""));
	ASSERT_NE(NULL, strstr(r->out, "\"index\": 1"));
	ASSERT_NE(NULL, strstr(r->out, "\"rx_msgs\": 1"));
}

/* show (text), and by a unique prefix; the psock id matches attach's. */
TEST_F(kcmctl, show_text)
{
	char expect[64];
	struct kt_run *r;
	long long id;

	r = kt_attach_parser(&self->p, &self->o, 0, false);
	ASSERT_EQ(NULL, kt_ok(r));
	id = kt_psock_id(r);
	r = kt_run(&self->p, "-n", self->o.netns, "sh", NULL);
	ASSERT_EQ(NULL, kt_ok(r));
	ASSERT_EQ(0, strncmp(r->out, "mux", 3)) TH_LOG("%s", r->out);
	ASSERT_NE(NULL, strstr(r->out, "    psock"));
	ASSERT_NE(NULL, strstr(r->out, "    sock"));
	if (id > 0) {
		snprintf(expect, sizeof(expect), "psock %lld tcp_ino ", id);
		ASSERT_NE(NULL, strstr(r->out, expect)) TH_LOG("%s", r->out);
	}
}

/*
 * -n NAME: the namespace named NAME in /run/netns, as `ip netns add`
 * makes it (a bind mount of the namespace), here the owner's.
 */
TEST_F(kcmctl, show_named_netns)
{
	static const char path[] = "/run/netns/kcmctl-test";
	struct kt_run *r;
	int fd;

	mkdir("/run", 0755);
	mkdir("/run/netns", 0755);
	fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
	ASSERT_LE(0, fd) TH_LOG("%s: %s", path, strerror(errno));
	close(fd);
	ASSERT_EQ(0, mount(self->o.netns, path, NULL, MS_BIND, NULL))
		TH_LOG("bind mount: %s", strerror(errno));
	ASSERT_EQ(NULL, kt_ok(kt_attach_parser(&self->p, &self->o, 1, false)));
	r = kt_run(&self->p, "-j", "-n", "kcmctl-test", "show", NULL);
	umount(path);
	unlink(path);
	ASSERT_EQ(NULL, kt_ok(r));
	ASSERT_EQ(NULL, kt_json(r));
	ASSERT_NE(NULL, strstr(r->out, "\"nr_psocks\":1"));
}

/* show source netlink: kcmux only; on in-tree kcm, one clear error. */
TEST_F(kcmctl, show_netlink)
{
	struct kt_run *r;

	r = kt_run(&self->p, "-n", self->o.netns, "-j", "show", "source",
		   "netlink", NULL);
	if (kcmux_is_reference()) {
		ASSERT_EQ(NULL, kt_failed(r, 1, "ENOENT"));
		ASSERT_NE(NULL, strstr(r->err, "kcmux"));
		SKIP(return, "kcmux extension: generic netlink");
	}
	ASSERT_EQ(NULL, kt_ok(r));
	ASSERT_EQ(NULL, kt_json(r));
	/* A mux with no psock yet, and its socket. */
	ASSERT_NE(NULL, strstr(r->out, "\"nr_psocks\":0"));
	ASSERT_NE(NULL, strstr(r->out, "\"socks\":[{\"mux_id\":"));
	ASSERT_NE(NULL, strstr(r->out, "\"psocks\":[]"));
}

/* stats -j: the namespace totals count our attaches and messages. */
TEST_F(kcmctl, stats_json)
{
	struct kt_run *r;

	kt_attach_both(_metadata, &self->p, &self->o);
	r = kt_run(&self->p, "-n", self->o.netns, "-j", "stats", NULL);
	ASSERT_EQ(NULL, kt_ok(r));
	ASSERT_EQ(NULL, kt_json(r)) TH_LOG("%s", r->out);
	ASSERT_NE(NULL, strstr(r->out, "\"mux\":{\"rx_msgs\":2,"));
	ASSERT_NE(NULL, strstr(r->out, "\"attached\":2"));
	ASSERT_NE(NULL, strstr(r->out, "\"psock\":{"));
	r = kt_run(&self->p, "-n", self->o.netns, "stats", NULL);
	ASSERT_EQ(NULL, kt_ok(r));
	ASSERT_EQ(0, strncmp(r->out, "mux: rx_msgs 2", 14)) TH_LOG("%s", r->out);
}

/* --- monitor ------------------------------------------------------------- */

/* Has pid exited?  (It stays a zombie for kt_collect() to reap.) */
static bool kt_exited(pid_t pid)
{
	siginfo_t info = { .si_pid = 0 };

	return !waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT) &&
	       info.si_pid == pid;
}

#define KT_MON_EVENTS	3
#define KT_MON_ROUNDS	64

/*
 * monitor -j count 3: JSON lines of psock events.  It cannot say when it
 * has subscribed, so attach/unattach rounds go on until it has seen three
 * events; among them must be an "attached" followed by an "unattached"
 * of the same psock, one kcmctl attach reported.
 */
TEST_F(kcmctl, monitor_events)
{
	char *argv[] = { self->p.kcmctl, "-n", self->o.netns, "-j", "monitor",
			 "count", "3", NULL };
	char *line[KT_MON_EVENTS + 1], *next, expect[64];
	long long ids[KT_MON_ROUNDS], end;
	int out_fd, err_fd, rounds = 0, n = 0, i, j;
	static struct kt_run mon;
	struct kt_run *r;
	bool pair = false;
	pid_t pid;

	if (kcmux_is_reference()) {
		r = kt_run(&self->p, "-n", self->o.netns, "monitor", NULL);
		ASSERT_EQ(NULL, kt_failed(r, 1, "ENOENT"));
		SKIP(return, "kcmux extension: generic netlink events");
	}
	pid = kt_spawn(argv, -1, &out_fd, &err_fd);
	ASSERT_LT(0, pid);
	end = kcm_now_ms() + 30000;
	while (!kt_exited(pid) && rounds < KT_MON_ROUNDS &&
	       kcm_now_ms() < end) {
		r = kt_attach_parser(&self->p, &self->o, 0, false);
		ASSERT_EQ(NULL, kt_ok(r));
		ids[rounds++] = kt_psock_id(r);
		ASSERT_EQ(NULL, kt_ok(kt_unattach(&self->p, &self->o, 0)));
		kcm_msleep(50);
	}
	memset(&mon, 0, sizeof(mon));
	kt_collect(&mon, pid, out_fd, err_fd);
	TH_LOG("%d attach/unattach rounds", rounds);
	ASSERT_EQ(NULL, kt_ok(&mon)) TH_LOG("%s", mon.err);
	for (line[0] = mon.out; n <= KT_MON_EVENTS && *line[n]; n++) {
		next = strchr(line[n], '\n');
		ASSERT_NE(NULL, next);
		*next = '\0';
		line[n + 1] = next + 1;
		ASSERT_EQ(NULL, json_check(line[n], NULL)) TH_LOG("%s", line[n]);
		ASSERT_NE(NULL, strstr(line[n], "\"parser\":\"bpf\""));
		ASSERT_NE(NULL, strstr(line[n], "\"dport\":"));
	}
	ASSERT_EQ(KT_MON_EVENTS, n);
	for (i = 0; i + 1 < n && !pair; i++) {
		static const char attached[] = "{\"event\":\"attached\",\"id\":";

		if (strncmp(line[i], attached, strlen(attached)))
			continue;
		snprintf(expect, sizeof(expect),
			 "{\"event\":\"unattached\",\"id\":%lld,",
			 kt_number_after(line[i], "\"id\":"));
		if (strncmp(line[i + 1], expect, strlen(expect)))
			continue;
		for (j = 0; j < rounds; j++)
			pair |= ids[j] == kt_number_after(line[i], "\"id\":");
	}
	ASSERT_TRUE(pair) TH_LOG("%s | %s | %s", line[0], line[1], line[2]);
}

/* --- parser list / load / show ------------------------------------------ */

/* parser list: the objects with their keys and defaults, text and JSON. */
TEST_F(kcmctl, parser_list)
{
	struct kt_run *r;

	r = kt_run(&self->p, "-P", self->p.parser_dir, "-j", "parser", "list",
		   NULL);
	ASSERT_EQ(NULL, kt_ok(r));
	ASSERT_EQ(NULL, kt_json(r)) TH_LOG("%s", r->out);
	ASSERT_NE(NULL, strstr(r->out, self->p.parser_name));
	ASSERT_NE(NULL, strstr(r->out, "\"keys\":[{\"name\":"));
	r = kt_run(&self->p, "-P", "/nonexistent", "parser", "list", NULL);
	ASSERT_EQ(NULL, kt_failed(r, 1, "ENOENT"));
	setenv("KCMUX_PARSER_DIR", self->p.parser_dir, 1);
	r = kt_run(&self->p, "parser", "list", self->p.parser_name, NULL);
	unsetenv("KCMUX_PARSER_DIR");
	ASSERT_EQ(NULL, kt_ok(r));
	ASSERT_EQ(0, strncmp(r->out, self->p.parser_name,
			     strlen(self->p.parser_name)));
}

/* A bpffs of our own (the guest may have none mounted). */
static int kt_bpffs(char *dir, size_t size)
{
	snprintf(dir, size, "/tmp/kcmctl-bpffs.%d", getpid());
	mkdir("/tmp", 0755);
	if (mkdir(dir, 0700) && errno != EEXIST)
		return -errno;
	return mount("bpf", dir, "bpf", 0, NULL) ? -errno : 0;
}

/*
 * parser load ... pin PATH, then parser show PATH and parser show: the
 * configuration read back from the loaded program; attach ... pinned.
 */
TEST_F(kcmctl, parser_load_pin_show)
{
	char dir[128], pin[160], id_key[48];
	const char *found;
	struct kt_run *r;
	long long id;
	int err;

	err = kt_bpffs(dir, sizeof(dir));
	ASSERT_EQ(0, err) TH_LOG("mount bpffs: %s", strerror(-err));
	snprintf(pin, sizeof(pin), "%s/testlen", dir);
	r = kt_run(&self->p, "-P", self->p.testlen_dir, "-j", "parser", "load",
		   "testlen", "extra", "8", "max", "0x10000000000", "pin", pin,
		   NULL);
	ASSERT_EQ(NULL, kt_ok(r));
	ASSERT_EQ(NULL, kt_json(r)) TH_LOG("%s", r->out);
	ASSERT_NE(NULL, strstr(r->out, "\"config\":{\"offset\":0,\"extra\":8,\"max\":1099511627776}"))
		TH_LOG("%s", r->out);
	id = kt_number_after(r->out, "[{\"id\":");
	ASSERT_LT(0, id);

	r = kt_run(&self->p, "parser", "show", pin, NULL);
	ASSERT_EQ(NULL, kt_ok(r));
	ASSERT_NE(NULL, strstr(r->out, "config offset 0 extra 8 max 1099511627776"))
		TH_LOG("%s", r->out);

	/* Attached by its pin: the list of all loaded parsers has it. */
	r = kt_run(&self->p, "attach", "pid", self->o.pid_str, "kcm",
		   self->o.kcm_str, "tcp", self->o.tcp_str[0], "parser",
		   "pinned", pin, NULL);
	ASSERT_EQ(NULL, kt_ok(r));
	ASSERT_TRUE(kt_peer_to_kcm(&self->o, 0, 5, 55));
	r = kt_run(&self->p, "-n", self->o.netns, "-j", "parser", "show", NULL);
	ASSERT_EQ(NULL, kt_ok(r));
	ASSERT_EQ(NULL, kt_json(r));
	snprintf(id_key, sizeof(id_key), "{\"id\":%lld,\"name\":\"testlen\"", id);
	found = strstr(r->out, id_key);
	ASSERT_NE(NULL, found) TH_LOG("%s", r->out);
	/* kcmux tells (by netlink) which programs psocks of the netns use. */
	if (kcmux_is_reference()) {
		ASSERT_EQ(NULL, strstr(found, "\"attached\""));
	} else {
		ASSERT_NE(NULL, strstr(found, "\"attached\":true,\"config\""));
	}

	/* The pin exists now: loading over it fails, on one line. */
	r = kt_run(&self->p, "-P", self->p.testlen_dir, "parser", "load",
		   "testlen", "pin", pin, NULL);
	ASSERT_EQ(NULL, kt_failed(r, 1, "EEXIST"));
	unlink(pin);
	umount(dir);
	rmdir(dir);
}

/* --- errors ---------------------------------------------------------------- */

struct kt_bad {
	const char *what;
	int status;
	const char *errname;
	const char *args[16];	/* @PID @KCM @TCP @TCP1 @PIPE @OBJ placeholders */
};

static const char *kt_resolve(struct kt_owner *o, const struct kt_paths *p,
			      const char *a)
{
	if (!strcmp(a, "@PID"))
		return o->pid_str;
	if (!strcmp(a, "@KCM"))
		return o->kcm_str;
	if (!strcmp(a, "@TCP"))
		return o->tcp_str[0];
	if (!strcmp(a, "@TCP1"))
		return o->tcp_str[1];
	if (!strcmp(a, "@PIPE"))
		return o->pipe_str;
	if (!strcmp(a, "@OBJ"))
		return p->testlen_obj;
	return a;
}

#define KT_AT	"attach", "pid", "@PID"

/* Every error path: one line, the right errno, the right exit status. */
TEST_F(kcmctl, errors_one_line)
{
	static const struct kt_bad bad[] = {
		{ "kcm fd is TCP", 1, "EINVAL",
		  { KT_AT, "kcm", "@TCP", "tcp", "@TCP1", "parser", "obj", "@OBJ" } },
		{ "tcp fd is KCM", 1, "EINVAL",
		  { KT_AT, "kcm", "@KCM", "tcp", "@KCM", "parser", "obj", "@OBJ" } },
		{ "not a socket", 1, "ENOTSOCK",
		  { KT_AT, "kcm", "@PIPE", "tcp", "@TCP", "parser", "obj", "@OBJ" } },
		{ "fd not open", 1, "EBADF",
		  { KT_AT, "kcm", "@KCM", "tcp", "999", "parser", "obj", "@OBJ" } },
		{ "no such pid", 1, "ESRCH",
		  { "attach", "pid", "4194304", "kcm", "3", "tcp", "4", "framing" } },
		{ "no such parser", 1, "ENOENT",
		  { KT_AT, "kcm", "@KCM", "tcp", "@TCP", "parser", "nosuch" } },
		{ "no such object", 1, "ENOENT",
		  { KT_AT, "kcm", "@KCM", "tcp", "@TCP", "parser", "obj", "/nonexistent.o" } },
		{ "not an object", 1, "ENOEXEC",
		  { KT_AT, "kcm", "@KCM", "tcp", "@TCP", "parser", "obj", "/proc/self/exe" } },
		{ "no such program", 1, "ENOENT",
		  { KT_AT, "kcm", "@KCM", "tcp", "@TCP", "parser", "obj", "@OBJ", "prog", "x" } },
		{ "no such pin", 1, "ENOENT",
		  { KT_AT, "kcm", "@KCM", "tcp", "@TCP", "parser", "pinned", "/sys/fs/bpf/none" } },
		{ "unknown key", 2, "EINVAL",
		  { KT_AT, "kcm", "@KCM", "tcp", "@TCP", "parser", "obj", "@OBJ", "nokey", "1" } },
		{ "value out of range", 2, "ERANGE",
		  { KT_AT, "kcm", "@KCM", "tcp", "@TCP", "parser", "obj", "@OBJ", "extra", "2147483648" } },
		{ "value not a number", 2, "EINVAL",
		  { KT_AT, "kcm", "@KCM", "tcp", "@TCP", "parser", "obj", "@OBJ", "max", "lots" } },
		{ "missing value", 2, "EINVAL",
		  { KT_AT, "kcm", "@KCM", "tcp", "@TCP", "parser", "obj", "@OBJ", "max" } },
		{ "framing width", 2, "EINVAL",
		  { KT_AT, "kcm", "@KCM", "tcp", "@TCP", "framing", "width", "5" } },
		{ "framing offset", 2, "ERANGE",
		  { KT_AT, "kcm", "@KCM", "tcp", "@TCP", "framing", "offset", "65533" } },
		{ "ambiguous keyword", 2, "EINVAL",
		  { "attach", "p", "@PID", "kcm", "@KCM", "tcp", "@TCP", "framing" } },
		{ "unattach, not attached", 1, "ENOENT",
		  { "unattach", "pid", "@PID", "kcm", "@KCM", "tcp", "@TCP" } },
		{ "pin outside bpffs", 1, "EINVAL",
		  { "parser", "load", "obj", "@OBJ", "pin", "/proc/x" } },
		{ "no such netns", 1, "ENOENT",
		  { "-n", "nosuchns", "show" } },
		{ "ambiguous object", 2, "EINVAL", { "s" } },
		{ "unknown object", 2, "EINVAL", { "bogus" } },
	};
	const char *v[KT_MAX_ARGS];
	struct kt_run *r;
	size_t i;
	int n;

	for (i = 0; i < KT_ARRAY_SIZE(bad); i++) {
		for (n = 0; bad[i].args[n]; n++)
			v[n] = kt_resolve(&self->o, &self->p, bad[i].args[n]);
		r = kt_run_argv(&self->p, v, n);
		EXPECT_EQ(NULL, kt_failed(r, bad[i].status, bad[i].errname))
			TH_LOG("%s: status %d, stderr: %s", bad[i].what,
			       r->status, r->err);
		EXPECT_EQ(0UL, r->out_len) TH_LOG("%s: %s", bad[i].what, r->out);
	}
}

/* Attaching an attached socket: the kernel's error, on one line. */
TEST_F(kcmctl, errors_attach_twice)
{
	struct kt_run *r;

	ASSERT_EQ(NULL, kt_ok(kt_attach_parser(&self->p, &self->o, 0, false)));
	r = kt_attach_parser(&self->p, &self->o, 0, false);
	ASSERT_EQ(NULL, kt_failed(r, 1, "EALREADY"));
	ASSERT_EQ(0UL, r->out_len);
}

/* Without ptrace access to the owner (another user): EPERM, explained. */
TEST_F(kcmctl, errors_not_permitted)
{
	struct kt_run *r;

	r = kt_run_as(&self->p, 65534, "attach", "pid", self->o.pid_str, "kcm",
		      self->o.kcm_str, "tcp", self->o.tcp_str[0], "framing",
		      NULL);
	ASSERT_EQ(NULL, kt_failed(r, 1, "EPERM"));
	ASSERT_NE(NULL, strstr(r->err, "ptrace"));
	/* And nothing was attached. */
	ASSERT_TRUE(kt_stays_in_tcp(&self->o, 0, 9));
}

/* help at every level: usage on stdout, status 0. */
TEST_F(kcmctl, help_everywhere)
{
	static const char *const objects[] = {
		"help", "parser", "attach", "unattach", "show", "stats",
		"monitor",
	};
	struct kt_run *r;
	size_t i;

	for (i = 0; i < KT_ARRAY_SIZE(objects); i++) {
		r = i ? kt_run(&self->p, objects[i], "help", NULL) :
			kt_run(&self->p, "help", NULL);
		EXPECT_EQ(NULL, kt_ok(r)) TH_LOG("%s help", objects[i]);
		EXPECT_EQ(0, strncmp(r->out, "Usage: kcmctl", 13))
			TH_LOG("%s help: %.60s", objects[i], r->out);
	}
}

TEST_HARNESS_MAIN
