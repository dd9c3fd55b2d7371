/* Unit test of trim.c over synthetic tables: on an x86_64 and an arm64 layout the fast path
 * leaves out libc, the loader, libsystemd's family, the heap and the vDSO, and keeps echod,
 * the stack, the thread's block and (arm64) the loader's page with the canary; a shadow
 * stack, unknown anonymous memory, [vsyscall], parent-only memory and unknown pseudo-
 * mappings stay; the portable path leaves out libsystemd's family only; sanitizers and
 * valgrind keep everything. */
#include <stdio.h>
#include <string.h>

#include "tap.h"
#include "trim.h"

#define PAGE 0x1000u

/* Objects of a Debian 12 echod: the executable, libsystemd and what it pulls in, libc, the
 * loader, the vDSO; each spans 16 pages at base + 16 * index pages. */
enum { EXE, SD, CAP, GCRYPT, GPGERR, LZMA, ZSTD, LZ4, LIBC, LD, VDSO, N_OBJ };

static const char *const sonames[N_OBJ] = {
        [EXE] = "",
        [SD] = "libsystemd.so.0",
        [CAP] = "libcap.so.2",
        [GCRYPT] = "libgcrypt.so.20",
        [GPGERR] = "libgpg-error.so.0",
        [LZMA] = "liblzma.so.5",
        [ZSTD] = "libzstd.so.1",
        [LZ4] = "liblz4.so.1",
        [LIBC] = "libc.so.6",
        [LD] = "ld-linux.so",
        [VDSO] = "linux-vdso.so.1",
};

#define BASE         0x7f0000000000u
#define OBJ_START(i) (BASE + (uintptr_t)(i)*16 * PAGE)

struct layout {
        struct trim_object objects[N_OBJ];
        struct trim_mapping mappings[64];
        size_t n;
};

static void need(struct trim_object *o, const char *soname) {
        o->needed[o->n_needed++] = soname;
}

static void add(struct layout *l, uintptr_t start, size_t pages, const char *name) {
        l->mappings[l->n++] =
                (struct trim_mapping){ .start = start, .end = start + pages * PAGE, .name = name };
}

static struct trim_mapping *find(struct layout *l, const char *name, unsigned nth) {
        for (size_t i = 0; i < l->n; i++)
                if (strcmp(l->mappings[i].name, name) == 0 && nth-- == 0)
                        return &l->mappings[i];
        return NULL;
}

/* Each object: four file mappings and an anonymous .bss tail inside its span. */
static void layout_init(struct layout *l, const char *loader) {
        memset(l, 0, sizeof(*l));
        for (int i = 0; i < N_OBJ; i++) {
                struct trim_object *o = &l->objects[i];
                const char *path = i == EXE ? "/usr/sbin/echod" : i == LD ? loader : sonames[i];

                o->soname = i == LD ? loader : sonames[i];
                o->start = OBJ_START(i);
                o->end = OBJ_START(i) + 16 * PAGE;
                o->self = i == EXE;
                if (i == VDSO) {
                        add(l, o->start, 2, "[vdso]");
                        continue;
                }
                for (int j = 0; j < 4; j++)
                        add(l, o->start + (uintptr_t)j * 2 * PAGE, 2, path);
                add(l, o->start + 8 * PAGE, 1, ""); /* .bss */
        }
        need(&l->objects[EXE], "libsystemd.so.0");
        need(&l->objects[EXE], "libc.so.6");
        for (int i = CAP; i <= LZ4; i++) {
                need(&l->objects[SD], sonames[i]);
                need(&l->objects[i], "libc.so.6");
        }
        need(&l->objects[SD], "libc.so.6");
        need(&l->objects[GCRYPT], "libgpg-error.so.0");
        need(&l->objects[LIBC], loader);
        add(l, 0x1000000, 33, "[heap]");
        add(l, OBJ_START(N_OBJ) + 0x100000, 4, "[vvar]");
        add(l, OBJ_START(N_OBJ) + 0x104000, 2, "[vvar_vclock]");
        add(l, OBJ_START(N_OBJ) + 0x200000, 4, "");  /* the thread's block */
        add(l, OBJ_START(N_OBJ) + 0x300000, 13, ""); /* anonymous, of unknown purpose */
        add(l, OBJ_START(N_OBJ) + 0x400000, 2, "");  /* the loader's: libc's link_map */
        add(l, 0x7ffd00000000u, 33, "[stack]");
        add(l, 0xffffffffff600000u, 1, "[vsyscall]");
}

