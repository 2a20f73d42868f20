/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A strict JSON validator (RFC 8259) for kcmctl's tests: kcmctl -j must
 * print exactly one well-formed JSON value, valid UTF-8, and nothing else.
 * Header-only, libc-only: the VM selftest includes it too.
 *
 *	const char *why = json_check(text, &at);
 *
 * why is NULL if text is one JSON value (blanks around it allowed), else
 * a reason, and at the byte offset where it was found.
 */
#ifndef KCMCTL_JSON_CHECK_H
#define KCMCTL_JSON_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#define JSON_CHECK_MAX_DEPTH	64

struct json_cursor {
	const unsigned char *s;
	size_t at;
	const char *why;
	int depth;
};

static inline bool json_fail(struct json_cursor *c, const char *why)
{
	if (!c->why)
		c->why = why;
	return false;
}

static inline void json_blanks(struct json_cursor *c)
{
	while (c->s[c->at] == ' ' || c->s[c->at] == '\t' ||
	       c->s[c->at] == '\n' || c->s[c->at] == '\r')
		c->at++;
}

static inline bool json_literal(struct json_cursor *c, const char *word)
{
	size_t n = strlen(word);

	if (strncmp((const char *)c->s + c->at, word, n))
		return json_fail(c, "invalid literal");
	c->at += n;
	return true;
}

static inline bool json_digits(struct json_cursor *c)
{
	size_t start = c->at;

	while (c->s[c->at] >= '0' && c->s[c->at] <= '9')
		c->at++;
	return c->at > start || json_fail(c, "digit expected");
}

static inline bool json_number(struct json_cursor *c)
{
	if (c->s[c->at] == '-')
		c->at++;
	if (c->s[c->at] == '0') {
		c->at++;
		if (c->s[c->at] >= '0' && c->s[c->at] <= '9')
			return json_fail(c, "leading zero");
	} else if (!json_digits(c)) {
		return false;
	}
	if (c->s[c->at] == '.') {
		c->at++;
		if (!json_digits(c))
			return false;
	}
	if (c->s[c->at] == 'e' || c->s[c->at] == 'E') {
		c->at++;
		if (c->s[c->at] == '+' || c->s[c->at] == '-')
			c->at++;
		if (!json_digits(c))
			return false;
	}
	return true;
}

/* One UTF-8 encoded character of 2 to 4 bytes, shortest form only. */
static inline bool json_utf8(struct json_cursor *c)
{
	const unsigned char *p = c->s + c->at;
	unsigned int n, i, cp;

	if ((p[0] & 0xe0) == 0xc0) {
		n = 2;
		cp = p[0] & 0x1f;
	} else if ((p[0] & 0xf0) == 0xe0) {
		n = 3;
		cp = p[0] & 0x0f;
	} else if ((p[0] & 0xf8) == 0xf0) {
		n = 4;
		cp = p[0] & 0x07;
	} else {
		return json_fail(c, "invalid UTF-8");
	}
	for (i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return json_fail(c, "invalid UTF-8");
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) ||
	    (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return json_fail(c, "invalid UTF-8");
	c->at += n;
	return true;
}

static inline bool json_escape(struct json_cursor *c)
{
	int i;

	c->at++;	/* the backslash */
	if (strchr("\"\\/bfnrt", c->s[c->at]) && c->s[c->at]) {
		c->at++;
		return true;
	}
	if (c->s[c->at] != 'u')
		return json_fail(c, "invalid escape");
	c->at++;
	for (i = 0; i < 4; i++, c->at++)
		if (!strchr("0123456789abcdefABCDEF", c->s[c->at]) ||
		    !c->s[c->at])
			return json_fail(c, "invalid \\u escape");
	return true;
}

static inline bool json_string(struct json_cursor *c)
{
	c->at++;	/* the opening quote */
	for (;;) {
		unsigned char ch = c->s[c->at];

		if (ch == '"') {
			c->at++;
			return true;
		}
		if (ch == '\0')
			return json_fail(c, "unterminated string");
		if (ch < 0x20)
			return json_fail(c, "control character in string");
		if (ch == '\\') {
			if (!json_escape(c))
				return false;
		} else if (ch >= 0x80) {
			if (!json_utf8(c))
				return false;
		} else {
			c->at++;
		}
	}
}

static inline bool json_value(struct json_cursor *c);

/* An object (close '}') or an array (close ']'), after its opening. */
static inline bool json_container(struct json_cursor *c, char close)
{
	if (++c->depth > JSON_CHECK_MAX_DEPTH)
		return json_fail(c, "nested too deeply");
	c->at++;
	json_blanks(c);
	if (c->s[c->at] == close) {
		c->at++;
		c->depth--;
		return true;
	}
	for (;;) {
		if (close == '}') {
			if (c->s[c->at] != '"')
				return json_fail(c, "object key expected");
			if (!json_string(c))
				return false;
			json_blanks(c);
			if (c->s[c->at] != ':')
				return json_fail(c, "':' expected");
			c->at++;
		}
		if (!json_value(c))
			return false;
		json_blanks(c);
		if (c->s[c->at] == close) {
			c->at++;
			c->depth--;
			return true;
		}
		if (c->s[c->at] != ',')
			return json_fail(c, "',' or end of container expected");
		c->at++;
		json_blanks(c);
	}
}

static inline bool json_value(struct json_cursor *c)
{
	json_blanks(c);
	switch (c->s[c->at]) {
	case '{':
		return json_container(c, '}');
	case '[':
		return json_container(c, ']');
	case '"':
		return json_string(c);
	case 't':
		return json_literal(c, "true");
	case 'f':
		return json_literal(c, "false");
	case 'n':
		return json_literal(c, "null");
	case '\0':
		return json_fail(c, "value expected, end of text found");
	default:
		if (c->s[c->at] == '-' ||
		    (c->s[c->at] >= '0' && c->s[c->at] <= '9'))
			return json_number(c);
		return json_fail(c, "value expected");
	}
}

static inline const char *json_check(const char *text, size_t *at)
{
	struct json_cursor c = { .s = (const unsigned char *)text };

	if (json_value(&c)) {
		json_blanks(&c);
		if (c.s[c.at])
			json_fail(&c, "text after the value");
	}
	if (at)
		*at = c.at;
	return c.why;
}

#endif /* KCMCTL_JSON_CHECK_H */
