// SPDX-License-Identifier: GPL-2.0
/*
 * /proc/net/kcm (every mux, KCM socket and psock) and /proc/net/kcm_stats
 * (totals for the namespace).  The column names follow the in-tree module
 * so existing scripts keep working; kcm_stats drops in-tree's RX-Aborts
 * column (never counted) and prints Unattach before UnattchRsvd with the
 * matching values (in-tree swaps them).
 */
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <net/net_namespace.h>
#include <net/sock.h>

#include "kcmux.h"

/* Sum over the live and freed psocks of mux.  mux->lock held. */
static void kcmux_mux_psock_totals(struct kcmux_mux *mux,
				   struct kcmux_psock_stats *sum)
{
	struct kcmux_psock *psock;

	lockdep_assert_held(&mux->lock);
	kcmux_psock_stats_add(sum, &mux->retired_psock);
	list_for_each_entry(psock, &mux->psocks, mux_node)
		kcmux_psock_stats_add(sum, &psock->stats);
}

static void kcmux_show_sock(struct seq_file *seq, struct kcmux_sock *kcm)
{
	struct sock *sk = &kcm->sk;

	seq_printf(seq, "   kcm-%-7u %-10llu %-16llu %-10llu %-16llu %-8u %-8d %-8u %-8d ",
		   kcm->index, kcm->stats.rx_msgs, kcm->stats.rx_bytes,
		   kcm->stats.tx_msgs, kcm->stats.tx_bytes,
		   kcmux_rx_queued(kcm),
		   sk_rmem_alloc_get(sk),
		   skb_queue_len(&sk->sk_write_queue),
		   sk_wmem_alloc_get(sk));
	if (kcm->tx_psock)
		seq_printf(seq, "Psck-%u ", kcm->tx_psock->index);
	if (kcm->tx_waiting)
		seq_puts(seq, "TxWait ");
	if (kcm->rx_ready)
		seq_puts(seq, "RxWait ");
	if (kcm->rx_disabled)
		seq_puts(seq, "RxDisabled ");
	seq_putc(seq, '\n');
}

static void kcmux_show_psock(struct seq_file *seq, struct kcmux_psock *psock)
{
	struct sock *csk = psock->sk;

	seq_printf(seq, "   psock-%-5u %-10llu %-16llu %-10llu %-16llu %-8u %-8d %-8u %-8d ",
		   psock->index, psock->stats.rx_msgs, psock->stats.rx_bytes,
		   psock->stats.tx_msgs, psock->stats.tx_bytes,
		   skb_queue_len(&csk->sk_receive_queue),
		   atomic_read(&csk->sk_rmem_alloc),
		   skb_queue_len(&csk->sk_write_queue),
		   refcount_read(&csk->sk_wmem_alloc));
	if (psock->unattaching)
		seq_puts(seq, "Done ");
	if (psock->tx_stopped)
		seq_puts(seq, "TxStop ");
	if (READ_ONCE(psock->frame.stopped))
		seq_puts(seq, "RxStop ");
	if (psock->tx_owner)
		seq_printf(seq, "Rsvd-%u ", psock->tx_owner->index);
	if (psock->rx_ready)
		seq_puts(seq, "RdyRx ");
	seq_putc(seq, '\n');
}

static void kcmux_show_mux(struct seq_file *seq, struct kcmux_mux *mux)
{
	struct kcmux_psock_stats psocks = {};
	struct kcmux_psock *psock;
	struct kcmux_sock *kcm;

	spin_lock_bh(&mux->lock);
	kcmux_mux_psock_totals(mux, &psocks);
	seq_printf(seq, "%-14s %-10llu %-16llu %-10llu %-16llu %-8s %-8s %-8s %-8s KCMs: %d, Psocks %d\n",
		   "mux", mux->stats.rx_msgs, mux->stats.rx_bytes,
		   psocks.tx_msgs, psocks.tx_bytes, "-", "-", "-", "-",
		   mux->nr_socks, mux->nr_psocks);
	list_for_each_entry(kcm, &mux->socks, mux_node)
		kcmux_show_sock(seq, kcm);
	list_for_each_entry(psock, &mux->psocks, mux_node)
		kcmux_show_psock(seq, psock);
	spin_unlock_bh(&mux->lock);
}

