/* Logging to stderr: one line per event, one write(2) per line, syslog priority prefixes
 * ("<6>") only when stderr is the journal. The main process's; a forked child writes its
 * line with child/line.h, which uses no libc. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <syslog.h>

#include "journal.h"

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

/* How long a line of the main process may wait for stderr to take it (a stalled journal
 * or pipe reader): its loop waits meanwhile. Then the line is dropped. */
#define LOG_MAIN_WAIT_MS 100

/* Copies src into dst (size >= 1), replacing every byte that is not printable ASCII with
 * '?': for text a peer controls (AF_UNIX paths). Returns dst. */
char *log_sanitize(char *dst, size_t size, const char *src, size_t src_len);
