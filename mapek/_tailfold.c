/* The tail's fold over the log's bytes: mapek.monitor's `Monitor._fold` (of events read
 * from the log) and `Monitor.hand_over`, for a tail process (adapters.monitor_tail),
 * without a Python object per event.
 *
 * Why. The tail's CPU is the Monitor's cost on a saturated server (bench/durable.py,
 * issue 6): sampled with perf, 59 % of it went to the interpreter and the objects it
 * makes and frees per event (sightings decoded, observations built, encoded, freed),
 * 19 % to msgspec, 5 % to SQLite (bench/README, "Where the tail's time goes"). Here the
 * msgpack the store keeps is walked in place, the items open live in a C hash table,
 * and an answer is written straight as the msgpack of `mapek.monitor.Changes`: per
 * event, a few comparisons and stores; per append, one hash probe for its case id.
 *
 * Theory of operation. The fold keeps what a Monitor made with `hands_over=True` keeps,
 * in C:
 *   - strings (case ids, workflows, tasks, people, results) interned once for the
 *     fold's life -- a case id carries its workflow (`_workflow`) and the attributes
 *     remembered for it since the last hand-over (`attributes`);
 *   - the open items by (case id, item) (`open`), each with the order in which it was
 *     first touched since the last hand-over (`_touched`: 0, not touched);
 *   - the items closed since the last hand-over, in closing order (`closed`);
 *   - breaches raised since the last hand-over (`breaches`), the open ones by
 *     (case id, item) (`_open_breach`), those resolved since (`_resolutions`);
 *   - empty tasks fired since, by (workflow, task), in first-fired order (`fired`).
 * `fold` reads the events as mapek.sightings declares them -- the same fields, the same
 * types (a float field takes an int, as msgspec converts it), the same required ones --
 * and applies `Monitor._fold`'s rules, in the same order; every other event type the
 * engine has is skipped unread, an unknown one refused. `hand_over` writes what
 * `Monitor.hand_over` returns, as msgspec encodes it. tests/mapek/test_tail_fold.py
 * holds the two to each other on random logs, in random parts.
 *
 * A batch is read whole before any of it is folded, so one with an error in it (a
 * malformed log: ValueError) leaves the fold as it was, as Monitor.fold_encoded does,
 * which decodes all of it first. Strings are interned for the fold's life, but for
 * results (free text, forgotten once handed over): case ids, as the Monitor keeps each
 * case's workflow; tasks, workflows, people. The tables hash with CPython's keyed hash,
 * as dicts do.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ strings */
typedef struct Attrs Attrs;

typedef struct Str {
    struct Str *workflow; /* a case id's workflow (NULL: none seen) */
    Attrs *attrs;         /* a case id's attributes kept since the last hand-over */
    uint64_t hash;
    int kind;             /* a tag's event kind (K_*), 0 for any other string */
    uint32_t len;
    char data[];
} Str;

typedef struct {
    Str **slots;
    size_t cap, used;
} Interns;

/* CPython's own hash of bytes: keyed per process (PYTHONHASHSEED), so case ids chosen
 * to collide cannot make the tables quadratic, as they cannot a dict. */
static uint64_t
hash_bytes(const char *s, size_t n)
{
#if PY_VERSION_HEX >= 0x030E0000
    return (uint64_t)Py_HashBuffer(s, (Py_ssize_t)n);
#else
    return (uint64_t)_Py_HashBytes(s, (Py_ssize_t)n);
#endif
}

static int
interns_grow(Interns *t)
{
    size_t cap = t->cap ? t->cap * 2 : 1024;
    Str **slots = calloc(cap, sizeof(Str *));
    if (slots == NULL)
        return -1;
    for (size_t i = 0; i < t->cap; i++) {
        Str *s = t->slots[i];
        if (s == NULL)
            continue;
        size_t j = s->hash & (cap - 1);
        while (slots[j] != NULL)
            j = (j + 1) & (cap - 1);
        slots[j] = s;
    }
    free(t->slots);
    t->slots = slots;
    t->cap = cap;
    return 0;
}

static Str *
intern(Interns *t, const char *s, size_t n)
{
    if ((t->used + 1) * 2 > t->cap && interns_grow(t) < 0) {
        PyErr_NoMemory();
        return NULL;
    }
    uint64_t h = hash_bytes(s, n);
    size_t j = h & (t->cap - 1);
    for (Str *e; (e = t->slots[j]) != NULL; j = (j + 1) & (t->cap - 1)) {
        if (e->hash == h && e->len == n && memcmp(e->data, s, n) == 0)
            return e;
    }
    if (n > UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "a string longer than 4 GiB");
        return NULL;
    }
    Str *e = calloc(1, sizeof(Str) + n + 1);
    if (e == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    e->hash = h;
    e->len = (uint32_t)n;
    memcpy(e->data, s, n);
    t->slots[j] = e;
    t->used++;
    return e;
}

/* ------------------------------------------------------- (case id, item) -> value */
typedef struct {
    Str *case_id; /* NULL: empty; &TOMB: removed */
    int64_t item;
    void *val;
} Slot;

typedef struct {
    Slot *slots;
    size_t cap, used, live; /* used: live and removed */
} Map;

static Str TOMB;

static size_t
slot_of(const Str *c, int64_t item, size_t cap)
{
    return (size_t)((c->hash ^ ((uint64_t)item * 0x9E3779B97F4A7C15ULL)) & (cap - 1));
}

static int
map_grow(Map *m)
{
    size_t cap = m->cap < 64 ? 64 : (m->live * 4 > m->cap ? m->cap * 2 : m->cap);
    Slot *slots = calloc(cap, sizeof(Slot));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) {
        Slot *s = &m->slots[i];
        if (s->case_id == NULL || s->case_id == &TOMB)
            continue;
        size_t j = slot_of(s->case_id, s->item, cap);
        while (slots[j].case_id != NULL)
            j = (j + 1) & (cap - 1);
        slots[j] = *s;
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    m->used = m->live;
    return 0;
}

static Slot *
map_find(const Map *m, const Str *c, int64_t item)
{
    if (m->cap == 0)
        return NULL;
    for (size_t j = slot_of(c, item, m->cap);; j = (j + 1) & (m->cap - 1)) {
        Slot *s = &m->slots[j];
        if (s->case_id == NULL)
            return NULL;
        if (s->case_id == c && s->item == item)
            return s;
    }
}

static void *
map_get(const Map *m, const Str *c, int64_t item)
{
    Slot *s = map_find(m, c, item);
    return s ? s->val : NULL;
}

static void *
map_pop(Map *m, const Str *c, int64_t item)
{
    Slot *s = map_find(m, c, item);
    if (s == NULL)
        return NULL;
    void *val = s->val;
    s->case_id = &TOMB;
    s->val = NULL;
    m->live--;
    return val;
}

