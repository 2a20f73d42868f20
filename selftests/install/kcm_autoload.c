// SPDX-License-Identifier: GPL-2.0
/*
 * kcm_autoload - use kcmux the way a program does, without loading it
 * first, and say what happened.  test-installed-tree.sh runs it in a VM
 * to show that the kernel loads an installed kcmux on demand, through the
 * module aliases depmod indexed (net-pf-41 and the generic netlink
 * family's).  Static: the guest has no libc.
 *
 *   kcm_autoload socket   socket(AF_KCM), then SIOCKCMCLONE and FIONREAD
 *   kcm_autoload genl     resolve the "kcmux" generic netlink family
 *
 * Prints one line, "ok: ..." and exits 0, or "ERRNO-NAME: what failed"
 * and exits 1.
 *
 * Built against the installed <linux/kcm.h> (pkg-config kcmux): the
 * kcmux-only names it uses would not compile with the distribution's.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/genetlink.h>
#include <linux/kcm.h>
#include <linux/netlink.h>

static int fail(const char *what)
{
	int err = errno;

	printf("%s: %s\n", strerrorname_np(err) ?: "?", what);
	return 1;
}

static int try_socket(void)
{
	struct kcm_clone clone = { .fd = -1 };
	int fd, queued = -1;

	fd = socket(AF_KCM, SOCK_DGRAM, KCMPROTO_CONNECTED);
	if (fd < 0)
		return fail("socket(AF_KCM, SOCK_DGRAM, KCMPROTO_CONNECTED)");
	if (ioctl(fd, SIOCKCMCLONE, &clone) < 0)
		return fail("SIOCKCMCLONE");
	/* FIONREAD answers only on kcmux, not on the in-tree kcm. */
	if (ioctl(clone.fd, FIONREAD, &queued) < 0)
		return fail("FIONREAD");
	if (queued != 0) {
		errno = EPROTO;
		return fail("FIONREAD on a new socket is not 0");
	}
	close(clone.fd);
	close(fd);
	printf("ok: AF_KCM socket, its clone (fd %d) and FIONREAD work\n", clone.fd);
	return 0;
}

/* Room for a CTRL_CMD_GETFAMILY reply: the family's ops and groups. */
#define REPLY_SIZE 8192

struct getfamily_request {
	struct nlmsghdr nlh;
	struct genlmsghdr genl;
	struct nlattr name_attr;
	char name[NLA_ALIGN(sizeof(KCMUX_GENL_NAME))];
};

/* Attribute type of a CTRL_CMD_NEWFAMILY reply with a payload of size. */
static const void *reply_attr(const struct nlmsghdr *nlh, unsigned short type,
			      size_t size)
{
	const struct nlattr *attr;
	int left;

	attr = (const void *)((const char *)NLMSG_DATA(nlh) + GENL_HDRLEN);
	left = (int)nlh->nlmsg_len - NLMSG_HDRLEN - GENL_HDRLEN;
	while (left >= NLA_HDRLEN && attr->nla_len >= NLA_HDRLEN &&
	       attr->nla_len <= left) {
		if ((attr->nla_type & NLA_TYPE_MASK) == type)
			return attr->nla_len >= NLA_HDRLEN + size ?
			       (const char *)attr + NLA_HDRLEN : NULL;
		left -= NLA_ALIGN(attr->nla_len);
		attr = (const void *)((const char *)attr + NLA_ALIGN(attr->nla_len));
	}
	return NULL;
}

static int try_genl(void)
{
	struct getfamily_request req = {
		.nlh = {
			.nlmsg_len = sizeof(req),
			.nlmsg_type = GENL_ID_CTRL,
			.nlmsg_flags = NLM_F_REQUEST,
			.nlmsg_seq = 1,
		},
		.genl = { .cmd = CTRL_CMD_GETFAMILY, .version = 1 },
		.name_attr = {
			.nla_len = NLA_HDRLEN + sizeof(KCMUX_GENL_NAME),
			.nla_type = CTRL_ATTR_FAMILY_NAME,
		},
		.name = KCMUX_GENL_NAME,
	};
	static char reply[REPLY_SIZE];
	const struct nlmsghdr *nlh = (const void *)reply;
	const void *id_attr, *version_attr;
	__u16 id = 0;
	__u32 version = 0;
	ssize_t len;
	int fd;

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
	if (fd < 0)
		return fail("socket(AF_NETLINK, NETLINK_GENERIC)");
	if (send(fd, &req, sizeof(req), 0) < 0)
		return fail("send CTRL_CMD_GETFAMILY");
	len = recv(fd, reply, sizeof(reply), 0);
	if (len < 0)
		return fail("recv CTRL_CMD_GETFAMILY reply");
	close(fd);
	if (len < (ssize_t)NLMSG_HDRLEN || !NLMSG_OK(nlh, len)) {
		errno = EPROTO;
		return fail("short netlink reply");
	}
	if (nlh->nlmsg_type == NLMSG_ERROR) {
		const struct nlmsgerr *nlerr = NLMSG_DATA(nlh);

		errno = nlerr->error ? -nlerr->error : EPROTO;
		return fail("CTRL_CMD_GETFAMILY \"" KCMUX_GENL_NAME "\"");
	}
	id_attr = reply_attr(nlh, CTRL_ATTR_FAMILY_ID, sizeof(id));
	version_attr = reply_attr(nlh, CTRL_ATTR_VERSION, sizeof(version));
	if (id_attr)
		memcpy(&id, id_attr, sizeof(id));
	if (version_attr)
		memcpy(&version, version_attr, sizeof(version));
	if (!id || version != KCMUX_GENL_VERSION) {
		errno = EPROTO;
		return fail("family id or version missing or wrong in the reply");
	}
	printf("ok: generic netlink family \"%s\" has id %u, version %u\n",
	       KCMUX_GENL_NAME, id, version);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "socket"))
		return try_socket();
	if (argc == 2 && !strcmp(argv[1], "genl"))
		return try_genl();
	fprintf(stderr, "usage: %s socket|genl\n", argv[0]);
	return 2;
}
