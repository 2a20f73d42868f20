/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A small raw netlink layer: requests, dumps, attribute parsing and
 * generic netlink family resolution.  Every function returns 0 or -errno
 * and prints nothing.  Replies are validated before they are looked at:
 * a short or malformed message is -EBADMSG, never a read out of bounds.
 */
#ifndef KCMCTL_NETLINK_H
#define KCMCTL_NETLINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/netlink.h>
#include <linux/genetlink.h>

#define NL_BUF_SIZE	65536

struct nl_sock {
	int fd;
	uint32_t seq;
	uint32_t portid;
	char ext_msg[256];	/* extended ack message of the last error */
};

/* Called for each reply message: 0, or -errno to stop with that error. */
typedef int (*nl_msg_cb)(const struct nlmsghdr *nlh, void *arg);

int nl_open(struct nl_sock *nl, int protocol);
void nl_close(struct nl_sock *nl);

/* A request being built in a caller's buffer of size cap. */
struct nl_req {
	struct nlmsghdr *nlh;
	size_t cap;
};

void nl_req_init(struct nl_req *r, void *buf, size_t cap, uint16_t type,
		 uint16_t flags);
/* Appends a generic netlink header (cmd, version). */
int nl_req_genl(struct nl_req *r, uint8_t cmd, uint8_t version);
int nl_req_put(struct nl_req *r, uint16_t type, const void *data,
	       size_t len);
int nl_req_put_str(struct nl_req *r, uint16_t type, const char *s);

/*
 * Sends the request and feeds every reply to cb until the end of the
 * dump (NLM_F_DUMP) or the acknowledgment (requests get NLM_F_ACK).  An
 * error reply is returned as -errno, its message in nl->ext_msg.
 */
int nl_transact(struct nl_sock *nl, struct nl_req *r, nl_msg_cb cb,
		void *arg);

/*
 * One recv() of notifications: each message goes to cb.  -ENOBUFS means
 * the socket overran and notifications were lost.
 */
int nl_recv_notifications(struct nl_sock *nl, void *buf, size_t size,
			  nl_msg_cb cb, void *arg);

/* --- attributes ------------------------------------------------------ */

/*
 * tb[type] = the attribute (the last one if repeated) for every type up
 * to max, NULL for those absent.  -EBADMSG if a length is inconsistent.
 */
int nl_parse_attrs(const void *data, size_t len, const struct nlattr **tb,
		   unsigned int max);
/* The attributes of a nested attribute. */
int nl_parse_nested(const struct nlattr *nest, const struct nlattr **tb,
		    unsigned int max);

static inline const void *nla_payload(const struct nlattr *a)
{
	return (const char *)a + NLA_HDRLEN;
}

static inline size_t nla_payload_len(const struct nlattr *a)
{
	return a->nla_len - NLA_HDRLEN;
}

/* -EBADMSG when the payload is not exactly that size. */
int nla_get_u16(const struct nlattr *a, uint16_t *v);
int nla_get_u32(const struct nlattr *a, uint32_t *v);
int nla_get_u64(const struct nlattr *a, uint64_t *v);
/* NUL-terminated within its payload, else -EBADMSG. */
int nla_get_str(const struct nlattr *a, const char **s);

/* The attributes after a generic netlink header; -EBADMSG if short. */
int genl_msg_attrs(const struct nlmsghdr *nlh, const struct genlmsghdr **gh,
		   const void **attrs, size_t *len);

/*
 * Id of generic netlink family name and, if group is not NULL, of its
 * multicast group.  -ENOENT if the family (or group) does not exist.
 */
int genl_resolve(struct nl_sock *nl, const char *name, uint16_t *family,
		 const char *group, uint32_t *group_id);

#endif /* KCMCTL_NETLINK_H */
