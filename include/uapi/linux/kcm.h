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

#endif /* _UAPI_LINUX_KCMUX_KCM_H */
