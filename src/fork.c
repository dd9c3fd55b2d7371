/* What a fork copies. fork() duplicates every mapping of the parent, one by one, and the
 * child's exit tears each down again: that, not the echo, is most of what a connection
 * costs. A child runs only echod's own code on its stack (client.c, sys.h), so before
 * serving, every other mapping (libc, the dynamic loader, the heap, the vDSO) is marked
 * MADV_DONTFORK: the parent keeps using it, children are made without it. */
#include "fork.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/rseq.h>

#include "log.h"

struct keep {
        uintptr_t addr[8];
        size_t n;
};

static bool range_holds(const struct keep *k, uintptr_t start, uintptr_t end) {
        for (size_t i = 0; i < k->n; i++)
                if (k->addr[i] >= start && k->addr[i] < end)
                        return true;
        return false;
}

int fork_trim(void) {
#ifdef ECHOD_SANITIZED
        /* The sanitizers' runtimes run in the child too: leave the address space whole. */
        return 0;
#else
        uintptr_t tp = (uintptr_t)__builtin_thread_pointer();
        char exe_path[4096] = "", line[4352];
        struct keep keep = { .n = 0 };
        unsigned n_trimmed = 0, n_mappings = 0;
        int local = 0;
        FILE *f;

        /* What a child touches: echod's code, constants and data (every mapping of the
         * executable, found by the one holding this function), its stack, and the thread's
         * own block (the stack protector's canary, and the rseq area the kernel writes on
         * the child's return to user space). */
        keep.addr[keep.n++] = (uintptr_t)&fork_trim;
        keep.addr[keep.n++] = (uintptr_t)&log_max_level;  /* .data */
        keep.addr[keep.n++] = (uintptr_t)&log_use_prefix; /* .bss */
        keep.addr[keep.n++] = (uintptr_t)&local;
        keep.addr[keep.n++] = tp;
        keep.addr[keep.n++] = tp + (uintptr_t)__rseq_offset;
        if (__rseq_size > 0)
                keep.addr[keep.n++] = tp + (uintptr_t)__rseq_offset + __rseq_size - 1;

        f = fopen("/proc/self/maps", "re");
        if (!f)
                return log_warning_errno(errno, "Failed to read /proc/self/maps, children are forked "
                                                "with every mapping: %m");
        /* First pass: the executable's path, and whether valgrind owns this address space
         * (its own mappings are listed too, and a child of it needs them). */
        while (fgets(line, sizeof(line), f)) {
                uintptr_t start, end;
                int name_at = 0;

                if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %*s %*s %*s %*s %n", &start, &end, &name_at) < 2)
                        continue;
                line[strcspn(line, "\n")] = '\0';
                if (strstr(line + name_at, "/valgrind/") || strstr(line + name_at, "vgpreload")) {
                        fclose(f);
                        return 0;
                }
                if (start <= (uintptr_t)&fork_trim && (uintptr_t)&fork_trim < end)
                        snprintf(exe_path, sizeof(exe_path), "%s", line + name_at);
        }
        rewind(f);
        while (fgets(line, sizeof(line), f)) {
                uintptr_t start, end;
                int name_at = 0;
                const char *name;

                if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %*s %*s %*s %*s %n", &start, &end, &name_at) < 2)
                        continue;
                line[strcspn(line, "\n")] = '\0';
                name = line + name_at;
                n_mappings++;
                if (range_holds(&keep, start, end) || (exe_path[0] && strcmp(name, exe_path) == 0))
                        continue;
                /* [vsyscall] and the like refuse: they are not copied anyway. */
                if (madvise((void *)start, end - start, MADV_DONTFORK) == 0)
                        n_trimmed++;
        }
        fclose(f);
        log_debug("children are forked without %u of %u mappings", n_trimmed, n_mappings);
        return (int)n_trimmed;
#endif
}