/* Put a value where the key has none (the caller looked). */
static int
map_add(Map *m, Str *c, int64_t item, void *val)
{
    if ((m->used + 1) * 2 > m->cap && map_grow(m) < 0)
        return -1;
    size_t j = slot_of(c, item, m->cap);
    while (m->slots[j].case_id != NULL && m->slots[j].case_id != &TOMB)
        j = (j + 1) & (m->cap - 1);
    if (m->slots[j].case_id == NULL)
        m->used++;
    m->slots[j] = (Slot){c, item, val};
    m->live++;
    return 0;
}

/* ------------------------------------------------------------------ records */
enum { OUT_NONE, OUT_COMPLETED, OUT_CANCELLED };

typedef struct {
    Str *case_id, *workflow, *task, *by;
    char *result; /* (NULL: None) */
    uint32_t result_n;
    int64_t item;
    double enabled_at, started_at, closed_at, held_until;
    uint8_t has_started, has_held, outcome;
    uint64_t touched; /* order first touched since the last hand-over; 0: not */
} Item;

typedef struct {
    Str *case_id, *workflow, *task;
    int64_t item;
    double at, target, alert, resolved_at;
    uint8_t resolved, pending; /* pending: raised since the last hand-over */
    int refs;
} Breach;

typedef struct {
    Str *workflow, *task;
    int64_t n;
} Fired;

#define N_ATTRS 6
static const char *const ATTR_NAMES[N_ATTRS] = {
    "deal_acv", "contract_type", "discount_percent", "company_size", "industry", "segment"};

struct Attrs {
    uint8_t order[N_ATTRS]; /* attribute indices in the order first kept */
    uint8_t n;
    char *val[N_ATTRS];     /* each value's msgpack, as the log has it */
    size_t len[N_ATTRS];
};

#define VEC(T) struct { T *at; size_t n, cap; }
#define PUSH(v, x)                                                            \
    (((v).n == (v).cap && vec_grow((void **)&(v).at, &(v).cap, sizeof(*(v).at)) < 0) \
         ? -1                                                                 \
         : ((v).at[(v).n++] = (x), 0))

static int
vec_grow(void **at, size_t *cap, size_t size)
{
    size_t c = *cap ? *cap * 2 : 64;
    void *p = realloc(*at, c * size);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *at = p;
    *cap = c;
    return 0;
}

/* ------------------------------------------------------------------ reading */
typedef struct {
    const uint8_t *p, *end;
} Rd;

static int
bad(const char *what)
{
    PyErr_Format(PyExc_ValueError, "the log's events: %s", what);
    return -1;
}

#define NEED(r, k) if ((size_t)((r)->end - (r)->p) < (size_t)(k)) return bad("truncated")

static uint64_t
be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

static int
rd_len(Rd *r, uint8_t fix_lo, uint8_t fix_hi, uint8_t b16, uint8_t b32, uint32_t *n,
       const char *what)
{
    NEED(r, 1);
    uint8_t b = *r->p;
    if (b >= fix_lo && b <= fix_hi) {
        *n = b - fix_lo;
        r->p++;
        return 0;
    }
    int w = b == b16 ? 2 : b == b32 ? 4 : 0;
    if (w == 0)
        return bad(what);
    NEED(r, 1 + w);
    *n = (uint32_t)be(r->p + 1, w);
    r->p += 1 + w;
    return 0;
}

static int
rd_array(Rd *r, uint32_t *n)
{
    return rd_len(r, 0x90, 0x9f, 0xdc, 0xdd, n, "expected an array");
}

static int
rd_map(Rd *r, uint32_t *n)
{
    return rd_len(r, 0x80, 0x8f, 0xde, 0xdf, n, "expected a map");
}

static int
rd_str(Rd *r, const char **s, uint32_t *n)
{
    NEED(r, 1);
    uint8_t b = *r->p;
    int w;
    if (b >= 0xa0 && b <= 0xbf) {
        *n = b - 0xa0;
        w = 0;
    }
    else if (b >= 0xd9 && b <= 0xdb) {
        w = 1 << (b - 0xd9);
        NEED(r, 1 + w);
        *n = (uint32_t)be(r->p + 1, w);
    }
    else
        return bad("expected a str");
    NEED(r, (size_t)1 + w + *n);
    *s = (const char *)r->p + 1 + w;
    r->p += (size_t)1 + w + *n;
    return 0;
}

/* Whether s[:n] is UTF-8, as msgspec requires of every str it decodes. */
static int
utf8(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        unsigned c = *p;
        if (c < 0x80) {
            p++;
            continue;
        }
        int k = c >= 0xf0 && c <= 0xf4 ? 3 : c >= 0xe0 ? (c <= 0xef ? 2 : -1)
                : c >= 0xc2 ? 1 : -1;
        if (k < 0 || end - p <= k)
            return 0;
        unsigned v = c & (0x3f >> k);
        for (int i = 1; i <= k; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return 0;
            v = (v << 6) | (p[i] & 0x3f);
        }
        if ((k == 2 && (v < 0x800 || (v >= 0xd800 && v <= 0xdfff)))
            || (k == 3 && (v < 0x10000 || v > 0x10ffff)))
            return 0;
        p += k + 1;
    }
    return 1;
}

/* A str value the fold keeps: UTF-8, or refused as msgspec refuses it. */
static int
rd_text(Rd *r, const char **s, uint32_t *n)
{
    if (rd_str(r, s, n) < 0)
        return -1;
    return utf8(*s, *n) ? 0 : bad("a str that is not UTF-8");
}

static int
rd_int(Rd *r, int64_t *v)
{
    NEED(r, 1);
    uint8_t b = *r->p;
    if (b <= 0x7f) {
        *v = b;
        r->p++;
        return 0;
    }
    if (b >= 0xe0) {
        *v = (int8_t)b;
        r->p++;
        return 0;
    }
    if (b >= 0xcc && b <= 0xd3) {
        int w = 1 << ((b - 0xcc) & 3);
        NEED(r, 1 + w);
        uint64_t u = be(r->p + 1, w);
        if (b <= 0xcf) {
            if (u > (uint64_t)INT64_MAX)
                return bad("an int beyond 64 bits");
            *v = (int64_t)u;
        }
        else if (w == 1)
            *v = (int8_t)u;
        else if (w == 2)
            *v = (int16_t)u;
        else if (w == 4)
            *v = (int32_t)u;
        else
            *v = (int64_t)u;
        r->p += 1 + w;
        return 0;
    }
    return bad("expected an int");
}

