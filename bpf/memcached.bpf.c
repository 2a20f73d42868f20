// SPDX-License-Identifier: GPL-2.0
/*
 * memcached: the memcached binary protocol.  Every request and response
 * is a 24-byte header and a body:
 *
 *	byte 0		magic: 0x80 request, 0x81 response
 *	bytes 2-3	key length
 *	byte 4		extras length
 *	bytes 8-11	total body length (extras + key + value), big endian
 *
 * Anything else in byte 0 is not this protocol (a text-protocol command,
 * or a stream out of step), and is refused as soon as that byte arrives.
 * A body too short for the key and extras it announces is an error too.
 */
#include "kcmux_parser.bpf.h"

#define MC_HEADER_LEN		24
#define MC_MAGIC_REQUEST	0x80
#define MC_MAGIC_RESPONSE	0x81

/* memcached's item size limit (-I) is 1 MiB unless raised. */
const volatile __u32 kcmux_cfg_max_size = 16777216;

SEC("socket")
int kcmux_memcached(struct __sk_buff *skb)
{
	__u8 hdr[MC_HEADER_LEN];
	__u32 body;
	int err;

	if (!skb->len)
		return 0;
	err = kcmux_load(skb, 0, hdr, 1);
	if (err)
		return err;
	if (hdr[0] != MC_MAGIC_REQUEST && hdr[0] != MC_MAGIC_RESPONSE)
		return -EPROTO;
	if (skb->len < MC_HEADER_LEN)
		return 0;
	err = kcmux_load(skb, 0, hdr, MC_HEADER_LEN);
	if (err)
		return err;

	body = kcmux_be32(&hdr[8]);
	if (body < kcmux_be16(&hdr[2]) + hdr[4])
		return -EPROTO;
	return kcmux_msg_len((__u64)body + MC_HEADER_LEN, MC_HEADER_LEN,
			     kcmux_cfg_max_size);
}

char LICENSE[] SEC("license") = "GPL";
