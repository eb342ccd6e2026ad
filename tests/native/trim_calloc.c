/*
 * For tests/mapped_pages.rs: what a restore with mapped page images does to memory the
 * program gives back.
 *
 * Before the checkpoint a thread fills 16 MiB of its own malloc arena (non-main: the case
 * where glibc's calloc could skip clearing) and the main thread fills an anonymous region;
 * both are in the image and mapped from it after the restore. Once ARGV[1] exists (made by
 * the test after the restore) the thread frees everything, trims, callocs it all again and
 * counts non-zero bytes; the main thread drops a page of its region with MADV_DONTNEED and
 * reads it. Results go to ARGV[2]:
 *   calloc_nonzero=N   bytes calloc gave that were not zero (must be 0)
 *   dontneed=XX        the first byte of the dropped page (3c: the image's; 00: fresh)
 *   arena_mapping=...  the /proc/self/maps line of the arena's first block
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define BLOCKS 256
#define BLOCK (64 * 1024)
#define REGION (4 << 20)

static const char *go;
static char *blocks[BLOCKS];
static size_t calloc_nonzero;
static char arena_mapping[512];

static void wait_for_go(void)
{
	while (access(go, F_OK) != 0)
		usleep(10000);
}

static void mapping_of(const void *p, char *out, size_t len)
{
	FILE *maps = fopen("/proc/self/maps", "r");
	char line[512];
	uintptr_t a = (uintptr_t)p;

	snprintf(out, len, "none");
	while (maps && fgets(line, sizeof(line), maps)) {
		unsigned long start, end;

		if (sscanf(line, "%lx-%lx", &start, &end) == 2 && start <= a && a < end) {
			line[strcspn(line, "\n")] = 0;
			snprintf(out, len, "%s", line);
			break;
		}
	}
	if (maps)
		fclose(maps);
}

static void *arena_user(void *ready)
{
	for (int i = 0; i < BLOCKS; i++) {
		blocks[i] = malloc(BLOCK);
		memset(blocks[i], 0xa5, BLOCK);
	}
	pthread_mutex_unlock(ready);
	wait_for_go();

	mapping_of(blocks[0], arena_mapping, sizeof(arena_mapping));
	for (int i = 0; i < BLOCKS; i++)
		free(blocks[i]);
	malloc_trim(0);
	for (int i = 0; i < BLOCKS; i++) {
		unsigned char *p = calloc(1, BLOCK);

		for (int j = 0; j < BLOCK; j++)
			calloc_nonzero += p[j] != 0;
		blocks[i] = (char *)p;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_mutex_t ready = PTHREAD_MUTEX_INITIALIZER;
	pthread_t thread;
	unsigned char *region;
	FILE *out;

	if (argc != 3)
		return 2;
	go = argv[1];
	region = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED)
		return 1;
	memset(region, 0x3c, REGION);

	pthread_mutex_lock(&ready);
	pthread_create(&thread, NULL, arena_user, &ready);
	pthread_mutex_lock(&ready);
	printf("ready\n");
	fflush(stdout);

	wait_for_go();
	madvise(region, 4096, MADV_DONTNEED);
	pthread_join(thread, NULL);

	out = fopen(argv[2], "w");
	if (!out)
		return 1;
	fprintf(out, "calloc_nonzero=%zu\ndontneed=%02x\narena_mapping=%s\n", calloc_nonzero, region[0],
		arena_mapping);
	fclose(out);
	return 0;
}
