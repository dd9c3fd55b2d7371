/* libFuzzer target: options_parse() on an argv made of the input split on NUL bytes (argv[0]
 * is "echod"), and options_parse_duration() on each argument. Never crashes; the result is
 * one of run (0), printed help/version (1) or usage error (-EINVAL); a usage error writes
 * exactly one line to stderr and nothing to stdout, anything else writes nothing to
 * stderr; a parsed result is always within the documented ranges. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "addr.h"
#include "options.h"

#define MAX_ARGS 300

#define CHECK(cond)                                                                                          \
        do {                                                                                                 \
                if (!(cond)) {                                                                               \
                        fprintf(real_stderr, "fuzz_options: check failed: %s (line %d)\n", #cond, __LINE__); \
                        abort();                                                                             \
                }                                                                                            \
        } while (0)

static FILE *real_stderr;

static size_t count_char(const char *s, size_t n, char c) {
        size_t k = 0;

        for (size_t i = 0; i < n; i++)
                k += s[i] == c;
        return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *copy = malloc(size + 1), *argv[MAX_ARGS + 2];
        char *out_buf = NULL, *err_buf = NULL;
        size_t out_len = 0, err_len = 0;
        FILE *saved_out = stdout, *saved_err = stderr;
        struct options o;
        int argc = 1, r;

        if (!copy)
                return 0;
        memcpy(copy, data, size);
        copy[size] = '\0';
        argv[0] = (char *)"echod";
        for (size_t i = 0; i <= size && argc <= MAX_ARGS;) {
                argv[argc++] = copy + i;
                i += strlen(copy + i) + 1;
        }
        if (size == 0)
                argc = 1;
        argv[argc] = NULL;

        for (int i = 1; i < argc; i++) {
                uint64_t usec = 0;
                if (options_parse_duration(argv[i], OPTIONS_MAX_DRAIN_USEC, &usec) == 0)
                        CHECK(usec <= OPTIONS_MAX_DRAIN_USEC);
        }

        /* Capture what options_parse() prints (libFuzzer and the sanitizers write to the
         * real fd 2, not through this FILE). */
        real_stderr = saved_err;
        stdout = open_memstream(&out_buf, &out_len);
        stderr = open_memstream(&err_buf, &err_len);
        CHECK(stdout && stderr);
        memset(&o, 0xa5, sizeof(o));
        r = options_parse(argc, argv, &o);
        fclose(stdout);
        fclose(stderr);
        stdout = saved_out;
        stderr = saved_err;

        CHECK(r == 0 || r == 1 || r == -EINVAL);
        if (r == -EINVAL) {
                CHECK(out_len == 0);
                CHECK(err_len > 0 && err_buf[err_len - 1] == '\n' && count_char(err_buf, err_len, '\n') == 1);
                CHECK(strncmp(err_buf, "echod: ", 7) == 0);
        } else {
                CHECK(err_len == 0);
        }
        if (r == 1)
                CHECK(out_len > 0);
        if (r == 0) {
                CHECK(out_len == 0);
                CHECK(o.n_listen <= OPTIONS_MAX_LISTEN);
                CHECK(o.max_clients >= 1 && o.max_clients <= OPTIONS_MAX_MAX_CLIENTS);
                CHECK(o.max_per_source <= OPTIONS_MAX_MAX_CLIENTS);
                CHECK(o.idle_timeout_usec <= OPTIONS_MAX_IDLE_USEC);
                CHECK(o.drain_timeout_usec <= OPTIONS_MAX_DRAIN_USEC);
                CHECK(o.log_level >= LOG_ERR && o.log_level <= LOG_DEBUG);
                for (size_t i = 0; i < o.n_listen; i++) {
                        const struct listen_spec *l = &o.listen[i];
                        /* The value points into one of the arguments. */
                        CHECK(l->value >= copy && l->value <= copy + size);
                        if (l->kind == LISTEN_UNIX) {
                                CHECK(strchr(l->value, '/') != NULL);
                                CHECK(strlen(l->value) < ADDR_UNIX_PATH_MAX);
                        } else {
                                CHECK(l->kind == LISTEN_TCP || l->kind == LISTEN_UDP);
                                CHECK(addr_parse(l->value, NULL, NULL) == 0);
                        }
                }
        }
        free(out_buf);
        free(err_buf);
        free(copy);
        return 0;
}
