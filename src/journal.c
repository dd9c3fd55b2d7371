/* The native journal protocol's encoder and sender. The encoder is bounded: a field that
 * does not fit is left out whole, so a record is always well-formed. The sender never
 * waits: the loop must not stall behind a slow journal. */
#include "journal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

void journal_record_start(struct journal_record *r) {
        r->n = 0;
        r->n_left_out = 0;
}

bool journal_field_name_valid(const char *name) {
        size_t i;

        if (name[0] == '_' || (name[0] >= '0' && name[0] <= '9'))
                return false;
        for (i = 0; name[i]; i++) {
                char ch = name[i];
                if (!((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_'))
                        return false;
        }
        return i > 0 && i <= JOURNAL_FIELD_NAME_MAX;
}

/* The plain form NAME=value\n holds any byte but a newline; journald reads the others as
 * they are, but a control byte is written in the binary form so nothing is reinterpreted. */
static bool value_is_plain(const char *value, size_t len) {
        for (size_t i = 0; i < len; i++)
                if ((unsigned char)value[i] < 0x20)
                        return false;
        return true;
}

int journal_record_add(struct journal_record *r, const char *name, const char *value, size_t len) {
        size_t name_len = strlen(name), room = sizeof(r->data) - r->n;
        bool plain = value_is_plain(value, len);
        size_t need = name_len + 1 + (plain ? 0 : 8) + len + 1;
        char *p = r->data + r->n;

        if (!journal_field_name_valid(name)) {
                r->n_left_out++;
                return -EINVAL;
        }
        if (need > room) {
                r->n_left_out++;
                return -ENOBUFS;
        }
        memcpy(p, name, name_len);
        p += name_len;
        if (plain)
                *p++ = '=';
        else {
                uint64_t le = len;
                *p++ = '\n';
                for (int i = 0; i < 8; i++, le >>= 8)
                        *p++ = (char)(le & 0xff);
        }
        memcpy(p, value, len);
        p[len] = '\n';
        r->n += need;
        return 0;
}

int journal_record_addf(struct journal_record *r, const char *name, const char *format, ...) {
        char value[1024];
        va_list ap;
        int n;

        va_start(ap, format);
        n = vsnprintf(value, sizeof(value), format, ap);
        va_end(ap);
        if (n < 0 || (size_t)n >= sizeof(value)) {
                r->n_left_out++;
                return -ENOBUFS;
        }
        return journal_record_add(r, name, value, (size_t)n);
}

const char *journal_socket_path(void) {
        /* Test-only: the black-box tests point echod at a socket of their own. */
        const char *path = getenv("ECHOD_TEST_JOURNAL_SOCKET");

        return path && path[0] ? path : "/run/systemd/journal/socket";
}

int journal_open(void) {
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

        return fd < 0 ? -errno : fd;
}

int journal_send(int fd, const struct journal_record *r) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        const char *path = journal_socket_path();
        struct iovec iov = { .iov_base = (void *)r->data, .iov_len = r->n };
        struct msghdr mh = {
                .msg_name = &sa,
                .msg_namelen = sizeof(sa),
                .msg_iov = &iov,
                .msg_iovlen = 1,
        };

        if (fd < 0)
                return -EBADF;
        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        if (sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
                return -errno;
        return 0;
}
