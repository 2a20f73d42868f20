// SPDX-License-Identifier: GPL-2.0
/* Per network namespace state: the list of muxes and the /proc files. */
#include <net/net_namespace.h>
#include <net/netns/generic.h>

#include "kcmux.h"

unsigned int kcmux_net_id __read_mostly;

struct kcmux_net *kcmux_net(struct net *net)
{
	return net_generic(net, kcmux_net_id);
}

static int __net_init kcmux_net_init(struct net *net)
{
	struct kcmux_net *knet = kcmux_net(net);

	mutex_init(&knet->lock);
	INIT_LIST_HEAD(&knet->mux_list);
	xa_init_flags(&knet->psock_ids, XA_FLAGS_ALLOC1 | XA_FLAGS_LOCK_BH);
	return kcmux_proc_init_net(net);
}

static void __net_exit kcmux_net_exit(struct net *net)
{
	struct kcmux_net *knet = kcmux_net(net);
	XA_STATE(xas, &knet->psock_ids, 0);
	void *left;

	kcmux_proc_exit_net(net);
	/* Every KCM socket holds a reference on its netns. */
	WARN_ON_ONCE(!list_empty(&knet->mux_list));
	/*
	 * No psock, and no id reserved for one, may be left.  Not checked
	 * with xa_empty(): an xa_alloc_cyclic() that fails for memory can
	 * leave empty nodes in the array (it links each node as it gets
	 * it), which xa_destroy() frees.  xas_find() sees reserved ids too.
	 */
	rcu_read_lock();
	left = xas_find(&xas, ULONG_MAX);
	rcu_read_unlock();
	WARN_ONCE(left, "kcmux: psock id %lu left at netns exit\n",
		  xas.xa_index);
	xa_destroy(&knet->psock_ids);
}

static struct pernet_operations kcmux_net_ops = {
	.init = kcmux_net_init,
	.exit = kcmux_net_exit,
	.id   = &kcmux_net_id,
	.size = sizeof(struct kcmux_net),
};

int kcmux_netns_init(void)
{
	return register_pernet_device(&kcmux_net_ops);
}

void kcmux_netns_uninit(void)
{
	unregister_pernet_device(&kcmux_net_ops);
}
