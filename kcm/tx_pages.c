// SPDX-License-Identifier: GPL-2.0
/*
 * The send pages a mux keeps for reuse.
 *
 * A sender copies each message into its task's page_frag and TCP takes
 * the pages by reference.  skb_page_frag_refill() can refill a full page
 * only once TCP has let go of all of it, which on a busy stream is never
 * the page just filled, so every 32 KiB sent would take a new page that
 * init_on_alloc zeroes.  Instead a full page TCP still holds is traded in
 * here for the oldest page TCP has released: a stream cycles through the
 * pages it has in flight.
 *
 * Memory.  The ring grows only when its oldest pages are all still in
 * TCP's hands, so it holds about what the mux has had in flight (which
 * TCP's limits bound), and never more than KCMUX_TX_PAGES_MAX.  A released
 * page is ours alone, charged to the memory cgroup that allocated it and
 * to no socket: once a period, the released pages that the period's sends
 * did not need are freed, so an idle mux keeps KCMUX_TX_PAGES_KEEP.
 */
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/workqueue.h>

#include "kcmux.h"

/* Pages kept after a period without sends; enough for a 4 KiB stream. */
#define KCMUX_TX_PAGES_KEEP	4U
/* Oldest pages looked at per trade: they are released roughly in order. */
#define KCMUX_TX_PAGES_PROBE	8U
#define KCMUX_TX_PAGES_PERIOD	HZ

static struct page **kcmux_tx_pages_slot(struct kcmux_tx_pages *tp,
					 unsigned int i)
{
	return &tp->ring[(tp->head + i) % KCMUX_TX_PAGES_MAX];
}

/* Lock held.  One of the oldest pages if TCP has let go of it, or NULL. */
static struct page *kcmux_tx_pages_take(struct kcmux_tx_pages *tp)
{
	unsigned int i, probe = min(tp->count, KCMUX_TX_PAGES_PROBE);

	lockdep_assert_held(&tp->lock);
	for (i = 0; i < probe; i++) {
		struct page **slot = kcmux_tx_pages_slot(tp, i);
		struct page *page = *slot;

		/*
		 * Only our reference left: nobody can take another.  The
		 * writes into it depend on this read, as for the in-place
		 * reuse in skb_page_frag_refill().
		 */
		if (page_ref_count(page) != 1)
			continue;
		/* The oldest fills the hole; the rest keep their order. */
		*slot = *kcmux_tx_pages_slot(tp, 0);
		tp->head = (tp->head + 1) % KCMUX_TX_PAGES_MAX;
		tp->count--;
		tp->bytes -= page_size(page);
		return page;
	}
	return NULL;
}

/* Process context: the ring is allocated by the first sender to need it. */
static bool kcmux_tx_pages_ring(struct kcmux_tx_pages *tp, gfp_t gfp)
{
	struct page **ring;

	if (likely(READ_ONCE(tp->ring)))
		return true;
	ring = kcalloc(KCMUX_TX_PAGES_MAX, sizeof(*ring), gfp);
	if (!ring)
		return false;
	spin_lock(&tp->lock);
	if (!tp->ring) {
		WRITE_ONCE(tp->ring, ring);
		ring = NULL;
	}
	spin_unlock(&tp->lock);
	kfree(ring);
	return true;
}

/*
 * pfrag's page is full and TCP still holds part of it.  The mux takes it
 * and, if TCP is done with one of the mux's pages, pfrag gets that one to
 * fill from its start; otherwise pfrag is left empty for
 * skb_page_frag_refill() to allocate.  KCM socket locked.
 */
void kcmux_tx_pages_trade(struct kcmux_mux *mux, struct page_frag *pfrag,
			  gfp_t gfp)
{
	struct kcmux_tx_pages *tp = &mux->tx_pages;
	struct page *full = pfrag->page, *page;
	bool arm = false;

	pfrag->page = NULL;
	if (!kcmux_tx_pages_ring(tp, gfp)) {
		put_page(full);
		return;
	}

	spin_lock(&tp->lock);
	tp->trades++;
	page = kcmux_tx_pages_take(tp);
	if (tp->count < KCMUX_TX_PAGES_MAX) {
		*kcmux_tx_pages_slot(tp, tp->count++) = full;
		tp->bytes += page_size(full);
		full = NULL;
		arm = !page && tp->count == KCMUX_TX_PAGES_KEEP + 1;
	}
	spin_unlock(&tp->lock);

	/* At the limit the older pages stay: TCP releases them first. */
	if (full)
		put_page(full);
	if (arm)
		queue_delayed_work(kcmux_wq, &tp->trim, KCMUX_TX_PAGES_PERIOD);
	if (page) {
		pfrag->page = page;
		pfrag->offset = 0;
		pfrag->size = page_size(page);
	}
}

/*
 * Frees the released pages beyond what a period of the mux's sends took
 * (each send of a page's worth took one), keeping the pages TCP holds.
 * Runs while the ring holds more than KCMUX_TX_PAGES_KEEP.
 */
static void kcmux_tx_pages_trim(struct work_struct *work)
{
	struct kcmux_tx_pages *tp = container_of(to_delayed_work(work),
						 struct kcmux_tx_pages, trim);
	unsigned int i, kept = 0, released = 0, keep_released;
	bool rearm;

	spin_lock(&tp->lock);
	keep_released = max(tp->trades, KCMUX_TX_PAGES_KEEP);
	tp->trades = 0;
	for (i = 0; i < tp->count; i++) {
		struct page *page = *kcmux_tx_pages_slot(tp, i);

		/* Ours alone (see kcmux_tx_pages_take()), so ours to free. */
		if (page_ref_count(page) == 1 && released++ >= keep_released) {
			tp->bytes -= page_size(page);
			put_page(page);
			continue;
		}
		*kcmux_tx_pages_slot(tp, kept++) = page;
	}
	tp->count = kept;
	rearm = kept > KCMUX_TX_PAGES_KEEP;
	spin_unlock(&tp->lock);

	if (rearm)
		queue_delayed_work(kcmux_wq, &tp->trim, KCMUX_TX_PAGES_PERIOD);
}

void kcmux_tx_pages_init(struct kcmux_mux *mux)
{
	spin_lock_init(&mux->tx_pages.lock);
	INIT_DELAYED_WORK(&mux->tx_pages.trim, kcmux_tx_pages_trim);
}

/* The mux is going away, with no KCM socket left to send or trade. */
void kcmux_tx_pages_uninit(struct kcmux_mux *mux)
{
	struct kcmux_tx_pages *tp = &mux->tx_pages;
	unsigned int i;

	cancel_delayed_work_sync(&tp->trim);
	/* TCP frees the pages it still holds when it is done with them. */
	for (i = 0; i < tp->count; i++)
		put_page(*kcmux_tx_pages_slot(tp, i));
	kfree(tp->ring);
}
