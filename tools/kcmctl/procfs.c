// SPDX-License-Identifier: GPL-2.0
/*
 * Readers of /proc/net/kcm and /proc/net/kcm_stats, the only view of the
 * in-tree kcm module (and one of kcmux).
 *
 * Columns are found by the names in the header lines, not by position:
 * the two modules differ in a column or two (in-tree kcm_stats has
 * RX-Aborts, its KCM sockets print "-" for Smem) and may differ more
 * later.  Anything that does not look like either file is -EBADMSG.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "kcmctl.h"
#include "kcminfo.h"

#define KCM_LINE_MAX	4096
#define KCM_MAX_WORDS	64

/* Splits line (modified) into blank-separated words; -E2BIG if too many. */
static int kcm_split(char *line, char **w, int max)
{
	char *save = NULL, *t;
	int n = 0;

	for (t = strtok_r(line, " \t\n", &save); t;
	     t = strtok_r(NULL, " \t\n", &save)) {
		if (n == max)
			return -E2BIG;
		w[n++] = t;
	}
	return n;
}

/* fgets() of a whole line: 1, 0 at the end, -EBADMSG if too long. */
static int kcm_get_line(FILE *f, char *line, size_t size)
{
	size_t len;

	if (!fgets(line, (int)size, f))
		return ferror(f) ? -EIO : 0;
	len = strlen(line);
	if (len == size - 1 && line[len - 1] != '\n' && !feof(f))
		return -EBADMSG;
	return 1;
}

/* --- /proc/net/kcm --------------------------------------------------- */

enum kcm_col_kind { COL_IGNORE, COL_STAT, COL_PROC };

struct kcm_col {
	enum kcm_col_kind kind;
	unsigned int idx;	/* KCMUX_STAT_* or kcm_proc_cols.col[] */
};

struct kcm_proc_header {
	unsigned int ncols;	/* value columns, between Object and Status */
	struct kcm_col col[KCM_MAX_WORDS];
};

static struct kcm_col kcm_col_of(const char *name)
{
	static const struct {
		const char *name;
		struct kcm_col col;
	} map[] = {
		{ "RX-Msgs",	{ COL_STAT, KCMUX_STAT_RX_MSGS } },
		{ "RX-Bytes",	{ COL_STAT, KCMUX_STAT_RX_BYTES } },
		{ "TX-Msgs",	{ COL_STAT, KCMUX_STAT_TX_MSGS } },
		{ "TX-Bytes",	{ COL_STAT, KCMUX_STAT_TX_BYTES } },
		{ "Recv-Q",	{ COL_PROC, 0 } },
		{ "Rmem",	{ COL_PROC, 1 } },
		{ "Send-Q",	{ COL_PROC, 2 } },
		{ "Smem",	{ COL_PROC, 3 } },
	};
	struct kcm_col none = { COL_IGNORE, 0 };
	size_t i;

	for (i = 0; i < KC_ARRAY_SIZE(map); i++)
		if (!strcmp(map[i].name, name))
			return map[i].col;
	return none;
}

static int kcm_parse_header(char **w, int n, struct kcm_proc_header *h)
{
	int i;

	if (n < 2 || strcmp(w[n - 1], "Status"))
		return -EBADMSG;
	h->ncols = n - 2;
	for (i = 1; i < n - 1; i++)
		h->col[i - 1] = kcm_col_of(w[i]);
	return 0;
}

/* The blank-separated words w[0..n) into buf, cut to fit. */
static void kcm_join(char **w, int n, char *buf, size_t size)
{
	size_t len = 0;
	int i;

	buf[0] = '\0';
	for (i = 0; i < n && len < size; i++)
		len += snprintf(buf + len, size - len, "%s%s", i ? " " : "",
				w[i]);
}

/* Values of an object line (w[0] is its name) into o. */
static int kcm_parse_values(const struct kcm_proc_header *h, char **w, int n,
			    struct kcm_obj *o)
{
	const struct kcm_col *c;
	unsigned int i;
	uint64_t v;

