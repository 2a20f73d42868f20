// SPDX-License-Identifier: GPL-2.0
/*
 * kafka: the Kafka wire protocol, requests and responses alike: an int32
 * (big endian) message size not counting itself, then the message.  A
 * negative size is an error.
 */
#include "kcmux_parser.bpf.h"

/* A broker's socket.request.max.bytes defaults to 100 MiB. */
const volatile __u32 kcmux_cfg_max_size = 104857600 + 4;

SEC("socket")
int kcmux_kafka(struct __sk_buff *skb)
{
	return kcmux_be32_prefixed(skb, kcmux_cfg_max_size);
}

char LICENSE[] SEC("license") = "GPL";
