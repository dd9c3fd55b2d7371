/* The parent's side of a cheap fork (see fork.h): memory a child never inherits, and a
 * loop whose stack frames sit in one page. See docs/design.md, "The fork-cost design". */
#include "fork.h"

#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

void *fork_alloc_parent_only(size_t size) {
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

        if (p == MAP_FAILED)
                return NULL;
        (void)madvise(p, size, MADV_DONTFORK);
        return p;
}

void fork_free_parent_only(void *p, size_t size) {
        if (p)
                munmap(p, size);
}

/* Every page of the stack the parent writes between two forks is shared with the child
 * just made, so the parent's first write to it after each fork is a copy-on-write fault.
 * The accept loop's frames fit in one page, but where they began within a page followed
 * the random offset the kernel gives the stack at exec: often they straddled two, a fault
 * per connection more. */
__attribute__((noinline)) int fork_call_page_top(int (*fn)(void *userdata), void *userdata) {
        long page_size = sysconf(_SC_PAGESIZE);
        char here;
        size_t gap_size = page_size > 0 ? ((uintptr_t)&here + 64) & ((uintptr_t)page_size - 1) : 0;
        char *gap = __builtin_alloca(gap_size);

        __asm__ volatile("" : : "r"(gap) : "memory"); /* the gap stays */
        return fn(userdata);
}