static struct trim_input input(struct layout *l, enum trim_mode mode, const uintptr_t *keep, size_t n_keep) {
        return (struct trim_input){
                .mode = mode,
                .mappings = l->mappings,
                .n_mappings = l->n,
                .objects = l->objects,
                .n_objects = N_OBJ,
                .keep = keep,
                .n_keep = n_keep,
        };
}

/* True when every mapping of object i is trimmed (want) or kept (!want). */
static bool object_is(const struct layout *l, int i, bool want) {
        for (size_t j = 0; j < l->n; j++)
                if (l->mappings[j].start >= l->objects[i].start && l->mappings[j].end <= l->objects[i].end &&
                    l->mappings[j].trim != want)
                        return false;
        return true;
}

static bool kept(struct layout *l, const char *name, unsigned nth) {
        const struct trim_mapping *m = find(l, name, nth);
        return m && !m->trim;
}

static void test_x86_64_fast(void) {
        struct layout l;
        uintptr_t keep[] = { OBJ_START(EXE) + 2 * PAGE + 5, 0x7ffd00010000u, OBJ_START(N_OBJ) + 0x200010 };
        struct trim_input in;
        size_t n;

        /* link_maps: the executable's and the loader's own in the loader's data, libc's in
         * an anonymous mapping of the loader's, the vDSO's next to the thread's block */
        uintptr_t loader_data[] = { OBJ_START(LD) + 6 * PAGE, OBJ_START(N_OBJ) + 0x400010,
                                    OBJ_START(N_OBJ) + 0x200800 };

        layout_init(&l, "ld-linux-x86-64.so.2");
        in = input(&l, TRIM_FAST, keep, 3);
        in.loader_data = loader_data;
        in.n_loader_data = 3;
        n = trim_decide(&in);
        tap(object_is(&l, EXE, false), "x86_64 fast: every mapping of echod stays, its .bss and headers too");
        tap(object_is(&l, LIBC, true) && object_is(&l, LD, true), "x86_64 fast: libc and the loader go");
        tap(object_is(&l, SD, true) && object_is(&l, GCRYPT, true) && object_is(&l, LZ4, true),
            "x86_64 fast: libsystemd and its libraries go");
        tap(find(&l, "[heap]", 0)->trim && find(&l, "[vdso]", 0)->trim && find(&l, "[vvar]", 0)->trim &&
                    find(&l, "[vvar_vclock]", 0)->trim,
            "x86_64 fast: the heap, the vDSO and its data go");
        tap(kept(&l, "[stack]", 0) && kept(&l, "[vsyscall]", 0), "x86_64 fast: [stack] and [vsyscall] stay");
        tap(!find(&l, "", 10)->trim, "x86_64 fast: the mapping holding the thread pointer stays");
        tap(!find(&l, "", 11)->trim, "x86_64 fast: anonymous memory of unknown purpose stays");
        tap(find(&l, "", 12)->trim, "x86_64 fast: anonymous memory holding a link_map (the loader's) goes");
        tap(n == 9 * 5 + 5,
            "x86_64 fast: %zu mappings left out (50: 9 objects of 5 mappings, the vDSO, "
            "the heap, [vvar], [vvar_vclock], the loader's allocations)",
            n);
        in = input(&l, TRIM_PORTABLE, keep, 3);
        in.loader_data = loader_data;
        in.n_loader_data = 3;
        trim_decide(&in);
        tap(!find(&l, "", 12)->trim,
            "x86_64 portable: the loader's allocations stay (libc in the child uses them)");
}

static void test_arm64_canary(void) {
        struct layout l;
        /* __stack_chk_guard: in the loader's third mapping (its RELRO data) */
        uintptr_t canary = OBJ_START(LD) + 4 * PAGE + 8;
        uintptr_t keep[] = { OBJ_START(EXE) + 2 * PAGE, 0x7ffd00010000u, OBJ_START(N_OBJ) + 0x200010,
                             canary };
        struct trim_input in;

        layout_init(&l, "ld-linux-aarch64.so.1");
        in = input(&l, TRIM_FAST, keep, 4);
        trim_decide(&in);
        tap(!find(&l, "ld-linux-aarch64.so.1", 2)->trim,
            "arm64 fast: the loader's mapping holding __stack_chk_guard stays");
        tap(find(&l, "ld-linux-aarch64.so.1", 0)->trim && find(&l, "ld-linux-aarch64.so.1", 1)->trim &&
                    find(&l, "ld-linux-aarch64.so.1", 3)->trim,
            "arm64 fast: the loader's other mappings go");
        tap(object_is(&l, LIBC, true) && object_is(&l, EXE, false), "arm64 fast: libc goes, echod stays");
}

