// SPDX-License-Identifier: GPL-2.0
/*
 * Raw netlink for kcmctl: just what a dump, a request and a multicast
 * subscription need, without libnl or libmnl.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "netlink.h"

#ifndef SOL_NETLINK
#define SOL_NETLINK	270
#endif

int nl_open(struct nl_sock *nl, int protocol)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	socklen_t len = sizeof(sa);
	int one = 1;

	memset(nl, 0, sizeof(*nl));
	nl->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
	if (nl->fd < 0)
		return -errno;
	if (bind(nl->fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    getsockname(nl->fd, (struct sockaddr *)&sa, &len)) {
		int err = -errno;

		nl_close(nl);
		return err;
	}
	nl->portid = sa.nl_pid;
	nl->seq = (uint32_t)getpid() << 8;
	/* Best effort: error strings from the kernel, without the request. */
	setsockopt(nl->fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
	setsockopt(nl->fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
	return 0;
}

void nl_close(struct nl_sock *nl)
{
	if (nl->fd >= 0)
		close(nl->fd);
	nl->fd = -1;
}

/* --- building requests ----------------------------------------------- */

void nl_req_init(struct nl_req *r, void *buf, size_t cap, uint16_t type,
		 uint16_t flags)
{
	memset(buf, 0, cap);
	r->nlh = buf;
	r->cap = cap;
	r->nlh->nlmsg_len = NLMSG_HDRLEN;
	r->nlh->nlmsg_type = type;
	r->nlh->nlmsg_flags = flags;
}

static void *nl_req_reserve(struct nl_req *r, size_t len)
{
	size_t at = NLMSG_ALIGN(r->nlh->nlmsg_len);
	char *p;

	if (at + NLMSG_ALIGN(len) > r->cap)
		return NULL;
	p = (char *)r->nlh + at;
	r->nlh->nlmsg_len = at + len;
	return p;
}

int nl_req_genl(struct nl_req *r, uint8_t cmd, uint8_t version)
{
	struct genlmsghdr *gh = nl_req_reserve(r, GENL_HDRLEN);

	if (!gh)
		return -EMSGSIZE;
	gh->cmd = cmd;
	gh->version = version;
	return 0;
}

int nl_req_put(struct nl_req *r, uint16_t type, const void *data,
	       size_t len)
{
	struct nlattr *a;

	if (len > UINT16_MAX - NLA_HDRLEN)
		return -EMSGSIZE;
	a = nl_req_reserve(r, NLA_HDRLEN + len);
	if (!a)
		return -EMSGSIZE;
	a->nla_type = type;
	a->nla_len = NLA_HDRLEN + len;
	memcpy((char *)a + NLA_HDRLEN, data, len);
	return 0;
}

int nl_req_put_str(struct nl_req *r, uint16_t type, const char *s)
{
	return nl_req_put(r, type, s, strlen(s) + 1);
}

/* --- attributes ------------------------------------------------------ */

/*
 * Iterates over the attributes in [*pos, *pos + *left): 1 with *a set,
 * 0 at the end, -EBADMSG when an attribute does not fit.
 */
static int nl_attr_next(const char **pos, size_t *left, const struct nlattr **a)
{
	const struct nlattr *cur = (const struct nlattr *)*pos;
	size_t step;

	if (*left < NLA_HDRLEN)
		return 0;	/* trailing padding */
	if (cur->nla_len < NLA_HDRLEN || cur->nla_len > *left)
		return -EBADMSG;
	step = NLA_ALIGN(cur->nla_len);
	if (step > *left)
		step = *left;
	*pos += step;
	*left -= step;
	*a = cur;
	return 1;
}

int nl_parse_attrs(const void *data, size_t len, const struct nlattr **tb,
		   unsigned int max)
{
	const char *pos = data;
	const struct nlattr *a;
	unsigned int type;
	int ret;

	memset(tb, 0, (max + 1) * sizeof(*tb));
	while ((ret = nl_attr_next(&pos, &len, &a)) > 0) {
		type = a->nla_type & NLA_TYPE_MASK;
		if (type <= max)
			tb[type] = a;
	}
	return ret;
}

int nl_parse_nested(const struct nlattr *nest, const struct nlattr **tb,
		    unsigned int max)
{
	return nl_parse_attrs(nla_payload(nest), nla_payload_len(nest), tb, max);
}

static int nla_get_exact(const struct nlattr *a, void *v, size_t size)
{
	if (nla_payload_len(a) != size)
		return -EBADMSG;
	memcpy(v, nla_payload(a), size);	/* u64 may be unaligned */
	return 0;
}

int nla_get_u16(const struct nlattr *a, uint16_t *v)
{
	return nla_get_exact(a, v, sizeof(*v));
}

int nla_get_u32(const struct nlattr *a, uint32_t *v)
{
	return nla_get_exact(a, v, sizeof(*v));
}

int nla_get_u64(const struct nlattr *a, uint64_t *v)
{
	return nla_get_exact(a, v, sizeof(*v));
}

int nla_get_str(const struct nlattr *a, const char **s)
{
	size_t len = nla_payload_len(a);
	const char *p = nla_payload(a);

	if (!len || !memchr(p, '\0', len))
		return -EBADMSG;
	*s = p;
	return 0;
}

int genl_msg_attrs(const struct nlmsghdr *nlh, const struct genlmsghdr **gh,
		   const void **attrs, size_t *len)
{
	if (nlh->nlmsg_len < NLMSG_LENGTH(GENL_HDRLEN))
		return -EBADMSG;
	*gh = NLMSG_DATA(nlh);
	*attrs = (const char *)*gh + GENL_HDRLEN;
	*len = nlh->nlmsg_len - NLMSG_LENGTH(GENL_HDRLEN);
	return 0;
}

/* --- receiving ------------------------------------------------------- */

static void nl_save_ext_ack(struct nl_sock *nl, const struct nlmsghdr *nlh)
{
	const struct nlmsgerr *e = NLMSG_DATA(nlh);
	const struct nlattr *tb[NLMSGERR_ATTR_MAX + 1];
	size_t off = NLMSG_HDRLEN + sizeof(*e);
	const char *msg;

	if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS))
		return;
	/* Without NETLINK_CAP_ACK the request comes back before the TLVs. */
	if (!(nlh->nlmsg_flags & NLM_F_CAPPED))
		off += e->msg.nlmsg_len - NLMSG_HDRLEN;
	if (off >= nlh->nlmsg_len)
		return;
	if (nl_parse_attrs((const char *)nlh + off, nlh->nlmsg_len - off, tb,
			   NLMSGERR_ATTR_MAX) ||
	    !tb[NLMSGERR_ATTR_MSG] || nla_get_str(tb[NLMSGERR_ATTR_MSG], &msg))
		return;
	snprintf(nl->ext_msg, sizeof(nl->ext_msg), "%s", msg);
}

