/* SPDX-License-Identifier: GPL-2.0 */
/*
 * One print layer for text and JSON output.
 *
 * Commands describe what they print once: every value is given with its
 * JSON key and a printf format for the text rendering.  In JSON mode the
 * formats and pr_text() are ignored and the keys build one well-formed
 * JSON document; in text mode the keys and the object/array structure are
 * ignored and only the formats print.  Hence the text and the JSON output
 * of a command can never disagree about which values they show.
 */
#ifndef KCMCTL_JSON_PRINT_H
#define KCMCTL_JSON_PRINT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define PR_MAX_DEPTH	16

/* Which rendering a value appears in. */
enum pr_where {
	PR_ANY,		/* both */
	PR_JSON,	/* JSON only: the format is ignored */
	PR_TEXT,	/* text only: the key is ignored */
};

struct printer {
	FILE *out;
	bool json;
	bool pretty;
	int depth;			/* open JSON containers */
	bool has_items[PR_MAX_DEPTH];	/* container at that depth not empty */
	bool overflow;			/* nesting beyond PR_MAX_DEPTH: a bug */
	bool started;			/* a top-level JSON value is out */
};

void pr_init(struct printer *p, FILE *out, bool json, bool pretty);
/*
 * Ends a JSON document (newline) and flushes: 0, or -EIO if the output
 * failed.  May be called after each of a stream of documents (monitor).
 */
int pr_finish(struct printer *p);

/* key is NULL inside arrays and for the top-level value. */
void pr_open_object(struct printer *p, const char *key);
void pr_close_object(struct printer *p);
void pr_open_array(struct printer *p, const char *key);
void pr_close_array(struct printer *p);

void pr_u64(struct printer *p, enum pr_where where, const char *key,
	    const char *fmt, uint64_t val);
void pr_s64(struct printer *p, enum pr_where where, const char *key,
	    const char *fmt, int64_t val);
void pr_str(struct printer *p, enum pr_where where, const char *key,
	    const char *fmt, const char *val);
void pr_bool(struct printer *p, enum pr_where where, const char *key,
	     const char *fmt, bool val);
/* JSON null; text prints fmt as is. */
void pr_null(struct printer *p, enum pr_where where, const char *key,
	     const char *fmt);

/* Text only, printf-like; nothing in JSON mode. */
void pr_text(struct printer *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Writes s as a JSON string literal, quotes included (used by tests too). */
void pr_json_string(FILE *out, const char *s);

#endif /* KCMCTL_JSON_PRINT_H */
