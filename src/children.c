/* An open-addressing hash table of pids with linear probing and backward-shift deletion
 * (no tombstones), at most half full. It lives in memory mapped MADV_DONTFORK: a child
 * never sees it, and the parent's writes to it never fault on copy-on-write pages. */
#include "children.h"

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <sys/mman.h>

struct slot {
        pid_t pid; /* 0: empty */
        uint64_t source;
};

struct children {
        struct slot *slots;
        size_t mask; /* number of slots - 1 */
        size_t mapped;
        unsigned n, max;
};

static size_t slot_of(const struct children *c, pid_t pid) {
        return ((uint32_t)pid * 2654435761u) & c->mask;
}

int children_new(unsigned max, struct children **ret) {
        size_t n_slots = 16, size;
        struct children *c;
        void *p;

        while (n_slots < 2 * (size_t)max)
                n_slots *= 2;
        size = sizeof(struct children) + n_slots * sizeof(struct slot);
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
                return -errno;
        (void)madvise(p, size, MADV_DONTFORK);
        c = p;
        *c = (struct children){
                .slots = (struct slot *)((char *)p + sizeof(struct children)),
                .mask = n_slots - 1,
                .mapped = size,
                .max = max,
        };
        *ret = c;
        return 0;
}

void children_free(struct children *c) {
        if (c)
                munmap(c, c->mapped);
}

int children_add(struct children *c, pid_t pid, uint64_t source) {
        size_t i;

        if (c->n >= c->max)
                return -ENOSPC;
        for (i = slot_of(c, pid); c->slots[i].pid != 0; i = (i + 1) & c->mask)
                if (c->slots[i].pid == pid)
                        return -EEXIST;
        c->slots[i] = (struct slot){ .pid = pid, .source = source };
        c->n++;
        return 0;
}

bool children_remove(struct children *c, pid_t pid, uint64_t *ret_source) {
        size_t i, j;

        for (i = slot_of(c, pid); c->slots[i].pid != pid; i = (i + 1) & c->mask)
                if (c->slots[i].pid == 0)
                        return false;
        if (ret_source)
                *ret_source = c->slots[i].source;

        /* Shift back every later entry of the run that may move into the hole. */
        for (j = (i + 1) & c->mask; c->slots[j].pid != 0; j = (j + 1) & c->mask) {
                size_t home = slot_of(c, c->slots[j].pid);
                if (((j - home) & c->mask) >= ((j - i) & c->mask)) {
                        c->slots[i] = c->slots[j];
                        i = j;
                }
        }
        c->slots[i].pid = 0;
        c->n--;
        return true;
}

unsigned children_count(const struct children *c) {
        return c->n;
}

unsigned children_kill(const struct children *c, int sig) {
        unsigned n = 0;

        for (size_t i = 0; i <= c->mask; i++)
                if (c->slots[i].pid > 0 && kill(c->slots[i].pid, sig) == 0)
                        n++;
        return n;
}
