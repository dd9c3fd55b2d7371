/* Unit test of map.c: random puts, gets and removes against a plain array that does the
 * same, in maps small enough that probe runs collide and wrap around the table; after
 * every operation the sizes agree, and every so often every key is looked up and
 * map_foreach() must visit exactly the model's entries. Backward-shift deletion is where
 * such a map goes wrong: an entry moved to the wrong slot becomes unreachable. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "map.h"
#include "tap.h"

#define UNIVERSE_MAX 512u

/* The model: key universe[i] is present when present[i], with value values[i]. */
struct model {
        uint64_t universe[UNIVERSE_MAX];
        bool present[UNIVERSE_MAX];
        uint64_t values[UNIVERSE_MAX];
        size_t n_keys, n;
        unsigned n_visited, n_wrong; /* of the last foreach */
};

static uint64_t rnd_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
        rnd_state ^= rnd_state << 13;
        rnd_state ^= rnd_state >> 7;
        rnd_state ^= rnd_state << 17;
        return rnd_state;
}

static void visit(uint64_t key, uint64_t value, void *userdata) {
        struct model *md = userdata;

        md->n_visited++;
        for (size_t i = 0; i < md->n_keys; i++)
                if (md->universe[i] == key) {
                        if (!md->present[i] || md->values[i] != value)
                                md->n_wrong++;
                        return;
                }
        md->n_wrong++;
}

/* Every key of the universe gives what the model says; foreach visits the model's entries
 * once each. Returns false (with a diagnostic) at the first difference. */
static bool agree(struct map *m, struct model *md) {
        for (size_t i = 0; i < md->n_keys; i++) {
                uint64_t v = 0;
                bool found = map_get(m, md->universe[i], &v);
                if (found != md->present[i] || (found && v != md->values[i])) {
                        printf("# key %#llx: map %s %llu, model %s %llu\n",
                               (unsigned long long)md->universe[i], found ? "has" : "lacks",
                               (unsigned long long)v, md->present[i] ? "has" : "lacks",
                               (unsigned long long)md->values[i]);
                        return false;
                }
        }
        md->n_visited = md->n_wrong = 0;
        map_foreach(m, visit, md);
        if (md->n_visited != md->n || md->n_wrong != 0) {
                printf("# foreach visited %u entries (%u wrong), model has %zu\n", md->n_visited, md->n_wrong,
                       md->n);
                return false;
        }
        return true;
}

/* ops random operations on a map of max entries over 3 * max keys (pids near each other,
 * or scattered 64-bit values like source keys). */
static void churn(size_t max, bool scattered, unsigned ops) {
        struct model *md = calloc(1, sizeof(*md));
        struct map *m = NULL;
        unsigned n_op;
        bool ok = true;

        if (!md || map_new(max, &m) < 0) {
                tap(false, "map of %zu: allocated", max);
                free(md);
                return;
        }
        md->n_keys = 3 * max < UNIVERSE_MAX ? 3 * max : UNIVERSE_MAX;
        for (size_t i = 0; i < md->n_keys; i++)
                md->universe[i] = scattered ? rnd() : 4000 + i;

        for (n_op = 0; n_op < ops && ok; n_op++) {
                size_t i = rnd() % md->n_keys;
                uint64_t value = rnd(), got = 0;

                switch (rnd() % 3) {
                case 0: {
                        int r = map_put(m, md->universe[i], value);
                        int want = md->present[i] || md->n < max ? 0 : -ENOSPC;
                        ok = r == want;
                        if (r == 0) {
                                md->n += !md->present[i];
                                md->present[i] = true;
                                md->values[i] = value;
                        }
                        break;
                }
                case 1:
                        ok = map_get(m, md->universe[i], &got) == md->present[i] &&
                             (!md->present[i] || got == md->values[i]);
                        break;
                default:
                        ok = map_remove(m, md->universe[i], &got) == md->present[i] &&
                             (!md->present[i] || got == md->values[i]);
                        md->n -= md->present[i];
                        md->present[i] = false;
                }
                ok = ok && map_size(m) == md->n;
                if (ok && n_op % 997 == 0)
                        ok = agree(m, md);
        }
        if (ok)
                ok = agree(m, md);
        tap(ok, "map of %zu, %s keys: %u random operations agree with the model%s", max,
            scattered ? "scattered" : "consecutive", ops, ok ? "" : " (stopped at the first difference)");
        if (!ok)
                printf("# after operation %u\n", n_op);
        map_free(m);
        free(md);
}

static void test_full(void) {
        struct map *m = NULL;
        uint64_t v = 0;
        bool ok = true;

        if (map_new(100, &m) < 0) {
                tap(false, "map of 100: allocated");
                return;
        }
        for (uint64_t k = 1; k <= 100; k++)
                ok = ok && map_put(m, k * 7919, k) == 0;
        tap(ok && map_size(m) == 100, "100 entries fit a map of 100");
        tap(map_put(m, 101 * 7919, 101) == -ENOSPC && map_size(m) == 100,
            "the 101st is refused with -ENOSPC");
        tap(map_put(m, 50 * 7919, 5000) == 0 && map_get(m, 50 * 7919, &v) && v == 5000 && map_size(m) == 100,
            "a full map still replaces the value of a key it has");
        tap(map_remove(m, 1 * 7919, &v) && v == 1 && !map_get(m, 1 * 7919, NULL) && map_size(m) == 99,
            "a removed key is gone and gives its value back");
        tap(!map_remove(m, 1 * 7919, NULL) && map_size(m) == 99, "removing it again finds nothing");
        tap(map_put(m, 101 * 7919, 101) == 0 && map_size(m) == 100, "its room takes a new key");
        map_free(m);
}

int main(void) {
        test_full();
        churn(1, false, 20000);
        churn(8, false, 200000);
        churn(8, true, 200000);
        churn(100, false, 200000);
        churn(100, true, 200000);
        return tap_done();
}
