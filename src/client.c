/* A client's process. The child is short and paranoid: it keeps only its connection and
 * stderr, never talks to the service manager, and leaves with _exit() so nothing of the
 * parent's (atexit handlers, stdio buffers) runs twice. */
#include "client.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "clock.h"
#include "log.h"

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig) {
        (void)sig;
        stop_requested = 1;
}

static void format_peer(const struct client *c, char *buf, size_t size) {
        if (c->peer.ss_family == AF_INET || c->peer.ss_family == AF_INET6) {
                addr_format_peer((const struct sockaddr *)&c->peer, c->peer_len, buf, size);
                return;
        }
        /* AF_UNIX peers have no useful address: name the process behind them. */
        struct ucred cred;
        socklen_t len = sizeof(cred);
        if (getsockopt(c->conn_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
                snprintf(buf, size, "unix pid %d uid %u", (int)cred.pid, (unsigned)cred.uid);
        else
                snprintf(buf, size, "unix");
}

enum echo_end client_serve(const struct client *c) {
        struct sigaction sa = { .sa_handler = on_stop };
        sigset_t poll_mask;
        struct echo_result result;
        char peer[ADDR_TEXT_MAX];
        uint64_t usec;

        /* The stop signals stay blocked except while echo waits in ppoll(): one that
         * arrives in between is not lost, and the handler only sets a flag. */
        sigemptyset(&poll_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);

        struct echo_config config = {
                .idle_timeout_usec = c->idle_timeout_usec,
                .stop = &stop_requested,
                .poll_mask = &poll_mask,
        };
        echo_stream(c->conn_fd, &config, &result);

        format_peer(c, peer, sizeof(peer));
        usec = clock_now_usec() - c->start_usec;
        if (result.end == ECHO_END_ERROR) {
                errno = -result.error;
                log_info("connection from %s (pid %d) ended: error (%m), %llu bytes echoed in "
                         "%llu.%03llu s",
                         peer, (int)getpid(), (unsigned long long)result.n_bytes,
                         (unsigned long long)(usec / 1000000u),
                         (unsigned long long)(usec % 1000000u / 1000u));
        } else
                log_info("connection from %s (pid %d) ended: %s, %llu bytes echoed in %llu.%03llu s", peer,
                         (int)getpid(), echo_end_to_string(result.end), (unsigned long long)result.n_bytes,
                         (unsigned long long)(usec / 1000000u),
                         (unsigned long long)(usec % 1000000u / 1000u));
        close(c->conn_fd);
        return result.end;
}

_Noreturn void client_run_child(const struct client *c) {
        sigset_t mask;

        /* Only the stop signals stay blocked (client_serve() waits for them); SIGCHLD and
         * SIGHUP, blocked in the parent for its signalfd, get their defaults back. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_SETMASK, &mask, NULL);

        /* Listeners, the signalfd and anything else of the parent's: only stdin, stdout,
         * stderr (the log) and the connection stay. */
        if (c->conn_fd > 3)
                close_range(3, (unsigned)c->conn_fd - 1, 0);
        close_range((unsigned)c->conn_fd + 1, ~0u, 0);

        /* Only the main process may talk to the service manager. */
        unsetenv("NOTIFY_SOCKET");
        unsetenv("WATCHDOG_PID");
        unsetenv("WATCHDOG_USEC");

        _exit((int)client_serve(c));
}