static int
rd_float(Rd *r, double *v)
{
    NEED(r, 1);
    uint8_t b = *r->p;
    if (b == 0xcb || b == 0xca) {
        int w = b == 0xcb ? 8 : 4;
        NEED(r, 1 + w);
        uint64_t u = be(r->p + 1, w);
        if (w == 8)
            memcpy(v, &u, 8);
        else {
            uint32_t u32 = (uint32_t)u;
            float f;
            memcpy(&f, &u32, 4);
            *v = f;
        }
        r->p += 1 + w;
        return 0;
    }
    if (b == 0xcf) { /* any uint64, as msgspec takes it */
        NEED(r, 9);
        *v = (double)be(r->p + 1, 8);
        r->p += 9;
        return 0;
    }
    int64_t i;
    if (rd_int(r, &i) < 0) { /* msgspec takes an int for a float */
        PyErr_Clear();
        return bad("expected a float");
    }
    *v = (double)i;
    return 0;
}

static int
is_nil(Rd *r)
{
    if (r->p < r->end && *r->p == 0xc0) {
        r->p++;
        return 1;
    }
    return 0;
}

/* Skip one value; with `text`, refusing a str in it (keys too) that is not UTF-8 --
 * for a value the fold keeps, which msgspec decodes (an attribute). */
static int
skip(Rd *r, int depth, int text)
{
    if (depth > 1000)
        return bad("nested too deep");
    NEED(r, 1);
    uint8_t b = *r->p;
    uint64_t n = 0, items = 0;
    int w = 0;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
        r->p++;
        return 0;
    }
    if (b >= 0xa0 && b <= 0xbf)
        n = b - 0xa0;
    else if (b >= 0x90 && b <= 0x9f)
        items = b - 0x90;
    else if (b >= 0x80 && b <= 0x8f)
        items = 2 * (uint64_t)(b - 0x80);
    else {
        switch (b) {
        case 0xcc: case 0xd0: n = 1; break;
        case 0xcd: case 0xd1: n = 2; break;
        case 0xce: case 0xd2: case 0xca: n = 4; break;
        case 0xcf: case 0xd3: case 0xcb: n = 8; break;
        case 0xd9: case 0xc4: w = 1; break;
        case 0xda: case 0xc5: w = 2; break;
        case 0xdb: case 0xc6: w = 4; break;
        case 0xd4: n = 2; break; /* fixext: type byte, data */
        case 0xd5: n = 3; break;
        case 0xd6: n = 5; break;
        case 0xd7: n = 9; break;
        case 0xd8: n = 17; break;
        case 0xc7: case 0xc8: case 0xc9: /* ext 8/16/32: length, type byte, data */
            w = 1 << (b - 0xc7);
            NEED(r, 1 + w);
            n = be(r->p + 1, w) + 1;
            r->p += 1 + w;
            NEED(r, n);
            r->p += n;
            return 0;
        case 0xdc: case 0xdd: case 0xde: case 0xdf:
            w = (b & 1) ? 4 : 2;
            NEED(r, 1 + w);
            items = be(r->p + 1, w) * (b >= 0xde ? 2 : 1);
            r->p += 1 + w;
            for (uint64_t i = 0; i < items; i++)
                if (skip(r, depth + 1, text) < 0)
                    return -1;
            return 0;
        default:
            return bad("a byte msgpack does not have");
        }
    }
    if (items) {
        r->p++;
        for (uint64_t i = 0; i < items; i++)
            if (skip(r, depth + 1, text) < 0)
                return -1;
        return 0;
    }
    if (w) {
        NEED(r, 1 + w);
        n = be(r->p + 1, w);
        r->p += w;
    }
    NEED(r, 1 + n);
    if (text && ((b >= 0xa0 && b <= 0xbf) || (b >= 0xd9 && b <= 0xdb))
        && !utf8((const char *)r->p + 1, n))
        return bad("a str that is not UTF-8");
    r->p += 1 + n;
    return 0;
}

/* ------------------------------------------------------------------ writing */
typedef struct {
    char *at;
    size_t n, cap;
} Buf;

