/* Why: fork() costs time per mapping it copies. libsystemd and the six libraries it pulls
 * in on Debian 12 (libcap, libgcrypt, libgpg-error, liblzma, libzstd, liblz4) are 35 of
 * echod's 63 mappings, and no child calls them: only the main process validates sockets
 * and notifies. MADV_DONTFORK leaves them out of every child. One catch: once
 * sd_listen_fds() has looked at LISTEN_PID, libsystemd has a pthread_atfork() child
 * handler (resetting its cached pid), which fork() would call in a child where libsystemd
 * is not mapped; children are therefore made with _Fork(), which is fork() without the
 * atfork handlers. Libraries are matched by name; an unknown one stays. */
#include "lean.h"

#include <errno.h>
#include <link.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
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

#define MAX_SPANS 16

struct spans {
        struct {
                uintptr_t start, end;
        } items[MAX_SPANS];
        int n;
};

static int mark_object(struct dl_phdr_info *info, size_t size, void *userdata) {
        uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), start = UINTPTR_MAX, end = 0;
        struct spans *spans = userdata;

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
        if (start >= end || spans->n >= MAX_SPANS)
                return 0;
        start &= ~(page - 1);
        end = (end + page - 1) & ~(page - 1);
        /* The span includes the gaps between segments; madvise() applies the advice to
         * every mapping in it (and reports ENOMEM for holes, which is fine). */
        (void)madvise((void *)start, end - start, MADV_DONTFORK);
        spans->items[spans->n].start = start;
        spans->items[spans->n].end = end;
        spans->n++;
        return 0;
}

int lean_setup(void) {
        struct spans spans = {};
        int status;
        pid_t pid;

        dl_iterate_phdr(mark_object, &spans);
        if (spans.n == 0)
                return 0;

        /* Prove it once: if a bare child does not exit cleanly (something in libc reached
         * for a library left out), give the libraries back to the children. */
        pid = lean_fork();
        if (pid == 0)
                _exit(0);
        if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0)
                return spans.n;
        for (int i = 0; i < spans.n; i++)
                (void)madvise((void *)spans.items[i].start, spans.items[i].end - spans.items[i].start,
                              MADV_DOFORK);
        return -ECHILD;
}

pid_t lean_fork(void) {
        return _Fork();
}
