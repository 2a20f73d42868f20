// SPDX-License-Identifier: GPL-2.0
/*
 * kcmux: a maintained Kernel Connection Multiplexor (AF_KCM).
 *
 * Module entry points only: bring the pieces up in order, tear them down
 * in reverse.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/net.h>
#include <net/genetlink.h>

#include "kcmux.h"

struct workqueue_struct *kcmux_wq;

static int __init kcmux_init(void)
{
	int err;

	kcmux_wq = alloc_workqueue("kcmux", WQ_MEM_RECLAIM, 0);
	if (!kcmux_wq)
		return -ENOMEM;

	err = kcmux_tx_pages_shrinker_init();
	if (err)
		goto err_wq;

	err = kcmux_psock_init();
	if (err)
		goto err_shrinker;

	/*
	 * The family first: if another module owns it, fail before touching
	 * its /proc names.  Nobody can create a socket before init returns,
	 * as __sock_create() cannot take a reference on a module still coming.
	 */
	err = kcmux_socket_init();
	if (err)
		goto err_psock;

	err = kcmux_netns_init();
	if (err)
		goto err_netns;

	err = kcmux_netlink_init();
	if (err)
		goto err_netlink;

	pr_info("AF_KCM (family %d) ready\n", PF_KCM);
	return 0;

err_netlink:
	kcmux_netns_uninit();
err_netns:
	kcmux_socket_uninit();
err_psock:
	kcmux_psock_uninit();
err_shrinker:
	kcmux_tx_pages_shrinker_uninit();
err_wq:
	destroy_workqueue(kcmux_wq);
	return err;
}

static void __exit kcmux_exit(void)
{
	kcmux_netlink_uninit();
	kcmux_socket_uninit();
	kcmux_netns_uninit();
	kcmux_psock_uninit();
	kcmux_tx_pages_shrinker_uninit();
	destroy_workqueue(kcmux_wq);
}

module_init(kcmux_init);
module_exit(kcmux_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Kernel Connection Multiplexor (AF_KCM), maintained out of tree");
MODULE_AUTHOR("kcmux developers");
MODULE_ALIAS_NETPROTO(PF_KCM);
MODULE_ALIAS_GENL_FAMILY(KCMUX_GENL_NAME);
