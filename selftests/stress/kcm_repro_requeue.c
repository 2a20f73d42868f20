// SPDX-License-Identifier: GPL-2.0
/*
 * kcm_repro_requeue: a focused reproducer found by kcm_stress.
 *
 *   kcm_repro_requeue [SECONDS [c][d]]      (default: 30 cd)
 *
 * Two psocks stream messages of 12 to ~3000 bytes (most small enough
 * for kcmux to keep them in shared skbs) into a mux of six KCM sockets.
 * Three threads read every socket and check each message; one thread
 * toggles KCM_RECV_DISABLE on random sockets (d), another closes and
 * re-clones them (c): queues, packed ones included, are requeued all
 * the time.  No message may be corrupted and no read of a valid buffer
 * may fail with EFAULT.  Exit status 1 if either happened.
 *
 * Needs a network namespace of its own (root), the module loaded.
 */
#include <pthread.h>
#include "kcm_test.h"

#define NSOCK	6
#define NPSOCK	2

static int k0, peers[NPSOCK], tcps[NPSOCK];
static int socks[NSOCK];
static pthread_rwlock_t slot_lock[NSOCK];
static atomic_bool stop;
static atomic_ulong got, bad, zeros, efault, closes, toggles;
static int dur = 30, do_close = 1, do_disable = 1;

static uint32_t len_of(uint32_t stream, uint32_t seq)
{
	uint32_t x = (seq * 2654435761u) ^ (stream * 97);

	/* Mostly packable (<= 512), some not. */
	return 12 + (x % 10 == 0 ? x % 3000 : x % 500);
}

static void fill(uint8_t *b, uint32_t stream, uint32_t seq)
{
	uint32_t len = len_of(stream, seq), i, be = htonl(len);

	memcpy(b, &be, 4);
	memcpy(b + 4, &stream, 4);
	memcpy(b + 8, &seq, 4);
	for (i = 12; i < len; i++)
		b[i] = (uint8_t)(seq * 31 + i * 7 + stream);
}

static int check(const uint8_t *b, ssize_t n)
{
	uint32_t stream, seq, be, i;
	int allzero = 1;

	for (i = 0; i < (uint32_t)n; i++)
		if (b[i])
			allzero = 0;
	if (allzero)
		return 2;
	if (n < 12)
		return 1;
	memcpy(&be, b, 4);
	memcpy(&stream, b + 4, 4);
	memcpy(&seq, b + 8, 4);
	if (stream >= NPSOCK || ntohl(be) != (uint32_t)n || len_of(stream, seq) != n)
		return 1;
	for (i = 12; i < (uint32_t)n; i++)
		if (b[i] != (uint8_t)(seq * 31 + i * 7 + stream))
			return 1;
	return 0;
}

static void *writer(void *a)
{
	uint32_t stream = (uint32_t)(uintptr_t)a, seq = 0, off;
	uint8_t b[64 * 1024];

	while (!stop) {
		off = 0;
		while (off < sizeof(b) - 4096) {
			fill(b + off, stream, seq);
			off += len_of(stream, seq++);
		}
		if (kcm_send_all(peers[stream], b, off))
			break;
	}
	return NULL;
}

static void note_bad(const char *what, ssize_t n, const uint8_t *b)
{
	if (bad < 10)
		fprintf(stderr, "%s: %zd bytes: %02x%02x%02x%02x %02x%02x%02x%02x\n",
			what, n, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]);
}

static void *reader(void *a)
{
	static __thread uint8_t b[8192];
	ssize_t n;
	int i, r;

	(void)a;
	while (!stop) {
		for (i = 0; i < NSOCK; i++) {
			pthread_rwlock_rdlock(&slot_lock[i]);
			if (socks[i] >= 0) {
				while ((n = recv(socks[i], b, sizeof(b), MSG_DONTWAIT)) > 0) {
					r = check(b, n);
					got++;
					if (r == 2)
						zeros++;
					if (r) {
						note_bad(r == 2 ? "all zeros" : "corrupt", n, b);
						bad++;
					}
				}
				if (n < 0 && errno == EFAULT) {
					efault++;
					if (efault < 5)
						fprintf(stderr, "recv: EFAULT on a valid buffer\n");
				}
			}
			pthread_rwlock_unlock(&slot_lock[i]);
		}
		while ((n = recv(k0, b, sizeof(b), MSG_DONTWAIT)) > 0) {
			got++;
			if (check(b, n)) {
				note_bad("corrupt (k0)", n, b);
				bad++;
			}
		}
	}
	return NULL;
}

static void *churn(void *a)
{
	uint64_t rng = 88172645463325252ull ^ (uintptr_t)a;
	int i, v;

	while (!stop) {
		rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
		i = rng % NSOCK;
		if ((uintptr_t)a == 1 && do_disable) {
			pthread_rwlock_rdlock(&slot_lock[i]);
			if (socks[i] >= 0) {
				v = (rng >> 20) & 1;
				setsockopt(socks[i], SOL_KCM, KCM_RECV_DISABLE, &v, sizeof(v));
				toggles++;
			}
			pthread_rwlock_unlock(&slot_lock[i]);
		} else if ((uintptr_t)a == 2 && do_close) {
			pthread_rwlock_wrlock(&slot_lock[i]);
			if (socks[i] >= 0) {
				close(socks[i]);
				socks[i] = -1;
				closes++;
			} else {
				socks[i] = kcm_clone(k0);
			}
			pthread_rwlock_unlock(&slot_lock[i]);
		}
		usleep(rng % 3000);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t w[NPSOCK], r[3], c[2];
	int fds[2] = { -1, -1 }, prog, i;
	const struct kcm_tcp_opts o = { .rcvbuf = 1 << 20 };

	if (argc > 1)
		dur = atoi(argv[1]);
	if (argc > 2) {
		do_close = !!strchr(argv[2], 'c');
		do_disable = !!strchr(argv[2], 'd');
	}
	if (kcm_netns_enter())
		return 2;
	k0 = kcm_socket(SOCK_DGRAM);
	prog = kcm_bpf_len_parser(0);
	if (k0 < 0 || prog < 0)
		return 2;
	for (i = 0; i < NPSOCK; i++) {
		if (kcm_tcp_pair_opts(AF_INET, fds, &o))
			return 2;
		peers[i] = fds[0];
		tcps[i] = fds[1];
		if (kcm_attach(k0, tcps[i], prog))
			return 2;
	}
	for (i = 0; i < NSOCK; i++) {
		pthread_rwlock_init(&slot_lock[i], NULL);
		socks[i] = kcm_clone(k0);
	}
	for (i = 0; i < NPSOCK; i++)
		pthread_create(&w[i], NULL, writer, (void *)(uintptr_t)i);
	for (i = 0; i < 3; i++)
		pthread_create(&r[i], NULL, reader, NULL);
	pthread_create(&c[0], NULL, churn, (void *)(uintptr_t)1);
	pthread_create(&c[1], NULL, churn, (void *)(uintptr_t)2);
	sleep(dur);
	stop = true;
	for (i = 0; i < NPSOCK; i++)
		shutdown(peers[i], SHUT_RDWR);
	for (i = 0; i < 2; i++)
		pthread_join(c[i], NULL);
	for (i = 0; i < 3; i++)
		pthread_join(r[i], NULL);
	for (i = 0; i < NPSOCK; i++)
		pthread_join(w[i], NULL);
	printf("messages %lu, bad %lu (all zeros %lu), EFAULT %lu, closes %lu, toggles %lu\n",
	       got, bad, zeros, efault, closes, toggles);
	return bad || efault ? 1 : 0;
}
