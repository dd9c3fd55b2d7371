/* Unit test of notify_send.c, against what libsystemd's sd_notify() does: one datagram,
 * whole, to a socket at a path or an abstract one ("@name"); errors as -errno. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "notify_send.h"
#include "tap.h"

static void test_notify(void) {
        char dir[] = "/tmp/test-notify_send-XXXXXX", path[128], abstract[64], got[64] = "";
        struct sockaddr_un sun = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0), afd;
        ssize_t n;

        tap(mkdtemp(dir) != NULL, "a temporary directory");
        snprintf(path, sizeof(path), "%s/notify", dir);
        strcpy(sun.sun_path, path);
        tap(bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0, "a notify socket at a path");
        tap(notify_send(path, "READY=1") == 0, "a message sent to it");
        n = recv(fd, got, sizeof(got) - 1, MSG_DONTWAIT);
        tap(n == 7 && memcmp(got, "READY=1", 7) == 0, "... arrives whole");

        snprintf(abstract, sizeof(abstract), "@test-notify_send-%d", (int)getpid());
        afd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        memset(&sun, 0, sizeof(sun));
        sun.sun_family = AF_UNIX;
        memcpy(sun.sun_path + 1, abstract + 1, strlen(abstract) - 1);
        tap(bind(afd, (struct sockaddr *)&sun,
                 (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(abstract))) == 0,
            "an abstract notify socket");
        tap(notify_send(abstract, "WATCHDOG=1") == 0, "a message sent to it");
        n = recv(afd, got, sizeof(got) - 1, MSG_DONTWAIT);
        tap(n == 10 && memcmp(got, "WATCHDOG=1", 10) == 0, "... arrives whole");

        close(fd);
        unlink(path);
        tap(notify_send(path, "STATUS=x") == -ENOENT, "to a socket that is gone: -ENOENT");
        tap(notify_send("relative", "STATUS=x") == -EAFNOSUPPORT,
            "to an address of no known kind: -EAFNOSUPPORT");
        close(afd);
        rmdir(dir);
}

int main(void) {
        test_notify();
        return tap_done();
}
