/* The reload state's format (see handoff.h). Both images run on one machine, so fields are
 * in the host's byte order; what differs between builds is the version, which is checked,
 * and the sizes, which the stable header carries. The descriptors a state names are
 * checked too before the new image uses any: a state arrives by a number in the
 * environment, and a wrong one would have echod close or serve what is not its own. */
#include "handoff.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define HANDOFF_MAGIC "ECHODHO\n"

/* Never changes, whatever the version: an image refuses a state it cannot read, but it
 * can always find the children in it. */
struct handoff_header {
        char magic[8];
        uint32_t version;
        uint32_t header_size; /* of the fixed part, this header included */
        uint32_t n_children;
        uint32_t child_size; /* stride of the children's entries; each starts with an int32 pid */
        uint64_t children_offset;
        uint64_t total_size;
};

/* Version 1's fixed part. */
struct handoff_v1 {
        struct handoff_header header;
        uint64_t n_served, n_refused, udp_echoed, udp_dropped;
        int32_t report_fds[2];
        uint32_t n_opened;
        uint32_t reserved;
        struct handoff_opened opened[HANDOFF_MAX_OPENED];
};

bool handoff_version_readable(uint32_t version) {
        return version == HANDOFF_VERSION;
}

size_t handoff_size(size_t n_children) {
        return sizeof(struct handoff_v1) + n_children * sizeof(struct handoff_child);
}

ssize_t handoff_encode(const struct handoff *h, void *buf, size_t size) {
        size_t total = handoff_size(h->n_children);
        struct handoff_v1 v = {
                .header = {
                        .magic = HANDOFF_MAGIC,
                        .version = HANDOFF_VERSION,
                        .header_size = sizeof(struct handoff_v1),
                        .n_children = (uint32_t)h->n_children,
                        .child_size = sizeof(struct handoff_child),
                        .children_offset = sizeof(struct handoff_v1),
                        .total_size = total,
                },
                .n_served = h->n_served,
                .n_refused = h->n_refused,
                .udp_echoed = h->udp_echoed,
                .udp_dropped = h->udp_dropped,
                .report_fds = { h->report_fds[0], h->report_fds[1] },
                .n_opened = h->n_opened,
        };

        if (size < total || h->n_opened > HANDOFF_MAX_OPENED || h->n_children > UINT32_MAX)
                return -ENOBUFS;
        memcpy(v.opened, h->opened, sizeof(v.opened));
        memcpy(buf, &v, sizeof(v));
        if (h->n_children > 0)
                memcpy((char *)buf + sizeof(v), h->children, h->n_children * sizeof(struct handoff_child));
        return (ssize_t)total;
}

/* The stable header, checked against the buffer it came in. */
static int header_check(const void *buf, size_t size, struct handoff_header *ret) {
        struct handoff_header *hd = ret;

        if (size < sizeof(*hd))
                return -EBADMSG;
        memcpy(hd, buf, sizeof(*hd));
        if (memcmp(hd->magic, HANDOFF_MAGIC, sizeof(hd->magic)) != 0 || hd->total_size != size ||
            hd->header_size < sizeof(*hd) || hd->header_size > size || hd->child_size < sizeof(int32_t) ||
            hd->children_offset < hd->header_size || hd->children_offset > size ||
            (size - hd->children_offset) / hd->child_size < hd->n_children)
                return -EBADMSG;
        return 0;
}

ssize_t handoff_pids(const void *buf, size_t size, pid_t *ret, size_t max) {
        struct handoff_header hd;
        int r = header_check(buf, size, &hd);

        if (r < 0)
                return r;
        /* Every pid is checked, not only those returned: the caller signals them, and
         * kill() takes 0 for its process group and -1 for every process it may signal. */
        for (size_t i = 0; i < hd.n_children; i++) {
                int32_t pid;
                memcpy(&pid, (const char *)buf + hd.children_offset + i * hd.child_size, sizeof(pid));
                if (pid <= 0)
                        return -EBADMSG;
                if (i < max)
                        ret[i] = pid;
        }
        return hd.n_children;
}

int handoff_decode(const void *buf, size_t size, struct handoff *ret) {
        struct handoff_v1 v;
        int r = header_check(buf, size, &v.header);

        if (r < 0)
                return r;
        if (!handoff_version_readable(v.header.version) || v.header.header_size != sizeof(v) ||
            v.header.child_size != sizeof(struct handoff_child))
                return -EPROTONOSUPPORT;
        memcpy(&v, buf, sizeof(v));
        if (v.n_opened > HANDOFF_MAX_OPENED || v.header.children_offset % sizeof(uint64_t) != 0)
                return -EBADMSG;
        *ret = (struct handoff){
                .n_served = v.n_served,
                .n_refused = v.n_refused,
                .udp_echoed = v.udp_echoed,
                .udp_dropped = v.udp_dropped,
                .report_fds = { v.report_fds[0], v.report_fds[1] },
                .n_opened = v.n_opened,
                .n_children = v.header.n_children,
                .children = (struct handoff_child *)((char *)buf + v.header.children_offset),
        };
        memcpy(ret->opened, v.opened, sizeof(ret->opened));
        for (size_t i = 0; i < ret->n_children; i++)
                if (ret->children[i].pid <= 0)
                        return -EBADMSG;
        return 0;
}

