/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Differences between the kernels kcmux supports (Debian 12's 6.1 and
 * 6.12) are absorbed here, so the other files carry no version checks.
 */
#ifndef _KCMUX_COMPAT_H
#define _KCMUX_COMPAT_H

#include <linux/version.h>

#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 1, 0)
#error "kcmux needs Linux 6.1 or later"
#endif

#endif /* _KCMUX_COMPAT_H */
