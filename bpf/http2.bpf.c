// SPDX-License-Identifier: GPL-2.0
/*
 * http2: HTTP/2 frames (RFC 9113 section 4.1): a 9-byte header whose
 * first 3 bytes are the big-endian length of the payload that follows.
 *
 * A client opens the connection with the 24-byte connection preface
 * "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" (section 3.4), which is not a frame:
 * it is returned as a message of its own.  Read as a frame header it
 * would claim a payload of 0x505249 bytes, so it is recognised by its
 * bytes instead.  With 9 to 23 bytes at hand that begin like the preface
 * the parser waits for all 24; a frame that merely begins like it is
 * framed as usual once they are there (its length is far beyond 24, so
 * waiting cost nothing).
 *
 * Only fixed-size loads: older verifiers (6.1) reject a load whose size
 * is a register, however it is bounded.
 */
#include "kcmux_parser.bpf.h"

#define H2_FRAME_HEADER_LEN	9
#define H2_PREFACE_LEN		24

/*
 * Every frame the 24-bit length allows; lower it to 9 + the peer's
 * SETTINGS_MAX_FRAME_SIZE (default 16384) to enforce that.
 */
const volatile __u32 kcmux_cfg_max_size = H2_FRAME_HEADER_LEN + 0xffffff;

static const char h2_preface[H2_PREFACE_LEN] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

SEC("socket")
int kcmux_http2(struct __sk_buff *skb)
{
	__u8 head[H2_PREFACE_LEN];
	__u32 size = H2_PREFACE_LEN, i;
	bool preface = true;
	int err;

	if (skb->len < H2_FRAME_HEADER_LEN)
		return 0;
	if (skb->len < H2_PREFACE_LEN)
		size = H2_FRAME_HEADER_LEN;
	err = size == H2_PREFACE_LEN ?
	      kcmux_load(skb, 0, head, H2_PREFACE_LEN) :
	      kcmux_load(skb, 0, head, H2_FRAME_HEADER_LEN);
	if (err)
		return err;

#pragma unroll
	for (i = 0; i < H2_PREFACE_LEN; i++) {
		if (i < size && head[i] != (__u8)h2_preface[i])
			preface = false;
	}
	if (preface)
		return size == H2_PREFACE_LEN ?
		       kcmux_msg_len(H2_PREFACE_LEN, H2_PREFACE_LEN,
				     kcmux_cfg_max_size) : 0;
	return kcmux_msg_len(H2_FRAME_HEADER_LEN + kcmux_be24(head),
			     H2_FRAME_HEADER_LEN, kcmux_cfg_max_size);
}

char LICENSE[] SEC("license") = "GPL";