static void test_stays(void) {
        struct layout l;
        struct trim_input in;
        struct trim_mapping *ss, *dc;

        layout_init(&l, "ld-linux-x86-64.so.2");
        add(&l, OBJ_START(N_OBJ) + 0x400000, 8, ""); /* a shadow stack */
        ss = &l.mappings[l.n - 1];
        ss->shadow_stack = true;
        add(&l, OBJ_START(N_OBJ) + 0x500000, 8, ""); /* parent-only already (fork_mem.c) */
        dc = &l.mappings[l.n - 1];
        dc->dontcopy = true;
        add(&l, OBJ_START(N_OBJ) + 0x600000, 1, "[uprobes]");
        add(&l, OBJ_START(N_OBJ) + 0x700000, 1, "/usr/lib/locale/C.utf8/LC_CTYPE");
        /* a shadow stack inside a shared object's span still stays */
        l.mappings[5].shadow_stack = true;
        in = input(&l, TRIM_FAST, NULL, 0);
        trim_decide(&in);
        tap(!ss->trim, "a mapping with the ss (shadow stack) flag stays");
        tap(!l.mappings[5].trim, "... even inside an object the fast path leaves out");
        tap(!dc->trim, "parent-only memory (dc) is not ours to mark (nor to give back)");
        tap(kept(&l, "[uprobes]", 0), "an unknown pseudo-mapping stays");
        tap(kept(&l, "/usr/lib/locale/C.utf8/LC_CTYPE", 0), "a file mapping of no loaded object stays");
        tap(kept(&l, "[vsyscall]", 0), "[vsyscall] stays");
}

static void test_portable(void) {
        struct layout l;
        uintptr_t keep[] = { OBJ_START(EXE) + 2 * PAGE, 0x7ffd00010000u, OBJ_START(N_OBJ) + 0x200010 };
        struct trim_input in;
        size_t n;

        layout_init(&l, "ld-linux-x86-64.so.2");
        /* liblzma is also needed by a preloaded library: it is not libsystemd's alone */
        l.objects[VDSO].needed[l.objects[VDSO].n_needed++] = "liblzma.so.5";
        in = input(&l, TRIM_PORTABLE, keep, 3);
        n = trim_decide(&in);
        tap(object_is(&l, SD, true) && object_is(&l, CAP, true) && object_is(&l, GCRYPT, true) &&
                    object_is(&l, GPGERR, true) && object_is(&l, ZSTD, true) && object_is(&l, LZ4, true),
            "portable: libsystemd and the libraries only it needs go");
        tap(object_is(&l, LZMA, false), "portable: a library something else needs too stays");
        tap(object_is(&l, LIBC, false) && object_is(&l, LD, false) && object_is(&l, EXE, false),
            "portable: libc, the loader and echod stay");
        tap(kept(&l, "[heap]", 0) && kept(&l, "[vdso]", 0) && kept(&l, "[vvar]", 0),
            "portable: the heap and the vDSO stay");
        tap(n == 6 * 5, "portable: %zu mappings left out (6 objects of 5)", n);

        layout_init(&l, "ld-linux-x86-64.so.2");
        l.objects[ZSTD].needed_truncated = true;
        in = input(&l, TRIM_PORTABLE, keep, 3);
        tap(trim_decide(&in) == 0, "portable: a DT_NEEDED list not read whole keeps every object");
}

static void test_keep_everything(void) {
        struct layout l;
        struct trim_input in;

        layout_init(&l, "ld-linux-x86-64.so.2");
        in = input(&l, TRIM_FAST, NULL, 0);
        in.sanitized = true;
        tap(trim_decide(&in) == 0, "sanitized: nothing is left out");

        layout_init(&l, "ld-linux-x86-64.so.2");
        add(&l, OBJ_START(N_OBJ) + 0x800000, 4, "/usr/libexec/valgrind/vgpreload_memcheck-amd64-linux.so");
        in = input(&l, TRIM_FAST, NULL, 0);
        tap(trim_decide(&in) == 0, "under valgrind (its mappings present): nothing is left out");

        layout_init(&l, "ld-linux-x86-64.so.2");
        in = input(&l, TRIM_PORTABLE, NULL, 0);
        in.n_objects = 0;
        tap(trim_decide(&in) == 0, "portable without loaded objects known: nothing is left out");
}

int main(void) {
        test_x86_64_fast();
        test_arm64_canary();
        test_stays();
        test_portable();
        test_keep_everything();
        return tap_done();
}
