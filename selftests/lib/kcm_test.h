/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Small helpers shared by the kcmux selftests.
 *
 * Every test must pass against the in-tree kcm.ko (the reference) and
 * against kcmux.ko: nothing here may depend on which one is loaded,
 * except kcmux_is_reference() itself.
 *
 * Skipping, the harness way: SKIP() ends the test, and its TAP line
 * states the reason, e.g.
 *
 *	ok 9 global.module_identity # SKIP kcmux-only: testing the in-tree kcm.ko
 *
 * run-all.sh counts such lines as skipped, never as passed.  Usage:
 *
 *	if (kcmux_is_reference())
 *		SKIP(return, "kcmux-only: testing the in-tree kcm.ko");
 */
#ifndef KCM_TEST_H
#define KCM_TEST_H

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <linux/bpf.h>
#include <linux/kcm.h>		/* ../include/uapi first, see Makefile */

#ifndef AF_KCM
#define AF_KCM		41
#endif
#ifndef PF_KCM
#define PF_KCM		AF_KCM
#endif
#ifndef SOL_KCM
#define SOL_KCM		281	/* <linux/socket.h>, not exported by libc */
#endif

/* --- which module is under test --------------------------------------- */

/* True when we test the in-tree kcm.ko, i.e. kcmux is not loaded. */
static inline bool kcmux_is_reference(void)
{
	return access("/sys/module/kcmux", F_OK) != 0;
}

static inline const char *kcm_module_name(void)
{
	return kcmux_is_reference() ? "kcm" : "kcmux";
}

/*
 * Reference count of the module under test, -1 if it has none (built
 * into the kernel, or not loaded).
 */
static inline int kcm_module_refcnt(void)
{
	char path[64];
	FILE *f;
	int n = -1;

	snprintf(path, sizeof(path), "/sys/module/%s/refcnt", kcm_module_name());
	f = fopen(path, "re");
	if (!f)
		return -1;
	if (fscanf(f, "%d", &n) != 1)
		n = -1;
	fclose(f);
	return n;
}

/* --- KCM sockets ---------------------------------------------------------- */

/* socket(AF_KCM, type, KCMPROTO_CONNECTED); -errno on failure. */
static inline int kcm_socket(int type)
{
	int fd = socket(AF_KCM, type | SOCK_CLOEXEC, KCMPROTO_CONNECTED);

	return fd < 0 ? -errno : fd;
}

static inline int kcm_attach(int kcmfd, int tcpfd, int bpffd)
{
	struct kcm_attach a = { .fd = tcpfd, .bpf_fd = bpffd };

	return ioctl(kcmfd, SIOCKCMATTACH, &a) ? -errno : 0;
}

static inline int kcm_unattach(int kcmfd, int tcpfd)
{
	struct kcm_unattach u = { .fd = tcpfd };

	return ioctl(kcmfd, SIOCKCMUNATTACH, &u) ? -errno : 0;
}

/* --- TCP over loopback ------------------------------------------------ */

/*
 * A connected TCP pair over 127.0.0.1 (AF_INET) or ::1 (AF_INET6):
 * fds[0] is the connecting end, fds[1] the accepted one.  0 or -errno.
 */
static inline int kcm_tcp_pair(int family, int fds[2])
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	socklen_t len;
	int lfd, cfd = -1, afd = -1, err;

	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET) {
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(*sin);
	} else if (family == AF_INET6) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr = in6addr_loopback;
		len = sizeof(*sin6);
	} else {
		return -EAFNOSUPPORT;
	}

	lfd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		return -errno;
	/* Port 0: the kernel picks a free one, getsockname() tells which. */
	if (bind(lfd, (struct sockaddr *)&ss, len) || listen(lfd, 1) ||
	    getsockname(lfd, (struct sockaddr *)&ss, &len))
		goto fail;
	cfd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (cfd < 0 || connect(cfd, (struct sockaddr *)&ss, len))
		goto fail;
	afd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (afd < 0)
		goto fail;
	close(lfd);
	fds[0] = cfd;
	fds[1] = afd;
	return 0;