	if ((unsigned int)n < h->ncols + 1)
		return -EBADMSG;
	o->proc.valid = true;
	for (i = 0; i < h->ncols; i++) {
		c = &h->col[i];
		if (!strcmp(w[i + 1], "-"))
			continue;
		if (parse_u64(w[i + 1], UINT64_MAX, &v))
			return -EBADMSG;
		if (c->kind == COL_STAT) {
			kcm_set_stat(&o->stats, c->idx, v);
		} else if (c->kind == COL_PROC) {
			o->proc.col[c->idx] = v;
			o->proc.have |= 1U << c->idx;
		}
	}
	kcm_join(w + h->ncols + 1, n - (int)h->ncols - 1, o->proc.status,
		 sizeof(o->proc.status));
	return 0;
}

/* "kcm-3" with prefix "kcm-": 3. */
static int kcm_parse_index(const char *word, const char *prefix,
			   struct kcm_obj *o)
{
	uint64_t v;

	if (parse_u64(word + strlen(prefix), UINT32_MAX, &v))
		return -EBADMSG;
	o->proc.has_index = true;
	o->proc.index = (uint32_t)v;
	return 0;
}

/* The mux line's status, "KCMs: 2, Psocks 1", becomes two attributes. */
static void kcm_parse_mux_status(struct kcm_obj *o)
{
	unsigned int socks, psocks;
	char end;

	if (sscanf(o->proc.status, "KCMs: %u, Psocks %u%c", &socks, &psocks,
		   &end) != 2)
		return;
	kcm_set(o, KCMUX_A_NR_SOCKS, socks);
	kcm_set(o, KCMUX_A_NR_PSOCKS, psocks);
	o->proc.status[0] = '\0';
}

static int kcm_proc_object(const struct kcm_proc_header *h, char **w, int n,
			   struct kcm_snapshot *s)
{
	struct kcm_mux *mux = s->n ? &s->mux[s->n - 1] : NULL;
	struct kcm_obj *o;
	int err;

	if (!strcmp(w[0], "mux")) {
		mux = kcm_snapshot_add(s);
		if (!mux)
			return -ENOMEM;
		err = kcm_parse_values(h, w, n, &mux->obj);
		if (!err)
			kcm_parse_mux_status(&mux->obj);
		return err;
	}
	if (!mux)
		return -EBADMSG;	/* a socket before any mux */
	if (!strncmp(w[0], "kcm-", 4))
		o = kcm_obj_list_add(&mux->socks);
	else if (!strncmp(w[0], "psock-", 6))
		o = kcm_obj_list_add(&mux->psocks);
	else
		return -EBADMSG;
	if (!o)
		return -ENOMEM;
	err = kcm_parse_index(w[0], w[0][0] == 'k' ? "kcm-" : "psock-", o);
	return err ? err : kcm_parse_values(h, w, n, o);
}

int kcm_proc_read(FILE *f, struct kcm_snapshot *s)
{
	struct kcm_proc_header h = { 0 };
	char line[KCM_LINE_MAX], *w[KCM_MAX_WORDS];
	bool have_header = false;
	int n, err;

	s->source = KCM_SOURCE_PROC;
	while ((err = kcm_get_line(f, line, sizeof(line))) > 0) {
		n = kcm_split(line, w, KCM_MAX_WORDS);
		if (n < 0)
			return -EBADMSG;
		if (n == 0 || !strncmp(w[0], "***", 3))
			continue;
		if (!strcmp(w[0], "Object")) {
			err = kcm_parse_header(w, n, &h);
			have_header = !err;
		} else if (have_header) {
			err = kcm_proc_object(&h, w, n, s);
		} else {
			err = -EBADMSG;
		}
		if (err)
			return err;
	}
	if (err)
		return err;
	return have_header ? 0 : -EBADMSG;
}

