/* Makes each fork of the accept loop cheap: reads what is mapped (/proc/self/smaps) and
 * loaded (dl_iterate_phdr), lets trim.c decide what a child can be made without (the why
 * and the assumptions are there), marks that MADV_DONTFORK, then proves with a trimmed
 * child (forkcheck.c) that children still work, and gives everything back if they do not. */
#include "fork.h"

#include <errno.h>
#include <inttypes.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/rseq.h>
#include <unistd.h>

#include "child/client.h"
#include "child/sys.h"
#include "forkcheck.h"
#include "journal-ids.h"
#include "log.h"
#include "trim.h"

#ifdef SYS_VIA_LIBC
#define CHILD_MODE TRIM_PORTABLE
#else
#define CHILD_MODE TRIM_FAST
#endif

#ifdef ECHOD_SANITIZED
#define SANITIZED true
#else
#define SANITIZED false
#endif

#ifdef __aarch64__
/* GCC's stack protector on arm64 reads this global of the dynamic loader. */
extern uintptr_t __stack_chk_guard;
#endif

/* The loader's ElfW() types, spelled out (static analysers do not expand that macro). */
#if UINTPTR_MAX > 0xffffffffu
typedef Elf64_Dyn elf_dyn;
typedef Elf64_Phdr elf_phdr;
#else
typedef Elf32_Dyn elf_dyn;
typedef Elf32_Phdr elf_phdr;
#endif

struct range {
        uintptr_t start, end;
};

struct tables {
        struct trim_mapping *mappings;
        size_t n_mappings;
        struct trim_object *objects;
        size_t n_objects;
};

/* Anchors in echod's own read-only data, data and .bss: the mappings that hold them are
 * the ones a child's constants and variables live in. */
static const char rodata_anchor[] = "fork";
static int data_anchor = 1;
static int bss_anchor;

/* What fork_trim() marked, for fork_untrim(). */
static struct range *trimmed;
static size_t n_trimmed;

static int grow(void **items, size_t n, size_t item_size) {
        void *p;

        if (n % 32 != 0)
                return 0;
        p = realloc(*items, (n + 32) * item_size);
        if (!p)
                return -ENOMEM;
        *items = p;
        return 0;
}

static void flags_parse(char *flags, struct trim_mapping *m) {
        char *save = NULL;

        for (char *f = strtok_r(flags, " \n", &save); f; f = strtok_r(NULL, " \n", &save)) {
                m->shadow_stack |= strcmp(f, "ss") == 0;
                m->dontcopy |= strcmp(f, "dc") == 0;
        }
}

/* Each mapping of /proc/self/smaps, with its name and the VmFlags the decision needs. */
static int mappings_read(struct tables *t) {
        FILE *f = fopen("/proc/self/smaps", "re");
        char *line = NULL;
        size_t size = 0;
        int r = 0;

        if (!f)
                return -errno;
        while (r == 0 && getline(&line, &size, f) > 0) {
                struct trim_mapping *m;
                uintptr_t start, end;
                int name_at = 0;

                if (strncmp(line, "VmFlags:", 8) == 0 && t->n_mappings > 0) {
                        flags_parse(line + 8, &t->mappings[t->n_mappings - 1]);
                        continue;
                }
                if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %*s %*s %*s %*s %n", &start, &end, &name_at) <
                            2 ||
                    name_at == 0)
                        continue;
                r = grow((void **)&t->mappings, t->n_mappings, sizeof(*m));
                if (r < 0)
                        break;
                line[strcspn(line, "\n")] = '\0';
                m = &t->mappings[t->n_mappings];
                *m = (struct trim_mapping){ .start = start, .end = end, .name = strdup(line + name_at) };
                if (!m->name)
                        r = -ENOMEM;
                else
                        t->n_mappings++;
        }
        if (r == 0 && ferror(f))
                r = -EIO;
        free(line);
        fclose(f);
        return r;
}

/* An address of the dynamic section: the loader relocates most objects' in place, not the
 * vDSO's. */
static const char *dyn_string(uintptr_t base, uintptr_t strtab, size_t offset) {
        return (const char *)((strtab < base ? base + strtab : strtab) + offset);
}

static void object_names(const struct dl_phdr_info *info, const elf_dyn *dyn, struct trim_object *o) {
        uintptr_t strtab = 0;
        const char *slash = strrchr(info->dlpi_name, '/');

        o->soname = slash ? slash + 1 : info->dlpi_name;
        for (const elf_dyn *d = dyn; d && d->d_tag != DT_NULL; d++)
                if (d->d_tag == DT_STRTAB)
                        strtab = d->d_un.d_ptr;
        if (!strtab)
                return;
        for (const elf_dyn *d = dyn; d->d_tag != DT_NULL; d++) {
                if (d->d_tag == DT_SONAME)
                        o->soname = dyn_string(info->dlpi_addr, strtab, d->d_un.d_val);
                else if (d->d_tag != DT_NEEDED)
                        continue;
                else if (o->n_needed < TRIM_NEEDED_MAX)
                        o->needed[o->n_needed++] = dyn_string(info->dlpi_addr, strtab, d->d_un.d_val);
                else
                        o->needed_truncated = true;
        }
}

