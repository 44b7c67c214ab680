/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* What the first touch of a page of fresh anonymous memory costs this
   machine (issue 15, tenth pass). Not a test.

     page-touch PAGES MODE
       Maps PAGES pages of private anonymous memory, then writes one
       byte into each page twice.  MODE 0: not populated (each first
       write is a page fault); 1: MAP_POPULATE; 2: MADV_POPULATE_WRITE
       after the mmap.  Prints, per page, the time of the mmap (and the
       population), of the first write and of the second.

   On a VM with shadow page tables a populated page still costs a
   trap at its first touch: the populated modes show what is left, the
   unpopulated one what a page fault costs on top (bench/README.md). */

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#ifndef MADV_POPULATE_WRITE
#  define MADV_POPULATE_WRITE 23
#endif

#define PAGE_TOUCH_PAGE 4096

static double page_touch_usecs(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

int main(int argc, char **argv)
{
	size_t pages, size;
	double t0, t1, t2, t3;
	char *p;
	int mode;

	if (argc != 3 || (pages = strtoul(argv[1], NULL, 10)) == 0 ||
	    (mode = atoi(argv[2])) < 0 || mode > 2) {
		fprintf(stderr, "usage: page-touch PAGES 0|1|2\n");
		return 2;
	}
	size = pages * PAGE_TOUCH_PAGE;
	t0 = page_touch_usecs();
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE |
		 MAP_ANONYMOUS | (mode == 1 ? MAP_POPULATE : 0), -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	if (mode == 2 && madvise(p, size, MADV_POPULATE_WRITE) < 0) {
		perror("madvise(MADV_POPULATE_WRITE)");
		return 1;
	}
	t1 = page_touch_usecs();
	for (size_t i = 0; i < size; i += PAGE_TOUCH_PAGE)
		p[i] = 1;
	t2 = page_touch_usecs();
	for (size_t i = 0; i < size; i += PAGE_TOUCH_PAGE)
		p[i + 8] = 2;
	t3 = page_touch_usecs();
	printf("mode %d, %zu pages: mmap%s %.2f us/page, first write "
	       "%.2f us/page, second %.3f us/page\n", mode, pages,
	       mode == 0 ? "" : " and population", (t1 - t0) / pages,
	       (t2 - t1) / pages, (t3 - t2) / pages);
	return 0;
}
