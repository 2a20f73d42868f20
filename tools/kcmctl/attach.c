// SPDX-License-Identifier: GPL-2.0
/*
 * kcmctl attach / unattach: attach a TCP socket of another process to one
 * of its KCM sockets, or give it back.
 *
 * The sockets stay the target process's: kcmctl takes copies of its file
 * descriptors with pidfd_getfd() (which needs ptrace access to it), makes
 * the ioctl on the copies, which act on the same sockets, and closes them.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <bpf/bpf.h>

#include "kcminfo.h"
#include "parser_obj.h"

/* Where the sockets are: numbers in the target process. */
struct attach_target {
	pid_t pid;
	int kcm_num;
	int tcp_num;
	int kcm_fd;		/* our copies */
	int tcp_fd;
};

enum attach_kind { ATTACH_NONE, ATTACH_PARSER, ATTACH_FRAMING };

struct attach_req {
	struct attach_target t;
	enum attach_kind kind;
	struct parser_spec spec;
	struct kcmux_framing framing;
};

static void attach_usage(void)
{
	printf("Usage: kcmctl attach pid PID kcm FD tcp FD parser SPEC\n"
	       "       kcmctl attach pid PID kcm FD tcp FD framing [ FRAMING ]\n"
	       "       kcmctl unattach pid PID kcm FD tcp FD\n"
	       "\n"
	       "SPEC    := { NAME [ KEY VALUE ]... | pinned PATH |\n"
	       "            obj FILE [ prog PROGRAM ] [ KEY VALUE ]... }\n"
	       "FRAMING := [ offset N ] [ width { 1 | 2 | 3 | 4 | 8 } ]\n"
	       "           [ endian { big | little } ] [ adjust N ]\n"
	       "           [ header { included | excluded } ] [ max N ]\n"
	       "\n"
	       "PID is the process that owns the sockets, FD its descriptor numbers\n"
	       "(ptrace access to it is needed, see pidfd_getfd(2)).  NAME is a\n"
	       "parser of the parser directory (kcmctl parser list).  framing is\n"
	       "kcmux's built-in length field: the message length is the field at\n"
	       "offset (width bytes, default 4, big endian) plus adjust, plus the\n"
	       "header up to the field's end if the header is excluded from it.\n");
}

/* --- the command line ------------------------------------------------- */

/* pid PID, kcm FD, tcp FD in any order; 1 at "parser"/"framing". */
static int attach_parse_target(struct kc_args *a, struct attach_target *t,
			       bool with_parser, enum attach_kind *kind)
{
	static const char *const words[] = {
		"pid", "kcm", "tcp", "parser", "framing",
	};
	bool seen[3] = { false };
	const char *val;
	int idx, err;

	while (args_more(a)) {
		idx = kc_lookup(args_next(a), words,
				with_parser ? 5 : 3, "keyword");
		if (idx < 0)
			return idx;
		if (idx >= 3) {
			*kind = idx == 3 ? ATTACH_PARSER : ATTACH_FRAMING;
			break;
		}
		if (seen[idx])
			return kc_usage("'%s' given twice", words[idx]);
		seen[idx] = true;
		err = args_value(a, words[idx], &val);
		if (!err)
			err = idx == 0 ? arg_pid(val, &t->pid) :
			      arg_fd(idx == 1 ? "kcm fd" : "tcp fd", val,
				     idx == 1 ? &t->kcm_num : &t->tcp_num);
		if (err)
			return err;
	}
	for (idx = 0; idx < 3; idx++)
		if (!seen[idx])
			return kc_usage("missing '%s %s'", words[idx],
					idx ? "FD" : "PID");
	if (with_parser && *kind == ATTACH_NONE)
		return kc_usage("missing 'parser SPEC' or 'framing [FRAMING]'");
	return 0;
}

static int framing_width(const char *val, uint8_t *width)
{
	uint64_t v;
	int err = arg_u64("width", val, 8, &v);

	if (err)
		return err;
	if (v != 1 && v != 2 && v != 3 && v != 4 && v != 8)
		return kc_usage("width '%s' is not 1, 2, 3, 4 or 8", val);
	*width = (uint8_t)v;
	return 0;
}

