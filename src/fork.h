/* Makes each fork of the accept loop cheap: a child is made without the mappings it never
 * touches. */
#pragma once

/* Marks every mapping but echod's own, the stack and the thread's block MADV_DONTFORK.
 * Call once, when the process is set up; mappings made later are forked as usual. A child
 * must then call nothing outside echod (see sys.h). Returns the number of mappings marked
 * (0 in sanitizer builds and under valgrind, whose runtimes the child needs), or -errno. */
int fork_trim(void);

/* Returns fn(userdata), called with the stack pointer just below the top of a page: the
 * frames of a loop that forks, if under a page deep, then sit in one page. */
int fork_call_page_top(int (*fn)(void *userdata), void *userdata);
