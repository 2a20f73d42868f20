// SPDX-License-Identifier: GPL-2.0
/*
 * unit-proc: host unit tests (TAP) of what kcmctl does without a kernel:
 * the readers of /proc/net/kcm and /proc/net/kcm_stats on files captured
 * from both modules (tests/fixtures: kcm.kcmux.txt from kcmux, *.intree.txt
 * from the in-tree kcm.ko, identical on 6.1 and 6.12) and on malformed
 * ones; the JSON they print; strict number parsing; JSON string escaping.
 *
 *	unit-proc FIXTURE_DIR
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>

#include "kcmctl.h"
#include "kcminfo.h"
#include "json_check.h"

static int tap_n;
static int tap_failed;
static const char *fixture_dir;

static void tap(bool ok, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void tap(bool ok, const char *fmt, ...)
{
	va_list ap;

	printf("%sok %d - ", ok ? "" : "not ", ++tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!ok)
		tap_failed++;
}

static FILE *fixture(const char *name)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", fixture_dir, name);
	f = fopen(path, "re");
	if (!f) {
		printf("# %s: %s\n", path, strerror(errno));
		exit(1);
	}
	return f;
}

static int read_kcm(const char *name, struct kcm_snapshot *s)
{
	FILE *f = fixture(name);
	int err;

	memset(s, 0, sizeof(*s));
	err = kcm_proc_read(f, s);
	fclose(f);
	return err;
}

static int read_stats(const char *name, struct kcm_stats_table *t)
{
	FILE *f = fixture(name);
	int err = kcm_proc_read_stats(f, t);

	fclose(f);
	return err;
}

/* Renders the snapshot as kcmctl show would, into a string. */
static char *render_snapshot(const struct kcm_snapshot *s, bool json,
			     bool pretty)
{
	struct printer p;
	char *buf = NULL;
	size_t len = 0, i;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		abort();
	pr_init(&p, f, json, pretty);
	pr_open_object(&p, NULL);
	pr_str(&p, PR_JSON, "source", NULL, "proc");
	pr_open_array(&p, "muxes");
	for (i = 0; i < s->n; i++)
		kcm_print_mux(&p, &s->mux[i]);
	pr_close_array(&p);
	pr_close_object(&p);
	if (pr_finish(&p))
		abort();
	fclose(f);
	return buf;
}

static void check_json(const char *what, const char *text)
{
	size_t at = 0;
	const char *why = json_check(text, &at);

	tap(!why, "%s: valid JSON%s%s", what, why ? ": " : "", why ? why : "");
	if (why)
		printf("# at %zu: %.60s\n", at, text + at);
}

static bool stat_is(const struct kcm_obj *o, unsigned int stat, uint64_t v)
{
	return (o->stats.have & (1ULL << stat)) && o->stats.val[stat] == v;
}

static void test_kcmux_file(void)
{
	struct kcm_snapshot s;
	const struct kcm_mux *m;
	char *text;
	int err;

	err = read_kcm("kcm.kcmux.txt", &s);
	tap(!err && s.n == 2, "kcmux /proc/net/kcm: 2 muxes (err %d, n %zu)",
	    err, s.n);
	if (err || s.n != 2)
		return;
	m = &s.mux[1];
	tap(m->obj.attr[KCMUX_A_NR_SOCKS] == 2 &&
	    m->obj.attr[KCMUX_A_NR_PSOCKS] == 2 && m->socks.n == 2 &&
	    m->psocks.n == 2, "kcmux: second mux has 2 KCM sockets, 2 psocks");
	tap(stat_is(&m->obj, KCMUX_STAT_RX_MSGS, 1) &&
	    stat_is(&m->obj, KCMUX_STAT_RX_BYTES, 28) &&
	    stat_is(&m->obj, KCMUX_STAT_TX_BYTES, 38),
	    "kcmux: mux counters");
	tap(m->socks.v[1].proc.has_index && m->socks.v[1].proc.index == 1 &&
	    !strcmp(m->socks.v[1].proc.status, "RxDisabled"),
	    "kcmux: kcm-1 has status RxDisabled");
	tap(m->psocks.v[0].proc.col[0] == 1 && m->psocks.v[0].proc.col[1] == 965 &&
	    m->psocks.v[0].proc.have == 0xf &&
	    stat_is(&m->psocks.v[0], KCMUX_STAT_TX_MSGS, 1),
	    "kcmux: psock-0 queue columns and counters");
	tap(!m->obj.proc.status[0], "kcmux: the mux status became counts");
	text = render_snapshot(&s, true, false);
	check_json("kcmux show -j", text);
	tap(strstr(text, "\"nr_psocks\":2") && strstr(text, "\"status\":[\"RxDisabled\"]"),
	    "kcmux show -j: counts and status array");
	free(text);
	text = render_snapshot(&s, true, true);
	check_json("kcmux show -p", text);
	free(text);
	text = render_snapshot(&s, false, false);
	tap(strstr(text, "psock psock-1") && strstr(text, "mux socks 2 psocks 2") &&
	    !strchr(text, '{'), "kcmux show text");
	free(text);
	kcm_snapshot_free(&s);
}

