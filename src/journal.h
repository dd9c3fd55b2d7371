/* Records in journald's native protocol (systemd's "Native Journal Protocol"): one datagram
 * per record to /run/systemd/journal/socket, fields as NAME=value lines, or NAME, newline,
 * a 64-bit little-endian length and the bytes for a value that holds a newline or other
 * binary bytes. Used by the main process only; sending never blocks. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* A record that would outgrow this leaves out the fields that do not fit (whole). */
#define JOURNAL_RECORD_MAX     2048
#define JOURNAL_FIELD_NAME_MAX 64

struct journal_record {
        char data[JOURNAL_RECORD_MAX];
        size_t n;
        unsigned n_left_out; /* fields that did not fit or had a bad name */
};

void journal_record_start(struct journal_record *r);
/* Appends a field; value holds len bytes (any bytes). Returns 0, -EINVAL for a name the
 * journal would reject, or -ENOBUFS if it does not fit; a refused field is left out whole
 * and counted in n_left_out. */
int journal_record_add(struct journal_record *r, const char *name, const char *value, size_t len);
int journal_record_addf(struct journal_record *r, const char *name, const char *format, ...)
        __attribute__((format(printf, 3, 4)));

/* Uppercase ASCII letters, digits and '_', not starting with '_' or a digit, 1..64 long. */
bool journal_field_name_valid(const char *name);

/* The journal socket's path: ECHOD_TEST_JOURNAL_SOCKET if set (test-only: lets the
 * black-box tests receive the records), else journald's. */
const char *journal_socket_path(void);
/* A datagram socket to send records on (CLOEXEC; a forked child's close_range() drops
 * it). Returns the fd or -errno. */
int journal_open(void);
/* One datagram, MSG_DONTWAIT: a full or missing journal returns -errno (EAGAIN,
 * ENOENT, ECONNREFUSED ...) at once and the record is not sent. */
int journal_send(int fd, const struct journal_record *r);