static int framing_choice(const char *keyword, const char *val,
			  const char *const *choices, uint8_t flag,
			  uint8_t *flags)
{
	int idx = kc_lookup(val, choices, 2, keyword);

	if (idx < 0)
		return idx;
	if (idx)
		*flags |= flag;
	return 0;
}

static int framing_keyword(int idx, const char *val, struct kcmux_framing *f)
{
	static const char *const endians[] = { "big", "little" };
	static const char *const headers[] = { "included", "excluded" };
	uint64_t u;
	int64_t s;
	int err;

	switch (idx) {
	case 0:
		err = arg_u64("offset", val, KCMUX_FRAMING_MAX_OFFSET, &u);
		f->offset = (uint32_t)u;
		return err;
	case 1:
		return framing_width(val, &f->width);
	case 2:
		return framing_choice("endian", val, endians,
				      KCMUX_FRAMING_LITTLE_ENDIAN, &f->flags);
	case 3:
		err = arg_s64("adjust", val, INT32_MIN, INT32_MAX, &s);
		f->adjust = (int32_t)s;
		return err;
	case 4:
		return framing_choice("header", val, headers,
				      KCMUX_FRAMING_EXCLUDES_HEADER, &f->flags);
	default:
		err = arg_u64("max", val, UINT32_MAX, &u);
		f->max_size = (uint32_t)u;
		return err;
	}
}

static int framing_parse(struct kc_args *a, struct kcmux_framing *f)
{
	static const char *const words[] = {
		"offset", "width", "endian", "adjust", "header", "max",
	};
	bool seen[KC_ARRAY_SIZE(words)] = { false };
	const char *val;
	int idx, err;

	memset(f, 0, sizeof(*f));
	f->width = 4;
	while (args_more(a)) {
		idx = kc_lookup(args_next(a), words, KC_ARRAY_SIZE(words),
				"framing keyword");
		if (idx < 0)
			return idx;
		if (seen[idx])
			return kc_usage("'%s' given twice", words[idx]);
		seen[idx] = true;
		err = args_value(a, words[idx], &val);
		if (!err)
			err = framing_keyword(idx, val, f);
		if (err)
			return err;
	}
	if (f->offset + f->width > KCMUX_FRAMING_MAX_OFFSET)
		return kc_usage_err(ERANGE, "offset %u + width %u beyond %u",
				    f->offset, f->width,
				    KCMUX_FRAMING_MAX_OFFSET);
	return 0;
}

/* --- the target's sockets --------------------------------------------- */

static const char *family_name(int family)
{
	switch (family) {
	case AF_UNIX:
		return "AF_UNIX";
	case AF_INET:
		return "AF_INET";
	case AF_INET6:
		return "AF_INET6";
	case AF_NETLINK:
		return "AF_NETLINK";
	case AF_PACKET:
		return "AF_PACKET";
	case AF_KCM:
		return "AF_KCM";
	default:
		return "another family";
	}
}

static int sock_int_opt(int fd, int name, int *val)
{
	socklen_t len = sizeof(*val);

	return getsockopt(fd, SOL_SOCKET, name, val, &len) ? -errno : 0;
}

/* Our copy of fd num of the target, or KC_FAIL. */
static int take_fd(int pidfd, const struct attach_target *t, int num,
		   const char *role, int *fd)
{
	*fd = (int)syscall(SYS_pidfd_getfd, pidfd, num, 0);
	if (*fd >= 0)
		return 0;
	if (errno == EPERM)
		return kc_err(EPERM, "%s fd %d of pid %d (ptrace access to the process is needed)",
			      role, num, t->pid);
	if (errno == ENOSYS)
		return kc_err(ENOSYS, "pidfd_getfd (Linux 5.6 or later is needed)");
	return kc_err(errno, "%s fd %d of pid %d", role, num, t->pid);
}

static int check_kcm_fd(const struct attach_target *t)
{
	int family, err;

	err = sock_int_opt(t->kcm_fd, SO_DOMAIN, &family);
	if (err)
		return kc_err(err, "kcm fd %d of pid %d", t->kcm_num, t->pid);
	if (family != AF_KCM)
		return kc_err(EINVAL, "kcm fd %d of pid %d is not an AF_KCM socket (%s)",
			      t->kcm_num, t->pid, family_name(family));
	return 0;
}