static void test_intree_file(void)
{
	struct kcm_snapshot s;
	const struct kcm_obj *sock;
	char *text;
	int err;

	err = read_kcm("kcm.intree.txt", &s);
	tap(!err && s.n == 2 && s.mux[1].socks.n == 2 && s.mux[1].psocks.n == 2,
	    "in-tree /proc/net/kcm: 2 muxes, 2 + 2 in the second");
	if (err || s.n != 2 || s.mux[1].socks.n != 2)
		return;
	sock = &s.mux[1].socks.v[0];
	tap(sock->proc.have == 0x7 && !strcmp(sock->proc.status, "RxWait"),
	    "in-tree: '-' in Smem is no value, status kept");
	text = render_snapshot(&s, true, false);
	check_json("in-tree show -j", text);
	tap(strstr(text, "\"send_q\":0,\"status\":[\"RxWait\"]") != NULL,
	    "in-tree show -j: no smem for KCM sockets");
	free(text);
	kcm_snapshot_free(&s);
}

static void test_crafted_file(void)
{
	struct kcm_snapshot s;
	const struct kcm_mux *m;
	char *text;
	int err;

	err = read_kcm("kcm.crafted.txt", &s);
	tap(!err && s.n == 1 && s.mux[0].socks.n == 3 && s.mux[0].psocks.n == 2,
	    "crafted /proc/net/kcm parses");
	if (err || s.n != 1 || s.mux[0].socks.n != 3)
		return;
	m = &s.mux[0];
	tap(stat_is(&m->obj, KCMUX_STAT_RX_MSGS, UINT64_MAX),
	    "crafted: a counter of 2^64 - 1");
	tap(m->socks.v[2].proc.index == UINT32_MAX, "crafted: index 2^32 - 1");
	tap(!strcmp(m->psocks.v[0].proc.status,
		    "Done TxStop RxStop Rsvd-0 RxWait=12"),
	    "crafted: every status word kept");
	text = render_snapshot(&s, true, true);
	check_json("crafted show -p", text);
	free(text);
	kcm_snapshot_free(&s);

	err = read_kcm("kcm.empty.txt", &s);
	tap(!err && s.n == 0, "no mux at all");
	text = render_snapshot(&s, true, false);
	tap(!strcmp(text, "{\"source\":\"proc\",\"muxes\":[]}\n"),
	    "no mux: empty array");
	free(text);
	kcm_snapshot_free(&s);
}

static int is_bad_fixture(const struct dirent *de)
{
	return !strncmp(de->d_name, "bad-", 4);
}

static void test_bad_files(void)
{
	struct kcm_stats_table t;
	struct kcm_snapshot s;
	struct dirent **names;
	const char *name;
	int i, n, err;

	n = scandir(fixture_dir, &names, is_bad_fixture, alphasort);
	if (n < 0) {
		tap(false, "scandir %s", fixture_dir);
		return;
	}
	for (i = 0; i < n; i++) {
		name = names[i]->d_name;
		if (!strncmp(name, "bad-kcm_stats.", 14)) {
			err = read_stats(name, &t);
		} else {
			err = read_kcm(name, &s);
			kcm_snapshot_free(&s);
		}
		tap(err == -EBADMSG, "%s is rejected (%d)", name, err);
		free(names[i]);
	}
	free(names);
	tap(n >= 10, "%d malformed fixtures", n);
}

static char *render_stats(const struct kcm_stats_table *t)
{
	char *buf = NULL, key[32];
	size_t len = 0;
	unsigned int i, j;
	struct printer p;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		abort();
	pr_init(&p, f, true, false);
	pr_open_object(&p, NULL);
	for (i = 0; i < t->nsect; i++) {
		kcm_stats_col_key(t->sect[i].name, key, sizeof(key));
		pr_open_object(&p, key);
		for (j = 0; j < t->sect[i].ncols; j++) {
			kcm_stats_col_key(t->sect[i].col[j], key, sizeof(key));
			pr_u64(&p, PR_ANY, key, "%llu", t->sect[i].val[j]);
		}
		pr_close_object(&p);
	}
	pr_close_object(&p);
	pr_finish(&p);
	fclose(f);
	return buf;
}

static void test_stats_files(void)
{
	struct kcm_stats_table t;
	char *text;
	int err;

	err = read_stats("kcm_stats.kcmux.txt", &t);
	tap(!err && t.nsect == 2 && !strcmp(t.sect[0].name, "MUX") &&
	    t.sect[0].ncols == 9 && t.sect[1].ncols == 14 &&
	    t.sect[0].val[5] == 2 && t.sect[1].val[1] == 28,
	    "kcmux kcm_stats: sections, columns, values");
	text = render_stats(&t);
	check_json("kcmux stats -j", text);
	tap(strstr(text, "\"mux\":{\"rx_msgs\":1,\"rx_bytes\":28") &&
	    strstr(text, "\"unattached_rsvd\":0") &&
	    strstr(text, "\"rx_need_more_hdr\":0"), "kcmux stats -j: keys");
	free(text);

	err = read_stats("kcm_stats.intree.txt", &t);
	tap(!err && t.nsect == 2 && t.sect[1].ncols == 15,
	    "in-tree kcm_stats: RX-Aborts column too");
	text = render_stats(&t);
	check_json("in-tree stats -j", text);
	tap(strstr(text, "\"rx_aborts\":0") != NULL, "in-tree stats -j: rx_aborts");
	free(text);
}

