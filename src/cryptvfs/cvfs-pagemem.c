/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* The memory of SQLite's page caches, from chunks populated in advance
   (issue 15, tenth pass).

   A process that opens a database for one short session touches every
   page of memory SQLite's page caches take for the first time.  On a VM
   that first touch is a page fault of 11-15 us, more than reading and
   decrypting the page; populated in advance (MADV_POPULATE_WRITE, one
   system call for many pages) a page costs about 1 us, and its first
   touch still 5.5 us on a shadow-paged VM (bench/README.md).  So the
   page cache's buffers are worth populating in bulk, but only the ones
   the process uses: SQLITE_CONFIG_PAGECACHE (the ninth pass) gave
   SQLite a populated buffer of fixed slots, and SQLite's setup writes
   into every slot (a short session paid for 320 slots, 2 ms, whether
   its caches used them or not), and once its slots run short SQLite
   recycles cache pages rather than allocate (its "memory pressure"),
   so the slots cap every cache of the process, whatever cache_size
   says.

   Here SQLite's allocator is wrapped (SQLITE_CONFIG_MALLOC): a request
   of a page cache buffer's size (a page of CVFS_PAGEMEM_PAGE_SIZE bytes
   and SQLite's header for it, SQLITE_CONFIG_PCACHE_HDRSZ) takes a slot
   of one reserved mapping, populated CVFS_PAGEMEM_CHUNK slots at a time
   as the slots are first needed; a freed slot is taken again first.
   Every other request, and page buffers once the mapping is used up,
   go to the allocator SQLite had.  Caches grow and shrink by their
   cache_size as before.  pcache1's initial bulk allocation per cache
   (SQLITE_DEFAULT_PCACHE_INITSZ pages from the heap, each one touched
   at once) is turned off, so page buffers all come from here.

   Process-wide and only possible before sqlite3_initialize(), like every
   sqlite3_config() call; a slot is never returned to the system (as a
   freed heap block rarely is), and holds the plaintext of a page until
   it is reused, as SQLite's heap blocks did.  The slots are taken under
   a mutex: SQLite calls its allocator without one when its memory
   statistics are off. */

#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

#include "cryptvfs-private.h"

#ifndef MADV_POPULATE_WRITE
#  define MADV_POPULATE_WRITE 23
#endif

/* Slots populated at once, when the next never used one is needed. */
#define CVFS_PAGEMEM_CHUNK 16

static struct {
	sqlite3_mem_methods parent;
	pthread_mutex_t mutex;
	char *base;
	/* a slot's size, and the smallest request served from a slot */
	size_t slot_size, min_request;
	unsigned int slots, next_unused, populated;
	void *free_list;
	struct cvfs_pagemem_stats stats;
} cvfs_pagemem = {
	.mutex = PTHREAD_MUTEX_INITIALIZER,
};

static bool cvfs_pagemem_owns(const void *p)
{
	const char *c = p;

	return cvfs_pagemem.base != NULL && c >= cvfs_pagemem.base &&
		c < cvfs_pagemem.base +
		cvfs_pagemem.slot_size * cvfs_pagemem.slots;
}

static bool cvfs_pagemem_fits(int n)
{
	return n > 0 && (size_t)n >= cvfs_pagemem.min_request &&
		(size_t)n <= cvfs_pagemem.slot_size;
}

static void *cvfs_pagemem_take(void)
{
	void *p = NULL;

	pthread_mutex_lock(&cvfs_pagemem.mutex);
	if (cvfs_pagemem.free_list != NULL) {
		p = cvfs_pagemem.free_list;
		memcpy(&cvfs_pagemem.free_list, p, sizeof(void *));
	} else if (cvfs_pagemem.next_unused < cvfs_pagemem.slots) {
		if (cvfs_pagemem.next_unused == cvfs_pagemem.populated) {
			unsigned int n = cvfs_pagemem.slots -
				cvfs_pagemem.populated;
			char *start = cvfs_pagemem.base +
				cvfs_pagemem.slot_size * cvfs_pagemem.populated;
			uintptr_t from, to;

			if (n > CVFS_PAGEMEM_CHUNK)
				n = CVFS_PAGEMEM_CHUNK;
			/* whole pages only; failing (a kernel before 5.14)
			   only leaves the pages to fault in one by one */
			from = (uintptr_t)start & ~(uintptr_t)4095;
			to = ((uintptr_t)start + cvfs_pagemem.slot_size * n +
			      4095) & ~(uintptr_t)4095;
			(void)madvise((void *)from, to - from,
				      MADV_POPULATE_WRITE);
			cvfs_pagemem.populated += n;
			cvfs_pagemem.stats.chunks_populated++;
		}
		p = cvfs_pagemem.base +
			cvfs_pagemem.slot_size * cvfs_pagemem.next_unused++;
	}
	if (p != NULL) {
		cvfs_pagemem.stats.slots_taken++;
		if (++cvfs_pagemem.stats.slots_in_use >
		    cvfs_pagemem.stats.slots_in_use_max) {
			cvfs_pagemem.stats.slots_in_use_max =
				cvfs_pagemem.stats.slots_in_use;
		}
	} else {
		cvfs_pagemem.stats.overflows++;
	}
	pthread_mutex_unlock(&cvfs_pagemem.mutex);
	return p;
}

