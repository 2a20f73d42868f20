// SPDX-License-Identifier: GPL-2.0
/*
 * thrift: Apache Thrift's framed transport (TFramedTransport): every
 * message is a 4-byte big-endian signed frame size, not counting itself,
 * then the frame.  A negative size is an error, as Thrift's own
 * transports treat it.
 */
#include "kcmux_parser.bpf.h"

/* Thrift's libraries refuse frames above 16384000 bytes by default. */
const volatile __u32 kcmux_cfg_max_size = 16384000 + 4;

SEC("socket")
int kcmux_thrift(struct __sk_buff *skb)
{
	return kcmux_be32_prefixed(skb, kcmux_cfg_max_size);
}

char LICENSE[] SEC("license") = "GPL";
