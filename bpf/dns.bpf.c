// SPDX-License-Identifier: GPL-2.0
/*
 * dns: DNS over TCP (RFC 1035 section 4.2.2, RFC 7766): a 2-byte
 * big-endian length of the DNS message, not counting itself.  A DNS
 * message is at least its 12-byte header, so a shorter length is an
 * error rather than a message.
 */
#include "kcmux_parser.bpf.h"

#define DNS_HEADER_LEN	12

/* The largest message the 16-bit length allows. */
const volatile __u32 kcmux_cfg_max_size = 65535 + 2;

SEC("socket")
int kcmux_dns(struct __sk_buff *skb)
{
	__u8 hdr[2];
	__u32 value;
	int err;

	if (skb->len < sizeof(hdr))
		return 0;
	err = kcmux_load(skb, 0, hdr, sizeof(hdr));
	if (err)
		return err;
	value = kcmux_be16(hdr);
	if (value < DNS_HEADER_LEN)
		return -EPROTO;
	return kcmux_msg_len(value + sizeof(hdr), sizeof(hdr),
			     kcmux_cfg_max_size);
}

char LICENSE[] SEC("license") = "GPL";
