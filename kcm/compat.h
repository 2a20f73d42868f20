/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Differences between the kernels kcmux supports (Debian 12's 6.1 and
 * 6.12) are absorbed here, so the other files carry no version checks.
 */
#ifndef _KCMUX_COMPAT_H
#define _KCMUX_COMPAT_H

#include <linux/bvec.h>
#include <linux/shrinker.h>
#include <linux/slab.h>
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

/*
 * A registered shrinker with the given callbacks, or NULL.  6.7 turned
 * register_shrinker() of a caller's struct into shrinker_alloc() and
 * shrinker_register().
 */
typedef unsigned long (*kcmux_shrink_fn)(struct shrinker *shrinker,
					 struct shrink_control *sc);

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 7, 0)
static inline struct shrinker *kcmux_shrinker_create(kcmux_shrink_fn count,
						     kcmux_shrink_fn scan,
						     const char *name)
{
	struct shrinker *shrinker = shrinker_alloc(0, "%s", name);

	if (!shrinker)
		return NULL;
	shrinker->count_objects = count;
	shrinker->scan_objects = scan;
	shrinker_register(shrinker);
	return shrinker;
}

static inline void kcmux_shrinker_destroy(struct shrinker *shrinker)
{
	shrinker_free(shrinker);
}
#else
static inline struct shrinker *kcmux_shrinker_create(kcmux_shrink_fn count,
						     kcmux_shrink_fn scan,
						     const char *name)
{
	struct shrinker *shrinker = kzalloc(sizeof(*shrinker), GFP_KERNEL);

	if (!shrinker)
		return NULL;
	shrinker->count_objects = count;
	shrinker->scan_objects = scan;
	shrinker->seeks = DEFAULT_SEEKS;
	if (register_shrinker(shrinker, "%s", name)) {
		kfree(shrinker);
		return NULL;
	}
	return shrinker;
}

static inline void kcmux_shrinker_destroy(struct shrinker *shrinker)
{
	unregister_shrinker(shrinker);
	kfree(shrinker);
}
#endif

#endif /* _KCMUX_COMPAT_H */