int handoff_write_fd(const struct handoff *h) {
        size_t size = handoff_size(h->n_children);
        void *buf = malloc(size);
        ssize_t n;
        int fd, r = 0;

        if (!buf)
                return -ENOMEM;
        n = handoff_encode(h, buf, size);
        fd = memfd_create("echod-reload-state", MFD_CLOEXEC);
        if (n < 0 || fd < 0)
                r = n < 0 ? (int)n : -errno;
        for (size_t off = 0; r == 0 && off < size;) {
                ssize_t w = pwrite(fd, (char *)buf + off, size - off, (off_t)off);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        r = w < 0 ? -errno : -EIO;
                else
                        off += (size_t)w;
        }
        free(buf);
        if (r < 0) {
                if (fd >= 0)
                        close(fd);
                return r;
        }
        return fd;
}

ssize_t handoff_read_fd(int fd, void **ret_buf) {
        struct stat st;
        void *buf;
        size_t size;

        *ret_buf = NULL;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (st.st_size <= 0 || st.st_size > (off_t)(64u << 20))
                return -EBADMSG;
        size = (size_t)st.st_size;
        buf = malloc(size); /* malloc()'s alignment is at least 8 */
        if (!buf)
                return -ENOMEM;
        for (size_t off = 0; off < size;) {
                ssize_t n = pread(fd, (char *)buf + off, size - off, (off_t)off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        int r = n < 0 ? -errno : -EBADMSG;
                        free(buf);
                        return r;
                }
                off += (size_t)n;
        }
        *ret_buf = buf;
        return (ssize_t)size;
}

/* Whether fd is open and a socket of that domain and type. */
static bool fd_is_socket(int fd, int domain, int type) {
        int v_domain, v_type;
        socklen_t len_domain = sizeof(v_domain), len_type = sizeof(v_type);
        struct stat st;

        return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) &&
               getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v_domain, &len_domain) == 0 &&
               getsockopt(fd, SOL_SOCKET, SO_TYPE, &v_type, &len_type) == 0 &&
               (domain == AF_UNSPEC || v_domain == domain) && v_type == type;
}

bool handoff_state_fd_valid(int fd) {
        struct stat st;

        /* a memfd is a regular file (of its own file system) */
        return fd >= 3 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

/* Every descriptor a state names: the report fds, the --listen sockets. */
static size_t fds_named(const struct handoff *h, int *ret) {
        size_t n = 0;

        if (h->report_fds[0] >= 0 || h->report_fds[1] >= 0) {
                ret[n++] = h->report_fds[0];
                ret[n++] = h->report_fds[1];
        }
        for (uint32_t i = 0; i < h->n_opened && i < HANDOFF_MAX_OPENED; i++)
                ret[n++] = h->opened[i].fd;
        return n;
}

const char *handoff_fds_invalid(const struct handoff *h, int state_fd, int n_passed) {
        int fds[HANDOFF_MAX_OPENED + 2];
        size_t n = fds_named(h, fds);

        for (size_t i = 0; i < n; i++) {
                if (fds[i] < 3)
                        return "a descriptor below 3";
                if (fds[i] == state_fd || fds[i] < 3 + n_passed)
                        return "the state's own descriptor, or one of the sockets from systemd";
                for (size_t j = 0; j < i; j++)
                        if (fds[j] == fds[i])
                                return "one descriptor twice";
        }
        if ((h->report_fds[0] >= 0 || h->report_fds[1] >= 0) &&
            (!fd_is_socket(h->report_fds[0], AF_UNIX, SOCK_DGRAM) ||
             !fd_is_socket(h->report_fds[1], AF_UNIX, SOCK_DGRAM)))
                return "a report descriptor that is not an AF_UNIX datagram socket";
        for (uint32_t i = 0; i < h->n_opened; i++)
                if (!fd_is_socket(h->opened[i].fd, AF_UNSPEC, SOCK_STREAM) &&
                    !fd_is_socket(h->opened[i].fd, AF_UNSPEC, SOCK_DGRAM))
                        return "a --listen descriptor that is not a stream or datagram socket";
        return NULL;
}
