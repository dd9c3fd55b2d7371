/* Why not link it: libsystemd and the six libraries it pulls in on Debian 12 (libcap,
 * libgcrypt, libgpg-error, liblzma, libzstd, liblz4) are most of the mappings of a linked
 * echod, and fork() pays for every mapping of the parent, once per connection, even for
 * one marked MADV_DONTFORK (the kernel copies the whole map, then takes those out). Mapped
 * on demand and unmapped after, they cost a fork nothing. dlclose() also drops the
 * pthread_atfork() handler libsystemd registers. */
#include "libsystemd.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define LIBSYSTEMD_SONAME "libsystemd.so.0"

/* For packagers: without DT_NEEDED, this note says that echod needs the library, in
 * systemd's "ELF dlopen metadata" format (an ELF note of owner "FDO", type 0x407c0c0a,
 * whose descriptor is a NUL-terminated JSON array), which package tools read. */
#define DLOPEN_NOTE_JSON                                                                                     \
        "[{\"feature\":\"systemd\",\"description\":\"socket activation and service "                         \
        "notification\",\"priority\":\"required\",\"soname\":[\"" LIBSYSTEMD_SONAME "\"]}]"
__attribute__((used, section(".note.dlopen"))) _Alignas(uint32_t) static const struct {
        uint32_t n_namesz, n_descsz, n_type;
        char name[4];
        _Alignas(uint32_t) char desc[sizeof(DLOPEN_NOTE_JSON)]; /* padded to 4 by the struct */
} dlopen_note = {
        .n_namesz = sizeof("FDO"),
        .n_descsz = sizeof(DLOPEN_NOTE_JSON),
        .n_type = 0x407c0c0a,
        .name = "FDO",
        .desc = DLOPEN_NOTE_JSON,
};

#define RESOLVE(l, field, name) ((l)->field = (__typeof__((l)->field))dlsym((l)->handle, name)) != NULL

/* The loader's last error, or a fallback, into error. */
static void error_keep(char *error, size_t size) {
        const char *e = dlerror();

        snprintf(error, size, "%s", e ? e : "unknown error");
}

int libsystemd_open(struct libsystemd *ret) {
        struct libsystemd l = {};

        *ret = (struct libsystemd){};
        l.handle = dlopen(LIBSYSTEMD_SONAME, RTLD_NOW | RTLD_LOCAL);
        if (!l.handle) {
                error_keep(ret->error, sizeof(ret->error));
                return -ENOENT;
        }
        if (!(RESOLVE(&l, listen_fds_with_names, "sd_listen_fds_with_names") &&
              RESOLVE(&l, is_socket, "sd_is_socket") && RESOLVE(&l, is_socket_inet, "sd_is_socket_inet") &&
              RESOLVE(&l, is_socket_unix, "sd_is_socket_unix") && RESOLVE(&l, notify, "sd_notify") &&
              RESOLVE(&l, watchdog_enabled, "sd_watchdog_enabled"))) {
                error_keep(ret->error, sizeof(ret->error));
                dlclose(l.handle);
                return -ENOENT;
        }
        *ret = l;
        return 0;
}

void libsystemd_close(struct libsystemd *l) {
        if (l->handle)
                dlclose(l->handle);
        memset(l, 0, sizeof(*l));
}
