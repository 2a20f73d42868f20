// SPDX-License-Identifier: GPL-2.0
/*
 * The print layer of json_print.h: a small streaming JSON writer, and the
 * text rendering of the same calls.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>

#include "json_print.h"

void pr_init(struct printer *p, FILE *out, bool json, bool pretty)
{
	memset(p, 0, sizeof(*p));
	p->out = out;
	p->json = json || pretty;
	p->pretty = pretty;
}

int pr_finish(struct printer *p)
{
	if (p->json && p->depth == 0 && p->started) {
		fputc('\n', p->out);
		p->started = false;
	}
	if (fflush(p->out) || ferror(p->out))
		return -EIO;
	return p->overflow ? -EOVERFLOW : 0;
}

static void pr_indent(struct printer *p)
{
	int i;

	fputc('\n', p->out);
	for (i = 0; i < p->depth; i++)
		fputs("    ", p->out);
}

/*
 * Length of the valid UTF-8 sequence at s, or 0 if s does not start one
 * (overlong forms, surrogates and values beyond U+10FFFF are invalid).
 */
static size_t utf8_seq_len(const unsigned char *s)
{
	uint32_t cp;
	size_t n, i;

	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0) {
		n = 2;
		cp = s[0] & 0x1f;
	} else if ((s[0] & 0xf0) == 0xe0) {
		n = 3;
		cp = s[0] & 0x0f;
	} else if ((s[0] & 0xf8) == 0xf0) {
		n = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) ||
	    (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/*
 * Control characters are escaped; bytes that are not valid UTF-8 (file
 * names, /proc contents) become U+FFFD, so the output is always valid
 * JSON, whatever the input.
 */
void pr_json_string(FILE *out, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t n;

	fputc('"', out);
	while (*s) {
		if (*s == '"' || *s == '\\') {
			fprintf(out, "\\%c", *s);
			s++;
		} else if (*s < 0x20 || *s == 0x7f) {
			fprintf(out, "\\u%04x", *s);
			s++;
		} else {
			n = utf8_seq_len(s);
			if (n) {
				fwrite(s, 1, n, out);
				s += n;
			} else {
				fputs("\\ufffd", out);
				s++;
			}
		}
	}
	fputc('"', out);
}

/* Separator, indentation and "key": before a JSON value. */
static void pr_json_prefix(struct printer *p, const char *key)
{
	if (p->depth == 0)
		p->started = true;
	if (p->depth > 0) {
		if (p->has_items[p->depth - 1])
			fputc(',', p->out);
		p->has_items[p->depth - 1] = true;
		if (p->pretty)
			pr_indent(p);
	}
	if (key) {
		pr_json_string(p->out, key);
		fputs(p->pretty ? ": " : ":", p->out);
	}
}

static void pr_open(struct printer *p, const char *key, char c)
{
	if (!p->json)
		return;
	pr_json_prefix(p, key);
	fputc(c, p->out);
	if (p->depth >= PR_MAX_DEPTH) {
		p->overflow = true;
		return;
	}
	p->has_items[p->depth++] = false;
}

static void pr_close(struct printer *p, char c)
{
	bool had_items;

	if (!p->json)
		return;
	if (p->depth == 0) {
		p->overflow = true;
		return;
	}
	had_items = p->has_items[--p->depth];
	if (p->pretty && had_items)
		pr_indent(p);
	fputc(c, p->out);
}

void pr_open_object(struct printer *p, const char *key)
{
	pr_open(p, key, '{');
}

void pr_close_object(struct printer *p)
{
	pr_close(p, '}');
}

void pr_open_array(struct printer *p, const char *key)
{
	pr_open(p, key, '[');
}

void pr_close_array(struct printer *p)
{
	pr_close(p, ']');
}

/* Does this value appear in the current rendering? */
static bool pr_shows(const struct printer *p, enum pr_where where)
{
	return where == PR_ANY || (where == PR_JSON) == p->json;
}

void pr_u64(struct printer *p, enum pr_where where, const char *key,
	    const char *fmt, uint64_t val)
{
	if (!pr_shows(p, where))
		return;
	if (p->json) {
		pr_json_prefix(p, key);
		fprintf(p->out, "%" PRIu64, val);
	} else {
		fprintf(p->out, fmt, (unsigned long long)val);
	}
}

void pr_s64(struct printer *p, enum pr_where where, const char *key,
	    const char *fmt, int64_t val)
{
	if (!pr_shows(p, where))
		return;
	if (p->json) {
		pr_json_prefix(p, key);
		fprintf(p->out, "%" PRId64, val);
	} else {
		fprintf(p->out, fmt, (long long)val);
	}
}

void pr_str(struct printer *p, enum pr_where where, const char *key,
	    const char *fmt, const char *val)
{
	if (!pr_shows(p, where))
		return;
	if (p->json) {
		pr_json_prefix(p, key);
		pr_json_string(p->out, val);
	} else {
		fprintf(p->out, fmt, val);
	}
}

/* Text: fmt is printed (it has no conversion) only when val is true. */
void pr_bool(struct printer *p, enum pr_where where, const char *key,
	     const char *fmt, bool val)
{
	if (!pr_shows(p, where))
		return;
	if (p->json) {
		pr_json_prefix(p, key);
		fputs(val ? "true" : "false", p->out);
	} else if (val) {
		fputs(fmt, p->out);
	}
}

void pr_null(struct printer *p, enum pr_where where, const char *key,
	     const char *fmt)
{
	if (!pr_shows(p, where))
		return;
	if (p->json) {
		pr_json_prefix(p, key);
		fputs("null", p->out);
	} else {
		fputs(fmt, p->out);
	}
}

void pr_text(struct printer *p, const char *fmt, ...)
{
	va_list ap;

	if (p->json)
		return;
	va_start(ap, fmt);
	vfprintf(p->out, fmt, ap);
	va_end(ap);
}