static int
room(Buf *b, size_t k)
{
    if (b->n + k <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + k)
        cap *= 2;
    char *p = realloc(b->at, cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->at = p;
    b->cap = cap;
    return 0;
}

static void
put_be(Buf *b, uint8_t head, uint64_t v, int w)
{
    b->at[b->n++] = (char)head;
    for (int i = w - 1; i >= 0; i--)
        b->at[b->n++] = (char)(v >> (8 * i));
}

static int
w_len(Buf *b, size_t n, uint8_t fix, size_t fix_most, uint8_t b16, uint8_t b32)
{
    if (room(b, 5) < 0)
        return -1;
    if (n <= fix_most)
        b->at[b->n++] = (char)(fix + n);
    else if (n <= 0xffff)
        put_be(b, b16, n, 2);
    else
        put_be(b, b32, n, 4);
    return 0;
}

#define w_array(b, n) w_len(b, n, 0x90, 15, 0xdc, 0xdd)
#define w_map(b, n) w_len(b, n, 0x80, 15, 0xde, 0xdf)

static int
w_raw(Buf *b, const void *s, size_t n)
{
    if (room(b, n) < 0)
        return -1;
    memcpy(b->at + b->n, s, n);
    b->n += n;
    return 0;
}

static int
w_cstr(Buf *b, const char *s, size_t n)
{
    if (room(b, 5 + n) < 0)
        return -1;
    if (n < 32)
        b->at[b->n++] = (char)(0xa0 + n);
    else if (n <= 0xff)
        put_be(b, 0xd9, n, 1);
    else if (n <= 0xffff)
        put_be(b, 0xda, n, 2);
    else
        put_be(b, 0xdb, n, 4);
    memcpy(b->at + b->n, s, n);
    b->n += n;
    return 0;
}

static int
w_str(Buf *b, const Str *s) /* NULL: nil */
{
    if (s == NULL)
        return w_raw(b, "\xc0", 1);
    return w_cstr(b, s->data, s->len);
}

/* An int in its shortest form, as msgspec writes it. */
static int
w_int(Buf *b, int64_t v)
{
    if (room(b, 9) < 0)
        return -1;
    if (v >= 0) {
        if (v <= 0x7f)
            b->at[b->n++] = (char)v;
        else if (v <= 0xff)
            put_be(b, 0xcc, (uint64_t)v, 1);
        else if (v <= 0xffff)
            put_be(b, 0xcd, (uint64_t)v, 2);
        else if (v <= 0xffffffffLL)
            put_be(b, 0xce, (uint64_t)v, 4);
        else
            put_be(b, 0xcf, (uint64_t)v, 8);
    }
    else if (v >= -32)
        b->at[b->n++] = (char)(uint8_t)v;
    else if (v >= INT8_MIN)
        put_be(b, 0xd0, (uint64_t)v & 0xff, 1);
    else if (v >= INT16_MIN)
        put_be(b, 0xd1, (uint64_t)v & 0xffff, 2);
    else if (v >= INT32_MIN)
        put_be(b, 0xd2, (uint64_t)v & 0xffffffff, 4);
    else
        put_be(b, 0xd3, (uint64_t)v, 8);
    return 0;
}

static int
w_float(Buf *b, double v)
{
    if (room(b, 9) < 0)
        return -1;
    uint64_t u;
    memcpy(&u, &v, 8);
    put_be(b, 0xcb, u, 8);
    return 0;
}

static int
w_opt_float(Buf *b, int has, double v)
{
    return has ? w_float(b, v) : w_raw(b, "\xc0", 1);
}

static int
w_bool(Buf *b, int v)
{
    return w_raw(b, v ? "\xc3" : "\xc2", 1);
}

/* An Observation, array-like: case_id, workflow_id, task, item, enabled_at, started_at,
 * closed_at, outcome, by, result, role, held_until, source. */
static int
w_item(Buf *b, const Item *o)
{
    static const char *outcomes[] = {NULL, "completed", "cancelled"};
    if (w_array(b, 13) < 0 || w_str(b, o->case_id) < 0 || w_str(b, o->workflow) < 0
        || w_str(b, o->task) < 0 || w_int(b, o->item) < 0 || w_float(b, o->enabled_at) < 0
        || w_opt_float(b, o->has_started, o->started_at) < 0
        || w_opt_float(b, o->outcome != OUT_NONE, o->closed_at) < 0)
        return -1;
    if (o->outcome == OUT_NONE ? w_raw(b, "\xc0", 1) < 0
                               : w_cstr(b, outcomes[o->outcome], 9) < 0)
        return -1;
    if (w_str(b, o->by) < 0
        || (o->result == NULL ? w_raw(b, "\xc0", 1) : w_cstr(b, o->result, o->result_n)) < 0)
        return -1;
    return (w_raw(b, "\xc0", 1) < 0 || w_opt_float(b, o->has_held, o->held_until) < 0 || w_cstr(b, "log", 3) < 0)
               ? -1 : 0;
}

#define W_KEY(b, k) w_cstr(b, k, sizeof(k) - 1)

/* A Breach, as a map (it is not array-like). */
static int
w_breach(Buf *b, const Breach *x)
{
    return (w_map(b, 8) < 0 || W_KEY(b, "case_id") < 0 || w_str(b, x->case_id) < 0
            || W_KEY(b, "workflow_id") < 0 || w_str(b, x->workflow) < 0
            || W_KEY(b, "item") < 0 || w_int(b, x->item) < 0
            || W_KEY(b, "task") < 0 || w_str(b, x->task) < 0
            || W_KEY(b, "at") < 0 || w_float(b, x->at) < 0
            || W_KEY(b, "target") < 0 || w_float(b, x->target) < 0
            || W_KEY(b, "alert") < 0 || w_float(b, x->alert) < 0
            || W_KEY(b, "resolved_at") < 0
            || w_opt_float(b, x->resolved, x->resolved_at) < 0) ? -1 : 0;
}

/* ------------------------------------------------------------------ the fold */
enum {
    K_OTHER = 1, /* an event the fold does not read */
    K_ENABLED, K_COMPLETED, K_CANCELLED, K_STARTED, K_HELD, K_FIRED, K_CREATED,
    K_HANDED_ON, K_BREACHED, K_RESOLVED,
};

static const struct {
    const char *tag;
    int kind;
} FOLDED[] = {
    {"WorkItemEnabled", K_ENABLED}, {"WorkItemCompleted", K_COMPLETED},
    {"WorkItemCancelled", K_CANCELLED}, {"WorkItemStarted", K_STARTED},
    {"WorkItemHeld", K_HELD}, {"TaskFired", K_FIRED}, {"CaseCreated", K_CREATED},
    {"CaseHandedOn", K_HANDED_ON}, {"SlaBreached", K_BREACHED}, {"SlaResolved", K_RESOLVED},
};


static void
breach_decref(Breach *b)
{
    if (--b->refs == 0)
        free(b);
}

static void
attrs_clear(Attrs *a)
{
    for (int i = 0; i < N_ATTRS; i++)
        free(a->val[i]);
    free(a);
}

/* Field names, by length and bytes. */
#define IS(k, kn, lit) ((kn) == sizeof(lit) - 1 && memcmp(k, lit, sizeof(lit) - 1) == 0)

enum { F_ITEM = 1, F_AT = 2, F_TASK = 4, F_UNTIL = 8, F_WORKFLOW = 16, F_DATA = 32,
       F_TARGET = 64, F_ALERT = 128 };

/* One event, read: the fields its sighting declares (strings and the kept attributes'
 * values point into the batch's bytes). */
typedef struct {
    Str *case_id;
    int kind;
    int64_t item, parent;
    double at, until, target, alert;
    const char *task, *workflow, *by, *result;
    uint32_t task_n, workflow_n, by_n, result_n;
    int has_by, has_result;
    int kept; /* a data / output / defaults map with an attribute the fold keeps */
    const uint8_t *val[N_ATTRS]; /* each kept attribute's value (NULL: not in the map) */
    size_t len[N_ATTRS];
    unsigned seen;
} Ev;

typedef struct {
    int64_t pos;
    size_t end; /* its events are evs[previous end:end] */
} Append;

typedef struct {
    PyObject_HEAD
    Interns strs;
    Map open;        /* -> Item* */
    Map open_breach; /* -> Breach* */
    VEC(Item *) closed;
    VEC(Breach *) breaches;
    VEC(Breach *) resolutions;
    VEC(Fired) fired;
    VEC(Str *) attr_cases; /* case ids with attributes kept since, in first-kept order */
    VEC(Ev) evs;           /* the batch being folded, read (see rd_batch) */
    VEC(Append) appends;
    uint64_t touch_seq;
    int64_t pos, handed_at;
    int fresh;
    Str *empty;
} TailFold;

/* An optional str field: a str or nil. */
static int
rd_opt_text(Rd *r, const char **s, uint32_t *n, int *has)
{
    *has = 0; /* (a field given twice: the last one counts, as in msgspec) */
    if (is_nil(r))
        return 0;
    *has = 1;
    return rd_text(r, s, n);
}

/* A Kept field: a map or, where `optional`, nil -- what `Kept` takes of it: the
 * attributes' values (any msgpack; their strings must be UTF-8, as msgspec decodes
 * them), the rest skipped. A map with none of them keeps nothing. */
static int
rd_kept(Rd *r, Ev *e, int optional)
{
    memset(e->val, 0, sizeof(e->val));
    e->kept = 0;
    if (optional && is_nil(r))
        return 0;
    uint32_t n;
    if (r->p >= r->end || !((*r->p >= 0x80 && *r->p <= 0x8f) || *r->p == 0xde
                            || *r->p == 0xdf))
        return bad(optional ? "expected a map or nil" : "expected a map");
    if (rd_map(r, &n) < 0)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kn;
        if (rd_text(r, &k, &kn) < 0)
            return -1;
        int a = -1;
        for (int j = 0; j < N_ATTRS; j++)
            if (strlen(ATTR_NAMES[j]) == kn && memcmp(ATTR_NAMES[j], k, kn) == 0) {
                a = j;
                break;
            }
        const uint8_t *v = r->p;
        if (skip(r, 0, a >= 0) < 0)
            return -1;
        if (a >= 0) {
            e->val[a] = v;
            e->len[a] = (size_t)(r->p - v);
            e->kept = 1;
        }
    }
    return 0;
}

