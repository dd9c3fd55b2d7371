/* What a fork copies. fork() duplicates every mapping of the parent, one by one, and the
 * child's exit tears each down again: that, not the echo, is most of what a connection
 * costs. A child runs only echod's own code on its stack (client.c, sys.h), so before
 * serving, every other mapping (libc, the dynamic loader, the heap, the vDSO) is marked
 * MADV_DONTFORK: the parent keeps using it, children are made without it. */
#include "fork.h"

#include <errno.h>
#include <inttypes.h>
#include <link.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/rseq.h>
#include <unistd.h>

#include "echo.h"
#include "log.h"

#ifdef ECHOD_SANITIZED
#define SANITIZED true
#else
#define SANITIZED false
#endif

struct keep {
        uintptr_t addr[10];
        size_t n;
};

static bool range_holds(const struct keep *k, uintptr_t start, uintptr_t end) {
        for (size_t i = 0; i < k->n; i++)
                if (k->addr[i] >= start && k->addr[i] < end)
                        return true;
        return false;
}

int fork_trim(void) {
        uintptr_t tp = (uintptr_t)__builtin_thread_pointer();
        struct keep keep = { .n = 0 };
        unsigned n_trimmed = 0, n_mappings = 0;
        char line[4352];
        int local = 0;
        FILE *f;

        if (SANITIZED)
                return 0; /* the sanitizers' runtimes run in the child too: keep everything */

        /* What a child touches: echod's code, constants, relocated constants and data, its
         * stack, and the thread's own block (the stack protector's canary, and the rseq area
         * the kernel writes on the child's return to user space). Not the executable's
         * headers and symbol tables. */
        keep.addr[keep.n++] = (uintptr_t)&fork_trim;                       /* .text */
        keep.addr[keep.n++] = (uintptr_t)echo_end_to_string(ECHO_END_EOF); /* .rodata */
        keep.addr[keep.n++] = (uintptr_t)_DYNAMIC;                         /* RELRO */
        keep.addr[keep.n++] = (uintptr_t)&log_max_level;                   /* .data */
        keep.addr[keep.n++] = (uintptr_t)&log_use_prefix;                  /* .bss */
        keep.addr[keep.n++] = (uintptr_t)&local;
        keep.addr[keep.n++] = tp;
        keep.addr[keep.n++] = tp + (uintptr_t)__rseq_offset;
        if (__rseq_size > 0)
                keep.addr[keep.n++] = tp + (uintptr_t)__rseq_offset + __rseq_size - 1;

        f = fopen("/proc/self/maps", "re");
        if (!f)
                return log_warning_errno(errno, "Failed to read /proc/self/maps, children are forked "
                                                "with every mapping: %m");
        /* Under valgrind its own mappings are listed too, and a child of it needs them. */
        while (fgets(line, sizeof(line), f))
                if (strstr(line, "/valgrind/") || strstr(line, "vgpreload")) {
                        fclose(f);
                        return 0;
                }
        rewind(f);
        while (fgets(line, sizeof(line), f)) {
                uintptr_t start, end;

                if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR, &start, &end) != 2)
                        continue;
                n_mappings++;
                if (range_holds(&keep, start, end))
                        continue;
                /* [vsyscall] and the like refuse: they are not copied anyway. */
                if (madvise((void *)start, end - start, MADV_DONTFORK) == 0)
                        n_trimmed++;
        }
        fclose(f);
        log_debug("children are forked without %u of %u mappings", n_trimmed, n_mappings);
        return (int)n_trimmed;
}

/* Every page of the stack the parent writes between two forks is shared with the child
 * just made, so the parent's first write to it after each fork is a copy-on-write fault.
 * The accept loop's frames fit in one page, but where they began within a page followed
 * the random offset the kernel gives the stack at exec: in 6 launches of 8 they straddled
 * two, a fault per connection more (3 instead of 2, with the thread block's). */
__attribute__((noinline)) int fork_call_page_top(int (*fn)(void *userdata), void *userdata) {
        long page_size = sysconf(_SC_PAGESIZE);
        char here;
        size_t gap_size = page_size > 0 ? ((uintptr_t)&here + 64) & ((uintptr_t)page_size - 1) : 0;
        char *gap = __builtin_alloca(gap_size);

        __asm__ volatile("" : : "r"(gap) : "memory"); /* the gap stays */
        return fn(userdata);
}
