// SPDX-License-Identifier: GPL-2.0
/*
 * kcmctl monitor: psock events of the current network namespace as they
 * happen, one line each (one JSON document each with -j), like
 * `ip monitor`.  Only kcmux has them: they come from the "events"
 * multicast group of its generic netlink family.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "genl.h"
#include "kcmctl.h"

#ifndef SOL_NETLINK
#define SOL_NETLINK	270
#endif

struct monitor {
	struct printer *pr;
	struct kcm_genl g;
	uint64_t left;		/* events still to print; 0: no limit */
	bool limited;
};

static void monitor_usage(void)
{
	printf("Usage: kcmctl monitor [ count N ]\n"
	       "\n"
	       "Prints psock events (attached, unattached, error) as they happen,\n"
	       "until interrupted or, with count, after N events.  kcmux only.\n");
}

static const char *monitor_event_name(uint8_t cmd)
{
	switch (cmd) {
	case KCMUX_CMD_PSOCK_ATTACHED:
		return "attached";
	case KCMUX_CMD_PSOCK_UNATTACHED:
		return "unattached";
	default:
		return "error";
	}
}

/* 0: go on; 1: the count is reached; <0: -errno. */
static int monitor_print(struct monitor *m, const char *event,
			 const struct kcm_obj *o)
{
	int err;

	pr_open_object(m->pr, NULL);
	pr_str(m->pr, PR_ANY, "event", "%s", event);
	if (o) {
		pr_text(m->pr, " psock");
		kcm_print_psock_fields(m->pr, o, false);
	}
	pr_text(m->pr, "\n");
	pr_close_object(m->pr);
	err = pr_finish(m->pr);
	if (err)
		return err;
	if (m->limited && --m->left == 0)
		return 1;
	return 0;
}

static int monitor_cb(const struct nlmsghdr *nlh, void *arg)
{
	struct monitor *m = arg;
	struct kcm_obj o;
	uint8_t cmd;
	int err;

	err = kcm_genl_parse_event(&m->g, nlh, &cmd, &o);
	if (err == -EAGAIN)
		return 0;
	if (err)
		return err;
	return monitor_print(m, monitor_event_name(cmd), &o);
}

static int monitor_parse_args(struct kc_args *a, struct monitor *m)
{
	static const char *const keywords[] = { "count" };
	const char *val;
	int err;

	while (args_more(a)) {
		err = kc_lookup(args_next(a), keywords, KC_ARRAY_SIZE(keywords),
				"keyword");
		if (err < 0)
			return err;
		err = args_value(a, "count", &val);
		if (!err)
			err = arg_u64("count", val, UINT64_MAX, &m->left);
		if (err)
			return err;
		if (!m->left)
			return kc_usage("count must be at least 1");
		m->limited = true;
	}
	return 0;
}

static int monitor_subscribe(struct monitor *m)
{
	int err;

	err = kcm_genl_open(&m->g, true);
	if (err == -ENOENT)
		return kc_err(err, "generic netlink family '%s' or its group '%s' (kcmux not loaded? the in-tree kcm has no events)",
			      KCMUX_GENL_NAME, KCMUX_GENL_MCGRP_EVENTS);
	if (err)
		return kc_err(err, "generic netlink family '%s'", KCMUX_GENL_NAME);
	if (setsockopt(m->g.nl.fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP,
		       &m->g.events_group, sizeof(m->g.events_group))) {
		err = errno;
		kcm_genl_close(&m->g);
		return kc_err(err, "join multicast group '%s'",
			      KCMUX_GENL_MCGRP_EVENTS);
	}
	return 0;
}

static int monitor_loop(struct monitor *m)
{
	void *buf = malloc(NL_BUF_SIZE);
	int err;

	if (!buf)
		return kc_err(ENOMEM, "monitor");
	for (;;) {
		err = nl_recv_notifications(&m->g.nl, buf, NL_BUF_SIZE,
					    monitor_cb, m);
		/* The socket overran: say so, then carry on. */
		if (err == -ENOBUFS)
			err = monitor_print(m, "overrun", NULL);
		if (err)
			break;
	}
	free(buf);
	if (err > 0)
		return 0;
	if (err == -EIO)
		return kc_err(err, "write to stdout");
	return kc_err(err, "receive events");
}

int cmd_monitor(struct kcmctl *k, struct kc_args *a)
{
	struct monitor m = { .pr = &k->pr };
	int err;

	if (kc_is_help(args_peek(a))) {
		monitor_usage();
		return 0;
	}
	err = monitor_parse_args(a, &m);
	if (!err)
		err = monitor_subscribe(&m);
	if (err)
		return err;
	err = monitor_loop(&m);
	kcm_genl_close(&m.g);
	return err;
}
