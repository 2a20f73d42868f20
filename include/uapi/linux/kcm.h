/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * kcmux: user ABI of the Kernel Connection Multiplexor (AF_KCM, family 41).
 *
 * Everything the in-tree <linux/kcm.h> defines has the same name, layout
 * and value here, so programs written for the in-tree module build and run
 * unchanged.  kcmux extensions are additive and are marked as such.
 */
#ifndef _UAPI_LINUX_KCMUX_KCM_H
#define _UAPI_LINUX_KCMUX_KCM_H

/* Make a later #include of the kernel's own <linux/kcm.h> a no-op. */
#ifndef KCM_KERNEL_H
#define KCM_KERNEL_H
#endif

#include <linux/types.h>

#ifndef AF_KCM
#define AF_KCM		41
#endif
#ifndef PF_KCM
#define PF_KCM		AF_KCM
#endif
#ifndef SOL_KCM
#define SOL_KCM		281
#endif

/* SIOCKCMATTACH: attach a connected TCP socket to the multiplexor. */
struct kcm_attach {
	int fd;		/* the TCP socket */
	int bpf_fd;	/* BPF_PROG_TYPE_SOCKET_FILTER returning message lengths */
};

/* SIOCKCMUNATTACH: give a TCP socket back to the application. */
struct kcm_unattach {
	int fd;
};

/* SIOCKCMCLONE: a new KCM socket on the same multiplexor; fd is returned. */
struct kcm_clone {
	int fd;
};

#define SIOCKCMATTACH	(SIOCPROTOPRIVATE + 0)
#define SIOCKCMUNATTACH	(SIOCPROTOPRIVATE + 1)
#define SIOCKCMCLONE	(SIOCPROTOPRIVATE + 2)

#define KCMPROTO_CONNECTED	0

/* Socket options at level SOL_KCM */
#define KCM_RECV_DISABLE	1

/*
 * kcmux extensions.
 *
 * Nothing below exists in the in-tree module, and nothing below changes
 * what the definitions above do: a program that uses none of it sees the
 * in-tree behaviour.  On the in-tree module the extension ioctls fail
 * with ENOTTY, the socket option with ENOPROTOOPT and the generic netlink
 * family does not resolve, so a program can probe for each of them.
 */

/*
 * Built-in length-field framing: the message length is read from a
 * fixed-width unsigned integer inside the message, no BPF program needed.
 *
 *   value = the width-byte field at offset, in the given byte order
 *   len   = value + adjust
 *           (+ offset + width when KCMUX_FRAMING_EXCLUDES_HEADER is set)
 *
 * A message whose len is smaller than offset + width or larger than
 * max_size is a framing error: the TCP socket gets EPROTO or EMSGSIZE
 * posted, as with a BPF parser.
 */
struct kcmux_framing {
	__u32 offset;		/* of the length field, in bytes */
	__u8 width;		/* 1, 2, 3, 4 or 8 */
	__u8 flags;		/* KCMUX_FRAMING_* */
	__u16 reserved;		/* must be 0 */
	__s32 adjust;		/* added to the field's value */
	__u32 max_size;		/* 0: the module's limit (64 MiB) */
};

#define KCMUX_FRAMING_LITTLE_ENDIAN	0x01	/* default: big endian */
#define KCMUX_FRAMING_EXCLUDES_HEADER	0x02	/* value counts only what follows the field */
#define KCMUX_FRAMING_MAX_OFFSET	65535	/* offset + width must not exceed it */

/*
 * SIOCKCMATTACH_EXT: attach with a BPF program or with built-in framing,
 * and learn the psock id.  Extensible: user space sets size to the
 * sizeof() it was compiled with; a larger struct than the module knows is
 * accepted only if the bytes it does not know are zero (else E2BIG), a
 * smaller one must be at least KCMUX_ATTACH_SIZE_VER0 (else EINVAL).
 */
