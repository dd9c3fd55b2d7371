/* A fixed-capacity hash map from uint64_t to uint64_t, in memory the children never
 * inherit. Used for the live children (pid -> source key) and per-source counts. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct map;

/* A map for at most max entries. Returns 0 or -errno. */
int map_new(size_t max, struct map **ret);
void map_free(struct map *m);

/* -ENOSPC when max entries are there already; replaces the value of an existing key. */
int map_put(struct map *m, uint64_t key, uint64_t value);
bool map_get(const struct map *m, uint64_t key, uint64_t *ret_value);
bool map_remove(struct map *m, uint64_t key, uint64_t *ret_value);
void map_clear(struct map *m);
size_t map_size(const struct map *m);
/* Calls f for every entry; f must not change the map. */
void map_foreach(const struct map *m, void (*f)(uint64_t key, uint64_t value, void *userdata),
                 void *userdata);
