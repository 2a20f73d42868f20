// SPDX-License-Identifier: GPL-2.0
/*
 * The AF_KCM socket: creation, release, ioctls, options and poll.
 * Data transfer lives in rx.c and tx.c.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/net.h>
#include <linux/poll.h>
#include <linux/socket.h>
#include <linux/sockios.h>
#include <linux/termios.h>
#include <linux/uaccess.h>
#include <net/sock.h>

#include "kcmux.h"

static struct proto kcmux_proto = {
	.name		= "KCM",
	.owner		= THIS_MODULE,
	.obj_size	= sizeof(struct kcmux_sock),
};

static int kcmux_release(struct socket *sock)
{
	struct sock *sk = sock->sk;
	struct kcmux_sock *kcm;
	struct kcmux_mux *mux;

	if (!sk)
		return 0;

	kcm = kcmux_sk(sk);
	mux = kcm->mux;

	sock_orphan(sk);

	/* Stop steering to us and hand our messages to the siblings. */
	spin_lock_bh(&mux->lock);
	kcm->closing = true;
	if (kcm->rx_ready) {
		list_del(&kcm->rx_node);
		kcm->rx_ready = false;
	}
	list_del_init(&kcm->wake_node);
	kcmux_rx_requeue_queue(kcm);
	spin_unlock_bh(&mux->lock);

	kcmux_tx_release(kcm);

	spin_lock_bh(&mux->lock);
	list_del(&kcm->mux_node);
	mux->nr_socks--;
	spin_unlock_bh(&mux->lock);

	/*
	 * The mux before the socket: our socket's netns reference may be the
	 * last one, and the netns must not go while the mux is on its list.
	 */
	kcmux_mux_put(mux);
	sock->sk = NULL;
	sock_put(sk);
	return 0;
}

/* SIOCKCMATTACH is SIOCKCMATTACH_EXT with a BPF program and no answer. */
static int kcmux_ioctl_attach(struct socket *sock,
			      struct kcm_attach __user *uinfo)
{
	struct kcmux_attach info = { .flags = KCMUX_ATTACH_BPF };
	struct kcm_attach old;
	u32 psock_id;

	if (copy_from_user(&old, uinfo, sizeof(old)))
		return -EFAULT;
	info.fd = old.fd;
	info.bpf_fd = old.bpf_fd;
	return kcmux_attach(sock, &info, &psock_id);
}

/* The struct grows by size, the way clone3() and openat2() do. */
static int kcmux_ioctl_attach_ext(struct socket *sock,
				  struct kcmux_attach __user *uinfo)
{
	struct kcmux_attach info;
	u32 size, psock_id;
	int err;

	if (get_user(size, &uinfo->size))
		return -EFAULT;
	if (size < KCMUX_ATTACH_SIZE_VER0)
		return -EINVAL;
	err = copy_struct_from_user(&info, sizeof(info), uinfo, size);
	if (err)
		return err;
	if (info.reserved)
		return -EINVAL;

	err = kcmux_attach(sock, &info, &psock_id);
	if (err)
		return err;
	/* Attached either way, like a clone whose fd could not be stored. */
	return put_user(psock_id, &uinfo->psock_id);
}

static int kcmux_ioctl_psock_id(struct socket *sock,
				struct kcmux_psock_id __user *uinfo)
{
	struct kcmux_psock_id info;
	int err;

	if (copy_from_user(&info, uinfo, sizeof(info)))
		return -EFAULT;
	err = kcmux_psock_id_of(sock, info.fd, &info.psock_id);
	if (err)
		return err;
	return put_user(info.psock_id, &uinfo->psock_id);
}

/* SIOCINQ: what is left to read of the next message. */
static int kcmux_ioctl_inq(struct sock *sk, int __user *uval)
{
	struct kcmux_sock *kcm = kcmux_sk(sk);
	struct sk_buff *skb;
	int len;

	/* A reader could free the message under us. */
	mutex_lock(&kcm->rx_mutex);
	skb = kcmux_rx_peek(sk);
	len = skb ? kcmux_msg_cb(skb)->len : 0;
	mutex_unlock(&kcm->rx_mutex);
	return put_user(len, uval);
}

static int kcmux_ioctl(struct socket *sock, unsigned int cmd,
		       unsigned long arg)
{
	void __user *uarg = (void __user *)arg;

	switch (cmd) {
	case SIOCKCMATTACH:
		return kcmux_ioctl_attach(sock, uarg);
	case SIOCKCMATTACH_EXT:
		return kcmux_ioctl_attach_ext(sock, uarg);
	case SIOCKCMPSOCKID:
		return kcmux_ioctl_psock_id(sock, uarg);
	case SIOCINQ:
		return kcmux_ioctl_inq(sock->sk, uarg);
	case SIOCKCMUNATTACH: {
		struct kcm_unattach info;

		if (copy_from_user(&info, uarg, sizeof(info)))
			return -EFAULT;
		return kcmux_unattach(sock, &info);
	}
	case SIOCKCMCLONE:
		return kcmux_clone(sock, uarg);
	default:
		return -ENOIOCTLCMD;
	}
}