/* 1: the request is complete; 0: more to come; <0: -errno. */
static int nl_handle_reply(struct nl_sock *nl, const struct nlmsghdr *nlh,
			   bool dump, nl_msg_cb cb, void *arg)
{
	const struct nlmsgerr *e;
	int done_err;

	switch (nlh->nlmsg_type) {
	case NLMSG_NOOP:
		return 0;
	case NLMSG_ERROR:
		if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(*e)))
			return -EBADMSG;
		e = NLMSG_DATA(nlh);
		if (!e->error)
			return 1;	/* acknowledgement */
		nl_save_ext_ack(nl, nlh);
		return e->error < 0 ? e->error : -EPROTO;
	case NLMSG_DONE:
		if (!dump)
			return -EBADMSG;
		if (nlh->nlmsg_len >= NLMSG_LENGTH(sizeof(int))) {
			memcpy(&done_err, NLMSG_DATA(nlh), sizeof(done_err));
			if (done_err < 0)
				return done_err;
		}
		return 1;
	case NLMSG_OVERRUN:
		return -ENOBUFS;
	default:
		if (!cb)
			return 0;
		done_err = cb(nlh, arg);
		return done_err < 0 ? done_err : 0;
	}
}

/* One recv(): -errno, or the number of bytes (MSG_TRUNC is -EMSGSIZE). */
static ssize_t nl_recv(struct nl_sock *nl, void *buf, size_t size)
{
	struct sockaddr_nl sa;
	struct iovec iov = { .iov_base = buf, .iov_len = size };
	struct msghdr msg = {
		.msg_name = &sa, .msg_namelen = sizeof(sa),
		.msg_iov = &iov, .msg_iovlen = 1,
	};
	ssize_t n;

	do {
		n = recvmsg(nl->fd, &msg, 0);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if (msg.msg_flags & MSG_TRUNC)
		return -EMSGSIZE;
	if (sa.nl_pid != 0)	/* only the kernel talks to us */
		return 0;
	return n;
}

static int nl_send(struct nl_sock *nl, struct nlmsghdr *nlh)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	ssize_t n;

	n = sendto(nl->fd, nlh, nlh->nlmsg_len, 0, (struct sockaddr *)&sa,
		   sizeof(sa));
	if (n < 0)
		return -errno;
	return (size_t)n == nlh->nlmsg_len ? 0 : -EIO;
}

static int nl_receive_until_done(struct nl_sock *nl, uint32_t seq, bool dump,
				 void *buf, nl_msg_cb cb, void *arg)
{
	const struct nlmsghdr *nlh;
	size_t left;
	ssize_t n;
	int ret;

	for (;;) {
		n = nl_recv(nl, buf, NL_BUF_SIZE);
		if (n < 0)
			return (int)n;
		left = (size_t)n;
		for (nlh = buf; NLMSG_OK(nlh, left); nlh = NLMSG_NEXT(nlh, left)) {
			if (nlh->nlmsg_seq != seq || nlh->nlmsg_pid != nl->portid)
				continue;	/* stale: an earlier request */
			ret = nl_handle_reply(nl, nlh, dump, cb, arg);
			if (ret)
				return ret < 0 ? ret : 0;
		}
	}
}

