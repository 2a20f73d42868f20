// SPDX-License-Identifier: GPL-2.0
/*
 * kcm_socket: creating AF_KCM sockets, the socket calls KCM does not
 * support, and the module reference a socket holds.
 *
 * The expected errnos are what the in-tree kcm.ko returns (6.1 and 6.12):
 * kcmux must return the very same ones.
 */
#include <sys/mman.h>

#include "kcm_test.h"
#include "kselftest_harness.h"

/* --- creation ----------------------------------------------------------- */

FIXTURE(create) {
	int fd;
};

FIXTURE_VARIANT(create) {
	int type;
};

FIXTURE_VARIANT_ADD(create, dgram) {
	.type = SOCK_DGRAM,
};

FIXTURE_VARIANT_ADD(create, seqpacket) {
	.type = SOCK_SEQPACKET,
};

FIXTURE_SETUP(create)
{
	self->fd = -1;
}

FIXTURE_TEARDOWN(create)
{
	if (self->fd >= 0)
		close(self->fd);
}

TEST_F(create, socket)
{
	self->fd = socket(AF_KCM, variant->type, KCMPROTO_CONNECTED);
	ASSERT_LE(0, self->fd) TH_LOG("socket: %s", strerror(errno));
	EXPECT_EQ(AF_KCM, kcm_getint(self->fd, SOL_SOCKET, SO_DOMAIN));
	EXPECT_EQ(variant->type, kcm_getint(self->fd, SOL_SOCKET, SO_TYPE));
	EXPECT_EQ(KCMPROTO_CONNECTED, kcm_getint(self->fd, SOL_SOCKET, SO_PROTOCOL));
}

/* PF_KCM is the same family. */
TEST_F(create, pf_kcm)
{
	self->fd = socket(PF_KCM, variant->type, 0);
	ASSERT_LE(0, self->fd) TH_LOG("socket: %s", strerror(errno));
}

/* SOCK_NONBLOCK and SOCK_CLOEXEC are handled by the socket layer. */
TEST_F(create, flags)
{
	self->fd = socket(AF_KCM, variant->type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	ASSERT_LE(0, self->fd) TH_LOG("socket: %s", strerror(errno));
	EXPECT_TRUE(fcntl(self->fd, F_GETFL) & O_NONBLOCK);
	EXPECT_TRUE(fcntl(self->fd, F_GETFD) & FD_CLOEXEC);
	EXPECT_EQ(variant->type, kcm_getint(self->fd, SOL_SOCKET, SO_TYPE));
}

/* Any type but SOCK_DGRAM and SOCK_SEQPACKET (below SOCK_MAX, which the
 * socket layer checks before us) is refused.
 */
TEST(bad_types)
{
	int type, fd;

	for (type = 0; type <= SOCK_PACKET; type++) {
		if (type == SOCK_DGRAM || type == SOCK_SEQPACKET)
			continue;
		fd = socket(AF_KCM, type, 0);
		EXPECT_EQ(-1, fd) TH_LOG("type %d accepted", type);
		EXPECT_EQ(ESOCKTNOSUPPORT, errno) TH_LOG("type %d: %s", type, strerror(errno));
		if (fd >= 0)
			close(fd);
	}
}

/* KCMPROTO_CONNECTED (0) is the only protocol. */
TEST(bad_protocols)
{
	static const int types[] = { SOCK_DGRAM, SOCK_SEQPACKET };
	static const int protos[] = { 1, IPPROTO_TCP, IPPROTO_UDP, 255, 0x10000, -1 };
	unsigned int i, j;
	int fd;

	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		for (j = 0; j < sizeof(protos) / sizeof(protos[0]); j++) {
			fd = socket(AF_KCM, types[i], protos[j]);
			EXPECT_EQ(-1, fd) TH_LOG("type %d proto %d accepted", types[i], protos[j]);
			EXPECT_EQ(EPROTONOSUPPORT, errno)
				TH_LOG("type %d proto %d: %s", types[i], protos[j], strerror(errno));
			if (fd >= 0)
				close(fd);
		}
	}
}

/* A bad type wins over a bad protocol: the type is checked first. */
TEST(bad_type_and_protocol)
{
	EXPECT_EQ(-1, socket(AF_KCM, SOCK_STREAM, 1));
	EXPECT_EQ(ESOCKTNOSUPPORT, errno);
}

/* --- calls KCM does not implement ----------------------------------------- */

FIXTURE(unsupported) {
	int fd;
};

FIXTURE_VARIANT(unsupported) {
	int type;
};

FIXTURE_VARIANT_ADD(unsupported, dgram) {
	.type = SOCK_DGRAM,
};

