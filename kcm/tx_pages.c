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
 * Memory pressure does not wait for the period: a shrinker frees released
 * pages of every ring at once, the pages a sender was about to reuse too.
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

/* The rings that hold pages, for the shrinker: the lock nests outside theirs. */
static LIST_HEAD(kcmux_tx_pages_rings);
static DEFINE_SPINLOCK(kcmux_tx_pages_rings_lock);
static struct shrinker *kcmux_tx_pages_shrinker;

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
	bool installed;

	if (likely(READ_ONCE(tp->ring)))
		return true;
	ring = kcalloc(KCMUX_TX_PAGES_MAX, sizeof(*ring), gfp);
	if (!ring)
		return false;
	spin_lock(&tp->lock);
	installed = !tp->ring;
	if (installed)
		WRITE_ONCE(tp->ring, ring);
	spin_unlock(&tp->lock);
	if (!installed) {
		kfree(ring);
		return true;
	}
	/* Once per mux: by the sender whose ring was installed. */
	spin_lock(&kcmux_tx_pages_rings_lock);
	list_add_tail(&tp->shrink_node, &kcmux_tx_pages_rings);
	spin_unlock(&kcmux_tx_pages_rings_lock);
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
 * Frees up to max released pages after the first keep_released of them,
 * keeping the pages TCP holds in their order.  Returns how many it freed.
 */
static unsigned int kcmux_tx_pages_free(struct kcmux_tx_pages *tp,
					unsigned int keep_released,
					unsigned long max)
{
	unsigned int i, kept = 0, released = 0, freed = 0;

	lockdep_assert_held(&tp->lock);
	for (i = 0; i < tp->count; i++) {
		struct page *page = *kcmux_tx_pages_slot(tp, i);

		/* Ours alone (see kcmux_tx_pages_take()), so ours to free. */
		if (freed < max && page_ref_count(page) == 1 &&
		    released++ >= keep_released) {
			tp->bytes -= page_size(page);
			put_page(page);
			freed++;
			continue;
		}
		*kcmux_tx_pages_slot(tp, kept++) = page;
	}
	tp->count = kept;
	return freed;
}

/*
 * Frees the released pages beyond what a period of the mux's sends took
 * (each send of a page's worth took one).  Runs while the ring holds
 * more than KCMUX_TX_PAGES_KEEP.
 */
static void kcmux_tx_pages_trim(struct work_struct *work)
{
	struct kcmux_tx_pages *tp = container_of(to_delayed_work(work),
						 struct kcmux_tx_pages, trim);
	bool rearm;

	spin_lock(&tp->lock);
	kcmux_tx_pages_free(tp, max(tp->trades, KCMUX_TX_PAGES_KEEP),
			    ULONG_MAX);
	tp->trades = 0;
	rearm = tp->count > KCMUX_TX_PAGES_KEEP;
	spin_unlock(&tp->lock);

	if (rearm)
		queue_delayed_work(kcmux_wq, &tp->trim, KCMUX_TX_PAGES_PERIOD);
}

/* Pages in all rings; those TCP still holds are counted, not freed. */
static unsigned long kcmux_tx_pages_count(struct shrinker *shrinker,
					  struct shrink_control *sc)
{
	struct kcmux_tx_pages *tp;
	unsigned long n = 0;

	spin_lock(&kcmux_tx_pages_rings_lock);
	list_for_each_entry(tp, &kcmux_tx_pages_rings, shrink_node)
		n += READ_ONCE(tp->count);
	spin_unlock(&kcmux_tx_pages_rings_lock);
	return n ?: SHRINK_EMPTY;
}

static unsigned long kcmux_tx_pages_scan(struct shrinker *shrinker,
					 struct shrink_control *sc)
{
	struct kcmux_tx_pages *tp;
	unsigned long freed = 0;

	spin_lock(&kcmux_tx_pages_rings_lock);
	list_for_each_entry(tp, &kcmux_tx_pages_rings, shrink_node) {
		if (freed >= sc->nr_to_scan)
			break;
		spin_lock(&tp->lock);
		freed += kcmux_tx_pages_free(tp, 0, sc->nr_to_scan - freed);
		spin_unlock(&tp->lock);
	}
	spin_unlock(&kcmux_tx_pages_rings_lock);
	return freed;
}

int kcmux_tx_pages_shrinker_init(void)
{
	kcmux_tx_pages_shrinker = kcmux_shrinker_create(kcmux_tx_pages_count,
							kcmux_tx_pages_scan,
							"kcmux-tx-pages");
	return kcmux_tx_pages_shrinker ? 0 : -ENOMEM;
}

/* Every mux is gone, and with it every ring. */
void kcmux_tx_pages_shrinker_uninit(void)
{
	WARN_ON_ONCE(!list_empty(&kcmux_tx_pages_rings));
	kcmux_shrinker_destroy(kcmux_tx_pages_shrinker);
}

void kcmux_tx_pages_init(struct kcmux_mux *mux)
{
	spin_lock_init(&mux->tx_pages.lock);
	INIT_DELAYED_WORK(&mux->tx_pages.trim, kcmux_tx_pages_trim);
	INIT_LIST_HEAD(&mux->tx_pages.shrink_node);
}

/* The mux is going away, with no KCM socket left to send or trade. */
void kcmux_tx_pages_uninit(struct kcmux_mux *mux)
{
	struct kcmux_tx_pages *tp = &mux->tx_pages;
	unsigned int i;

	cancel_delayed_work_sync(&tp->trim);
	spin_lock(&kcmux_tx_pages_rings_lock);
	list_del(&tp->shrink_node);
	spin_unlock(&kcmux_tx_pages_rings_lock);
	/* TCP frees the pages it still holds when it is done with them. */
	for (i = 0; i < tp->count; i++)
		put_page(*kcmux_tx_pages_slot(tp, i));
	kfree(tp->ring);
}