static void cvfs_pagemem_give_back(void *p)
{
	pthread_mutex_lock(&cvfs_pagemem.mutex);
	memcpy(p, &cvfs_pagemem.free_list, sizeof(void *));
	cvfs_pagemem.free_list = p;
	cvfs_pagemem.stats.slots_in_use--;
	pthread_mutex_unlock(&cvfs_pagemem.mutex);
}

static void *cvfs_pagemem_malloc(int n)
{
	void *p;

	if (cvfs_pagemem_fits(n) && (p = cvfs_pagemem_take()) != NULL)
		return p;
	return cvfs_pagemem.parent.xMalloc(n);
}

static void cvfs_pagemem_free(void *p)
{
	if (cvfs_pagemem_owns(p))
		cvfs_pagemem_give_back(p);
	else
		cvfs_pagemem.parent.xFree(p);
}

static int cvfs_pagemem_size(void *p)
{
	if (cvfs_pagemem_owns(p))
		return (int)cvfs_pagemem.slot_size;
	return cvfs_pagemem.parent.xSize(p);
}

static void *cvfs_pagemem_realloc(void *p, int n)
{
	void *q;

	if (!cvfs_pagemem_owns(p))
		return cvfs_pagemem.parent.xRealloc(p, n);
	if (cvfs_pagemem_fits(n))
		return p;
	/* SQLite never resizes a page buffer; anything else moves out */
	q = cvfs_pagemem.parent.xMalloc(n);
	if (q == NULL)
		return NULL;
	memcpy(q, p, (size_t)n < cvfs_pagemem.slot_size ? (size_t)n :
	       cvfs_pagemem.slot_size);
	cvfs_pagemem_give_back(p);
	return q;
}

static int cvfs_pagemem_roundup(int n)
{
	if (cvfs_pagemem_fits(n))
		return (int)cvfs_pagemem.slot_size;
	return cvfs_pagemem.parent.xRoundup(n);
}

static int cvfs_pagemem_init_parent(void *app_data)
{
	(void)app_data;
	return cvfs_pagemem.parent.xInit(cvfs_pagemem.parent.pAppData);
}

static void cvfs_pagemem_shutdown_parent(void *app_data)
{
	(void)app_data;
	cvfs_pagemem.parent.xShutdown(cvfs_pagemem.parent.pAppData);
}

int cvfs_pagemem_init(unsigned int slots)
{
	static const sqlite3_mem_methods methods = {
		.xMalloc = cvfs_pagemem_malloc,
		.xFree = cvfs_pagemem_free,
		.xRealloc = cvfs_pagemem_realloc,
		.xSize = cvfs_pagemem_size,
		.xRoundup = cvfs_pagemem_roundup,
		.xInit = cvfs_pagemem_init_parent,
		.xShutdown = cvfs_pagemem_shutdown_parent,
	};
	int hdr_size = 0, rc;
	size_t slot_size;
	void *mem;

	if (cvfs_pagemem.base != NULL)
		return SQLITE_MISUSE;
	if (slots == 0)
		return SQLITE_OK;
	/* refused (SQLITE_MISUSE) once SQLite is initialized */
	rc = sqlite3_config(SQLITE_CONFIG_PCACHE_HDRSZ, &hdr_size);
	if (rc != SQLITE_OK)
		return rc;
	slot_size = ((size_t)CVFS_PAGEMEM_PAGE_SIZE + (size_t)hdr_size + 7) &
		~(size_t)7;
	mem = mmap(NULL, slot_size * slots, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (mem == MAP_FAILED)
		return SQLITE_NOMEM;
	rc = sqlite3_config(SQLITE_CONFIG_GETMALLOC, &cvfs_pagemem.parent);
	if (rc == SQLITE_OK)
		rc = sqlite3_config(SQLITE_CONFIG_MALLOC, &methods);
	if (rc != SQLITE_OK) {
		(void)munmap(mem, slot_size * slots);
		return rc;
	}
	/* no initial bulk of heap pages per cache: every page buffer comes
	   from pcache1Alloc(), so from the slots */
	(void)sqlite3_config(SQLITE_CONFIG_PAGECACHE, NULL, 0, 0);
	cvfs_pagemem.slot_size = slot_size;
	cvfs_pagemem.min_request = CVFS_PAGEMEM_PAGE_SIZE + 1;
	cvfs_pagemem.slots = slots;
	cvfs_pagemem.base = mem;
	return SQLITE_OK;
}

void cvfs_pagemem_get_stats(struct cvfs_pagemem_stats *stats_r)
{
	pthread_mutex_lock(&cvfs_pagemem.mutex);
	*stats_r = cvfs_pagemem.stats;
	stats_r->slots = cvfs_pagemem.slots;
	stats_r->slots_populated = cvfs_pagemem.populated;
	pthread_mutex_unlock(&cvfs_pagemem.mutex);
}