/* Read one event's fields as its sighting declares them, `fields` pairs from r (the
 * tag's pair among them, or read already). */
static int
rd_event(Rd *r, uint32_t fields, int kind, Ev *e)
{
    for (uint32_t i = 0; i < fields; i++) {
        const char *k;
        uint32_t kn;
        if (rd_str(r, &k, &kn) < 0)
            return -1;
        int rc = 1; /* 1: not a field of this sighting -- skipped */
        switch (kind) {
        case K_ENABLED:
            if (IS(k, kn, "item")) rc = rd_int(r, &e->item), e->seen |= F_ITEM;
            else if (IS(k, kn, "task")) rc = rd_text(r, &e->task, &e->task_n), e->seen |= F_TASK;
            else if (IS(k, kn, "at")) rc = rd_float(r, &e->at), e->seen |= F_AT;
            else if (IS(k, kn, "parent")) rc = rd_int(r, &e->parent);
            break;
        case K_COMPLETED:
            if (IS(k, kn, "item")) rc = rd_int(r, &e->item), e->seen |= F_ITEM;
            else if (IS(k, kn, "at")) rc = rd_float(r, &e->at), e->seen |= F_AT;
            else if (IS(k, kn, "result"))
                rc = rd_opt_text(r, &e->result, &e->result_n, &e->has_result);
            else if (IS(k, kn, "output")) rc = rd_kept(r, e, 1);
            else if (IS(k, kn, "by")) rc = rd_opt_text(r, &e->by, &e->by_n, &e->has_by);
            break;
        case K_CANCELLED:
        case K_RESOLVED:
            if (IS(k, kn, "item")) rc = rd_int(r, &e->item), e->seen |= F_ITEM;
            else if (IS(k, kn, "at")) rc = rd_float(r, &e->at), e->seen |= F_AT;
            break;
        case K_STARTED:
            if (IS(k, kn, "item")) rc = rd_int(r, &e->item), e->seen |= F_ITEM;
            else if (IS(k, kn, "at")) rc = rd_float(r, &e->at), e->seen |= F_AT;
            else if (IS(k, kn, "by")) rc = rd_opt_text(r, &e->by, &e->by_n, &e->has_by);
            break;
        case K_HELD:
            if (IS(k, kn, "item")) rc = rd_int(r, &e->item), e->seen |= F_ITEM;
            else if (IS(k, kn, "until")) rc = rd_float(r, &e->until), e->seen |= F_UNTIL;
            break;
        case K_FIRED:
            if (IS(k, kn, "task")) rc = rd_text(r, &e->task, &e->task_n), e->seen |= F_TASK;
            break;
        case K_CREATED:
        case K_HANDED_ON:
            if (IS(k, kn, "workflow_id"))
                rc = rd_text(r, &e->workflow, &e->workflow_n), e->seen |= F_WORKFLOW;
            else if (kind == K_CREATED && IS(k, kn, "data"))
                rc = rd_kept(r, e, 0), e->seen |= F_DATA;
            else if (kind == K_HANDED_ON && IS(k, kn, "defaults"))
                rc = rd_kept(r, e, 1);
            break;
        case K_BREACHED:
            if (IS(k, kn, "item")) rc = rd_int(r, &e->item), e->seen |= F_ITEM;
            else if (IS(k, kn, "at")) rc = rd_float(r, &e->at), e->seen |= F_AT;
            else if (IS(k, kn, "task")) rc = rd_text(r, &e->task, &e->task_n), e->seen |= F_TASK;
            else if (IS(k, kn, "target")) rc = rd_float(r, &e->target), e->seen |= F_TARGET;
            else if (IS(k, kn, "alert")) rc = rd_float(r, &e->alert), e->seen |= F_ALERT;
            break;
        }
        if (rc < 0)
            return -1;
        if (rc == 1 && skip(r, 0, 0) < 0)
            return -1;
    }
    static const unsigned required[] = {
        [K_OTHER] = 0, [K_ENABLED] = F_ITEM | F_TASK | F_AT,
        [K_COMPLETED] = F_ITEM | F_AT, [K_CANCELLED] = F_ITEM | F_AT,
        [K_STARTED] = F_ITEM | F_AT, [K_HELD] = F_ITEM | F_UNTIL, [K_FIRED] = F_TASK,
        [K_CREATED] = F_WORKFLOW | F_DATA, [K_HANDED_ON] = F_WORKFLOW,
        [K_BREACHED] = F_ITEM | F_AT | F_TASK | F_TARGET | F_ALERT,
        [K_RESOLVED] = F_ITEM | F_AT,
    };
    if ((e->seen & required[kind]) != required[kind])
        return bad("an event without a field it requires");
    return 0;
}

/* One event's map: its tag (the "type" field: first, as msgspec writes it, or
 * anywhere), then its fields. -> 0, or -1 with an error. */
static int
rd_tagged(TailFold *self, Rd *r, Ev *e)
{
    uint32_t fields;
    const char *k, *tag = NULL;
    uint32_t kn, tn = 0;
    if (rd_map(r, &fields) < 0)
        return -1;
    Rd from = *r; /* the fields, the tag's among them */
    for (uint32_t i = 0; i < fields && tag == NULL; i++) {
        if (rd_str(r, &k, &kn) < 0)
            return -1;
        if (IS(k, kn, "type")) {
            if (rd_text(r, &tag, &tn) < 0)
                return -1;
            if (i == 0) { /* as written: the rest follows */
                from = *r;
                fields--;
            }
        }
        else if (skip(r, 0, 0) < 0)
            return -1;
    }
    if (tag == NULL)
        return bad("an event without its tag, \"type\"");
    Str *t = intern(&self->strs, tag, tn);
    if (t == NULL)
        return -1;
    if (t->kind == 0) {
        PyErr_Format(PyExc_ValueError, "the log's events: an unknown event type, %.100s",
                     t->data);
        return -1;
    }
    e->kind = t->kind;
    *r = from;
    return rd_event(r, fields, t->kind, e);
}

