// SPDX-License-Identifier: GPL-2.0
/*
 * kcm_prof - a minimal sampling profiler for the benchmark VM, which has
 * no perf tool: where do the CPUs spend their time while a workload runs?
 *
 *   kcm_prof [-F HZ] [-n TOP] SECS
 *
 * Samples every online CPU (software cpu-clock event, kernel and user,
 * idle excluded) for SECS seconds through perf_event_open(), then prints
 * the TOP kernel functions by share of samples, resolved with
 * /proc/kallsyms (module functions carry their [module]), and the share
 * of each module and of user space.  Run it beside the workload:
 *
 *   kcm_bench run ... & sleep 0.5; kcm_prof 1; wait
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/perf_event.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#define MAX_CPUS	64
#define RING_PAGES	64	/* data pages per CPU, a power of two */

struct ring {
	int fd;
	struct perf_event_mmap_page *meta;
	uint8_t *data;
	size_t size;
};

/* Sampled instruction pointers, kernel ones only; user ones just counted. */
static uint64_t *ips;
static size_t nips, cap_ips;
static uint64_t user_samples, lost, throttled;

static void add_ip(uint64_t ip)
{
	if (nips == cap_ips) {
		cap_ips = cap_ips ? 2 * cap_ips : 65536;
		ips = realloc(ips, cap_ips * sizeof(*ips));
		if (!ips) {
			perror("realloc");
			exit(1);
		}
	}
	ips[nips++] = ip;
}

/* Takes every complete record out of r. */
static void ring_drain(struct ring *r)
{
	uint64_t head = __atomic_load_n(&r->meta->data_head, __ATOMIC_ACQUIRE);
	uint64_t tail = r->meta->data_tail;

	while (tail < head) {
		struct perf_event_header h;
		uint8_t rec[64];
		size_t off = tail % r->size, i;

		for (i = 0; i < sizeof(h); i++)
			((uint8_t *)&h)[i] = r->data[(off + i) % r->size];
		if (h.size > sizeof(rec) || h.size < sizeof(h))
			break;
		for (i = 0; i < h.size; i++)
			rec[i] = r->data[(off + i) % r->size];
		if (h.type == PERF_RECORD_SAMPLE) {
			uint64_t ip;

			memcpy(&ip, rec + sizeof(h), sizeof(ip));
			if ((h.misc & PERF_RECORD_MISC_CPUMODE_MASK) ==
			    PERF_RECORD_MISC_KERNEL)
				add_ip(ip);
			else
				user_samples++;
		} else if (h.type == PERF_RECORD_THROTTLE) {
			throttled++;
		} else if (h.type == PERF_RECORD_LOST) {
			uint64_t n;

			memcpy(&n, rec + sizeof(h) + 8, sizeof(n));
			lost += n;
		}
		tail += h.size;
	}
	__atomic_store_n(&r->meta->data_tail, tail, __ATOMIC_RELEASE);
}

struct sym {
	uint64_t addr;
	char *name;	/* "func" or "func [module]" */
};

static struct sym *syms;
static size_t nsyms;

