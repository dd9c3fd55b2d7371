/* Which of the process's mappings a forked child can be made without: a pure decision over
 * a table of mappings and loaded objects, which fork.c reads from /proc/self/smaps and
 * dl_iterate_phdr() and applies with MADV_DONTFORK. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum trim_mode {
        TRIM_FAST,     /* the child runs echod's code only (raw system calls, child/sys.h) */
        TRIM_PORTABLE, /* the child runs libc: only what it never calls may go */
};

struct trim_mapping {
        uintptr_t start, end;
        const char *name;  /* a path, a pseudo-name ("[heap]", "[vdso]"...), or "" */
        bool shadow_stack; /* VmFlags "ss" */
        bool dontcopy;     /* VmFlags "dc": parent-only already (fork_mem.c), not ours to touch */
        bool trim;         /* the decision */
};

#define TRIM_NEEDED_MAX 16

/* A loaded ELF object: the span its PT_LOAD segments reserve (page-aligned), which holds
 * its file mappings, the gaps between them and the anonymous tail of its .bss. */
struct trim_object {
        const char *soname; /* DT_SONAME, or the file's base name; "" for the executable */
        uintptr_t start, end;
        bool self; /* echod's own executable */
        const char *needed[TRIM_NEEDED_MAX];
        size_t n_needed;
        bool needed_truncated; /* more DT_NEEDED entries than fit */
};

struct trim_input {
        enum trim_mode mode;
        bool sanitized; /* a sanitizer's runtime runs in the child too */
        struct trim_mapping *mappings;
        size_t n_mappings;
        const struct trim_object *objects;
        size_t n_objects;
        const uintptr_t *keep; /* addresses a child reads or writes */
        size_t n_keep;
        /* Addresses of the dynamic loader's own bookkeeping (each loaded object's link_map):
         * anonymous memory that holds one is the loader's, which only the loader reads. */
        const uintptr_t *loader_data;
        size_t n_loader_data;
};

/* The shared object whose family the portable path leaves out of children. */
#define TRIM_LIBSYSTEMD_SONAME "libsystemd.so.0"

/* Sets mappings[i].trim for each mapping a child can do without. Returns how many. */
size_t trim_decide(struct trim_input *in);

const char *trim_mode_to_string(enum trim_mode mode);