static void test_numbers(void)
{
	static const struct {
		const char *s;
		int err;
		uint64_t v;
	} u[] = {
		{ "0", 0, 0 }, { "42", 0, 42 }, { "0x2a", 0, 42 },
		{ "0X2A", 0, 42 }, { "18446744073709551615", 0, UINT64_MAX },
		{ "0xffffffffffffffff", 0, UINT64_MAX },
		{ "18446744073709551616", -ERANGE, 0 },
		{ "0x10000000000000000", -ERANGE, 0 },
		{ "-1", -ERANGE, 0 }, { "-0", 0, 0 }, { "", -EINVAL, 0 },
		{ "-", -EINVAL, 0 }, { "0x", -EINVAL, 0 }, { " 1", -EINVAL, 0 },
		{ "1 ", -EINVAL, 0 }, { "+1", -EINVAL, 0 }, { "1e3", -EINVAL, 0 },
		{ "99999999999999999999x", -EINVAL, 0 }, { "--1", -EINVAL, 0 },
		{ "0x-1", -EINVAL, 0 }, { "١", -EINVAL, 0 },
	};
	static const struct {
		const char *s;
		int err;
		int64_t v;
	} sv[] = {
		{ "-2147483648", 0, INT32_MIN }, { "2147483647", 0, INT32_MAX },
		{ "-2147483649", -ERANGE, 0 }, { "2147483648", -ERANGE, 0 },
		{ "-0x80000000", 0, INT32_MIN }, { "-x1", -EINVAL, 0 },
	};
	int64_t s64;
	uint64_t v;
	size_t i;
	int err;
	bool ok = true;

	for (i = 0; i < KC_ARRAY_SIZE(u); i++) {
		v = 0;
		err = parse_u64(u[i].s, UINT64_MAX, &v);
		if (err != u[i].err || (!err && v != u[i].v)) {
			printf("# parse_u64(\"%s\") = %d, %llu\n", u[i].s, err,
			       (unsigned long long)v);
			ok = false;
		}
	}
	tap(ok, "parse_u64: %zu cases", KC_ARRAY_SIZE(u));
	ok = true;
	for (i = 0; i < KC_ARRAY_SIZE(sv); i++) {
		s64 = 0;
		err = parse_s64(sv[i].s, INT32_MIN, INT32_MAX, &s64);
		if (err != sv[i].err || (!err && s64 != sv[i].v)) {
			printf("# parse_s64(\"%s\") = %d, %lld\n", sv[i].s, err,
			       (long long)s64);
			ok = false;
		}
	}
	tap(ok, "parse_s64 in s32 range: %zu cases", KC_ARRAY_SIZE(sv));
	err = parse_s64("-9223372036854775808", INT64_MIN, INT64_MAX, &s64);
	tap(!err && s64 == INT64_MIN, "parse_s64: INT64_MIN");
	err = parse_s64("9223372036854775808", INT64_MIN, INT64_MAX, &s64);
	tap(err == -ERANGE, "parse_s64: INT64_MAX + 1");
}

static void test_json_strings(void)
{
	static const char *const nasty[] = {
		"plain", "quote \" and \\ backslash", "new\nline\ttab\x01\x1f\x7f",
		"caf\xc3\xa9", "\xff\xfe invalid", "\xc3", "\xe2\x82",
		"\xed\xa0\x80 surrogate", "\xc0\xaf overlong", "\xf4\x90\x80\x80",
		"emoji \xf0\x9f\x98\x80",
	};
	char *buf;
	size_t len, i;
	FILE *f;
	bool ok = true;

	for (i = 0; i < KC_ARRAY_SIZE(nasty); i++) {
		buf = NULL;
		f = open_memstream(&buf, &len);
		if (!f)
			abort();
		pr_json_string(f, nasty[i]);
		fclose(f);
		if (json_check(buf, NULL)) {
			printf("# string %zu: %s\n", i, buf);
			ok = false;
		}
		free(buf);
	}
	tap(ok, "JSON strings from arbitrary bytes are valid JSON");
	tap(json_check("{\"a\":[1,2.5e3,-0,true,null,\"x\"]}", NULL) == NULL &&
	    json_check("{\"a\":1,}", NULL) && json_check("[01]", NULL) &&
	    json_check("{} {}", NULL) && json_check("\"\xff\"", NULL) &&
	    json_check("", NULL) && json_check("[\"\\x\"]", NULL),
	    "the JSON checker accepts JSON and rejects non-JSON");
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]);
		return 2;
	}
	fixture_dir = argv[1];
	test_kcmux_file();
	test_intree_file();
	test_crafted_file();
	test_bad_files();
	test_stats_files();
	test_numbers();
	test_json_strings();
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}
