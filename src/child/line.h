/* The log line of a client's process, built and written without libc (line.c): a forked
 * child pays a page fault for every libc page it runs. The main process writes its own
 * lines (log.c) with the same writer and the same settings. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <syslog.h>

/* Set by log_setup() (log.c) in the main process, before any fork; a child inherits them:
 * the highest level written, and whether lines carry a "<N>" prefix. */
extern int log_max_level;
extern bool log_use_prefix;
/* What stderr is (st_mode & S_IFMT, 0: not known): a socket takes a line without waiting or
 * not at all, a regular file at once, anything else once it polls writable. */
extern unsigned log_stderr_type;

/* The child's one line per connection. Start it, append (appends stop silently at the end
 * of the buffer), emit it. */
#define LOG_LINE_PREFIX 3 /* room for "<N>" in front of the text */
struct log_line {
        char text[512];
        size_t n;
};
void log_line_start(struct log_line *l);
void log_line_str(struct log_line *l, const char *s);
void log_line_u64(struct log_line *l, uint64_t v);
/* "1.234" from microseconds: seconds with three decimals */
void log_line_seconds(struct log_line *l, uint64_t usec);
/* Writes it (prefix if the journal reads stderr, newline, one write(2)) if level is
 * logged. The line is used up. */
void log_line_emit(int level, struct log_line *l);

/* How long a child's line may wait for stderr to take it (a stalled journal or pipe
 * reader); then the line is dropped. */
#define LOG_CHILD_WAIT_MS 1000
/* Writes one whole line to stderr with one write, waiting at most timeout_ms for room.
 * Returns false if it was dropped. No libc: a child calls it. */
bool log_write_line(const char *line, size_t n, int timeout_ms);