struct kcmux_attach {
	__u32 size;		/* sizeof(struct kcmux_attach) */
	__u32 flags;		/* exactly one of KCMUX_ATTACH_BPF, _FRAMING */
	__s32 fd;		/* the TCP socket */
	__s32 bpf_fd;		/* KCMUX_ATTACH_BPF: the parser; else 0 */
	struct kcmux_framing framing;	/* KCMUX_ATTACH_FRAMING; else zero */
	__u32 psock_id;		/* out: the new psock's id */
	__u32 reserved;		/* must be 0 */
};

#define KCMUX_ATTACH_BPF	0x1
#define KCMUX_ATTACH_FRAMING	0x2
#define KCMUX_ATTACH_SIZE_VER0	40

/*
 * SIOCKCMPSOCKID: the id of the psock made of TCP socket fd, if it is
 * attached to this KCM socket's multiplexor; ENOENT for any other
 * socket, EBADF if fd is not open, ENOTSOCK if it is not a socket.
 */
struct kcmux_psock_id {
	__s32 fd;		/* in: the TCP socket */
	__u32 psock_id;		/* out */
};

#define SIOCKCMATTACH_EXT	(SIOCPROTOPRIVATE + 8)
#define SIOCKCMPSOCKID		(SIOCPROTOPRIVATE + 9)

/*
 * Message origin and targeted send.  Psock ids are unique within a
 * network namespace while the psock exists, never 0, and not reused
 * soon (allocated cyclically).
 *
 * setsockopt(SOL_KCM, KCMUX_ORIGIN, int 1): every message recvmsg
 * returns carries a control message (SOL_KCM, KCMUX_ORIGIN, __u32 id) of
 * the psock it arrived on.
 *
 * sendmsg with the control message (SOL_KCM, KCMUX_ORIGIN, __u32 id)
 * sends that message on that psock only, never on another:
 *   ENOENT   no psock with that id in this multiplexor (unknown, or
 *            unattached)
 *   EPIPE    the psock has stopped (its TCP socket failed or was closed
 *            by the peer)
 *   EINVAL   malformed control message
 * A targeted message still queued when its psock stops or is unattached
 * is dropped and counted in the mux's KCMUX_STAT_TX_TARGET_DROPS; it is
 * never sent on another psock.  A message written in several calls
 * (MSG_MORE, or SEQPACKET without MSG_EOR) is targeted by the first call
 * that carries the control message; a later call naming a different
 * psock fails with EINVAL.
 *
 * FIONREAD (SIOCINQ) on a KCM socket: the number of bytes of the next
 * message still to be read, 0 if none is queued.
 */
#define KCMUX_ORIGIN		16

/*
 * Generic netlink: introspection and events, one network namespace at a
 * time.  Dumps give one message per object, so the size of a multiplexor
 * never limits a reply.
 */
#define KCMUX_GENL_NAME			"kcmux"
#define KCMUX_GENL_VERSION		1
#define KCMUX_GENL_MCGRP_EVENTS		"events"

enum kcmux_genl_cmd {
	KCMUX_CMD_UNSPEC,
	KCMUX_CMD_GET_MUX,		/* dump: one message per multiplexor */
	KCMUX_CMD_GET_SOCK,		/* dump: one message per KCM socket */
	KCMUX_CMD_GET_PSOCK,		/* dump: one message per psock */
	KCMUX_CMD_PSOCK_ATTACHED,	/* event (psock attributes) */
	KCMUX_CMD_PSOCK_UNATTACHED,	/* event (psock attributes) */
	KCMUX_CMD_PSOCK_ERROR,		/* event (psock attributes + ERROR) */
	__KCMUX_CMD_MAX,
};

#define KCMUX_CMD_MAX (__KCMUX_CMD_MAX - 1)

