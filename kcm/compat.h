/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Differences between the kernels kcmux supports (Debian 12's 6.1 and
 * 6.12) are absorbed here, so the other files carry no version checks.
 */
#ifndef _KCMUX_COMPAT_H
#define _KCMUX_COMPAT_H

#include <linux/bvec.h>
#include <linux/socket.h>
#include <linux/uio.h>
#include <linux/version.h>
#include <net/tcp.h>

#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 1, 0)
#error "kcmux needs Linux 6.1 or later"
#endif

/*
 * Hands TCP the n pages of bvec (len bytes in all) by reference, without
 * blocking.  Returns the bytes it took, or -errno if none.  TCP socket
 * locked.
 */
#ifdef MSG_SPLICE_PAGES
/* One call for all of them: TCP pushes once, not once per page. */
static inline int kcmux_tcp_send_pages(struct sock *sk, struct bio_vec *bvec,
				       int n, size_t len)
{
	struct msghdr msg = {
		.msg_flags = MSG_SPLICE_PAGES | MSG_DONTWAIT | MSG_NOSIGNAL,
	};

	iov_iter_bvec(&msg.msg_iter, ITER_SOURCE, bvec, n, len);
	return tcp_sendmsg_locked(sk, &msg, len);
}
#else
/* Before MSG_SPLICE_PAGES (6.5), TCP takes pages one sendpage at a time. */
static inline int kcmux_tcp_send_pages(struct sock *sk, struct bio_vec *bvec,
				       int n, size_t len)
{
	size_t sent = 0;
	int i, ret;

	for (i = 0; i < n; i++) {
		ret = tcp_sendpage_locked(sk, bvec[i].bv_page,
					  bvec[i].bv_offset, bvec[i].bv_len,
					  MSG_DONTWAIT | MSG_NOSIGNAL);
		if (ret <= 0)
			return sent ? sent : ret;
		sent += ret;
		if (ret < bvec[i].bv_len)
			break;
	}
	return sent;
}
#endif

#endif /* _KCMUX_COMPAT_H */
