/* Why: fork() costs time per mapping it copies. libsystemd and the six libraries it pulls
 * in on Debian 12 (libcap, libgcrypt, libgpg-error, liblzma, libzstd, liblz4) are ~35 of
 * echod's ~60 mappings, and a child never calls them: only the main process validates
 * sockets and notifies. MADV_DONTFORK leaves them out of every child, so the fork costs
 * what a libc-only program's does. Libraries are matched by name; an unknown one stays. */
#include "lean.h"

#include <link.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static const char *const parent_only[] = {
        "libsystemd.so", "libcap.so",  "libgcrypt.so", "libgpg-error.so",
        "liblzma.so",    "libzstd.so", "liblz4.so",
};

static int is_parent_only(const char *path) {
        const char *base = strrchr(path, '/');

        base = base ? base + 1 : path;
        for (size_t i = 0; i < sizeof(parent_only) / sizeof(parent_only[0]); i++)
                if (strncmp(base, parent_only[i], strlen(parent_only[i])) == 0)
                        return 1;
        return 0;
}

static int mark_object(struct dl_phdr_info *info, size_t size, void *userdata) {
        uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), start = UINTPTR_MAX, end = 0;
        int *n_marked = userdata;

        (void)size;
        if (!info->dlpi_name || !is_parent_only(info->dlpi_name))
                return 0;
        for (int i = 0; i < info->dlpi_phnum; i++) {
                const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
                if (ph->p_type != PT_LOAD)
                        continue;
                uintptr_t a = info->dlpi_addr + ph->p_vaddr, b = a + ph->p_memsz;
                start = a < start ? a : start;
                end = b > end ? b : end;
        }
        if (start >= end)
                return 0;
        start &= ~(page - 1);
        end = (end + page - 1) & ~(page - 1);
        /* The span includes the gaps between segments; madvise() applies the advice to
         * every mapping in it (and reports ENOMEM for holes, which is fine). */
        (void)madvise((void *)start, end - start, MADV_DONTFORK);
        (*n_marked)++;
        return 0;
}

int lean_setup(void) {
        int n_marked = 0;

        dl_iterate_phdr(mark_object, &n_marked);
        return n_marked;
}
