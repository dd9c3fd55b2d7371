/* Makes each fork of the accept loop cheap: a child is made without the mappings it never
 * touches. */
#pragma once

/* Marks MADV_DONTFORK every mapping trim.c finds safe to leave out of a child, then checks
 * with one trimmed child that children still work (forkcheck.c); if they do not, gives the
 * mappings back and logs one warning. Call once, when the process is set up; mappings made
 * later are forked as usual. Returns the number of mappings left out (0 in sanitizer builds
 * and under valgrind, whose runtimes the child needs), or -errno. */
int fork_trim(void);

/* Forks children with every mapping again (MADV_DOFORK on what fork_trim() marked). */
void fork_untrim(void);

/* Returns fn(userdata), called with the stack pointer just below the top of a page: the
 * frames of a loop that forks, if under a page deep, then sit in one page. */
int fork_call_page_top(int (*fn)(void *userdata), void *userdata);
