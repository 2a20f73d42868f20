// SPDX-License-Identifier: GPL-2.0
/*
 * mqtt: MQTT 3.1.1 and 5.0 control packets.  The fixed header is one
 * byte (packet type and flags) and the Remaining Length, a variable byte
 * integer of 1 to 4 bytes: 7 bits each, least significant first, bit 7
 * set on every byte but the last.  The packet is the fixed header plus
 * Remaining Length bytes.
 *
 * Refused as malformed:
 *  - packet type 0, which both versions forbid;
 *  - a fourth length byte with bit 7 set: a fifth byte is never valid
 *    (MQTT 3.1.1 section 2.2.3, MQTT 5.0 section 1.5.5);
 *  - with strict_length (the default), a length not in the fewest bytes
 *    that can encode it, i.e. more than one byte and the last one 0:
 *    MQTT 5.0 requires the minimal encoding [MQTT-1.5.5-1], and an
 *    encoder following 3.1.1's algorithm never produces another.
 *    strict_length 0 accepts such lengths.
 */
#include "kcmux_parser.bpf.h"

#define MQTT_LEN_BYTES_MAX	4
#define MQTT_CONTINUE		0x80

/* The largest packet: 1 + 4 + 268435455 (0x0fffffff, four full bytes). */
const volatile __u32 kcmux_cfg_max_size = 1 + MQTT_LEN_BYTES_MAX + 268435455;
const volatile __u32 kcmux_cfg_strict_length = 1;

SEC("socket")
int kcmux_mqtt(struct __sk_buff *skb)
{
	__u8 hdr[1 + MQTT_LEN_BYTES_MAX] = {};
	__u32 have = skb->len, remaining = 0, i;
	int err;

	if (!have)
		return 0;
	if (have > sizeof(hdr))
		have = sizeof(hdr);
	err = kcmux_load(skb, 0, hdr, have);
	if (err)
		return err;
	if (!(hdr[0] >> 4))
		return -EPROTO;

#pragma unroll
	for (i = 0; i < MQTT_LEN_BYTES_MAX; i++) {
		__u8 b = hdr[1 + i];

		if (1 + i >= have)
			return 0;
		remaining |= (__u32)(b & ~MQTT_CONTINUE) << (7 * i);
		if (b & MQTT_CONTINUE)
			continue;
		if (kcmux_cfg_strict_length && i && !b)
			return -EPROTO;
		return kcmux_msg_len(1 + (i + 1) + (__u64)remaining, 1 + (i + 1),
				     kcmux_cfg_max_size);
	}
	return -EPROTO;
}

char LICENSE[] SEC("license") = "GPL";