fail:
	err = -errno;
	if (cfd >= 0)
		close(cfd);
	close(lfd);
	return err;
}

/* --- the message format and its BPF parser ------------------------------ */

/*
 * Every test message: a 4-byte big-endian length of the payload, a
 * 4-byte header the tests may use as they like (id, sequence number),
 * then the payload.  The parser returns the whole length, 8 + payload.
 */
#define KCM_TEST_HDR_LEN	8

/* Build a message in buf (at least KCM_TEST_HDR_LEN + len bytes). */
static inline size_t kcm_test_frame(void *buf, uint32_t hdr,
				    const void *payload, uint32_t len)
{
	uint32_t be_len = htonl(len), be_hdr = htonl(hdr);
	char *p = buf;

	memcpy(p, &be_len, 4);
	memcpy(p + 4, &be_hdr, 4);
	if (len)
		memcpy(p + KCM_TEST_HDR_LEN, payload, len);
	return KCM_TEST_HDR_LEN + len;
}

/*
 * The parser, as raw eBPF (BPF_PROG_TYPE_SOCKET_FILTER):
 *
 *	r6 = r1				LD_ABS takes the skb from r6
 *	r0 = skb->len
 *	if r0 >= 4 goto +2
 *	r0 = 0				fewer than 4 bytes: need more
 *	exit
 *	r0 = ntohl(*(u32 *)skb[0])	LD_ABS|W converts from big endian
 *	r0 += 8
 *	exit
 *
 * Caveat, true of the in-tree kcm.ko and hence part of the ABI: the
 * program sees the skb from the start of the TCP data the strparser was
 * handed, not from the start of the message (the message's offset in
 * the skb is not visible to socket filters).  So offset 0 is the message
 * start only for the first message of a segment; tests should send one
 * message per write and let it be consumed before the next one.
 */
#define KCM_INSN(c, d, s, o, i) \
	((struct bpf_insn){ .code = (c), .dst_reg = (d), .src_reg = (s), \
			    .off = (o), .imm = (i) })

static inline int kcm_bpf_prog_load(const struct bpf_insn *insns,
				    unsigned int cnt, char *log,
				    unsigned int log_size)
{
	union bpf_attr attr;
	int fd;

	memset(&attr, 0, sizeof(attr));
	attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
	attr.insns = (uintptr_t)insns;
	attr.insn_cnt = cnt;
	attr.license = (uintptr_t)"GPL";
	if (log && log_size) {
		log[0] = '\0';
		attr.log_buf = (uintptr_t)log;
		attr.log_size = log_size;
		attr.log_level = 1;
	}
	fd = syscall(__NR_bpf, BPF_PROG_LOAD, &attr, sizeof(attr));
	return fd < 0 ? -errno : fd;
}

/* Load the parser above: a program fd, or -errno (verifier log on stderr). */
static inline int kcm_bpf_load_parser(void)
{
	const struct bpf_insn insns[] = {
		KCM_INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_6, BPF_REG_1, 0, 0),
		KCM_INSN(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_0, BPF_REG_6,
			 offsetof(struct __sk_buff, len), 0),
		KCM_INSN(BPF_JMP | BPF_JGE | BPF_K, BPF_REG_0, 0, 2, 4),
		KCM_INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0),
		KCM_INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
		KCM_INSN(BPF_LD | BPF_ABS | BPF_W, 0, 0, 0, 0),
		KCM_INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_0, 0, 0,
			 KCM_TEST_HDR_LEN),
		KCM_INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
	};
	const unsigned int cnt = sizeof(insns) / sizeof(insns[0]);
	static char log[16384];
	int fd;

	fd = kcm_bpf_prog_load(insns, cnt, NULL, 0);
	if (fd >= 0)
		return fd;
	/* Load again, only to get the verifier's explanation. */
	kcm_bpf_prog_load(insns, cnt, log, sizeof(log));
	fprintf(stderr, "# BPF_PROG_LOAD: %s\n# %s\n", strerror(-fd), log);
	return fd;
}

#endif /* KCM_TEST_H */
