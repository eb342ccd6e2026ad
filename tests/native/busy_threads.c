/*
 * For tests/threads.rs: a restore whose threads are not traced back to the program
 * (crac-shim's CRIU, threads-untraced) must still let every thread out of the restorer, the
 * ones that never sleep too: those are seized and traced out.
 *
 * SLEEPERS threads sleep in a loop and SPINNERS threads never make a system call. Once
 * ARGV[1] exists (made by the test after the restore) the main thread checks that every
 * thread still goes on and writes to ARGV[2]:
 *   sleepers=N spinners=N   how many of each went on after the restore
 * as soon as all of them did, or after 15 s. Not within a fixed window: on a loaded machine
 * (the spinners of two such programs on two CPUs, in a cgroup with a CPU quota) a thread
 * may not run at all for a few hundred ms. Once counted, the spinners stop spinning.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define SLEEPERS 16
#define SPINNERS 2

static volatile unsigned long sleeper_ticks[SLEEPERS];
static volatile unsigned long spinner_ticks[SPINNERS];
static volatile int stop_spinning;

static void *sleeper(void *arg)
{
	volatile unsigned long *ticks = arg;

	for (;;) {
		usleep(1000);
		(*ticks)++;
	}
	return NULL;
}

static void *spinner(void *arg)
{
	volatile unsigned long *ticks = arg;

	while (!stop_spinning)
		(*ticks)++;
	for (;;)
		pause();
	return NULL;
}

static int went_on(volatile unsigned long *ticks, int n, unsigned long *before)
{
	int i, count = 0;

	for (i = 0; i < n; i++)
		count += ticks[i] != before[i];
	return count;
}

int main(int argc, char **argv)
{
	unsigned long sleepers_before[SLEEPERS], spinners_before[SPINNERS];
	struct timespec start, now;
	int sleepers, spinners;
	pthread_t t;
	FILE *out;
	int i;

	if (argc != 3)
		return 2;
	for (i = 0; i < SLEEPERS; i++)
		pthread_create(&t, NULL, sleeper, (void *)&sleeper_ticks[i]);
	for (i = 0; i < SPINNERS; i++)
		pthread_create(&t, NULL, spinner, (void *)&spinner_ticks[i]);
	printf("ready\n");
	fflush(stdout);

	while (access(argv[1], F_OK) != 0)
		usleep(10000);
	for (i = 0; i < SLEEPERS; i++)
		sleepers_before[i] = sleeper_ticks[i];
	for (i = 0; i < SPINNERS; i++)
		spinners_before[i] = spinner_ticks[i];
	clock_gettime(CLOCK_MONOTONIC, &start);
	do {
		usleep(10000);
		sleepers = went_on(sleeper_ticks, SLEEPERS, sleepers_before);
		spinners = went_on(spinner_ticks, SPINNERS, spinners_before);
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while ((sleepers < SLEEPERS || spinners < SPINNERS) && now.tv_sec - start.tv_sec < 15);
	stop_spinning = 1;
	out = fopen(argv[2], "w");
	if (!out)
		return 1;
	fprintf(out, "sleepers=%d spinners=%d\n", sleepers, spinners);
	fclose(out);
	for (;;)
		pause();
}
