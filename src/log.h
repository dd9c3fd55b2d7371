/* Logging to stderr: one line per event, one write(2) per line, syslog priority prefixes
 * ("<6>") only when stderr is the journal. log_msg() and the macros are the main process's;
 * a forked child writes its line with log_line_*(), which use no libc. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <syslog.h>

#include "journal.h"

/* Set by log_setup(): the highest level written, and whether lines carry a "<N>" prefix. */
extern int log_max_level;
extern bool log_use_prefix;
/* What stderr is (st_mode & S_IFMT, 0: not known): a socket takes a line without waiting or
 * not at all, a regular file at once, anything else once it polls writable. */
extern unsigned log_stderr_type;

/* Reads JOURNAL_STREAM and compares it with stderr; sets the maximum level logged. When
 * stderr is the journal, opens the journal's native socket: from then on the main
 * process's events go as structured records (a record that cannot be sent falls back to
 * its stderr line). */
void log_setup(int max_level);
/* Whether events go to the journal as records (log_setup() decided). */
bool log_journal(void);
/* Records that could not be sent (and went to stderr as lines instead). */
unsigned long log_journal_dropped(void);
int log_get_level(void);
int log_level_from_string(const char *s); /* -EINVAL if unknown */

void log_msg(int level, const char *format, ...) __attribute__((format(printf, 2, 3)));

/* An event of a kind with a MESSAGE_ID (journal-ids.h): under journald one record with
 * the fields in record (may be NULL) and the text as MESSAGE, else the same line as
 * log_msg(). */
void log_event(int level, const char *message_id, struct journal_record *record, const char *format, ...)
        __attribute__((format(printf, 4, 5)));

/* Logs with errno set to error (so "%m" names it) and returns -abs(error). */
int log_errno(int level, int error, const char *format, ...) __attribute__((format(printf, 3, 4)));

#define log_debug(...)                log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)                 log_msg(LOG_INFO, __VA_ARGS__)
#define log_notice(...)               log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...)              log_msg(LOG_WARNING, __VA_ARGS__)
#define log_error(...)                log_msg(LOG_ERR, __VA_ARGS__)
#define log_error_errno(error, ...)   log_errno(LOG_ERR, (error), __VA_ARGS__)
#define log_warning_errno(error, ...) log_errno(LOG_WARNING, (error), __VA_ARGS__)

/* A log line built without libc (logline.c), for the child's one line per connection: a
 * forked child pays a page fault for every libc page it runs. Start it, append (appends
 * stop silently at the end of the buffer), emit it. */
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

/* How long a line may wait for stderr to take it (a stalled journal or pipe reader), in the
 * main process (whose loop waits meanwhile) and in a child; then the line is dropped. */
#define LOG_MAIN_WAIT_MS  100
#define LOG_CHILD_WAIT_MS 1000
/* Writes one whole line to stderr with one write, waiting at most timeout_ms for room.
 * Returns false if it was dropped. No libc: a child calls it. */
bool log_write_line(const char *line, size_t n, int timeout_ms);

/* Copies src into dst (size >= 1), replacing every byte that is not printable ASCII with
 * '?': for text a peer controls (AF_UNIX paths). Returns dst. */
char *log_sanitize(char *dst, size_t size, const char *src, size_t src_len);
