/* Why not link it: libsystemd and the six libraries it pulls in on Debian 12 (libcap,
 * libgcrypt, libgpg-error, liblzma, libzstd, liblz4) are 36 of the 60 mappings of a linked
 * echod, and fork() pays for every mapping of the parent, once per connection. Mapped on
 * demand and unmapped after, they cost a fork nothing. dlclose() also drops the
 * pthread_atfork() handler libsystemd registers. */
#include "libsystemd.h"

#include <dlfcn.h>
#include <errno.h>
#include <string.h>

#include "log.h"

#define RESOLVE(l, field, name) ((l)->field = (__typeof__((l)->field))dlsym((l)->handle, name)) != NULL

int libsystemd_open(struct libsystemd *ret) {
        struct libsystemd l = {};

        l.handle = dlopen("libsystemd.so.0", RTLD_NOW | RTLD_LOCAL);
        if (!l.handle) {
                log_debug("Cannot load libsystemd: %s", dlerror());
                return -ENOENT;
        }
        if (!(RESOLVE(&l, listen_fds_with_names, "sd_listen_fds_with_names") &&
              RESOLVE(&l, is_socket, "sd_is_socket") && RESOLVE(&l, is_socket_inet, "sd_is_socket_inet") &&
              RESOLVE(&l, is_socket_unix, "sd_is_socket_unix") && RESOLVE(&l, notify, "sd_notify") &&
              RESOLVE(&l, watchdog_enabled, "sd_watchdog_enabled"))) {
                log_debug("libsystemd lacks a function echod needs: %s", dlerror());
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