static int kcmux_proc_show(struct seq_file *seq, void *v)
{
	struct kcmux_net *knet = kcmux_net(seq->private);
	struct kcmux_mux *mux;

	mutex_lock(&knet->lock);
	seq_printf(seq, "*** KCM statistics (%d MUX) ****\n", knet->mux_count);
	seq_printf(seq, "%-14s %-10s %-16s %-10s %-16s %-8s %-8s %-8s %-8s %s\n",
		   "Object", "RX-Msgs", "RX-Bytes", "TX-Msgs", "TX-Bytes",
		   "Recv-Q", "Rmem", "Send-Q", "Smem", "Status");
	list_for_each_entry(mux, &knet->mux_list, net_node)
		kcmux_show_mux(seq, mux);
	mutex_unlock(&knet->lock);
	return 0;
}

static int kcmux_stats_show(struct seq_file *seq, void *v)
{
	struct kcmux_net *knet = kcmux_net(seq->private);
	struct kcmux_psock_stats ps = {};
	struct kcmux_mux_stats ms = {};
	struct kcmux_mux *mux;

	mutex_lock(&knet->lock);
	ms = knet->retired_mux;
	kcmux_psock_stats_add(&ps, &knet->retired_psock);
	list_for_each_entry(mux, &knet->mux_list, net_node) {
		spin_lock_bh(&mux->lock);
		ms.rx_msgs += mux->stats.rx_msgs;
		ms.rx_bytes += mux->stats.rx_bytes;
		ms.tx_retries += mux->stats.tx_retries;
		ms.psock_attach += mux->stats.psock_attach;
		ms.psock_unattach += mux->stats.psock_unattach;
		ms.psock_unattach_rsvd += mux->stats.psock_unattach_rsvd;
		ms.rx_ready_drops += mux->stats.rx_ready_drops;
		kcmux_mux_psock_totals(mux, &ps);
		spin_unlock_bh(&mux->lock);
	}
	mutex_unlock(&knet->lock);

	/* A mux transmits only through its psocks: its tx is their sum. */
	seq_printf(seq, "%-8s %-10s %-16s %-10s %-16s %-10s %-10s %-10s %-11s %-10s\n",
		   "MUX", "RX-Msgs", "RX-Bytes", "TX-Msgs", "TX-Bytes",
		   "TX-Retries", "Attach", "Unattach", "UnattchRsvd",
		   "RX-RdyDrops");
	seq_printf(seq, "%-8s %-10llu %-16llu %-10llu %-16llu %-10u %-10u %-10u %-11u %-10u\n",
		   "", ms.rx_msgs, ms.rx_bytes, ps.tx_msgs, ps.tx_bytes,
		   ms.tx_retries, ms.psock_attach, ms.psock_unattach,
		   ms.psock_unattach_rsvd, ms.rx_ready_drops);

	seq_printf(seq, "%-8s %-10s %-16s %-10s %-16s %-10s %-10s %-10s %-10s %-10s %-10s %-10s %-10s %-10s %-10s\n",
		   "Psock", "RX-Msgs", "RX-Bytes", "TX-Msgs", "TX-Bytes",
		   "Reserved", "Unreserved", "RX-Intr", "RX-Unrecov",
		   "RX-MemFail", "RX-NeedMor", "RX-BadLen", "RX-TooBig",
		   "RX-Timeout", "TX-Aborts");
	seq_printf(seq, "%-8s %-10llu %-16llu %-10llu %-16llu %-10u %-10u %-10u %-10u %-10u %-10u %-10u %-10u %-10u %-10u\n",
		   "", ps.rx_msgs, ps.rx_bytes, ps.tx_msgs, ps.tx_bytes,
		   ps.tx_reserved, ps.tx_unreserved, ps.rx_interrupted,
		   ps.rx_unrecoverable, ps.rx_mem_fail, ps.rx_need_more_hdr,
		   ps.rx_bad_len, ps.rx_too_big, ps.rx_timeouts, ps.tx_aborts);
	return 0;
}

int kcmux_proc_init_net(struct net *net)
{
	if (!proc_create_net_single("kcm", 0444, net->proc_net,
				    kcmux_proc_show, NULL))
		return -ENOMEM;
	if (!proc_create_net_single("kcm_stats", 0444, net->proc_net,
				    kcmux_stats_show, NULL)) {
		remove_proc_entry("kcm", net->proc_net);
		return -ENOMEM;
	}
	return 0;
}

void kcmux_proc_exit_net(struct net *net)
{
	remove_proc_entry("kcm_stats", net->proc_net);
	remove_proc_entry("kcm", net->proc_net);
}