/* --- /proc/net/kcm_stats --------------------------------------------- */

static bool kcm_is_number(const char *w)
{
	uint64_t v;

	return !parse_u64(w, UINT64_MAX, &v);
}

static int kcm_stats_section(FILE *f, char **hw, int nh,
			     struct kcm_stats_section *sect)
{
	char line[KCM_LINE_MAX], *vw[KCM_MAX_WORDS];
	int i, nv, err;

	if (nh - 1 > KCM_STATS_MAX_COLS)
		return -EBADMSG;
	snprintf(sect->name, sizeof(sect->name), "%s", hw[0]);
	sect->ncols = nh - 1;
	for (i = 1; i < nh; i++)
		snprintf(sect->col[i - 1], sizeof(sect->col[0]), "%s", hw[i]);
	err = kcm_get_line(f, line, sizeof(line));
	if (err <= 0)
		return err ? err : -EBADMSG;
	nv = kcm_split(line, vw, KCM_MAX_WORDS);
	if (nv != nh - 1)
		return -EBADMSG;
	for (i = 0; i < nv; i++)
		if (parse_u64(vw[i], UINT64_MAX, &sect->val[i]))
			return -EBADMSG;
	return 0;
}

int kcm_proc_read_stats(FILE *f, struct kcm_stats_table *t)
{
	char line[KCM_LINE_MAX], *w[KCM_MAX_WORDS];
	int n, err;

	memset(t, 0, sizeof(*t));
	while ((err = kcm_get_line(f, line, sizeof(line))) > 0) {
		n = kcm_split(line, w, KCM_MAX_WORDS);
		if (n < 0)
			return -EBADMSG;
		if (n == 0)
			continue;
		/* A value line must follow its header. */
		if (n < 2 || kcm_is_number(w[0]) ||
		    t->nsect == KCM_STATS_MAX_SECT)
			return -EBADMSG;
		err = kcm_stats_section(f, w, n, &t->sect[t->nsect]);
		if (err)
			return err;
		t->nsect++;
	}
	if (err)
		return err;
	return t->nsect ? 0 : -EBADMSG;
}

void kcm_stats_col_key(const char *col, char *key, size_t size)
{
	/* The netlink names for the same counters. */
	static const char *const map[][2] = {
		{ "RX-Msgs", "rx_msgs" },	{ "RX-Bytes", "rx_bytes" },
		{ "TX-Msgs", "tx_msgs" },	{ "TX-Bytes", "tx_bytes" },
		{ "TX-Retries", "tx_retries" },	{ "Attach", "attached" },
		{ "Unattach", "unattached" },
		{ "UnattchRsvd", "unattached_rsvd" },
		{ "RX-RdyDrops", "rx_ready_drops" },
		{ "TX-TargetDrops", "tx_target_drops" },
		{ "Reserved", "tx_reserved" },	{ "Unreserved", "tx_unreserved" },
		{ "RX-Aborts", "rx_aborts" },	{ "RX-Intr", "rx_interrupted" },
		{ "RX-Unrecov", "rx_unrecoverable" },
		{ "RX-MemFail", "rx_mem_fail" },
		{ "RX-NeedMor", "rx_need_more_hdr" },
		{ "RX-BadLen", "rx_bad_len" },	{ "RX-TooBig", "rx_too_big" },
		{ "RX-Timeout", "rx_timeouts" },
		{ "TX-Aborts", "tx_aborts" },
	};
	size_t i;

	for (i = 0; i < KC_ARRAY_SIZE(map); i++) {
		if (!strcmp(map[i][0], col)) {
			snprintf(key, size, "%s", map[i][1]);
			return;
		}
	}
	/* A column we do not know yet: lower case, '-' as '_'. */
	for (i = 0; col[i] && i + 1 < size; i++)
		key[i] = col[i] == '-' ? '_' : (char)tolower((unsigned char)col[i]);
	key[i] = '\0';
}
