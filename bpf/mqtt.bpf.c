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

/*
 * One byte at a time: older verifiers (6.1) reject a load whose size is a
 * register, and at most five loads are needed.
 */
SEC("socket")
int kcmux_mqtt(struct __sk_buff *skb)
{
	__u32 remaining = 0, i;
	__u8 b;
	int err;

	if (!skb->len)
		return 0;
	err = kcmux_load(skb, 0, &b, 1);
	if (err)
		return err;
	if (!(b >> 4))
		return -EPROTO;

#pragma unroll
	for (i = 0; i < MQTT_LEN_BYTES_MAX; i++) {
		if (skb->len < 2 + i)
			return 0;
		err = kcmux_load(skb, 1 + i, &b, 1);
		if (err)
			return err;
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