enum kcmux_genl_attr {
	KCMUX_A_UNSPEC,
	KCMUX_A_PAD,
	KCMUX_A_MUX_ID,		/* u32 */
	KCMUX_A_SOCK_INO,	/* u64: inode of the KCM socket (socket:[N]) */
	KCMUX_A_SOCK_TYPE,	/* u32: SOCK_DGRAM or SOCK_SEQPACKET */
	KCMUX_A_SOCK_FLAGS,	/* u32: KCMUX_SOCK_F_* */
	KCMUX_A_PSOCK_ID,	/* u32 */
	KCMUX_A_TCP_INO,	/* u64: inode of the TCP socket */
	KCMUX_A_FAMILY,		/* u16: AF_INET or AF_INET6 */
	KCMUX_A_SADDR,		/* binary, 4 or 16 bytes */
	KCMUX_A_DADDR,		/* binary, 4 or 16 bytes */
	KCMUX_A_SPORT,		/* u16, host byte order */
	KCMUX_A_DPORT,		/* u16, host byte order */
	KCMUX_A_STATE,		/* u32: KCMUX_PSOCK_STATE_* */
	KCMUX_A_ERROR,		/* u32: positive errno */
	KCMUX_A_PARSER,		/* u32: KCMUX_PARSER_* */
	KCMUX_A_BPF_PROG_ID,	/* u32: the parser program's id */
	KCMUX_A_RX_QUEUE,	/* u32: memory charged for received data */
	KCMUX_A_TX_QUEUE,	/* u32: memory charged for data to send */
	KCMUX_A_NR_SOCKS,	/* u32 */
	KCMUX_A_NR_PSOCKS,	/* u32 */
	KCMUX_A_STATS,		/* nest of KCMUX_STAT_* (u64 each) */
	KCMUX_A_TX_PAGE_CACHE,	/* u32: bytes of send pages kept for reuse */
	__KCMUX_A_MAX,
};

#define KCMUX_A_MAX (__KCMUX_A_MAX - 1)

#define KCMUX_SOCK_F_RECV_DISABLED	0x1
#define KCMUX_SOCK_F_ORIGIN		0x2

enum kcmux_psock_state {
	KCMUX_PSOCK_STATE_ACTIVE,	/* carrying messages */
	KCMUX_PSOCK_STATE_PAUSED,	/* holding a message no socket took */
	KCMUX_PSOCK_STATE_STOPPED,	/* error posted on the TCP socket */
	KCMUX_PSOCK_STATE_UNATTACHING,	/* finishing a message, then leaving */
};

enum kcmux_parser_kind {
	KCMUX_PARSER_BPF,
	KCMUX_PARSER_FRAMING,
};

/* Counters of a mux, a KCM socket or a psock; each only where it applies. */
enum kcmux_stat_attr {
	KCMUX_STAT_UNSPEC,
	KCMUX_STAT_PAD,
	KCMUX_STAT_RX_MSGS,
	KCMUX_STAT_RX_BYTES,
	KCMUX_STAT_TX_MSGS,
	KCMUX_STAT_TX_BYTES,
	KCMUX_STAT_TX_RETRIES,		/* mux */
	KCMUX_STAT_ATTACHED,		/* mux: psocks attached so far */
	KCMUX_STAT_UNATTACHED,		/* mux */
	KCMUX_STAT_UNATTACHED_RSVD,	/* mux */
	KCMUX_STAT_RX_READY_DROPS,	/* mux */
	KCMUX_STAT_TX_TARGET_DROPS,	/* mux */
	KCMUX_STAT_TX_RESERVED,		/* psock */
	KCMUX_STAT_TX_UNRESERVED,	/* psock */
	KCMUX_STAT_TX_ABORTS,		/* psock */
	KCMUX_STAT_RX_INTERRUPTED,	/* psock */
	KCMUX_STAT_RX_UNRECOVERABLE,	/* psock */
	KCMUX_STAT_RX_MEM_FAIL,		/* psock */
	KCMUX_STAT_RX_NEED_MORE_HDR,	/* psock */
	KCMUX_STAT_RX_BAD_LEN,		/* psock */
	KCMUX_STAT_RX_TOO_BIG,		/* psock */
	KCMUX_STAT_RX_TIMEOUTS,		/* psock */
	__KCMUX_STAT_MAX,
};

#define KCMUX_STAT_MAX (__KCMUX_STAT_MAX - 1)

#endif /* _UAPI_LINUX_KCMUX_KCM_H */