static int check_tcp_fd(const struct attach_target *t)
{
	int family, type, proto, err;

	err = sock_int_opt(t->tcp_fd, SO_DOMAIN, &family);
	if (!err)
		err = sock_int_opt(t->tcp_fd, SO_TYPE, &type);
	if (!err)
		err = sock_int_opt(t->tcp_fd, SO_PROTOCOL, &proto);
	if (err)
		return kc_err(err, "tcp fd %d of pid %d", t->tcp_num, t->pid);
	if ((family != AF_INET && family != AF_INET6) ||
	    type != SOCK_STREAM || proto != IPPROTO_TCP)
		return kc_err(EINVAL, "tcp fd %d of pid %d is not a TCP socket (%s)",
			      t->tcp_num, t->pid, family_name(family));
	return 0;
}

static void target_close(struct attach_target *t)
{
	if (t->kcm_fd >= 0)
		close(t->kcm_fd);
	if (t->tcp_fd >= 0)
		close(t->tcp_fd);
	t->kcm_fd = -1;
	t->tcp_fd = -1;
}

static int target_open(struct attach_target *t)
{
	int pidfd, err;

	t->kcm_fd = -1;
	t->tcp_fd = -1;
	pidfd = (int)syscall(SYS_pidfd_open, t->pid, 0);
	if (pidfd < 0 && errno == ENOSYS)
		return kc_err(ENOSYS, "pidfd_open (Linux 5.3 or later is needed)");
	if (pidfd < 0)
		return kc_err(errno, "pid %d", t->pid);
	err = take_fd(pidfd, t, t->kcm_num, "kcm", &t->kcm_fd);
	if (!err)
		err = take_fd(pidfd, t, t->tcp_num, "tcp", &t->tcp_fd);
	close(pidfd);
	if (!err)
		err = check_kcm_fd(t);
	if (!err)
		err = check_tcp_fd(t);
	if (err)
		target_close(t);
	return err;
}

/* --- the ioctls ------------------------------------------------------- */

/* SIOCKCMATTACH_EXT; the in-tree module has only SIOCKCMATTACH. */
static int attach_bpf(const struct attach_target *t, int prog_fd,
		      int64_t *psock_id)
{
	struct kcmux_attach ka = {
		.size = sizeof(ka),
		.flags = KCMUX_ATTACH_BPF,
		.fd = t->tcp_fd,
		.bpf_fd = prog_fd,
	};
	struct kcm_attach old = { .fd = t->tcp_fd, .bpf_fd = prog_fd };

	*psock_id = -1;
	if (!ioctl(t->kcm_fd, SIOCKCMATTACH_EXT, &ka)) {
		*psock_id = ka.psock_id;
		return 0;
	}
	if (errno != ENOTTY)
		return -errno;
	return ioctl(t->kcm_fd, SIOCKCMATTACH, &old) ? -errno : 0;
}

static int attach_framing(const struct attach_target *t,
			  const struct kcmux_framing *f, int64_t *psock_id)
{
	struct kcmux_attach ka = {
		.size = sizeof(ka),
		.flags = KCMUX_ATTACH_FRAMING,
		.fd = t->tcp_fd,
		.framing = *f,
	};

	if (ioctl(t->kcm_fd, SIOCKCMATTACH_EXT, &ka))
		return -errno;
	*psock_id = ka.psock_id;
	return 0;
}

/*
 * The psock id of the TCP socket, -1 if the module cannot tell.  The
 * in-tree module hands an ioctl it does not know to the netdev ioctls,
 * which read a struct ifreq: the padding keeps that read in our buffer.
 */
static int64_t psock_id_of(const struct attach_target *t)
{
	union {
		struct kcmux_psock_id q;
		struct ifreq pad;
	} u;

	memset(&u, 0, sizeof(u));
	u.q.fd = t->tcp_fd;
	if (ioctl(t->kcm_fd, SIOCKCMPSOCKID, &u))
		return -1;
	return u.q.psock_id;
}

