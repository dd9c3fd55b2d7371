/* Open addressing with linear probing and backward-shift deletion (no tombstones), at
 * most half full, so every probe sequence is short and a removal leaves no debris. */
#include "map.h"

#include <errno.h>

#include "fork.h"

struct slot {
        uint64_t key;
        uint64_t value;
        bool used;
};

struct map {
        struct slot *slots;
        size_t mask; /* number of slots - 1 */
        size_t n, max;
        size_t mapped;
};

static size_t home_of(const struct map *m, uint64_t key) {
        key ^= key >> 33;
        key *= 0xff51afd7ed558ccdull;
        key ^= key >> 33;
        return (size_t)key & m->mask;
}

int map_new(size_t max, struct map **ret) {
        size_t n_slots = 16, size;
        struct map *m;

        while (n_slots < 2 * max)
                n_slots *= 2;
        size = sizeof(struct map) + n_slots * sizeof(struct slot);
        m = fork_alloc_parent_only(size);
        if (!m)
                return -ENOMEM;
        *m = (struct map){
                .slots = (struct slot *)(m + 1),
                .mask = n_slots - 1,
                .max = max,
                .mapped = size,
        };
        *ret = m;
        return 0;
}

void map_free(struct map *m) {
        if (m)
                fork_free_parent_only(m, m->mapped);
}

static struct slot *find(const struct map *m, uint64_t key) {
        for (size_t i = home_of(m, key);; i = (i + 1) & m->mask) {
                if (!m->slots[i].used)
                        return NULL;
                if (m->slots[i].key == key)
                        return &m->slots[i];
        }
}

int map_put(struct map *m, uint64_t key, uint64_t value) {
        size_t i;

        for (i = home_of(m, key); m->slots[i].used; i = (i + 1) & m->mask)
                if (m->slots[i].key == key) {
                        m->slots[i].value = value;
                        return 0;
                }
        if (m->n >= m->max)
                return -ENOSPC;
        m->slots[i] = (struct slot){ .key = key, .value = value, .used = true };
        m->n++;
        return 0;
}

bool map_get(const struct map *m, uint64_t key, uint64_t *ret_value) {
        const struct slot *s = find(m, key);

        if (s && ret_value)
                *ret_value = s->value;
        return s != NULL;
}

bool map_remove(struct map *m, uint64_t key, uint64_t *ret_value) {
        struct slot *s = find(m, key);
        size_t i, j;

        if (!s)
                return false;
        if (ret_value)
                *ret_value = s->value;
        i = (size_t)(s - m->slots);
        /* Move back every later entry of the run whose home allows it to fill the hole. */
        for (j = (i + 1) & m->mask; m->slots[j].used; j = (j + 1) & m->mask) {
                size_t home = home_of(m, m->slots[j].key);
                if (((j - home) & m->mask) >= ((j - i) & m->mask)) {
                        m->slots[i] = m->slots[j];
                        i = j;
                }
        }
        m->slots[i].used = false;
        m->n--;
        return true;
}

void map_clear(struct map *m) {
        for (size_t i = 0; i <= m->mask; i++)
                m->slots[i].used = false;
        m->n = 0;
}

size_t map_size(const struct map *m) {
        return m->n;
}

void map_foreach(const struct map *m, void (*f)(uint64_t key, uint64_t value, void *userdata),
                 void *userdata) {
        for (size_t i = 0; i <= m->mask; i++)
                if (m->slots[i].used)
                        f(m->slots[i].key, m->slots[i].value, userdata);
}
