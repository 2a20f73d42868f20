/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The "kcmux" generic netlink family: dumps into the kcminfo model, and
 * the psock events of its "events" multicast group.  0 or -errno, nothing
 * printed; -ENOENT means the family does not exist (in-tree kcm, or kcmux
 * not loaded).
 */
#ifndef KCMCTL_GENL_H
#define KCMCTL_GENL_H

#include "kcminfo.h"
#include "netlink.h"

struct kcm_genl {
	struct nl_sock nl;
	uint16_t family;
	uint32_t events_group;
};

int kcm_genl_open(struct kcm_genl *g, bool events);
void kcm_genl_close(struct kcm_genl *g);

/* Every mux, KCM socket and psock of the current network namespace. */
int kcm_genl_snapshot(struct kcm_genl *g, struct kcm_snapshot *s);

/* Ids of the BPF programs psocks use (ids[], up to max); how many. */
int kcm_genl_parser_prog_ids(struct kcm_genl *g, uint32_t *ids, size_t max,
			     size_t *n);

/*
 * A message of the events group: *cmd (KCMUX_CMD_PSOCK_*) and the psock.
 * -EAGAIN for a message that is not a kcmux event (ignore it).
 */
int kcm_genl_parse_event(const struct kcm_genl *g, const struct nlmsghdr *nlh,
			 uint8_t *cmd, struct kcm_obj *o);

#endif /* KCMCTL_GENL_H */