static void print_result(struct printer *p, const char *what,
			 int64_t psock_id, const char *parser,
			 int64_t prog_id)
{
	pr_open_object(p, NULL);
	pr_text(p, "%s", what);
	if (psock_id >= 0)
		pr_u64(p, PR_ANY, "psock_id", " psock %llu", (uint64_t)psock_id);
	else
		pr_null(p, PR_ANY, "psock_id", "");
	if (parser)
		pr_str(p, PR_ANY, "parser", " parser %s", parser);
	if (prog_id >= 0)
		pr_u64(p, PR_ANY, "prog_id", " prog_id %llu", (uint64_t)prog_id);
	pr_text(p, "\n");
	pr_close_object(p);
}

static int64_t prog_id_of(int prog_fd)
{
	struct bpf_prog_info info;
	__u32 len = sizeof(info);

	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(prog_fd, &info, &len))
		return -1;
	return info.id;
}

static int attach_with_parser(struct kcmctl *k, struct attach_req *r)
{
	struct parser_obj po;
	int64_t psock_id = -1;
	int err, prog_fd = -1;

	err = parser_spec_prepare(k, &r->spec, &po);
	if (err)
		return err;
	err = target_open(&r->t);
	if (err) {
		parser_obj_close(&po);
		return err;
	}
	err = parser_spec_load(k, &r->spec, &po, &prog_fd);
	if (!err) {
		err = attach_bpf(&r->t, prog_fd, &psock_id);
		if (err)
			err = kc_err(err, "attach tcp fd %d to kcm fd %d of pid %d",
				     r->t.tcp_num, r->t.kcm_num, r->t.pid);
		else
			print_result(&k->pr, "attached", psock_id, "bpf",
				     prog_id_of(prog_fd));
	}
	if (r->spec.kind == PARSER_SPEC_PINNED && prog_fd >= 0)
		close(prog_fd);
	parser_obj_close(&po);
	target_close(&r->t);
	return err;
}

static int attach_with_framing(struct kcmctl *k, struct attach_req *r)
{
	int64_t psock_id = -1;
	int err;

	err = target_open(&r->t);
	if (err)
		return err;
	err = attach_framing(&r->t, &r->framing, &psock_id);
	if (err == -ENOTTY)
		err = kc_err(err, "built-in framing needs kcmux (the in-tree kcm module has no SIOCKCMATTACH_EXT)");
	else if (err)
		err = kc_err(err, "attach tcp fd %d to kcm fd %d of pid %d",
			     r->t.tcp_num, r->t.kcm_num, r->t.pid);
	else
		print_result(&k->pr, "attached", psock_id, "framing", -1);
	target_close(&r->t);
	return err;
}

int cmd_attach(struct kcmctl *k, struct kc_args *a)
{
	struct attach_req r = { .kind = ATTACH_NONE };
	int err;

	if (kc_is_help(args_peek(a))) {
		attach_usage();
		return 0;
	}
	err = attach_parse_target(a, &r.t, true, &r.kind);
	if (err)
		return err;
	if (r.kind == ATTACH_PARSER) {
		err = parser_spec_parse(a, NULL, &r.spec);
		return err ? err : attach_with_parser(k, &r);
	}
	err = framing_parse(a, &r.framing);
	return err ? err : attach_with_framing(k, &r);
}

int cmd_unattach(struct kcmctl *k, struct kc_args *a)
{
	struct attach_target t = { 0 };
	enum attach_kind kind = ATTACH_NONE;
	struct kcm_unattach u;
	int64_t psock_id;
	int err;

	if (kc_is_help(args_peek(a))) {
		attach_usage();
		return 0;
	}
	err = attach_parse_target(a, &t, false, &kind);
	if (!err)
		err = args_end(a);
	if (!err)
		err = target_open(&t);
	if (err)
		return err;
	psock_id = psock_id_of(&t);
	u.fd = t.tcp_fd;
	if (ioctl(t.kcm_fd, SIOCKCMUNATTACH, &u))
		err = kc_err(errno, "unattach tcp fd %d from kcm fd %d of pid %d",
			     t.tcp_num, t.kcm_num, t.pid);
	else
		print_result(&k->pr, "unattached", psock_id, NULL, -1);
	target_close(&t);
	return err;
}