FIXTURE_VARIANT_ADD(unsupported, seqpacket) {
	.type = SOCK_SEQPACKET,
};

FIXTURE_SETUP(unsupported)
{
	self->fd = kcm_socket(variant->type);
	ASSERT_LE(0, self->fd) TH_LOG("socket: %s", strerror(-self->fd));
}

FIXTURE_TEARDOWN(unsupported)
{
	close(self->fd);
}

TEST_F(unsupported, bind)
{
	struct sockaddr sa = { .sa_family = AF_KCM };

	EXPECT_EQ(-1, bind(self->fd, &sa, sizeof(sa)));
	EXPECT_EQ(EOPNOTSUPP, errno);
}

TEST_F(unsupported, connect)
{
	struct sockaddr sa = { .sa_family = AF_KCM };

	EXPECT_EQ(-1, connect(self->fd, &sa, sizeof(sa)));
	EXPECT_EQ(EOPNOTSUPP, errno);
}

TEST_F(unsupported, listen)
{
	EXPECT_EQ(-1, listen(self->fd, 1));
	EXPECT_EQ(EOPNOTSUPP, errno);
}

TEST_F(unsupported, accept)
{
	EXPECT_EQ(-1, accept(self->fd, NULL, NULL));
	EXPECT_EQ(EOPNOTSUPP, errno);
}

TEST_F(unsupported, shutdown)
{
	EXPECT_EQ(-1, shutdown(self->fd, SHUT_RDWR));
	EXPECT_EQ(EOPNOTSUPP, errno);
}

TEST_F(unsupported, getsockname)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	EXPECT_EQ(-1, getsockname(self->fd, (struct sockaddr *)&ss, &len));
	EXPECT_EQ(EOPNOTSUPP, errno);
}

TEST_F(unsupported, getpeername)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	EXPECT_EQ(-1, getpeername(self->fd, (struct sockaddr *)&ss, &len));
	EXPECT_EQ(EOPNOTSUPP, errno);
}

TEST_F(unsupported, mmap)
{
	EXPECT_EQ(MAP_FAILED, mmap(NULL, 4096, PROT_READ, MAP_SHARED, self->fd, 0));
	EXPECT_EQ(ENODEV, errno);
}

/* (The socket layer fills sv[] before asking the family: don't check it.) */
TEST_F(unsupported, socketpair)
{
	int sv[2];

	EXPECT_EQ(-1, socketpair(AF_KCM, variant->type, 0, sv));
	EXPECT_EQ(EOPNOTSUPP, errno);
}

/* --- module references ------------------------------------------------------ */

/* Wait up to 2 s for the module's refcnt to reach want; the last value. */
static int wait_refcnt(int want)
{
	int i, n = kcm_module_refcnt();

	for (i = 0; i < 200 && n != want; i++) {
		usleep(10000);
		n = kcm_module_refcnt();
	}
	return n;
}

#define REQUIRE_REFCNT(base)						\
	do {								\
		base = kcm_module_refcnt();				\
		if (base < 0)						\
			SKIP(return, "no /sys/module/%s/refcnt: built in or not loaded", \
			     kcm_module_name());			\
	} while (0)

/*
 * An open socket pins the module: refcnt goes up, and delete_module()
 * (which never waits nowadays) fails instead of unloading.  Assert the
 * refcnt first: were it 0, delete_module() would really unload.
 */
TEST(refcnt_held_while_open)
{
	int base, fd, ret;

	REQUIRE_REFCNT(base);
	fd = kcm_socket(SOCK_DGRAM);
	ASSERT_LE(0, fd) TH_LOG("socket: %s", strerror(-fd));
	ASSERT_LT(base, kcm_module_refcnt());

	ret = syscall(__NR_delete_module, kcm_module_name(), O_NONBLOCK);
	EXPECT_EQ(-1, ret);
	EXPECT_TRUE(errno == EWOULDBLOCK || errno == EBUSY)
		TH_LOG("delete_module: %s", strerror(errno));
	ASSERT_EQ(0, access("/sys/module/kcm", F_OK) && access("/sys/module/kcmux", F_OK))
		TH_LOG("module unloaded under an open socket");

	close(fd);
	EXPECT_EQ(base, wait_refcnt(base));
}

/* Many sockets of both types: no reference may leak. */
TEST(refcnt_many_sockets)
{
	enum { N = 64 };
	int fds[N], base, i;

	REQUIRE_REFCNT(base);
	for (i = 0; i < N; i++) {
		fds[i] = kcm_socket(i % 2 ? SOCK_SEQPACKET : SOCK_DGRAM);
		ASSERT_LE(0, fds[i]) TH_LOG("socket %d: %s", i, strerror(-fds[i]));
	}
	EXPECT_LE(base + N, kcm_module_refcnt());
	for (i = 0; i < N; i++)
		close(fds[i]);
	EXPECT_EQ(base, wait_refcnt(base));
}