static int kcmux_setsockopt(struct socket *sock, int level, int optname,
			    sockptr_t optval, unsigned int optlen)
{
	struct kcmux_sock *kcm = kcmux_sk(sock->sk);
	int val;

	if (level != SOL_KCM)
		return -ENOPROTOOPT;
	if (optlen < sizeof(int))
		return -EINVAL;
	if (copy_from_sockptr(&val, optval, sizeof(val)))
		return -EFAULT;

	switch (optname) {
	case KCM_RECV_DISABLE:
		return kcmux_set_recv_disable(kcm, val != 0);
	case KCMUX_ORIGIN:
		WRITE_ONCE(kcm->origin, val != 0);
		return 0;
	default:
		return -ENOPROTOOPT;
	}
}

static int kcmux_getsockopt(struct socket *sock, int level, int optname,
			    char __user *optval, int __user *optlen)
{
	struct kcmux_sock *kcm = kcmux_sk(sock->sk);
	int val, len;

	if (level != SOL_KCM)
		return -ENOPROTOOPT;
	if (get_user(len, optlen))
		return -EFAULT;
	if (len < 0)
		return -EINVAL;

	switch (optname) {
	case KCM_RECV_DISABLE:
		val = READ_ONCE(kcm->rx_disabled);
		break;
	case KCMUX_ORIGIN:
		val = READ_ONCE(kcm->origin);
		break;
	default:
		return -ENOPROTOOPT;
	}

	len = min_t(int, len, sizeof(val));
	if (put_user(len, optlen) || copy_to_user(optval, &val, len))
		return -EFAULT;
	return 0;
}

static __poll_t kcmux_poll(struct file *file, struct socket *sock,
			   poll_table *wait)
{
	struct sock *sk = sock->sk;
	__poll_t mask = 0;

	sock_poll_wait(file, sock, wait);

	if (READ_ONCE(sk->sk_err))
		mask |= EPOLLERR;
	if (!skb_queue_empty_lockless(&sk->sk_receive_queue))
		mask |= EPOLLIN | EPOLLRDNORM;
	if (kcmux_tx_writable(sk))
		mask |= EPOLLOUT | EPOLLWRNORM | EPOLLWRBAND;
	else
		sk_set_bit(SOCKWQ_ASYNC_NOSPACE, sk);
	return mask;
}

/* DGRAM and SEQPACKET differ only in where a message ends (tx.c). */
static const struct proto_ops kcmux_ops = {
	.family		= PF_KCM,
	.owner		= THIS_MODULE,
	.release	= kcmux_release,
	.bind		= sock_no_bind,
	.connect	= sock_no_connect,
	.socketpair	= sock_no_socketpair,
	.accept		= sock_no_accept,
	.getname	= sock_no_getname,
	.poll		= kcmux_poll,
	.ioctl		= kcmux_ioctl,
	.listen		= sock_no_listen,
	.shutdown	= sock_no_shutdown,
	.setsockopt	= kcmux_setsockopt,
	.getsockopt	= kcmux_getsockopt,
	.sendmsg	= kcmux_sendmsg,
	.recvmsg	= kcmux_recvmsg,
	.mmap		= sock_no_mmap,
	.splice_read	= kcmux_splice_read,
};

static void kcmux_sock_destruct(struct sock *sk)
{
	mutex_destroy(&kcmux_sk(sk)->tx_mutex);
	mutex_destroy(&kcmux_sk(sk)->rx_mutex);
	/* Everything queued was purged or requeued in release. */
	WARN_ON_ONCE(!skb_queue_empty(&sk->sk_receive_queue));
	WARN_ON_ONCE(!skb_queue_empty(&sk->sk_write_queue));
}

static int kcmux_create(struct net *net, struct socket *sock, int protocol,
			int kern)
{
	struct kcmux_sock *kcm;
	struct kcmux_mux *mux;
	struct sock *sk;

	if (sock->type != SOCK_DGRAM && sock->type != SOCK_SEQPACKET)
		return -ESOCKTNOSUPPORT;

	if (protocol != KCMPROTO_CONNECTED)
		return -EPROTONOSUPPORT;

	sk = sk_alloc(net, PF_KCM, GFP_KERNEL, &kcmux_proto, kern);
	if (!sk)
		return -ENOMEM;

	mux = kcmux_mux_create(net);
	if (!mux) {
		sk_free(sk);
		return -ENOMEM;
	}

	sock->ops = &kcmux_ops;
	sock_init_data(sock, sk);
	sk->sk_destruct = kcmux_sock_destruct;

	kcm = kcmux_sk(sk);
	kcm->ino = SOCK_INODE(sock)->i_ino;
	kcmux_tx_sock_init(kcm);
	kcmux_rx_sock_init(kcm);
	kcmux_mux_add_sock(mux, kcm);
	return 0;
}

static const struct net_proto_family kcmux_family_ops = {
	.family	= PF_KCM,
	.create	= kcmux_create,
	.owner	= THIS_MODULE,
};

int kcmux_socket_init(void)
{
	int err;

	err = proto_register(&kcmux_proto, 1);
	if (err)
		return err;

	err = sock_register(&kcmux_family_ops);
	if (err == -EEXIST)
		pr_err("address family %d (AF_KCM) is already registered, most likely by the in-tree kcm module: unload it (rmmod kcm) and blacklist it, then load kcmux\n",
		       PF_KCM);
	if (err)
		proto_unregister(&kcmux_proto);
	return err;
}

void kcmux_socket_uninit(void)
{
	sock_unregister(PF_KCM);
	proto_unregister(&kcmux_proto);
}
