/* echod: options, wiring and exit codes. Everything that can fail before serving is
 * decided here, with one line on stderr and the exit status the contract gives. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <sysexits.h>

#include "child/client.h"
#include "clock.h"
#include "config.h"
#include "forkcheck.h"
#include "libsystemd.h"
#include "listen.h"
#include "log.h"
#include "options.h"
#include "pending.h"
#include "reexec.h"
#include "serve.h"

/* inetd mode (Accept=yes): the one connection is served here, as a child would serve it.
 * On a PROXY protocol socket its header is read first, here, within PENDING_TIMEOUT_USEC;
 * a bad one closes the connection with one line (a bad client is no failure: exit 0). */
static int serve_connected(const struct options *options, const struct listener *l) {
        struct client c = {
                .conn_fd = l->fd,
                .report_fd = -1, /* no parent to report to: the line is written here */
                .start_usec = clock_now_usec(),
                .idle_timeout_usec = options->idle_timeout_usec,
                .drain_timeout_usec = options->drain_timeout_usec,
                .oob_inline = l->family != AF_UNIX, /* set by listen.c */
        };
        sigset_t stop_signals;
        enum echo_end end;

        sigemptyset(&stop_signals);
        sigaddset(&stop_signals, SIGTERM);
        sigaddset(&stop_signals, SIGINT);
        /* Without it (out of fds), a stop signal stays blocked and systemd's SIGKILL ends it. */
        c.stop_fd = signalfd(-1, &stop_signals, SFD_NONBLOCK | SFD_CLOEXEC);
        if (c.stop_fd < 0)
                log_warning_errno(errno, "Failed to create signalfd, stop signals will not drain: %m");
        c.peer_len = sizeof(c.peer);
        if (getpeername(l->fd, (struct sockaddr *)&c.peer, &c.peer_len) < 0)
                c.peer.ss_family = AF_UNSPEC;
        if (l->proxy) {
                int r = pending_read_one(&c, PENDING_TIMEOUT_USEC);
                if (r != PROXY_DONE) {
                        addr_format_peer((struct sockaddr *)&c.peer, c.peer_len, c.peer_text,
                                         sizeof(c.peer_text));
                        log_warning("Refused the connection from %s: %s", c.peer_text,
                                    pending_reason_to_string(r));
                        if (c.stop_fd >= 0)
                                close(c.stop_fd);
                        return EXIT_SUCCESS;
                }
        }
        addr_describe_peer(c.conn_fd, (struct sockaddr *)&c.peer, c.peer_len, c.peer_text,
                           sizeof(c.peer_text));
        end = client_serve(&c);
        if (c.stop_fd >= 0)
                close(c.stop_fd);
        return end == ECHO_END_ERROR ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* A daemon started with stdin, stdout or stderr closed would hand that number to the first
 * socket it opens, and log lines would go to a client: fill the gaps with /dev/null. */
static void stdio_guard(void) {
        for (int fd = 0; fd <= 2; fd++)
                if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR | O_CLOEXEC) < 0)
                        return;
}

/* --check, which a reload runs on the binary it is about to execute: the options parsed,
 * libsystemd loadable (the sockets come through it), the running image's state readable
 * (its version in REEXEC_CHECK_VERSION_ENV), and a forked child of this binary serves a
 * connection. Opens no socket; one line on stderr if it fails. */
static int check_startup(void) {
        struct libsystemd sd;
        char reason[256];

        if (libsystemd_open(&sd) < 0) {
                log_error("Check failed: libsystemd.so.0 cannot be loaded: %s", sd.error);
                return EXIT_FAILURE;
        }
        libsystemd_close(&sd);
        if (reexec_check_version() < 0) {
                log_error("Check failed: the running echod hands over a reload state of version %s, "
                          "which echod %s cannot read (it reads version %u)",
                          getenv(REEXEC_CHECK_VERSION_ENV), ECHOD_VERSION, HANDOFF_VERSION);
                return EXIT_FAILURE;
        }
        if (forkcheck_run(reason, sizeof(reason)) < 0) {
                log_error("Check failed: a child does not serve: %s", reason);
                return EXIT_FAILURE;
        }
        log_debug("echod %s: check passed", ECHOD_VERSION);
        return EXIT_SUCCESS;
}

int main(int argc, char *argv[]) {
        struct options options;
        struct listeners listeners;
        struct sigaction ignore = { .sa_handler = SIG_IGN }, dfl = { .sa_handler = SIG_DFL };
        sigset_t mask;
        int r;

        stdio_guard();
        reexec_init(argc, argv);
        r = options_parse(argc, argv, &options);
        if (r != 0)
                return r > 0 ? EXIT_SUCCESS : EX_USAGE;
        log_setup(options.log_level);
        addr_set_log_peer(options.log_peer);

        /* Signals are read from a signalfd in the main loop; EPIPE is an error code, never
         * a signal (stderr may be a pipe whose reader went away). Nothing inherited counts:
         * an ignored SIGCHLD would let the kernel reap the children behind the table's
         * back, an ignored SIGTERM would be dropped before any signalfd saw it, and a
         * signal blocked by the launcher would stay blocked in every child. */
        sigaction(SIGCHLD, &dfl, NULL);
        sigaction(SIGTERM, &dfl, NULL);
        sigaction(SIGINT, &dfl, NULL);
        sigaction(SIGHUP, &dfl, NULL);
        sigaction(SIGPIPE, &ignore, NULL);
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigprocmask(SIG_SETMASK, &mask, NULL);

        if (options.check)
                return check_startup();
        r = listen_fds_get(&options, &listeners);
        if (r == -ENOENT) {
                log_error("No sockets to serve: start echod from its socket unit (systemctl start "
                          "echo.socket) or give --listen [HOST:]PORT (see --help)");
                return EXIT_FAILURE;
        }
        if (r < 0)
                return EXIT_FAILURE;

        if (listeners.n == 1 && listeners.items[0].type == LISTENER_CONNECTED)
                r = serve_connected(&options, &listeners.items[0]) == EXIT_SUCCESS ? 0 : -EIO;
        else
                r = serve_loop(&options, &listeners);
        listen_fds_close(&listeners);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
