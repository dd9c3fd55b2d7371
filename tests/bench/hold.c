/* hold: N verified connections kept open while the server's memory is read. Owns the walk
 * of the server's process tree in /proc (Pss and page tables, tree_measure), the held
 * connections and the wait for a fork server to settle after they close. */
#include "loadgen.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

struct tree_mem {
        uint64_t pss_kib, pte_kib;
        long procs;
};

static uint64_t field_kib(const char *path, const char *key) {
        FILE *f = fopen(path, "re");
        if (!f)
                return 0;
        char line[256];
        size_t kl = strlen(key);
        uint64_t v = 0;
        while (fgets(line, sizeof line, f))
                if (strncmp(line, key, kl) == 0) {
                        v = strtoull(line + kl, NULL, 10);
                        break;
                }
        fclose(f);
        return v;
}

struct proc_link {
        pid_t pid, ppid;
};

static int cmp_ppid(const void *a, const void *b) {
        const struct proc_link *x = a, *y = b;
        return x->ppid < y->ppid ? -1 : x->ppid > y->ppid;
}

/* Sums Pss (smaps_rollup) and VmPTE (status) over root and all its descendants; with
 * count_only, just counts them. */
static struct tree_mem tree_measure(pid_t root, bool count_only) {
        struct tree_mem m = { 0, 0, 0 };
        size_t cap = 65536, n = 0;
        struct proc_link *links = malloc(cap * sizeof *links);
        DIR *d = opendir("/proc");
        if (!links || !d)
                die("tree_measure");
        struct dirent *de;
        while ((de = readdir(d))) {
                if (!isdigit((unsigned char)de->d_name[0]))
                        continue;
                char path[300], buf[512];
                snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
                int fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        continue;
                ssize_t r = read(fd, buf, sizeof buf - 1);
                close(fd);
                if (r <= 0)
                        continue;
                buf[r] = 0;
                char *p = strrchr(buf, ')');
                int pp;
                if (!p || sscanf(p + 1, " %*c %d", &pp) != 1)
                        continue;
                if (n == cap) {
                        cap *= 2;
                        links = realloc(links, cap * sizeof *links);
                        if (!links)
                                die("realloc");
                }
                links[n].pid = atoi(de->d_name);
                links[n++].ppid = pp;
        }
        closedir(d);
        /* breadth-first: children of p are the run of links sorted by ppid equal to p */
        qsort(links, n, sizeof *links, cmp_ppid);
        pid_t *queue = malloc((n + 1) * sizeof *queue);
        if (!queue)
                die("malloc");
        size_t qh = 0, qt = 0;
        queue[qt++] = root;
        while (qh < qt) {
                pid_t p = queue[qh++];
                size_t lo = 0, hi = n;
                while (lo < hi) {
                        size_t mid = (lo + hi) / 2;
                        if (links[mid].ppid < p)
                                lo = mid + 1;
                        else
                                hi = mid;
                }
                for (size_t i = lo; i < n && links[i].ppid == p && qt <= n; i++)
                        queue[qt++] = links[i].pid;
        }
        for (size_t i = 0; i < qt; i++) {
                m.procs++;
                if (count_only)
                        continue;
                char path[64];
                snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)queue[i]);
                m.pss_kib += field_kib(path, "Pss:");
                snprintf(path, sizeof path, "/proc/%d/status", (int)queue[i]);
                m.pte_kib += field_kib(path, "VmPTE:");
        }
        free(queue);
        free(links);
        return m;
}

struct hconn {
        int fd;
        int state; /* 0 connecting, 1 sent, 2 verified (held), -1 failed */
        size_t got;
        uint64_t t0;
};

static void hold_msg(char *msg, uint64_t i) {
        snprintf(msg, 9, "%07" PRIu64, i % 10000000u);
        msg[7] = '\n';
}

