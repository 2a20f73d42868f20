// SPDX-License-Identifier: GPL-2.0
/*
 * kcmctl show: every multiplexor of the network namespace with its KCM
 * sockets and psocks; kcmctl stats: the namespace's totals.
 *
 * show asks the kcmux generic netlink family and falls back to
 * /proc/net/kcm when it does not resolve (the in-tree module has only
 * that).  stats always reads /proc/net/kcm_stats: its totals include the
 * muxes and psocks that are gone, which no dump can list.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "genl.h"
#include "kcmctl.h"
#include "kcminfo.h"

#define KCM_PROC_FILE		"/proc/net/kcm"
#define KCM_PROC_STATS_FILE	"/proc/net/kcm_stats"

static void show_usage(void)
{
	printf("Usage: kcmctl show [ source { auto | netlink | proc } ]\n"
	       "       kcmctl stats\n"
	       "\n"
	       "show: multiplexors, their KCM sockets and psocks, with counters.\n"
	       "  source auto     netlink if the kcmux family exists, else /proc\n"
	       "  source netlink  the kcmux generic netlink family only\n"
	       "  source proc     " KCM_PROC_FILE " only (any kcm module)\n"
	       "stats: the totals of " KCM_PROC_STATS_FILE ".\n");
}

/* fopen() of a /proc/net file, explaining its usual absence. */
static int show_open_proc(const char *path, FILE **f)
{
	*f = fopen(path, "re");
	if (*f)
		return 0;
	if (errno == ENOENT)
		return kc_err(ENOENT, "%s (is a kcm module loaded?)", path);
	return kc_err(errno, "%s", path);
}

static int show_from_proc(struct kcm_snapshot *s)
{
	FILE *f;
	int err;

	err = show_open_proc(KCM_PROC_FILE, &f);
	if (err)
		return err;
	err = kcm_proc_read(f, s);
	fclose(f);
	if (err == -EBADMSG)
		return kc_err(err, "%s: unexpected format", KCM_PROC_FILE);
	if (err)
		return kc_err(err, "read %s", KCM_PROC_FILE);
	return 0;
}

static bool show_netlink_absent(int err)
{
	return err == -ENOENT || err == -EPROTONOSUPPORT || err == -EAFNOSUPPORT;
}

static int show_collect(enum kcm_source src, struct kcm_snapshot *s)
{
	struct kcm_genl g;
	int err;

	if (src == KCM_SOURCE_PROC)
		return show_from_proc(s);
	err = kcm_genl_open(&g, false);
	if (err && src == KCM_SOURCE_AUTO && show_netlink_absent(err))
		return show_from_proc(s);
	if (err == -ENOENT)
		return kc_err(err, "generic netlink family '%s' (kcmux not loaded?)",
			      KCMUX_GENL_NAME);
	if (err)
		return kc_err(err, "generic netlink family '%s'", KCMUX_GENL_NAME);
	err = kcm_genl_snapshot(&g, s);
	if (err)
		err = kc_err(err, "netlink dump of '%s'%s%s", KCMUX_GENL_NAME,
			     g.nl.ext_msg[0] ? ": " : "", g.nl.ext_msg);
	kcm_genl_close(&g);
	return err;
}

static int show_parse_args(struct kc_args *a, enum kcm_source *src)
{
	static const char *const keywords[] = { "source" };
	static const char *const sources[] = { "auto", "netlink", "proc" };
	const char *val;
	int idx, err;

	*src = KCM_SOURCE_AUTO;
	while (args_more(a)) {
		idx = kc_lookup(args_next(a), keywords, KC_ARRAY_SIZE(keywords),
				"keyword");
		if (idx < 0)
			return idx;
		err = args_value(a, "source", &val);
		if (err)
			return err;
		idx = kc_lookup(val, sources, KC_ARRAY_SIZE(sources), "source");
		if (idx < 0)
			return idx;
		*src = (enum kcm_source)idx;
	}
	return 0;
}

int cmd_show(struct kcmctl *k, struct kc_args *a)
{
	struct kcm_snapshot s = { 0 };
	enum kcm_source src;
	size_t i;
	int err;

	if (kc_is_help(args_peek(a))) {
		show_usage();
		return 0;
	}
	err = show_parse_args(a, &src);
	if (err)
		return err;
	err = show_collect(src, &s);
	if (err) {
		kcm_snapshot_free(&s);
		return err;
	}
	pr_open_object(&k->pr, NULL);
	pr_str(&k->pr, PR_JSON, "source", NULL,
	       s.source == KCM_SOURCE_NETLINK ? "netlink" : "proc");
	pr_open_array(&k->pr, "muxes");
	for (i = 0; i < s.n; i++)
		kcm_print_mux(&k->pr, &s.mux[i]);
	pr_close_array(&k->pr);
	pr_close_object(&k->pr);
	kcm_snapshot_free(&s);
	return 0;
}

static void stats_print_section(struct printer *p,
				const struct kcm_stats_section *sect)
{
	char name[sizeof(sect->name)], key[sizeof(sect->col[0])];
	unsigned int i;

	kcm_stats_col_key(sect->name, name, sizeof(name));
	pr_open_object(p, name);
	pr_text(p, "%s:", name);
	for (i = 0; i < sect->ncols; i++) {
		kcm_stats_col_key(sect->col[i], key, sizeof(key));
		if (i && i % 6 == 0)
			pr_text(p, "\n%*s", (int)strlen(name) + 1, "");
		pr_text(p, " %s ", key);
		pr_u64(p, PR_ANY, key, "%llu", sect->val[i]);
	}
	pr_text(p, "\n");
	pr_close_object(p);
}

int cmd_stats(struct kcmctl *k, struct kc_args *a)
{
	struct kcm_stats_table t;
	unsigned int i;
	FILE *f;
	int err;

	if (kc_is_help(args_peek(a))) {
		show_usage();
		return 0;
	}
	err = args_end(a);
	if (!err)
		err = show_open_proc(KCM_PROC_STATS_FILE, &f);
	if (err)
		return err;
	err = kcm_proc_read_stats(f, &t);
	fclose(f);
	if (err == -EBADMSG)
		return kc_err(err, "%s: unexpected format", KCM_PROC_STATS_FILE);
	if (err)
		return kc_err(err, "read %s", KCM_PROC_STATS_FILE);
	pr_open_object(&k->pr, NULL);
	for (i = 0; i < t.nsect; i++)
		stats_print_section(&k->pr, &t.sect[i]);
	pr_close_object(&k->pr);
	return 0;
}