static void
item_free(Item *o)
{
    free(o->result);
    free(o);
}

/* Keep an event's attributes, as `Monitor._remember` of its `Kept`: in ATTRIBUTES'
 * order, each value's msgpack as the log has it. */
static int
remember(TailFold *self, Str *case_id, const Ev *e)
{
    Attrs *kept = case_id->attrs;
    if (kept == NULL) {
        if ((kept = calloc(1, sizeof(Attrs))) == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        if (PUSH(self->attr_cases, case_id) < 0) {
            free(kept);
            return -1;
        }
        case_id->attrs = kept;
    }
    for (int a = 0; a < N_ATTRS; a++) {
        if (e->val[a] == NULL)
            continue;
        char *copy = malloc(e->len[a]);
        if (copy == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy(copy, e->val[a], e->len[a]);
        if (kept->val[a] == NULL)
            kept->order[kept->n++] = (uint8_t)a;
        free(kept->val[a]);
        kept->val[a] = copy;
        kept->len[a] = e->len[a];
    }
    return 0;
}

static Str *
workflow_of(TailFold *self, Str *case_id)
{
    return case_id->workflow ? case_id->workflow : self->empty;
}

static void
touch(TailFold *self, Item *o)
{
    if (o->touched == 0)
        o->touched = ++self->touch_seq;
}

#define INTERN(s, n) intern(&self->strs, (s), (n))

/* Fold one event: Monitor._fold's rules for its kind. It fails only for want of
 * memory. */
static int
fold_event(TailFold *self, Ev *e)
{
    Str *case_id = e->case_id;
    Item *o;
    switch (e->kind) {
    case K_COMPLETED:
        if (map_get(&self->open, case_id, e->item) != NULL) {
            Str *by = NULL;
            char *result = NULL;
            if (e->has_by && e->by_n && (by = INTERN(e->by, e->by_n)) == NULL)
                return -1;
            /* (not interned: a result may be free text, forgotten once handed over) */
            if (e->has_result) {
                if ((result = malloc(e->result_n + 1)) == NULL) {
                    PyErr_NoMemory();
                    return -1;
                }
                memcpy(result, e->result, e->result_n);
            }
            if (self->closed.n == self->closed.cap
                && vec_grow((void **)&self->closed.at, &self->closed.cap,
                            sizeof(Item *)) < 0) {
                free(result);
                return -1;
            }
            o = map_pop(&self->open, case_id, e->item);
            o->closed_at = e->at;
            o->outcome = OUT_COMPLETED;
            o->result = result;
            o->result_n = e->result_n;
            if (by != NULL) /* `e.by or o.by`: None and "" keep who had it */
                o->by = by;
            o->touched = 0;
            self->closed.at[self->closed.n++] = o;
        }
        return e->kept ? remember(self, case_id, e) : 0;
    case K_ENABLED: {
        if (e->parent >= 0) /* an instance of a multiple-instance task: its parent is */
            return 0;
        Str *task = INTERN(e->task, e->task_n);
        if (task == NULL)
            return -1;
        o = map_get(&self->open, case_id, e->item);
        uint64_t touched = 0;
        if (o == NULL) {
            if ((o = malloc(sizeof(Item))) == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            if (map_add(&self->open, case_id, e->item, o) < 0) {
                free(o);
                return -1;
            }
        }
        else /* enabled again while open: a new observation where the key was */
            touched = o->touched;
        *o = (Item){.case_id = case_id, .workflow = workflow_of(self, case_id),
                    .task = task, .item = e->item, .enabled_at = e->at, .touched = touched};
        touch(self, o);
        return 0;
    }
    case K_CREATED:
    case K_HANDED_ON: {
        Str *wf = INTERN(e->workflow, e->workflow_n);
        if (wf == NULL)
            return -1;
        case_id->workflow = wf;
        return e->kept ? remember(self, case_id, e) : 0;
    }
    case K_FIRED: {
        Str *task = INTERN(e->task, e->task_n), *wf = workflow_of(self, case_id);
        if (task == NULL)
            return -1;
        for (size_t i = 0; i < self->fired.n; i++)
            if (self->fired.at[i].workflow == wf && self->fired.at[i].task == task) {
                self->fired.at[i].n++;
                return 0;
            }
        return PUSH(self->fired, ((Fired){wf, task, 1}));
    }
    case K_STARTED:
        if ((o = map_get(&self->open, case_id, e->item)) != NULL) {
            Str *by = NULL;
            if (e->has_by && (by = INTERN(e->by, e->by_n)) == NULL)
                return -1;
            o->started_at = e->at;
            o->has_started = 1;
            o->by = by;
            touch(self, o);
        }
        return 0;
    case K_HELD:
        if ((o = map_get(&self->open, case_id, e->item)) != NULL) {
            o->held_until = e->until;
            o->has_held = 1;
            touch(self, o);
        }
        return 0;
    case K_CANCELLED:
        if (map_get(&self->open, case_id, e->item) != NULL) {
            if (self->closed.n == self->closed.cap
                && vec_grow((void **)&self->closed.at, &self->closed.cap,
                            sizeof(Item *)) < 0)
                return -1;
            o = map_pop(&self->open, case_id, e->item);
            o->closed_at = e->at;
            o->outcome = OUT_CANCELLED;
            o->touched = 0;
            self->closed.at[self->closed.n++] = o;
        }
        return 0;
    case K_BREACHED: {
        Str *task = INTERN(e->task, e->task_n);
        if (task == NULL)
            return -1;
        Breach *b = calloc(1, sizeof(Breach));
        if (b == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        *b = (Breach){.case_id = case_id, .workflow = workflow_of(self, case_id),
                      .task = task, .item = e->item, .at = e->at, .target = e->target,
                      .alert = e->alert, .pending = 1, .refs = 1};
        if (PUSH(self->breaches, b) < 0) {
            free(b);
            return -1;
        }
        Slot *s = map_find(&self->open_breach, case_id, e->item);
        b->refs++;
        if (s != NULL) { /* raised again while open: this one is the open one now */
            breach_decref(s->val);
            s->val = b;
            return 0;
        }
        if (map_add(&self->open_breach, case_id, e->item, b) < 0) {
            b->refs--;
            return -1;
        }
        return 0;
    }
    case K_RESOLVED: {
        Breach *b = map_get(&self->open_breach, case_id, e->item);
        if (b != NULL) {
            if (PUSH(self->resolutions, b) < 0)
                return -1;
            map_pop(&self->open_breach, case_id, e->item); /* (its reference, moved) */
            b->resolved_at = e->at;
            b->resolved = 1;
        }
        return 0;
    }
    }
    return 0;
}

/* Read a batch whole into self->evs and self->appends: nothing is folded from a batch
 * with an error in it, as Monitor.fold_encoded decodes all of it first. */
static int
rd_batch(TailFold *self, PyObject *positions, PyObject *case_ids, Rd *r)
{
    Py_ssize_t n = PyList_GET_SIZE(positions);
    uint32_t appends;
    self->evs.n = self->appends.n = 0;
    if (PyList_GET_SIZE(case_ids) != n) {
        PyErr_SetString(PyExc_ValueError, "as many case ids as positions, please");
        return -1;
    }
    if (rd_array(r, &appends) < 0)
        return -1;
    if ((Py_ssize_t)appends != n)
        return bad("as many appends as positions, please");
    for (Py_ssize_t a = 0; a < n; a++) {
        PyObject *p = PyList_GET_ITEM(positions, a), *c = PyList_GET_ITEM(case_ids, a);
        if (!PyLong_CheckExact(p) || !PyUnicode_CheckExact(c)) {
            PyErr_SetString(PyExc_TypeError, "positions are ints, case ids strs");
            return -1;
        }
        int64_t pos = PyLong_AsLongLong(p);
        if (pos == -1 && PyErr_Occurred())
            return -1;
        Py_ssize_t cn;
        const char *cs = PyUnicode_AsUTF8AndSize(c, &cn);
        if (cs == NULL)
            return -1;
        Str *case_id = INTERN(cs, (size_t)cn);
        uint32_t count;
        if (case_id == NULL || rd_array(r, &count) < 0)
            return -1;
        for (uint32_t i = 0; i < count; i++) {
            Ev e = {.case_id = case_id, .parent = -1};
            if (rd_tagged(self, r, &e) < 0)
                return -1;
            if (e.kind != K_OTHER && PUSH(self->evs, e) < 0)
                return -1;
        }
        if (PUSH(self->appends, ((Append){pos, self->evs.n})) < 0)
            return -1;
    }
    if (r->p != r->end)
        return bad("bytes after the last append");
    return 0;
}

/* fold(positions, case_ids, events) -> appends folded: as Monitor.fold_encoded. */
static PyObject *
TailFold_fold(TailFold *self, PyObject *args)
{
    PyObject *positions, *case_ids;
    Py_buffer events;
    if (!PyArg_ParseTuple(args, "O!O!y*", &PyList_Type, &positions, &PyList_Type,
                          &case_ids, &events))
        return NULL;
    Rd r = {events.buf, (const uint8_t *)events.buf + events.len};
    int rc = rd_batch(self, positions, case_ids, &r);
    /* Folded append by append: `pos` is the last one folded whole, should memory run
     * out part way (Monitor._fold's rule). */
    for (size_t a = 0, k = 0; rc == 0 && a < self->appends.n; a++) {
        for (; rc == 0 && k < self->appends.at[a].end; k++)
            rc = fold_event(self, &self->evs.at[k]);
        if (rc == 0)
            self->pos = self->appends.at[a].pos;
    }
    PyBuffer_Release(&events);
    return rc < 0 ? NULL : PyLong_FromSize_t(self->appends.n);
}

static int
by_touch(const void *a, const void *b)
{
    uint64_t x = (*(Item *const *)a)->touched, y = (*(Item *const *)b)->touched;
    return x < y ? -1 : x > y;
}

/* The answer's frame body, as msgspec encodes Changes (array-like): pos, closed, more,
 * opened, breaches, resolved, fired, attributes, appends, fresh. */
static int
w_changes(TailFold *self, Buf *b, size_t limit, int behind, int *parts_left)
{
    int first = self->fresh;
    self->fresh = 0;
    size_t n_closed = self->closed.n;
    if (n_closed > limit) { /* a part: closed items only */
        if (w_array(b, 10) < 0 || w_int(b, self->handed_at) < 0 || w_array(b, limit) < 0)
            return -1;
        for (size_t i = 0; i < limit; i++)
            if (w_item(b, self->closed.at[i]) < 0)
                return -1;
        if (w_bool(b, 1) < 0 || w_raw(b, "\x90\x90\x90\x90\x80\x00", 6) < 0
            || w_bool(b, first) < 0)
            return -1;
        for (size_t i = 0; i < limit; i++)
            item_free(self->closed.at[i]);
        memmove(self->closed.at, self->closed.at + limit,
                (n_closed - limit) * sizeof(Item *));
        self->closed.n -= limit;
        *parts_left = 1;
        return 0;
    }
    *parts_left = 0;
    if (w_array(b, 10) < 0 || w_int(b, self->pos) < 0 || w_array(b, n_closed) < 0)
        return -1;
    for (size_t i = 0; i < n_closed; i++)
        if (w_item(b, self->closed.at[i]) < 0)
            return -1;
    if (w_bool(b, behind) < 0)
        return -1;
    /* opened: the open items touched since, in the order first touched */
    VEC(Item *) touched = {0};
    for (size_t i = 0; i < self->open.cap; i++) {
        Slot *s = &self->open.slots[i];
        if (s->case_id != NULL && s->case_id != &TOMB && ((Item *)s->val)->touched
            && PUSH(touched, (Item *)s->val) < 0) {
            free(touched.at);
            return -1;
        }
    }
    if (touched.n)
        qsort(touched.at, touched.n, sizeof(Item *), by_touch);
    int rc = w_array(b, touched.n);
    for (size_t i = 0; rc == 0 && i < touched.n; i++) {
        rc = w_item(b, touched.at[i]);
        touched.at[i]->touched = 0;
    }
    free(touched.at);
    if (rc < 0 || w_array(b, self->breaches.n) < 0)
        return -1;
    for (size_t i = 0; i < self->breaches.n; i++)
        if (w_breach(b, self->breaches.at[i]) < 0)
            return -1;
    /* resolved: of breaches handed over before (one raised since went with its own) */
    size_t n_resolved = 0;
    for (size_t i = 0; i < self->resolutions.n; i++)
        n_resolved += !self->resolutions.at[i]->pending;
    if (w_array(b, n_resolved) < 0)
        return -1;
    for (size_t i = 0; i < self->resolutions.n; i++) {
        Breach *x = self->resolutions.at[i];
        if (!x->pending && (w_array(b, 4) < 0 || w_str(b, x->case_id) < 0
                            || w_int(b, x->item) < 0 || w_float(b, x->at) < 0
                            || w_float(b, x->resolved_at) < 0))
            return -1;
    }
    if (w_array(b, self->fired.n) < 0)
        return -1;
    for (size_t i = 0; i < self->fired.n; i++) {
        Fired *f = &self->fired.at[i];
        if (w_array(b, 3) < 0 || w_str(b, f->workflow) < 0 || w_str(b, f->task) < 0
            || w_int(b, f->n) < 0)
            return -1;
    }
    if (w_map(b, self->attr_cases.n) < 0)
        return -1;
    for (size_t i = 0; i < self->attr_cases.n; i++) {
        Attrs *a = self->attr_cases.at[i]->attrs;
        if (w_str(b, self->attr_cases.at[i]) < 0 || w_map(b, a->n) < 0)
            return -1;
        for (int j = 0; j < a->n; j++) {
            int k = a->order[j];
            if (w_cstr(b, ATTR_NAMES[k], strlen(ATTR_NAMES[k])) < 0
                || w_raw(b, a->val[k], a->len[k]) < 0)
                return -1;
        }
    }
    if (w_int(b, self->pos - self->handed_at) < 0 || w_bool(b, first) < 0)
        return -1;
    /* Handed over: forgotten here, but for the open items and the open breaches. */
    for (size_t i = 0; i < n_closed; i++)
        item_free(self->closed.at[i]);
    self->closed.n = 0;
    for (size_t i = 0; i < self->breaches.n; i++) {
        self->breaches.at[i]->pending = 0;
        breach_decref(self->breaches.at[i]);
    }
    self->breaches.n = 0;
    for (size_t i = 0; i < self->resolutions.n; i++)
        breach_decref(self->resolutions.at[i]);
    self->resolutions.n = 0;
    self->fired.n = 0;
    for (size_t i = 0; i < self->attr_cases.n; i++) {
        attrs_clear(self->attr_cases.at[i]->attrs);
        self->attr_cases.at[i]->attrs = NULL;
    }
    self->attr_cases.n = 0;
    self->touch_seq = 0;
    self->handed_at = self->pos;
    return 0;
}

/* hand_over(limit, behind) -> (the msgpack of Changes, whether parts are left):
 * Monitor.hand_over(limit), with `more` = parts left or `behind`. */
static PyObject *
TailFold_hand_over(TailFold *self, PyObject *args)
{
    Py_ssize_t limit;
    int behind, parts_left = 0;
    if (!PyArg_ParseTuple(args, "np", &limit, &behind))
        return NULL;
    if (limit < 1) {
        PyErr_SetString(PyExc_ValueError, "a part holds one closed item at least");
        return NULL;
    }
    Buf b = {0};
    if (w_changes(self, &b, (size_t)limit, behind, &parts_left) < 0) {
        free(b.at);
        return NULL;
    }
    PyObject *body = PyBytes_FromStringAndSize(b.at, (Py_ssize_t)b.n);
    free(b.at);
    if (body == NULL)
        return NULL;
    return Py_BuildValue("(NO)", body, parts_left ? Py_True : Py_False);
}

static PyObject *
TailFold_get_pos(TailFold *self, void *closure)
{
    return PyLong_FromLongLong(self->pos);
}

static PyObject *
TailFold_get_open(TailFold *self, void *closure)
{
    return PyLong_FromSize_t(self->open.live);
}

static int
TailFold_init(TailFold *self, PyObject *args, PyObject *kwds)
{
    PyObject *tags;
    static char *kwlist[] = {"tags", NULL};
    if (self->strs.cap) {
        PyErr_SetString(PyExc_RuntimeError, "a TailFold is initialised once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!", kwlist, &PyTuple_Type, &tags))
        return -1;
    self->fresh = 1;
    if ((self->empty = intern(&self->strs, "", 0)) == NULL)
        return -1;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(tags); i++) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(tags, i), &n);
        Str *t;
        if (s == NULL || (t = intern(&self->strs, s, (size_t)n)) == NULL)
            return -1;
        t->kind = K_OTHER;
        for (size_t j = 0; j < sizeof(FOLDED) / sizeof(FOLDED[0]); j++)
            if (strcmp(FOLDED[j].tag, s) == 0)
                t->kind = FOLDED[j].kind;
    }
    return 0;
}

static void
TailFold_dealloc(TailFold *self)
{
    for (size_t i = 0; i < self->open.cap; i++) {
        Slot *s = &self->open.slots[i];
        if (s->case_id != NULL && s->case_id != &TOMB)
            item_free(s->val);
    }
    for (size_t i = 0; i < self->open_breach.cap; i++) {
        Slot *s = &self->open_breach.slots[i];
        if (s->case_id != NULL && s->case_id != &TOMB)
            breach_decref(s->val);
    }
    free(self->open.slots);
    free(self->open_breach.slots);
    for (size_t i = 0; i < self->closed.n; i++)
        item_free(self->closed.at[i]);
    for (size_t i = 0; i < self->breaches.n; i++)
        breach_decref(self->breaches.at[i]);
    for (size_t i = 0; i < self->resolutions.n; i++)
        breach_decref(self->resolutions.at[i]);
    free(self->closed.at);
    free(self->breaches.at);
    free(self->resolutions.at);
    free(self->fired.at);
    free(self->attr_cases.at);
    free(self->evs.at);
    free(self->appends.at);
    for (size_t i = 0; i < self->strs.cap; i++) {
        Str *s = self->strs.slots[i];
        if (s != NULL) {
            if (s->attrs)
                attrs_clear(s->attrs);
            free(s);
        }
    }
    free(self->strs.slots);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef TailFold_methods[] = {
    {"fold", (PyCFunction)TailFold_fold, METH_VARARGS,
     "fold(positions, case_ids, events) -> appends folded (Monitor.fold_encoded)"},
    {"hand_over", (PyCFunction)TailFold_hand_over, METH_VARARGS,
     "hand_over(limit, behind) -> (msgpack of Changes, parts left) (Monitor.hand_over)"},
    {NULL},
};

static PyGetSetDef TailFold_getset[] = {
    {"pos", (getter)TailFold_get_pos, NULL, "the last append folded", NULL},
    {"open", (getter)TailFold_get_open, NULL, "how many items are open", NULL},
    {NULL},
};

static PyTypeObject TailFoldType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mapek._tailfold.TailFold",
    .tp_basicsize = sizeof(TailFold),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A Monitor's fold for a tail process, over the log's bytes (see the module).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)TailFold_init,
    .tp_dealloc = (destructor)TailFold_dealloc,
    .tp_methods = TailFold_methods,
    .tp_getset = TailFold_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "mapek._tailfold",
    "The tail's fold over the log's bytes (see TailFold).", -1, NULL,
};

PyMODINIT_FUNC
PyInit__tailfold(void)
{
    if (PyType_Ready(&TailFoldType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&TailFoldType);
    if (PyModule_AddObject(m, "TailFold", (PyObject *)&TailFoldType) < 0) {
        Py_DECREF(&TailFoldType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