int nl_transact(struct nl_sock *nl, struct nl_req *r, nl_msg_cb cb,
		void *arg)
{
	bool dump = r->nlh->nlmsg_flags & NLM_F_DUMP;
	void *buf;
	int err;

	nl->ext_msg[0] = '\0';
	r->nlh->nlmsg_flags |= NLM_F_REQUEST | (dump ? 0 : NLM_F_ACK);
	r->nlh->nlmsg_seq = ++nl->seq;
	err = nl_send(nl, r->nlh);
	if (err)
		return err;
	buf = malloc(NL_BUF_SIZE);
	if (!buf)
		return -ENOMEM;
	err = nl_receive_until_done(nl, r->nlh->nlmsg_seq, dump, buf, cb, arg);
	free(buf);
	return err;
}

int nl_recv_notifications(struct nl_sock *nl, void *buf, size_t size,
			  nl_msg_cb cb, void *arg)
{
	const struct nlmsghdr *nlh;
	size_t left;
	ssize_t n;
	int ret;

	n = nl_recv(nl, buf, size);
	if (n < 0)
		return (int)n;
	left = (size_t)n;
	for (nlh = buf; NLMSG_OK(nlh, left); nlh = NLMSG_NEXT(nlh, left)) {
		if (nlh->nlmsg_type < NLMSG_MIN_TYPE)
			continue;
		ret = cb(nlh, arg);
		if (ret)
			return ret;
	}
	return 0;
}

/* --- generic netlink family resolution ------------------------------- */

struct genl_lookup {
	const char *group;
	uint16_t family;
	uint32_t group_id;
	bool family_found;
	bool group_found;
};

static int genl_match_group(struct genl_lookup *l, const struct nlattr *grp)
{
	const struct nlattr *tb[CTRL_ATTR_MCAST_GRP_MAX + 1];
	const char *name;
	int err;

	err = nl_parse_nested(grp, tb, CTRL_ATTR_MCAST_GRP_MAX);
	if (err)
		return err;
	if (!tb[CTRL_ATTR_MCAST_GRP_NAME] || !tb[CTRL_ATTR_MCAST_GRP_ID])
		return -EBADMSG;
	err = nla_get_str(tb[CTRL_ATTR_MCAST_GRP_NAME], &name);
	if (err || strcmp(name, l->group))
		return err;
	err = nla_get_u32(tb[CTRL_ATTR_MCAST_GRP_ID], &l->group_id);
	if (!err)
		l->group_found = true;
	return err;
}

static int genl_family_cb(const struct nlmsghdr *nlh, void *arg)
{
	const struct nlattr *tb[CTRL_ATTR_MAX + 1], *grp;
	struct genl_lookup *l = arg;
	const struct genlmsghdr *gh;
	const void *attrs;
	const char *pos;
	size_t len;
	int err;

	err = genl_msg_attrs(nlh, &gh, &attrs, &len);
	if (!err)
		err = nl_parse_attrs(attrs, len, tb, CTRL_ATTR_MAX);
	if (!err && !tb[CTRL_ATTR_FAMILY_ID])
		err = -EBADMSG;
	if (!err)
		err = nla_get_u16(tb[CTRL_ATTR_FAMILY_ID], &l->family);
	if (err)
		return err;
	l->family_found = true;
	if (!l->group || !tb[CTRL_ATTR_MCAST_GROUPS])
		return 0;
	pos = nla_payload(tb[CTRL_ATTR_MCAST_GROUPS]);
	len = nla_payload_len(tb[CTRL_ATTR_MCAST_GROUPS]);
	while ((err = nl_attr_next(&pos, &len, &grp)) > 0) {
		err = genl_match_group(l, grp);
		if (err)
			return err;
	}
	return err;
}

int genl_resolve(struct nl_sock *nl, const char *name, uint16_t *family,
		 const char *group, uint32_t *group_id)
{
	struct genl_lookup l = { .group = group };
	char buf[256];
	struct nl_req r;
	int err;

	nl_req_init(&r, buf, sizeof(buf), GENL_ID_CTRL, 0);
	err = nl_req_genl(&r, CTRL_CMD_GETFAMILY, 1);
	if (!err)
		err = nl_req_put_str(&r, CTRL_ATTR_FAMILY_NAME, name);
	if (err)
		return err;
	err = nl_transact(nl, &r, genl_family_cb, &l);
	if (err)
		return err;
	if (!l.family_found || (group && !l.group_found))
		return -ENOENT;
	*family = l.family;
	if (group)
		*group_id = l.group_id;
	return 0;
}
