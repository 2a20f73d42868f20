// SPDX-License-Identifier: GPL-2.0
/*
 * Error reporting, command and keyword matching, strict number parsing.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kcmctl.h"

/* Long user input is cut, so an error line stays readable. */
#define KC_MSG_MAX	400

const char *kc_errno_name(int err)
{
	const char *name = strerrorname_np(err);

	return name ? name : "unknown errno";
}

/*
 * The message, with every byte that could break the line or the terminal
 * (a newline in an argument, escape sequences) shown as \xNN.
 */
static void kc_sanitize(const char *in, char *out, size_t size)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t o = 0;

	for (; *s && o + 5 < size; s++) {
		if (*s < 0x20 || *s == 0x7f)
			o += snprintf(out + o, size - o, "\\x%02x", *s);
		else
			out[o++] = *s;
	}
	out[o] = '\0';
}

static void kc_vreport(int err, const char *fmt, va_list ap)
{
	char raw[KC_MSG_MAX + 4], msg[4 * KC_MSG_MAX + 8];
	int n;

	n = vsnprintf(raw, KC_MSG_MAX + 1, fmt, ap);
	if (n > KC_MSG_MAX)
		strcpy(raw + KC_MSG_MAX, "...");
	kc_sanitize(raw, msg, sizeof(msg));
	fflush(stdout);
	fprintf(stderr, "kcmctl: %s: %s (%s)\n", msg, strerror(err),
		kc_errno_name(err));
}

int kc_err(int err, const char *fmt, ...)
{
	va_list ap;

	if (err < 0)
		err = -err;
	va_start(ap, fmt);
	kc_vreport(err ? err : EIO, fmt, ap);
	va_end(ap);
	return KC_FAIL;
}

int kc_usage(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	kc_vreport(EINVAL, fmt, ap);
	va_end(ap);
	return KC_USAGE;
}

int kc_usage_err(int err, const char *fmt, ...)
{
	va_list ap;

	if (err < 0)
		err = -err;
	va_start(ap, fmt);
	kc_vreport(err ? err : EINVAL, fmt, ap);
	va_end(ap);
	return KC_USAGE;
}

/* --- commands and keywords ------------------------------------------- */

static int kc_ambiguous(const char *word, const char *const *names, size_t n,
			const char *what)
{
	char list[256] = "";
	size_t i, len = 0, wlen = strlen(word);

	for (i = 0; i < n && len < sizeof(list); i++) {
		if (strncmp(names[i], word, wlen))
			continue;
		len += snprintf(list + len, sizeof(list) - len, "%s%s",
				len ? ", " : "", names[i]);
	}
	return kc_usage("ambiguous %s '%s' (%s)", what, word, list);
}

int kc_lookup(const char *word, const char *const *names, size_t n,
	      const char *what)
{
	size_t i, wlen = strlen(word), found = n, matches = 0;

	for (i = 0; i < n; i++)
		if (!strcmp(names[i], word))
			return (int)i;
	for (i = 0; wlen && i < n; i++) {
		if (!strncmp(names[i], word, wlen)) {
			found = i;
			matches++;
		}
	}
	if (matches == 1)
		return (int)found;
	if (matches > 1)
		return kc_ambiguous(word, names, n, what);
	return kc_usage("unknown %s '%s'", what, word);
}

int kc_dispatch(struct kcmctl *k, const struct kc_cmd *cmds, size_t n,
		const char *what, struct kc_args *a)
{
	const char *names[32];
	const char *word;
	size_t i;
	int idx;

	word = args_next(a);
	if (!word)
		return kc_usage("missing %s (try 'help')", what);
	if (n > KC_ARRAY_SIZE(names))
		return kc_err(EINVAL, "internal: command table too large");
	for (i = 0; i < n; i++)
		names[i] = cmds[i].name;
	idx = kc_lookup(word, names, n, what);
	if (idx < 0)
		return idx;
	return cmds[idx].run(k, a);
}

bool kc_is_help(const char *word)
{
	return word && (!strcmp(word, "help") || !strcmp(word, "-h") ||
			!strcmp(word, "--help"));
}

/* --- arguments ------------------------------------------------------- */

int args_value(struct kc_args *a, const char *keyword, const char **val)
{
	*val = args_next(a);
	if (!*val)
		return kc_usage("'%s' needs a value", keyword);
	return 0;
}

int args_end(const struct kc_args *a)
{
	if (args_more(a))
		return kc_usage("unexpected argument '%s'", args_peek(a));
	return 0;
}

static int digit_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return 99;
}

/*
 * [-]digits or [-]0xhexdigits into sign and magnitude.  A magnitude that
 * does not fit 64 bits is -ERANGE, but only once every character has been
 * checked: "99999999999999999999x" is not a number at all.
 */
static int parse_magnitude(const char *s, bool *neg, uint64_t *mag)
{
	unsigned int base = 10;
	bool overflow = false;
	uint64_t v = 0;
	int d;

	*neg = *s == '-';
	if (*neg)
		s++;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		d = digit_value(*s);
		if (d >= (int)base)
			return -EINVAL;
		if (v > (UINT64_MAX - d) / base)
			overflow = true;
		else
			v = v * base + d;
	}
	*mag = v;
	return overflow ? -ERANGE : 0;
}

int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	uint64_t mag;
	bool neg;
	int err;

	err = parse_magnitude(s, &neg, &mag);
	if (err)
		return err;
	if ((neg && mag) || mag > max)
		return -ERANGE;
	*out = mag;
	return 0;
}

int parse_s64(const char *s, int64_t min, int64_t max, int64_t *out)
{
	uint64_t mag;
	int64_t v;
	bool neg;
	int err;

	err = parse_magnitude(s, &neg, &mag);
	if (err)
		return err;
	if (!neg && mag > (uint64_t)INT64_MAX)
		return -ERANGE;
	if (neg && mag > (uint64_t)INT64_MAX + 1)
		return -ERANGE;
	/* -(INT64_MAX + 1) without signed overflow. */
	v = neg ? (int64_t)(0 - mag) : (int64_t)mag;
	if (v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int arg_u64(const char *what, const char *s, uint64_t max, uint64_t *out)
{
	int err = parse_u64(s, max, out);

	if (err == -ERANGE)
		return kc_usage_err(ERANGE, "%s '%s' out of range (0..%llu)",
				    what, s, (unsigned long long)max);
	if (err)
		return kc_usage("%s '%s' is not a number", what, s);
	return 0;
}

int arg_s64(const char *what, const char *s, int64_t min, int64_t max,
	    int64_t *out)
{
	int err = parse_s64(s, min, max, out);

	if (err == -ERANGE)
		return kc_usage_err(ERANGE, "%s '%s' out of range (%lld..%lld)",
				    what, s, (long long)min, (long long)max);
	if (err)
		return kc_usage("%s '%s' is not a number", what, s);
	return 0;
}

int arg_fd(const char *what, const char *s, int *fd)
{
	uint64_t v = 0;
	int err;

	err = arg_u64(what, s, INT_MAX, &v);
	if (!err)
		*fd = (int)v;
	return err;
}

int arg_pid(const char *s, pid_t *pid)
{
	int64_t v = 0;
	int err;

	err = arg_s64("pid", s, 1, INT_MAX, &v);
	if (!err)
		*pid = (pid_t)v;
	return err;
}