static int object_add(struct dl_phdr_info *info, size_t size, void *userdata) {
        struct tables *t = userdata;
        uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), self = (uintptr_t)&fork_trim;
        const elf_dyn *dyn = NULL;
        struct trim_object *o;

        (void)size;
        if (grow((void **)&t->objects, t->n_objects, sizeof(*o)) < 0)
                return -ENOMEM;
        o = &t->objects[t->n_objects++];
        *o = (struct trim_object){ .start = UINTPTR_MAX };
        for (size_t i = 0; i < info->dlpi_phnum; i++) {
                const elf_phdr *ph = &info->dlpi_phdr[i];
                uintptr_t start = info->dlpi_addr + ph->p_vaddr;

                if (ph->p_type == PT_DYNAMIC)
                        dyn = (const elf_dyn *)start;
                if (ph->p_type != PT_LOAD)
                        continue;
                if ((start & ~(page - 1)) < o->start)
                        o->start = start & ~(page - 1);
                if (((start + ph->p_memsz + page - 1) & ~(page - 1)) > o->end)
                        o->end = (start + ph->p_memsz + page - 1) & ~(page - 1);
        }
        object_names(info, dyn, o);
        o->self = self >= o->start && self < o->end;
        return 0;
}

static void tables_free(struct tables *t) {
        for (size_t i = 0; i < t->n_mappings; i++)
                free((char *)t->mappings[i].name);
        free(t->mappings);
        free(t->objects);
}

/* Marks what was decided; returns how many mappings took it. */
static size_t apply(const struct tables *t) {
        trimmed = calloc(t->n_mappings, sizeof(*trimmed));
        if (!trimmed)
                return 0;
        for (size_t i = 0; i < t->n_mappings; i++) {
                const struct trim_mapping *m = &t->mappings[i];
                /* One that refuses is forked as before, and not counted. */
                if (m->trim && madvise((void *)m->start, m->end - m->start, MADV_DONTFORK) == 0)
                        trimmed[n_trimmed++] = (struct range){ m->start, m->end };
        }
        return n_trimmed;
}

/* Test only: ECHOD_TEST_TRIM_TOO_MUCH=1 also leaves the child's own code out of children,
 * so that the start-up check fails and the fallback can be tested. */
static void trim_too_much(struct tables *t) {
        uintptr_t code = (uintptr_t)&client_run_child;
        const char *e = getenv("ECHOD_TEST_TRIM_TOO_MUCH");

        if (!e || strcmp(e, "1") != 0)
                return;
        for (size_t i = 0; i < t->n_mappings; i++)
                if (code >= t->mappings[i].start && code < t->mappings[i].end)
                        t->mappings[i].trim = true;
}

void fork_untrim(void) {
        for (size_t i = 0; i < n_trimmed; i++)
                (void)madvise((void *)trimmed[i].start, trimmed[i].end - trimmed[i].start, MADV_DOFORK);
        n_trimmed = 0;
}

/* The loader's link_map of each loaded object, at most size: where its bookkeeping is. */
static size_t loader_data_get(uintptr_t *addrs, size_t size) {
        size_t n = 0;

        for (const struct link_map *lm = _r_debug.r_map; lm && n < size; lm = lm->l_next)
                addrs[n++] = (uintptr_t)lm;
        return n;
}

int fork_trim(void) {
        uintptr_t tp = (uintptr_t)__builtin_thread_pointer();
        struct tables t = {};
        struct trim_input in;
        uintptr_t loader_data[64];
        char reason[128];
        int local = 0, r;

        /* What a child touches: echod's code, constants, relocated constants and data, its
         * stack, the thread's own block (the canary on x86_64, and the rseq area the kernel
         * writes on the child's return to user space), and arm64's canary. */
        uintptr_t keep[] = {
                (uintptr_t)&fork_trim,    /* .text */
                (uintptr_t)rodata_anchor, /* .rodata */
                (uintptr_t)_DYNAMIC,      /* RELRO */
                (uintptr_t)&data_anchor,  /* .data */
                (uintptr_t)&bss_anchor,   /* .bss */
                (uintptr_t)&local,
                tp,
                tp + (uintptr_t)__rseq_offset,
                tp + (uintptr_t)__rseq_offset + (__rseq_size > 0 ? __rseq_size - 1 : 0),
#ifdef __aarch64__
                (uintptr_t)&__stack_chk_guard,
#endif
        };

        r = mappings_read(&t);
        if (r == 0 && dl_iterate_phdr(object_add, &t) != 0)
                r = -ENOMEM;
        if (r < 0) {
                tables_free(&t);
                return log_warning_errno(r, "Failed to read the process's mappings, children are "
                                            "forked with every mapping: %m");
        }
        in = (struct trim_input){
                .mode = CHILD_MODE,
                .sanitized = SANITIZED,
                .mappings = t.mappings,
                .n_mappings = t.n_mappings,
                .objects = t.objects,
                .n_objects = t.n_objects,
                .keep = keep,
                .n_keep = sizeof(keep) / sizeof(keep[0]),
                .loader_data = loader_data,
                .n_loader_data = loader_data_get(loader_data, sizeof(loader_data) / sizeof(loader_data[0])),
        };
        trim_decide(&in);
        trim_too_much(&t);
        apply(&t);
        log_debug("Child path: %s; children are forked without %zu of %zu mappings",
                  trim_mode_to_string(CHILD_MODE), n_trimmed, t.n_mappings);
        tables_free(&t);

        if (n_trimmed > 0 && forkcheck_run(reason, sizeof(reason)) < 0) {
                struct journal_record rec;
                fork_untrim();
                journal_record_start(&rec);
                (void)journal_record_addf(&rec, "ECHOD_CHECK", "trimmed_child");
                (void)journal_record_addf(&rec, "ECHOD_CHECK_FAILURE", "%s", reason);
                log_event(LOG_WARNING, ECHOD_ID_STARTUP_CHECK, &rec,
                          "Trimmed child failed its self-test (%s); children are forked with every mapping "
                          "(slower)",
                          reason);
        }
        return (int)n_trimmed;
}