void mode_hold(const struct opts *o) {
        long nc = (long)o->amount;
        raise_nofile((rlim_t)nc + 256);
        struct hconn *cs = calloc((size_t)nc, sizeof *cs);
        int ep = epoll_create1(EPOLL_CLOEXEC);
        if (!cs || ep < 0)
                die("setup");
        struct tree_mem base = { 0, 0, 0 };
        if (o->pid > 0)
                base = tree_measure(o->pid, false);
        uint64_t start = now_ns(), tmo = (uint64_t)(o->timeout * 1e9);
        long next = 0, pending = 0, held = 0, failed = 0;
        const long in_flight = 256;
        struct epoll_event evs[256];
        while (held + failed < nc) {
                while (next < nc && pending < in_flight) {
                        struct hconn *c = &cs[next];
                        c->t0 = now_ns();
                        c->fd = conn_start(o);
                        if (c->fd < 0) {
                                errors[classify(-c->fd)]++;
                                c->state = -1;
                                failed++;
                                next++;
                                continue;
                        }
                        struct epoll_event ev = { .events = EPOLLOUT, .data.u32 = (uint32_t)next };
                        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
                        next++;
                        pending++;
                }
                int n = epoll_wait(ep, evs, 256, 50);
                if (n < 0 && errno != EINTR)
                        die("epoll_wait");
                for (int k = 0; k < n; k++) {
                        uint32_t idx = evs[k].data.u32;
                        struct hconn *c = &cs[idx];
                        if (c->state < 0 || c->state == 2)
                                continue;
                        char msg[9], buf[9];
                        hold_msg(msg, idx);
                        int e = 0;
                        if (c->state == 0) {
                                e = sock_error(c->fd);
                                if (!e && send(c->fd, msg, 8, MSG_NOSIGNAL) != 8)
                                        e = errno ? errno : EIO;
                                if (!e) {
                                        c->state = 1;
                                        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = idx };
                                        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                                }
                        } else {
                                ssize_t r = recv(c->fd, buf, 8 - c->got, 0);
                                if (r > 0) {
                                        if (memcmp(buf, msg + c->got, (size_t)r) != 0) {
                                                errors[E_MISMATCH]++;
                                                c->state = -1;
                                        } else if ((c->got += (size_t)r) == 8) {
                                                c->state = 2;
                                                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                                                held++;
                                                pending--;
                                        }
                                } else if (r == 0) {
                                        errors[E_EOF]++;
                                        c->state = -1;
                                } else if (errno != EAGAIN) {
                                        e = errno;
                                }
                        }
                        if (e) {
                                errors[classify(e)]++;
                                c->state = -1;
                        }
                        if (c->state == -1) {
                                close(c->fd);
                                c->fd = -1;
                                failed++;
                                pending--;
                        }
                }
                uint64_t t = now_ns();
                for (long i = 0; i < next; i++) {
                        struct hconn *c = &cs[i];
                        if ((c->state == 0 || c->state == 1) && t > c->t0 && t - c->t0 > tmo) {
                                errors[E_TIMEOUT]++;
                                c->state = -1;
                                close(c->fd);
                                c->fd = -1;
                                failed++;
                                pending--;
                        }
                }
        }
        double open_s = (double)(now_ns() - start) / 1e9;
        /* let the last children settle (a fork server's child touches pages as it starts) */
        usleep(200000);
        struct tree_mem m = { 0, 0, 0 };
        if (o->pid > 0)
                m = tree_measure(o->pid, false);
        /* every held connection must still be open and silent */
        long dropped = 0;
        for (long i = 0; i < nc; i++) {
                if (cs[i].state != 2)
                        continue;
                char b;
                ssize_t r = recv(cs[i].fd, &b, 1, MSG_DONTWAIT);
                if (r == 0 || (r < 0 && errno != EAGAIN))
                        dropped++;
        }
        errors[E_EOF] += (uint64_t)dropped;
        for (long i = 0; i < nc; i++)
                if (cs[i].fd >= 0)
                        close(cs[i].fd);
        /* wait for a fork server to get back to its idle process count */
        double settle_s = 0;
        if (o->pid > 0) {
                uint64_t t0 = now_ns();
                while (now_ns() - t0 < 20000000000u && tree_measure(o->pid, true).procs > base.procs)
                        usleep(50000);
                settle_s = (double)(now_ns() - t0) / 1e9;
        }
        long ok = held - dropped;
        double per = ok > 0 ? 1.0 / (double)ok : 0;
        double pss_pc = ((double)m.pss_kib - (double)base.pss_kib) * per;
        double pte_pc = ((double)m.pte_kib - (double)base.pte_kib) * per;
        printf("mode=hold n=%ld held=%ld open_s=%.3f procs=%ld base_procs=%ld pss_kib=%" PRIu64
               " pte_kib=%" PRIu64 " base_pss_kib=%" PRIu64 " base_pte_kib=%" PRIu64
               " pss_per_client_kib=%.1f pte_per_client_kib=%.1f mem_per_client_kib=%.1f "
               "settle_s=%.2f",
               nc, ok, open_s, m.procs, base.procs, m.pss_kib, m.pte_kib, base.pss_kib, base.pte_kib, pss_pc,
               pte_pc, pss_pc + pte_pc, settle_s);
        print_errors();
        close(ep);
        free(cs);
}
