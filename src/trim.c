/* What a forked child can be made without. fork() copies every mapping of the parent and
 * the child's exit tears each down again: that, not the echo, is most of what a connection
 * costs. So mappings a child never touches are left out of it (MADV_DONTFORK, fork.c).
 * The rule fails closed: a mapping goes only if it is one of a few named things known to be
 * safe to leave out; anything else stays, whatever a future kernel, libc, compiler or CPU
 * adds (a shadow stack, a new pseudo-mapping, anonymous memory of unknown purpose).
 *
 * Fast path (x86_64 and aarch64, not sanitized, child/sys.h): the child runs echod's code only,
 * with raw system calls, so it may lose the heap, the vDSO and its data pages, and every
 * shared object but echod (libc, the dynamic loader...). What it assumes, per
 * architecture, and where each assumption is checked:
 *  - the child calls nothing outside the executable and reads no other object's data but
 *    the stack protector's canary: tests/unit/test_child_syms.py disassembles the linked binary
 *    (x86_64 and, in CI, the arm64 cross build; an LTO build too);
 *  - x86_64: the canary is in the thread's block (%fs:0x28), kept with the thread pointer;
 *  - aarch64: GCC reads the canary from __stack_chk_guard, in the dynamic loader's data:
 *    its address is in the keep set (fork.c), so that mapping stays;
 *  - the kernel writes the rseq area (in the thread's block) on the child's return to user
 *    space: kept by address too;
 *  - at run time, before READY, a trimmed child runs the real child path over a socketpair
 *    (forkcheck.c); if it fails, every mapping is given back and one warning says why.
 *    qemu-user ignores madvise(), so under it that check proves nothing: the binary check
 *    does.
 * Portable path (every other architecture, sanitizers, or -Dportable_child=true): the child
 * calls libc, so only libraries it never calls may go: libsystemd and those loaded only
 * because of it (found from the DT_NEEDED graph). echod loads libsystemd with dlopen() only
 * while it calls it (libsystemd.c), never while it forks, so a stock build has nothing to
 * leave out on this path; the rule covers a build that links it. See docs/design.md,
 * "Proving the trim safe". */
#include "trim.h"

#include <string.h>

#define TRIM_OBJECTS_MAX 128

#define REACHED_FROM_LIBSYSTEMD 1u
#define REACHED_FROM_OTHERS     2u

static bool name_is(const char *name, const char *what) {
        return name && strcmp(name, what) == 0;
}

static bool keep_everything(const struct trim_input *in) {
        if (in->sanitized)
                return true; /* the sanitizers' runtimes run in the child too */
        /* Under valgrind its own mappings are listed too, and a child of it needs them. */
        for (size_t i = 0; i < in->n_mappings; i++) {
                const char *name = in->mappings[i].name;
                if (name && (strstr(name, "/valgrind/") || strstr(name, "vgpreload")))
                        return true;
        }
        return false;
}

static bool holds_any(const uintptr_t *addrs, size_t n, const struct trim_mapping *m) {
        for (size_t i = 0; i < n; i++)
                if (addrs[i] >= m->start && addrs[i] < m->end)
                        return true;
        return false;
}

/* The object whose PT_LOAD span holds all of m, or -1. */
static int object_of(const struct trim_input *in, const struct trim_mapping *m) {
        for (size_t i = 0; i < in->n_objects; i++)
                if (m->start >= in->objects[i].start && m->end <= in->objects[i].end)
                        return (int)i;
        return -1;
}

static int object_by_soname(const struct trim_input *in, const char *soname) {
        for (size_t i = 0; i < in->n_objects; i++)
                if (name_is(in->objects[i].soname, soname))
                        return (int)i;
        return -1;
}

/* Marks i and what it needs, transitively, with bit; never enters skip. */
static void reach(const struct trim_input *in, int i, unsigned bit, int skip, unsigned char *marks) {
        if (i < 0 || i == skip || (marks[i] & bit))
                return;
        marks[i] |= bit;
        for (size_t j = 0; j < in->objects[i].n_needed; j++)
                reach(in, object_by_soname(in, in->objects[i].needed[j]), bit, skip, marks);
}

/* family[i]: object i is loaded only because of libsystemd (libsystemd itself included):
 * reached from it, and from no other object without passing through it. */
static void find_libsystemd_family(const struct trim_input *in, bool *family) {
        unsigned char marks[TRIM_OBJECTS_MAX] = {};
        int sd = object_by_soname(in, TRIM_LIBSYSTEMD_SONAME);

        memset(family, 0, in->n_objects * sizeof(bool));
        if (sd < 0)
                return;
        for (size_t i = 0; i < in->n_objects; i++)
                if (in->objects[i].needed_truncated)
                        return; /* the graph is not known whole: keep every object */
        reach(in, sd, REACHED_FROM_LIBSYSTEMD, -1, marks);
        for (size_t i = 0; i < in->n_objects; i++)
                if (!(marks[i] & REACHED_FROM_LIBSYSTEMD))
                        reach(in, (int)i, REACHED_FROM_OTHERS, sd, marks);
        for (size_t i = 0; i < in->n_objects; i++)
                family[i] = marks[i] == REACHED_FROM_LIBSYSTEMD;
}

/* Pseudo-mappings the fast path's child never touches: it calls no vDSO function (child/sys.h
 * reads the clock with a system call) and allocates nothing. */
static bool is_fast_path_pseudo(const char *name) {
        return name_is(name, "[heap]") || name_is(name, "[vdso]") || name_is(name, "[vvar]") ||
               name_is(name, "[vvar_vclock]");
}

static bool trimmable(const struct trim_input *in, const struct trim_mapping *m, const bool *family) {
        int o;

        if (m->dontcopy || m->shadow_stack || holds_any(in->keep, in->n_keep, m))
                return false;
        if (name_is(m->name, "[vsyscall]") || (m->name && strncmp(m->name, "[stack", 6) == 0))
                return false;
        o = object_of(in, m);
        if (o >= 0)
                return !in->objects[o].self && (in->mode == TRIM_FAST || family[o]);
        if (in->mode != TRIM_FAST)
                return false;
        /* The loader's own allocations (link_maps of the objects it loaded, at least one):
         * anonymous, so no object claims them, and named by what they hold. */
        if (name_is(m->name, "") && holds_any(in->loader_data, in->n_loader_data, m))
                return true;
        return is_fast_path_pseudo(m->name);
}

size_t trim_decide(struct trim_input *in) {
        bool family[TRIM_OBJECTS_MAX];
        bool everything = keep_everything(in) || in->n_objects > TRIM_OBJECTS_MAX;
        size_t n = 0;

        if (!everything)
                find_libsystemd_family(in, family);
        for (size_t i = 0; i < in->n_mappings; i++) {
                struct trim_mapping *m = &in->mappings[i];
                m->trim = !everything && trimmable(in, m, family);
                n += m->trim;
        }
        return n;
}

const char *trim_mode_to_string(enum trim_mode mode) {
        return mode == TRIM_FAST ? "fast (system calls without libc)" : "portable (libc)";
}
