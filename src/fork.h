/* Makes each fork of the accept loop cheap: a child is made without the mappings it never
 * touches (fork.c), the parent's own bookkeeping is never copied, and the loop's frames sit
 * in one page of the stack (fork_mem.c). See docs/design.md, "The fork-cost design". */
#pragma once

#include <stddef.h>

/* Marks MADV_DONTFORK every mapping trim.c finds safe to leave out of a child, then checks
 * with one trimmed child that children still work (forkcheck.c); if they do not, gives the
 * mappings back and logs one warning. Call once, when the process is set up; mappings made
 * later are forked as usual. Returns the number of mappings left out (0 in sanitizer builds
 * and under valgrind, whose runtimes the child needs), or -errno. */
int fork_trim(void);

/* Forks children with every mapping again (MADV_DOFORK on what fork_trim() marked). */
void fork_untrim(void);

/* Anonymous memory that a fork() does not copy: the parent's own bookkeeping, which no
 * child needs and whose pages then never turn copy-on-write under the parent's writes. */
void *fork_alloc_parent_only(size_t size);
void fork_free_parent_only(void *p, size_t size);

/* Returns fn(userdata), called with the stack pointer just below the top of a page: the
 * frames of a loop that forks, if under a page deep, then sit in one page. */
int fork_call_page_top(int (*fn)(void *userdata), void *userdata);