static int sym_cmp(const void *a, const void *b)
{
	const struct sym *x = a, *y = b;

	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static void load_kallsyms(void)
{
	char line[512], name[256], mod[128], type;
	size_t cap = 0;
	uint64_t addr;
	FILE *f = fopen("/proc/kallsyms", "re");

	if (!f) {
		perror("/proc/kallsyms");
		exit(1);
	}
	while (fgets(line, sizeof(line), f)) {
		int n;

		mod[0] = '\0';
		n = sscanf(line, "%" SCNx64 " %c %255s %127s", &addr, &type, name, mod);
		if (n < 3 || !addr || (type != 't' && type != 'T'))
			continue;
		if (nsyms == cap) {
			cap = cap ? 2 * cap : 65536;
			syms = realloc(syms, cap * sizeof(*syms));
			if (!syms) {
				perror("realloc");
				exit(1);
			}
		}
		syms[nsyms].addr = addr;
		if (n == 4) {
			syms[nsyms].name = malloc(strlen(name) + strlen(mod) + 2);
			sprintf(syms[nsyms].name, "%s %s", name, mod);
		} else {
			syms[nsyms].name = strdup(name);
		}
		nsyms++;
	}
	fclose(f);
	qsort(syms, nsyms, sizeof(*syms), sym_cmp);
}

static const char *sym_of(uint64_t ip)
{
	size_t lo = 0, hi = nsyms;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (syms[mid].addr <= ip)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo ? syms[lo - 1].name : "?";
}

struct count {
	const char *name;
	uint64_t n;
};

static int count_cmp(const void *a, const void *b)
{
	const struct count *x = a, *y = b;

	return x->n < y->n ? 1 : x->n > y->n ? -1 : strcmp(x->name, y->name);
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Counts of equal strings in names (sorted in place), most frequent first. */
static struct count *tally(const char **names, size_t n, size_t *out)
{
	struct count *c = calloc(n + 1, sizeof(*c));
	size_t i, k = 0;

	qsort(names, n, sizeof(*names), name_cmp);
	for (i = 0; i < n; i++) {
		if (k && !strcmp(c[k - 1].name, names[i])) {
			c[k - 1].n++;
			continue;
		}
		c[k].name = names[i];
		c[k++].n = 1;
	}
	qsort(c, k, sizeof(*c), count_cmp);
	*out = k;
	return c;
}

int main(int argc, char **argv)
{
	struct ring rings[MAX_CPUS];
	int ncpu = 0, hz = 4000, top = 30, opt, cpu;
	long page = sysconf(_SC_PAGESIZE);
	double secs, end;
	struct timespec ts;
	const char **names, **mods;
	struct count *c;
	size_t i, k;
	uint64_t total;

	while ((opt = getopt(argc, argv, "F:n:")) != -1) {
		if (opt == 'F')
			hz = atoi(optarg);
		else if (opt == 'n')
			top = atoi(optarg);
		else
			goto usage;
	}
	if (optind != argc - 1)
		goto usage;
	secs = atof(argv[optind]);
	load_kallsyms();

	for (cpu = 0; cpu < MAX_CPUS && cpu < sysconf(_SC_NPROCESSORS_ONLN); cpu++) {
		struct perf_event_attr a = {
			.type = PERF_TYPE_SOFTWARE,
			.size = sizeof(a),
			.config = PERF_COUNT_SW_CPU_CLOCK,
			/*
			 * A fixed period of cpu-clock nanoseconds: in frequency
			 * mode the kernel re-derives the period from its tick,
			 * which under TCG left a few dozen samples per second.
			 */
			.sample_period = 1000000000ull / hz,
			.sample_type = PERF_SAMPLE_IP,
			.exclude_idle = 1,
			.exclude_hv = 1,
		};
		struct ring *r = &rings[ncpu];
		void *m;

		r->fd = syscall(__NR_perf_event_open, &a, -1, cpu, -1, 0);
		if (r->fd < 0) {
			fprintf(stderr, "perf_event_open(cpu %d): %s\n", cpu,
				strerror(errno));
			return 1;
		}
		r->size = RING_PAGES * page;
		m = mmap(NULL, (RING_PAGES + 1) * page, PROT_READ | PROT_WRITE,
			 MAP_SHARED, r->fd, 0);
		if (m == MAP_FAILED) {
			perror("mmap");
			return 1;
		}
		r->meta = m;
		r->data = (uint8_t *)m + page;
		ncpu++;
	}

	clock_gettime(CLOCK_MONOTONIC, &ts);
	end = ts.tv_sec + ts.tv_nsec / 1e9 + secs;
	for (;;) {
		for (cpu = 0; cpu < ncpu; cpu++)
			ring_drain(&rings[cpu]);
		clock_gettime(CLOCK_MONOTONIC, &ts);
		if (ts.tv_sec + ts.tv_nsec / 1e9 >= end)
			break;
		poll(NULL, 0, 10);
	}
	for (cpu = 0; cpu < ncpu; cpu++) {
		ioctl(rings[cpu].fd, PERF_EVENT_IOC_DISABLE, 0);
		ring_drain(&rings[cpu]);
	}

	total = nips + user_samples;
	names = calloc(nips + 1, sizeof(*names));
	mods = calloc(nips + 1, sizeof(*mods));
	for (i = 0; i < nips; i++) {
		const char *s = sym_of(ips[i]), *b = strchr(s, '[');

		names[i] = s;
		mods[i] = b ? b : "[kernel]";
	}
	printf("# kcm_prof: %" PRIu64 " samples over %.2f s on %d CPUs (%d Hz), %" PRIu64 " lost, throttled %" PRIu64 " times\n",
	       total, secs, ncpu, hz, lost, throttled);
	if (!total)
		return 0;
	printf("# %6.2f%%  user space\n", 100.0 * user_samples / total);
	c = tally(mods, nips, &k);
	for (i = 0; i < k; i++)
		printf("# %6.2f%%  %s\n", 100.0 * c[i].n / total, c[i].name);
	free(c);
	c = tally(names, nips, &k);
	for (i = 0; i < k && (int)i < top; i++)
		printf("%6.2f%%  %s\n", 100.0 * c[i].n / total, c[i].name);
	return 0;
usage:
	fprintf(stderr, "usage: kcm_prof [-F HZ] [-n TOP] SECS\n");
	return 2;
}