/* Failed creations must not leak references either. */
TEST(refcnt_failed_create)
{
	int base, i;

	REQUIRE_REFCNT(base);
	for (i = 0; i < 16; i++) {
		EXPECT_EQ(-1, socket(AF_KCM, SOCK_STREAM, 0));
		EXPECT_EQ(-1, socket(AF_KCM, SOCK_DGRAM, 1));
	}
	EXPECT_EQ(base, wait_refcnt(base));
}

/* kcmux registers AF_KCM itself: kcm.ko cannot be loaded beside it. */
TEST(module_identity)
{
	if (kcmux_is_reference())
		SKIP(return, "kcmux-only: testing the in-tree kcm.ko");
	EXPECT_EQ(0, access("/sys/module/kcmux/refcnt", F_OK));
	EXPECT_NE(0, access("/sys/module/kcm", F_OK));
}

/* --- smoke test of the shared helpers ---------------------------------- */

/*
 * One message each way through a KCM socket attached to a TCP socket,
 * with kcm_test.h's TCP pair and BPF parser, over IPv4 and IPv6.
 */
FIXTURE(helpers) {
	int tcp[2];
	int kcm;
	int bpf;
};

FIXTURE_VARIANT(helpers) {
	int family;
};

FIXTURE_VARIANT_ADD(helpers, ipv4) {
	.family = AF_INET,
};

FIXTURE_VARIANT_ADD(helpers, ipv6) {
	.family = AF_INET6,
};

FIXTURE_SETUP(helpers)
{
	int ret;

	self->tcp[0] = self->tcp[1] = self->kcm = self->bpf = -1;
	ret = kcm_tcp_pair(variant->family, self->tcp);
	ASSERT_EQ(0, ret) TH_LOG("tcp pair: %s", strerror(-ret));
	self->bpf = kcm_bpf_load_parser();
	ASSERT_LE(0, self->bpf) TH_LOG("bpf: %s", strerror(-self->bpf));
	self->kcm = kcm_socket(SOCK_DGRAM);
	ASSERT_LE(0, self->kcm) TH_LOG("socket: %s", strerror(-self->kcm));
	ASSERT_EQ(0, kcm_set_timeo(self->kcm, SO_RCVTIMEO, 10000));
	ASSERT_EQ(0, kcm_set_timeo(self->tcp[0], SO_RCVTIMEO, 10000));
	ret = kcm_attach(self->kcm, self->tcp[1], self->bpf);
	ASSERT_EQ(0, ret) TH_LOG("SIOCKCMATTACH: %s", strerror(-ret));
}

FIXTURE_TEARDOWN(helpers)
{
	int i;

	if (self->kcm >= 0)
		close(self->kcm);
	if (self->bpf >= 0)
		close(self->bpf);
	for (i = 0; i < 2; i++)
		if (self->tcp[i] >= 0)
			close(self->tcp[i]);
}

TEST_F(helpers, tcp_to_kcm)
{
	static const char payload[] = "hello, kcm";
	char msg[64], buf[128];
	size_t len = kcm_test_frame(msg, 42, payload, sizeof(payload));

	ASSERT_EQ((ssize_t)len, write(self->tcp[0], msg, len));
	ASSERT_EQ((ssize_t)len, recv(self->kcm, buf, sizeof(buf), 0))
		TH_LOG("recv: %s", strerror(errno));
	EXPECT_EQ(0, memcmp(msg, buf, len));
}

TEST_F(helpers, kcm_to_tcp)
{
	static const char payload[] = "hello, tcp";
	char msg[64], buf[128];
	size_t len = kcm_test_frame(msg, 7, payload, sizeof(payload));
	size_t got = 0;
	ssize_t n;

	ASSERT_EQ((ssize_t)len, send(self->kcm, msg, len, 0))
		TH_LOG("send: %s", strerror(errno));
	while (got < len) {
		n = read(self->tcp[0], buf + got, sizeof(buf) - got);
		ASSERT_LT(0, n) TH_LOG("read: %s", n ? strerror(errno) : "EOF");
		got += n;
	}
	EXPECT_EQ(len, got);
	EXPECT_EQ(0, memcmp(msg, buf, len));
}

TEST_F(helpers, unattach)
{
	EXPECT_EQ(0, kcm_unattach(self->kcm, self->tcp[1]));
}

TEST_HARNESS_MAIN
