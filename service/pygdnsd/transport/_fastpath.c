/*
 * pygdnsd's compiled UDP fast path: it only moves bytes (issue 16).
 *
 * What goes into an answer is decided in Python (engine/, zones/, plugins/):
 * this module never decides anything. It reads datagrams in batches
 * (recvmmsg), extracts a query's question key, looks the key up in the
 * engine's own cache of prepared answers (``AnswerCache.by_question``, filled
 * by Python), assembles the response from the prepared bytes (header, echoed
 * question, prebuilt tail in its rotation, our prebuilt OPT) and sends the
 * batch's answers together (sendmmsg), counting as the engine counts. Any
 * query it does not recognise, and any question not cached yet, goes to the
 * Python responder unchanged. Both paths give the same bytes: each function
 * below names the Python it mirrors, and the tests compare them byte for byte.
 *
 * The serving loop (``Batch.serve``) holds the GIL except around poll and
 * recvmmsg, where other threads run: Python's ``_serve_batches`` let them in
 * between batches likewise. Socket calls never block but poll
 * (MSG_DONTWAIT).
 *
 * Every offset into a query is checked against its length before it is read,
 * and every write against the room left in the send area.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

/* Response codes we count by name (``responder._RCODE_NAMES``); prepared answers use 0-15. */
#define RCODES 16
#define TC 0x02
#define PLAIN_LIMIT 512
/* Counters kept in C during a batch and added to the Python dicts at its end. */
typedef struct {
    long long v6, edns, edns_do, tc, edns_tc, edns_big;
    long long rcode[RCODES];
} Counts;

/* ------------------------------------------------------------------------ */
/* Remembered: copies of prepared answers, laid out for the fast path        */
/* ------------------------------------------------------------------------ */

/*
 * A prepared answer found in ``by_question`` is a chain of Python objects (dict
 * entry, key, tuple, tail bytes), each likely out of the CPU cache by the time
 * the next query comes, after the kernel's work: following them cost about as
 * much as the rest of the user-space work per query (perf, hot set). So the
 * fast path copies each non-rotated prepared answer it uses, key and fields and
 * tail side by side, into one arena, found through one open-addressing table.
 * The table belongs to one ``AnswerCache`` (its ``compiled`` slot), so a
 * reload starts an empty one; when full it is emptied, as the Python caches are.
 * Probing stops after MAX_PROBES slots whatever the keys (a flood of colliding
 * names only sends queries to the dict lookup), and keys are hashed with a
 * per-process random seed. The table plays the part that the remembered
 * whole responses play on the pure-Python path (``AnswerCache.remember``,
 * ``answers_v4``/``answers_v6``, looked up first in ``Responder.respond``).
 */
#define TABLE_SLOTS (1 << 18) /* a power of two */
#define TABLE_MAX (TABLE_SLOTS / 2) /* half full: 8 probes find a free slot for nearly every key */
#define ARENA_BYTES (24 << 20)
#define MAX_PROBES 8
#define HUGE_PAGE (2 << 20)
#define MAX_ENTRY 2048 /* bigger answers are rare: read from the Python tuple each time */

typedef struct {
    uint32_t tail_len;
    uint16_t key_len, an, ns, ar;
    uint8_t flags, rcode;
    uint8_t bytes[]; /* the key, then the tail */
} Entry;

/* The hash beside the pointer: probing past other keys reads no entry. */
typedef struct {
    uint64_t hash;
    Entry *entry;
} Slot;

typedef struct {
    PyObject_HEAD
    Slot *slots;     /* TABLE_SLOTS, allocated at the first copy */
    uint8_t *arena;  /* ARENA_BYTES */
    size_t used, count;
} Remembered;

static uint64_t hash_seed;

static void
Remembered_dealloc(Remembered *self)
{
    free(self->slots);
    free(self->arena);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/*
 * (C only: memory for the table.) ``size`` bytes on 2 MB pages where the kernel allows (transparent huge pages):
 * a lookup touches one random slot and one random entry, and with 4 kB pages
 * each was also a TLB miss (perf, the mixed query file).
 */
static void *
huge_alloc(size_t size)
{
    void *memory = NULL;
    if (posix_memalign(&memory, HUGE_PAGE, size) != 0)
        return NULL;
    (void)madvise(memory, size, MADV_HUGEPAGE); /* only a hint: fine if refused */
    return memory;
}

static Py_ssize_t
Remembered_len(Remembered *self)
{
    return (Py_ssize_t)self->count;
}

static PySequenceMethods Remembered_as_sequence = {.sq_length = (lenfunc)Remembered_len};

static PyTypeObject RememberedType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pygdnsd.transport._fastpath.Remembered",
    .tp_basicsize = sizeof(Remembered),
    .tp_dealloc = (destructor)Remembered_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Prepared answers copied for the fast path; one per AnswerCache (len: how many).",
    .tp_as_sequence = &Remembered_as_sequence,
    .tp_new = PyType_GenericNew,
};

/* Mirrors ``hash(key)`` of the caches' keys, for C's table: the key bytes are no Python object here. */
static uint64_t
key_hash(const uint8_t *key, size_t len)
{
    uint64_t h = hash_seed ^ (len * 0x9E3779B97F4A7C15ull);
    uint64_t word;
    for (; len >= 8; key += 8, len -= 8) {
        memcpy(&word, key, 8);
        h = (h ^ word) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 32;
    }
    word = 0;
    memcpy(&word, key, len);
    h = (h ^ word) * 0xBF58476D1CE4E5B9ull;
    /* MurmurHash3's finaliser: every bit of h reaches every bit of the slot number. */
    h ^= h >> 33;
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 33;
    h *= 0xC4CEB9FE1A85EC53ull;
    return h ^ (h >> 33);
}

/* Mirrors the lookup ``answers_v4[...].get(key)`` of ``Responder.respond``: the copy for ``key``, or NULL. */
static const Entry *
find_remembered(const Remembered *table, const uint8_t *key, size_t key_len, uint64_t hash)
{
    if (table->slots == NULL)
        return NULL;
    for (size_t probe = 0; probe < MAX_PROBES; probe++) {
        const Slot *slot = &table->slots[(hash + probe) & (TABLE_SLOTS - 1)];
        if (slot->entry == NULL)
            return NULL;
        if (slot->hash == hash && slot->entry->key_len == key_len &&
            memcmp(slot->entry->bytes, key, key_len) == 0)
            return slot->entry;
    }
    return NULL;
}

/* What a response is assembled from: one rotation of a prepared answer (``prepared.Prepared``). */
typedef struct {
    long flags, rcode, an, ns, ar;
    const uint8_t *tail;
    Py_ssize_t tail_len;
} Answer;

/*
 * Mirrors ``AnswerCache.remember`` (and ``answer_cache.store``): copies ``answer``
 * under ``key``, emptying the table first if it is full; quietly not, if it cannot.
 */
static void
remember(Remembered *table, const uint8_t *key, size_t key_len, uint64_t hash, const Answer *answer)
{
    size_t size = (sizeof(Entry) + key_len + (size_t)answer->tail_len + 7) & ~(size_t)7;
    if (size > MAX_ENTRY)
        return;
    if (table->slots == NULL) {
        table->slots = huge_alloc(TABLE_SLOTS * sizeof(Slot));
        table->arena = huge_alloc(ARENA_BYTES);
        if (table->slots != NULL)
            memset(table->slots, 0, TABLE_SLOTS * sizeof(Slot));
        if (table->slots == NULL || table->arena == NULL) {
            free(table->slots);
            free(table->arena);
            table->slots = NULL;
            table->arena = NULL;
            return;
        }
    }
    if (table->count >= TABLE_MAX || table->used + size > ARENA_BYTES) {
        memset(table->slots, 0, TABLE_SLOTS * sizeof(Slot));
        table->used = table->count = 0;
    }
    for (size_t probe = 0; probe < MAX_PROBES; probe++) {
        Slot *slot = &table->slots[(hash + probe) & (TABLE_SLOTS - 1)];
        if (slot->entry != NULL)
            continue;
        Entry *entry = (Entry *)(table->arena + table->used);
        entry->tail_len = (uint32_t)answer->tail_len;
        entry->key_len = (uint16_t)key_len;
        entry->an = (uint16_t)answer->an;
        entry->ns = (uint16_t)answer->ns;
        entry->ar = (uint16_t)answer->ar;
        entry->flags = (uint8_t)answer->flags;
        entry->rcode = (uint8_t)answer->rcode;
        memcpy(entry->bytes, key, key_len);
        memcpy(entry->bytes + key_len, answer->tail, (size_t)answer->tail_len);
        slot->hash = hash;
        slot->entry = entry;
        table->used += size;
        table->count++;
        return;
    }
}

/* ------------------------------------------------------------------------ */
/* FastAnswers: the engine's prepared answers, assembled in C                */
/* ------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *responder;       /* engine.responder.Responder: reads _cache, _rotation */
    PyObject *opt_plain;       /* bytes: our OPT for a bare-OPT query, DO clear (_bare_opts[0]) */
    PyObject *opt_do;          /* bytes: the same with DO set (_bare_opts[1]) */
    long limit_v4, limit_v6;   /* max_edns_response(_v6) */
    long nocookie;             /* max_nocookie_response (0: none) */
    Py_hash_t part_mask;       /* answer_cache.PART_MASK */
    PyObject *rcode_names[RCODES]; /* str or NULL */
    PyObject *dns_counts;      /* Stats.dns.values */
    PyObject *udp_counts;      /* Stats.udp.values */
    Counts counts;
} FastAnswers;

/* One response, found and sized, before it is written (see ``plan_answer``). */
typedef struct {
    PyObject *prepared;        /* the Prepared tuple, held until written */
    const uint8_t *question;   /* query[12:qend] */
    Py_ssize_t question_len;
    const uint8_t *tail;
    Py_ssize_t tail_len;
    const uint8_t *opt;
    Py_ssize_t opt_len;
    uint8_t flags2, rcode;
    unsigned an, ns, ar;
    Py_ssize_t size;
} Plan;

/* A query of the common shape, read (see ``read_question``). */
typedef struct {
    Py_ssize_t qend;      /* just past the question */
    int bare_edns;        /* a bare OPT follows it (else nothing does) */
    size_t key_len;
    uint64_t hash;        /* ``key_hash`` of the key */
    uint8_t key[255 + 2]; /* lowercased qname + qtype */
} Question;

static PyObject *str_cache, *str_by_question, *str_compiled, *str_rotation;
static PyObject *str_stopping, *str_reqs, *str_recvfail, *str_sendfail;
static PyObject *str_v6, *str_edns, *str_edns_do, *str_tc, *str_edns_tc, *str_edns_big;

static void
FastAnswers_dealloc(FastAnswers *self)
{
    Py_XDECREF(self->responder);
    Py_XDECREF(self->opt_plain);
    Py_XDECREF(self->opt_do);
    Py_XDECREF(self->dns_counts);
    Py_XDECREF(self->udp_counts);
    for (int i = 0; i < RCODES; i++)
        Py_XDECREF(self->rcode_names[i]);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Mirrors ``Responder.udp_fast_path``'s arguments: everything constant for one Responder. */
static int
FastAnswers_init(FastAnswers *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"responder", "opt_plain", "opt_do", "limit_v4", "limit_v6", "nocookie",
                             "part_mask", "rcode_names", "dns_counts", "udp_counts", NULL};
    PyObject *responder, *opt_plain, *opt_do, *names, *dns, *udp;
    long limit_v4, limit_v6, nocookie;
    Py_ssize_t part_mask;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OSSlllnO!O!O!", kwlist, &responder, &opt_plain, &opt_do,
                                     &limit_v4, &limit_v6, &nocookie, &part_mask, &PyDict_Type, &names,
                                     &PyDict_Type, &dns, &PyDict_Type, &udp))
        return -1;
    if (self->responder != NULL) {
        /* A batch may be using it: never replaced. */
        PyErr_SetString(PyExc_RuntimeError, "FastAnswers already initialised");
        return -1;
    }
    if (part_mask < 0 || (part_mask & (part_mask + 1)) != 0) {
        PyErr_SetString(PyExc_ValueError, "part_mask must be a power of two minus one");
        return -1;
    }
    Py_INCREF(responder); Py_XSETREF(self->responder, responder);
    Py_INCREF(opt_plain); Py_XSETREF(self->opt_plain, opt_plain);
    Py_INCREF(opt_do); Py_XSETREF(self->opt_do, opt_do);
    Py_INCREF(dns); Py_XSETREF(self->dns_counts, dns);
    Py_INCREF(udp); Py_XSETREF(self->udp_counts, udp);
    self->limit_v4 = limit_v4;
    self->limit_v6 = limit_v6;
    self->nocookie = nocookie;
    self->part_mask = (Py_hash_t)part_mask;
    for (int rcode = 0; rcode < RCODES; rcode++) {
        PyObject *key = PyLong_FromLong(rcode);
        if (key == NULL)
            return -1;
        PyObject *name = PyDict_GetItemWithError(names, key);
        Py_DECREF(key);
        if (name == NULL && PyErr_Occurred())
            return -1;
        Py_XINCREF(name);
        Py_XSETREF(self->rcode_names[rcode], name);
    }
    memset(&self->counts, 0, sizeof(self->counts));
    return 0;
}

/* ``counts[name] += by``, as the engine's ``counters[name] += 1`` does. */
static int
add_count(PyObject *counts, PyObject *name, long long by)
{
    if (by == 0)
        return 0;
    PyObject *old = PyDict_GetItemWithError(counts, name);
    if (old == NULL && PyErr_Occurred())
        return -1;
    long long value = old == NULL ? 0 : PyLong_AsLongLong(old);
    if (value == -1 && PyErr_Occurred())
        return -1;
    PyObject *sum = PyLong_FromLongLong(value + by);
    if (sum == NULL)
        return -1;
    int failed = PyDict_SetItem(counts, name, sum);
    Py_DECREF(sum);
    return failed;
}

/* Mirrors the engine's ``counters[...] += 1``: adds what C counted since the last call to the Stats dicts. */
static int
flush_counts(FastAnswers *self)
{
    Counts c = self->counts;
    memset(&self->counts, 0, sizeof(self->counts));
    if (add_count(self->dns_counts, str_v6, c.v6) || add_count(self->dns_counts, str_edns, c.edns) ||
        add_count(self->dns_counts, str_edns_do, c.edns_do) || add_count(self->udp_counts, str_tc, c.tc) ||
        add_count(self->udp_counts, str_edns_tc, c.edns_tc) ||
        add_count(self->udp_counts, str_edns_big, c.edns_big))
        return -1;
    for (int rcode = 0; rcode < RCODES; rcode++)
        if (c.rcode[rcode] && add_count(self->dns_counts, self->rcode_names[rcode], c.rcode[rcode]))
            return -1;
    return 0;
}

/*
 * Mirrors ``cache = self._cache`` in ``Responder.respond`` (read once per
 * batch, and again after any call into Python): the current cache's
 * ``by_question`` and its ``compiled`` table (made on first use). 0, with new
 * references in ``*by_question`` and ``*table``; -1, error set.
 */
static int
current_tables(FastAnswers *self, PyObject **by_question, Remembered **table)
{
    *by_question = NULL;
    *table = NULL;
    PyObject *cache = PyObject_GetAttr(self->responder, str_cache);
    if (cache == NULL)
        return -1;
    PyObject *parts = PyObject_GetAttr(cache, str_by_question);
    if (parts != NULL && (!PyList_Check(parts) || PyList_GET_SIZE(parts) != self->part_mask + 1)) {
        PyErr_SetString(PyExc_TypeError, "AnswerCache.by_question is not a list of PARTS dicts");
        Py_CLEAR(parts);
    }
    PyObject *compiled = parts == NULL ? NULL : PyObject_GetAttr(cache, str_compiled);
    if (compiled == Py_None) {
        Py_DECREF(compiled);
        compiled = PyObject_CallNoArgs((PyObject *)&RememberedType);
        if (compiled != NULL && PyObject_SetAttr(cache, str_compiled, compiled) < 0)
            Py_CLEAR(compiled);
    } else if (compiled != NULL && !PyObject_TypeCheck(compiled, &RememberedType)) {
        PyErr_SetString(PyExc_TypeError, "AnswerCache.compiled is not the fast path's");
        Py_CLEAR(compiled);
    }
    Py_DECREF(cache);
    if (compiled == NULL) {
        Py_XDECREF(parts);
        return -1;
    }
    *by_question = parts;
    *table = (Remembered *)compiled;
    return 0;
}

/*
 * Mirrors ``flags, rcode, an, ns, ar, scope, tail, rotations = prepared``, one slot:
 * its int when within [low, high], else -1 (the tuple is not used: Python answers).
 */
static long
prepared_int(PyObject *prepared, Py_ssize_t slot, long low, long high)
{
    PyObject *item = PyTuple_GET_ITEM(prepared, slot);
    if (!PyLong_CheckExact(item))
        return -1;
    int overflow;
    long value = PyLong_AsLongAndOverflow(item, &overflow);
    if (overflow || value < low || value > high)
        return -1;
    return value;
}

/*
 * Mirrors ``_prebuilt_answer``'s lookup in ``cache.by_question`` (and
 * ``rotated_tail``): the answer to ``question`` into ``answer``. 1: found
 * (``*held``: a reference to keep until the tail is copied, or NULL); 0: not
 * cached (or not as expected: Python decides); -1: error set.
 */
static int
find_answer(FastAnswers *self, PyObject *by_question, Remembered *table, const Question *question,
            Answer *answer, PyObject **held)
{
    const uint8_t *key = question->key;
    size_t key_len = question->key_len;
    uint64_t hash = question->hash;
    const Entry *entry = find_remembered(table, key, key_len, hash);
    *held = NULL;
    if (entry != NULL) {
        answer->flags = entry->flags;
        answer->rcode = entry->rcode;
        answer->an = entry->an;
        answer->ns = entry->ns;
        answer->ar = entry->ar;
        answer->tail = entry->bytes + entry->key_len;
        answer->tail_len = entry->tail_len;
        return 1;
    }
    PyObject *name = PyBytes_FromStringAndSize((const char *)key, (Py_ssize_t)key_len);
    if (name == NULL)
        return -1;
    Py_hash_t py_hash = PyObject_Hash(name);
    PyObject *part = py_hash == -1 ? NULL : PyList_GET_ITEM(by_question, py_hash & self->part_mask);
    PyObject *prepared = part != NULL && PyDict_Check(part) ? PyDict_GetItemWithError(part, name) : NULL;
    Py_DECREF(name);
    if (prepared == NULL)
        return PyErr_Occurred() ? -1 : 0;

    /* Prepared: (flags, rcode, an, ns, ar, scope, tails, rotations); anything unexpected: Python. */
    if (!PyTuple_CheckExact(prepared) || PyTuple_GET_SIZE(prepared) != 8)
        return 0;
    answer->flags = prepared_int(prepared, 0, 0, 255);
    answer->rcode = prepared_int(prepared, 1, 0, RCODES - 1);
    answer->an = prepared_int(prepared, 2, 0, 65535);
    answer->ns = prepared_int(prepared, 3, 0, 65535);
    answer->ar = prepared_int(prepared, 4, 0, 65534); /* + our OPT */
    long rotations = prepared_int(prepared, 7, 1, LONG_MAX);
    PyObject *tails = PyTuple_GET_ITEM(prepared, 6);
    if (answer->flags < 0 || answer->rcode < 0 || answer->an < 0 || answer->ns < 0 || answer->ar < 0 ||
        rotations < 1 || !PyBytes_CheckExact(tails) || self->rcode_names[answer->rcode] == NULL)
        return 0;
    answer->tail = (const uint8_t *)PyBytes_AS_STRING(tails);
    answer->tail_len = PyBytes_GET_SIZE(tails);
    if (rotations == 1) {
        remember(table, key, key_len, hash, answer);
        *held = Py_NewRef(prepared);
        return 1;
    }
    /* ``self._rotation += 1; tail = rotated_tail(prepared, self._rotation)`` */
    Py_INCREF(prepared);
    PyObject *turn = PyObject_GetAttr(self->responder, str_rotation);
    long long rotation = turn == NULL ? -1 : PyLong_AsLongLong(turn);
    Py_XDECREF(turn);
    if (rotation == -1 && PyErr_Occurred())
        goto error;
    if (rotation == LLONG_MAX) {
        PyErr_SetString(PyExc_OverflowError, "Responder._rotation out of range");
        goto error;
    }
    rotation += 1;
    turn = PyLong_FromLongLong(rotation);
    if (turn == NULL || PyObject_SetAttr(self->responder, str_rotation, turn) < 0) {
        Py_XDECREF(turn);
        goto error;
    }
    Py_DECREF(turn);
    Py_ssize_t size = answer->tail_len / rotations;
    long long at = rotation % rotations;
    if (at < 0)
        at += rotations; /* Python's modulo */
    answer->tail += at * size;
    answer->tail_len = size;
    *held = prepared;
    return 1;

error:
    Py_DECREF(prepared);
    return -1;
}

/*
 * Mirrors the common-shape test of ``Responder.respond`` (QR=0, opcode 0, one
 * question with an uncompressed name, then nothing or a bare version-0 OPT)
 * and ``_prebuilt_answer``'s key (lowercased qname + qtype, classes IN and
 * ANY only). 1: ``out`` is filled; 0: another shape, for the Python responder.
 */
static int
read_question(const uint8_t *q, Py_ssize_t n, Question *out)
{
    if (n <= 16 || q[4] != 0 || q[5] != 1 || (q[2] & 0xF8))
        return 0;
    Py_ssize_t pos = 12;
    unsigned length = q[12];
    while (length && length < 64) {
        pos += length + 1;
        if (pos >= n)
            return 0;
        length = q[pos];
    }
    if (length != 0 || pos - 11 > 255)
        return 0;
    Py_ssize_t qend = pos + 5; /* past the root label, qtype and qclass */
    static const uint8_t no_records[6] = {0, 0, 0, 0, 0, 0};
    static const uint8_t one_additional[6] = {0, 0, 0, 0, 0, 1};
    if (n == qend && memcmp(q + 6, no_records, 6) == 0)
        out->bare_edns = 0;
    else if (n == qend + 11 && memcmp(q + 6, one_additional, 6) == 0 && q[qend] == 0 && q[qend + 1] == 0 &&
             q[qend + 2] == 41 && q[qend + 6] == 0 && q[qend + 9] == 0 && q[qend + 10] == 0)
        out->bare_edns = 1; /* a version-0 OPT without options, owner the root */
    else
        return 0;
    unsigned qclass = (unsigned)q[qend - 2] << 8 | q[qend - 1];
    if (qclass != 1 && qclass != 255)
        return 0; /* CHAOS and other classes: the Python responder */
    size_t name_len = (size_t)(qend - 4 - 12); /* 255 at most: checked above */
    for (size_t i = 0; i < name_len; i++) {
        uint8_t c = q[12 + i];
        out->key[i] = (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
    }
    out->key[name_len] = q[qend - 4];
    out->key[name_len + 1] = q[qend - 3];
    out->key_len = name_len + 2;
    out->hash = key_hash(out->key, out->key_len);
    out->qend = qend;
    return 1;
}

/*
 * Mirrors the rest of the common-shape branch of ``Responder.respond`` for
 * UDP: ``_prebuilt_answer``'s lookup, then the sizing and counting of
 * ``_assemble`` (no OPT) / ``_assemble_bare_edns``, into ``plan``. 1:
 * planned (counted, rotation advanced; ``plan->prepared`` may hold a
 * reference); 0: not cached, the Python responder answers; -1: error set.
 */
static int
plan_answer(FastAnswers *self, PyObject *by_question, Remembered *table, const uint8_t *q, const Question *question,
            int v6, Plan *plan)
{
    Py_ssize_t qend = question->qend;
    int bare_edns = question->bare_edns;
    Answer answer;
    PyObject *held;
    int found = find_answer(self, by_question, table, question, &answer, &held);
    if (found <= 0)
        return found;

    plan->prepared = held;
    plan->question = q + 12;
    plan->question_len = qend - 12;
    plan->flags2 = (uint8_t)(0x80 | answer.flags | (q[2] & 0x01));
    plan->rcode = (uint8_t)answer.rcode;
    plan->an = (unsigned)answer.an;
    plan->ns = (unsigned)answer.ns;
    plan->tail = answer.tail;
    plan->tail_len = answer.tail_len;
    Counts *counts = &self->counts;
    if (v6)
        counts->v6++;
    counts->rcode[answer.rcode]++;
    if (!bare_edns) {
        /* ``_assemble`` with no OPT: 512 bytes at most over UDP, or max_nocookie_response. */
        long limit = PLAIN_LIMIT;
        if (self->nocookie && self->nocookie < limit)
            limit = self->nocookie;
        plan->opt = NULL;
        plan->opt_len = 0;
        plan->ar = (unsigned)answer.ar;
        plan->size = qend + answer.tail_len;
        if (plan->size > limit) {
            counts->tc++;
            plan->flags2 |= TC;
            plan->an = plan->ns = plan->ar = 0;
            plan->tail_len = 0;
            plan->size = qend;
        }
        return 1;
    }
    /* ``_assemble_bare_edns`` over UDP. */
    int do_bit = q[qend + 7] & 0x80;
    counts->edns++;
    if (do_bit)
        counts->edns_do++;
    PyObject *opt = do_bit ? self->opt_do : self->opt_plain;
    plan->opt = (const uint8_t *)PyBytes_AS_STRING(opt);
    plan->opt_len = PyBytes_GET_SIZE(opt);
    plan->ar = (unsigned)answer.ar + 1;
    long udp_size = (long)q[qend + 3] << 8 | q[qend + 4];
    long limit = v6 ? self->limit_v6 : self->limit_v4;
    if (udp_size < limit)
        limit = udp_size > PLAIN_LIMIT ? udp_size : PLAIN_LIMIT;
    if (self->nocookie && self->nocookie < limit)
        limit = self->nocookie;
    plan->size = qend + answer.tail_len + plan->opt_len;
    if (plan->size > limit) {
        counts->edns_tc++;
        plan->flags2 |= TC;
        plan->an = plan->ns = 0;
        plan->ar = 1;
        plan->tail_len = 0;
        plan->size = qend + plan->opt_len;
    } else if (plan->size > PLAIN_LIMIT) {
        counts->edns_big++;
    }
    return 1;
}

/*
 * Mirrors the ``b"".join((query[:2], bytes((flags2, rcode)), _COUNTS.pack(1, an, ns, ar),
 * question, tail, opt))`` of ``_assemble``/``_assemble_bare_edns``: writes the planned
 * response to ``out`` (``plan->size`` bytes, which the caller made room for) and
 * drops the plan's reference.
 */
static void
write_answer(Plan *plan, const uint8_t *query, uint8_t *out)
{
    uint8_t *at = out;
    *at++ = query[0];
    *at++ = query[1];
    *at++ = plan->flags2;
    *at++ = plan->rcode;
    const unsigned counts[4] = {1, plan->an, plan->ns, plan->ar};
    for (int i = 0; i < 4; i++) {
        *at++ = (uint8_t)(counts[i] >> 8);
        *at++ = (uint8_t)counts[i];
    }
    memcpy(at, plan->question, plan->question_len);
    at += plan->question_len;
    memcpy(at, plan->tail, plan->tail_len);
    at += plan->tail_len;
    if (plan->opt_len)
        memcpy(at, plan->opt, plan->opt_len);
    Py_CLEAR(plan->prepared);
}

/*
 * FastAnswers.answer(query, v6): what ``Responder.respond(query, client_ip, False)``
 * returns when the fast path handles the query, else None (the Python responder
 * must answer it). Counts like ``respond``. For tests: ``Batch.answer`` uses the
 * same functions on its receive slots without making Python objects.
 */
static PyObject *
FastAnswers_answer(FastAnswers *self, PyObject *args)
{
    Py_buffer query;
    int v6;
    if (self->responder == NULL)
        return PyErr_Format(PyExc_ValueError, "FastAnswers not initialised");
    if (!PyArg_ParseTuple(args, "y*p", &query, &v6))
        return NULL;
    PyObject *result = NULL, *by_question;
    Remembered *table;
    if (current_tables(self, &by_question, &table) < 0)
        goto done;
    Plan plan;
    Question question;
    int found = read_question(query.buf, query.len, &question);
    if (found)
        found = plan_answer(self, by_question, table, query.buf, &question, v6, &plan);
    if (found > 0) {
        result = PyBytes_FromStringAndSize(NULL, plan.size);
        if (result != NULL)
            write_answer(&plan, query.buf, (uint8_t *)PyBytes_AS_STRING(result));
        Py_CLEAR(plan.prepared);
    } else if (found == 0) {
        result = Py_NewRef(Py_None);
    }
    Py_DECREF(by_question);
    Py_DECREF(table);
done:
    PyBuffer_Release(&query);
    if (flush_counts(self) < 0)
        Py_CLEAR(result);
    return result;
}

static PyMethodDef FastAnswers_methods[] = {
    {"answer", (PyCFunction)FastAnswers_answer, METH_VARARGS,
     "answer(query, v6) -> bytes | None: the fast path's response, or None for the Python responder"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject FastAnswersType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pygdnsd.transport._fastpath.FastAnswers",
    .tp_basicsize = sizeof(FastAnswers),
    .tp_dealloc = (destructor)FastAnswers_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A Responder's prepared answers, assembled in C (see Responder.udp_fast_path).",
    .tp_methods = FastAnswers_methods,
    .tp_init = (initproc)FastAnswers_init,
    .tp_new = PyType_GenericNew,
};

/* ------------------------------------------------------------------------ */
/* Batch: recvmmsg/sendmmsg buffers for one serving thread                   */
/* ------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    int fd, family;
    Py_ssize_t size, max_query, send_space, control_space;
    socklen_t namelen;
    struct mmsghdr *recv, *send;
    struct iovec *recv_iov, *send_iov;
    struct sockaddr_in6 *names; /* room for either family */
    uint8_t *queries, *controls, *sent, *send_controls;
    Question *questions; /* each datagram's, read before any is answered */
    uint8_t *shaped;     /* whether each datagram's question was read */
    FastAnswers *fast; /* or NULL: every datagram goes to the Python responder */
    Py_ssize_t received; /* by the last read: the slots holding datagrams */
} Batch;

static void
Batch_free_buffers(Batch *self)
{
    PyMem_Free(self->recv);
    PyMem_Free(self->send);
    PyMem_Free(self->recv_iov);
    PyMem_Free(self->send_iov);
    PyMem_Free(self->names);
    PyMem_Free(self->queries);
    PyMem_Free(self->controls);
    PyMem_Free(self->sent);
    PyMem_Free(self->send_controls);
    PyMem_Free(self->questions);
    PyMem_Free(self->shaped);
    self->questions = NULL;
    self->shaped = NULL;
    self->recv = self->send = NULL;
    self->recv_iov = self->send_iov = NULL;
    self->names = NULL;
    self->queries = self->controls = self->sent = self->send_controls = NULL;
}

static void
Batch_dealloc(Batch *self)
{
    Batch_free_buffers(self);
    Py_CLEAR(self->fast);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Mirrors ``mmsg.DatagramBatch.__init__``: every buffer allocated once, headers pointed at them. */
static int
Batch_init(Batch *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fd", "family", "size", "max_query", "send_space", "control_space", "fast", NULL};
    int fd, family;
    Py_ssize_t size, max_query, send_space, control_space = 0;
    PyObject *fast = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iinnn|nO", kwlist, &fd, &family, &size, &max_query,
                                     &send_space, &control_space, &fast))
        return -1;
    if (fast != Py_None && (!PyObject_TypeCheck(fast, &FastAnswersType) || ((FastAnswers *)fast)->responder == NULL)) {
        PyErr_SetString(PyExc_TypeError, "fast must be an initialised FastAnswers or None");
        return -1;
    }
    if (family != AF_INET && family != AF_INET6) {
        PyErr_SetString(PyExc_ValueError, "family must be AF_INET or AF_INET6");
        return -1;
    }
    if (size < 1 || size > 1024 || max_query < 12 || max_query > 65536 || send_space < 512 ||
        send_space > (1 << 24) || control_space < 0 || control_space > 1024) {
        PyErr_SetString(PyExc_ValueError, "batch sizes out of range");
        return -1;
    }
    if (self->recv != NULL) {
        /* Its buffers may be in use by a call up the stack: never replaced. */
        PyErr_SetString(PyExc_RuntimeError, "Batch already initialised");
        return -1;
    }
    if (fast != Py_None)
        self->fast = (FastAnswers *)Py_NewRef(fast);
    self->fd = fd;
    self->family = family;
    self->size = size;
    self->max_query = max_query;
    self->send_space = send_space;
    self->control_space = control_space;
    self->namelen = family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    self->recv = PyMem_Calloc(size, sizeof(struct mmsghdr));
    self->send = PyMem_Calloc(size, sizeof(struct mmsghdr));
    self->recv_iov = PyMem_Calloc(size, sizeof(struct iovec));
    self->send_iov = PyMem_Calloc(size, sizeof(struct iovec));
    self->names = PyMem_Calloc(size, sizeof(struct sockaddr_in6));
    self->queries = PyMem_Malloc(size * max_query);
    self->controls = PyMem_Calloc(size * control_space + 1, 1);
    self->sent = PyMem_Malloc(send_space);
    self->send_controls = PyMem_Calloc(size * control_space + 1, 1);
    self->questions = PyMem_Calloc(size, sizeof(Question));
    self->shaped = PyMem_Calloc(size, 1);
    if (!self->recv || !self->send || !self->recv_iov || !self->send_iov || !self->names || !self->queries ||
        !self->controls || !self->sent || !self->send_controls || !self->questions || !self->shaped) {
        Batch_free_buffers(self);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < size; i++) {
        self->recv_iov[i].iov_base = self->queries + i * max_query;
        self->recv_iov[i].iov_len = (size_t)max_query;
        struct msghdr *received = &self->recv[i].msg_hdr;
        received->msg_name = &self->names[i];
        received->msg_iov = &self->recv_iov[i];
        received->msg_iovlen = 1;
        if (control_space)
            received->msg_control = self->controls + i * control_space;
        struct msghdr *reply = &self->send[i].msg_hdr;
        reply->msg_namelen = self->namelen;
        reply->msg_iov = &self->send_iov[i];
        reply->msg_iovlen = 1;
    }
    return 0;
}

/*
 * Mirrors ``DatagramBatch.receive``: reads up to ``size`` queued datagrams
 * without blocking, with the GIL released (another thread may run meanwhile:
 * what this one reads it answers all the same). How many (0: none queued);
 * -1 with errno set for any other failure.
 */
static int
receive_batch(Batch *self)
{
    for (Py_ssize_t i = 0; i < self->size; i++) {
        /* The kernel overwrites these with what it stored. */
        self->recv[i].msg_hdr.msg_namelen = self->namelen;
        self->recv[i].msg_hdr.msg_controllen = (size_t)self->control_space;
    }
    int count;
    do {
        Py_BEGIN_ALLOW_THREADS
        count = recvmmsg(self->fd, self->recv, (unsigned)self->size, MSG_DONTWAIT, NULL);
        Py_END_ALLOW_THREADS
    } while (count < 0 && errno == EINTR); /* a signal handler ran; the socket module retries too */
    if (count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        count = 0;
    self->received = count < 0 ? 0 : count;
    return count;
}

static PyObject *
Batch_receive(Batch *self, PyObject *Py_UNUSED(ignored))
{
    if (self->recv == NULL)
        return PyErr_Format(PyExc_ValueError, "Batch not initialised");
    int count = receive_batch(self);
    return count < 0 ? PyErr_SetFromErrno(PyExc_OSError) : PyLong_FromLong(count);
}

/* Mirrors ``DatagramBatch._flush``: sends the first ``pending`` answers; how many failed. */
static long
flush_sends(Batch *self, Py_ssize_t pending)
{
    long failed = 0;
    Py_ssize_t done = 0;
    while (done < pending) {
        int count = sendmmsg(self->fd, self->send + done, (unsigned)(pending - done), MSG_DONTWAIT);
        if (count > 0) {
            done += count;
            continue;
        }
        if (count < 0 && errno == EINTR)
            continue;
        failed++; /* this message failed (send buffer full, unreachable...): skip it */
        done++;
    }
    return failed;
}

/*
 * Mirrors ``DatagramBatch._received_control`` then ``mmsg.reply_pktinfo`` and
 * ``_set_reply_control``: the reply to datagram ``i`` leaves from the address the
 * query came to (its first control message, IP_PKTINFO or IPV6_PKTINFO).
 */
static void
set_reply_control(Batch *self, Py_ssize_t i, Py_ssize_t slot)
{
    struct msghdr *reply = &self->send[slot].msg_hdr;
    reply->msg_control = NULL;
    reply->msg_controllen = 0;
    size_t length = self->recv[i].msg_hdr.msg_controllen;
    if (length < sizeof(struct cmsghdr) || length > (size_t)self->control_space)
        return;
    struct cmsghdr received;
    const uint8_t *in = self->controls + i * self->control_space;
    memcpy(&received, in, sizeof(received));
    size_t end = received.cmsg_len < length ? received.cmsg_len : length;
    if (end < CMSG_LEN(0))
        return;
    const uint8_t *data = in + CMSG_LEN(0);
    size_t data_len = end - CMSG_LEN(0);
    uint8_t pktinfo[20];
    size_t out_len;
    if (received.cmsg_level == IPPROTO_IPV6 && received.cmsg_type == IPV6_PKTINFO && data_len >= 20) {
        memcpy(pktinfo, data, 20); /* in6_pktinfo {addr, ifindex}: both reused, so link-local replies work */
        out_len = 20;
    } else if (received.cmsg_level == IPPROTO_IP && received.cmsg_type == IP_PKTINFO && data_len >= 12) {
        memset(pktinfo, 0, 12); /* in_pktinfo {ifindex, spec_dst, addr}: source = where it came to */
        memcpy(pktinfo + 4, data + 8, 4);
        out_len = 12;
    } else {
        return;
    }
    if (CMSG_SPACE(out_len) > (size_t)self->control_space)
        return;
    uint8_t *out = self->send_controls + slot * self->control_space;
    struct cmsghdr header;
    memset(&header, 0, sizeof(header));
    header.cmsg_len = CMSG_LEN(out_len);
    header.cmsg_level = received.cmsg_level;
    header.cmsg_type = received.cmsg_type;
    memcpy(out, &header, sizeof(header));
    memcpy(out + CMSG_LEN(0), pktinfo, out_len);
    reply->msg_control = out;
    reply->msg_controllen = CMSG_SPACE(out_len);
}

/*
 * Mirrors ``DatagramBatch.answer``: answers the ``count`` datagrams received and
 * sends the answers with as few sendmmsg calls as fit; returns how many could not
 * be sent. With a FastAnswers (``fast``), cached questions are answered here;
 * every other datagram goes to ``respond(query, client_ip, False)`` (None: no
 * answer); if that raises, ``failed(client_ip, error)`` is told.
 */
static long
answer_batch(Batch *self, Py_ssize_t count, PyObject *respond, PyObject *failed)
{
    FastAnswers *fast = self->fast;
    PyObject *by_question = NULL;
    Remembered *table = NULL;
    Py_ssize_t pending = 0, used = 0;
    long unsent = 0;
    int v6 = self->family == AF_INET6;
    Py_ssize_t ip_len = v6 ? 16 : 4;
    if (fast != NULL) {
        /*
         * Every question read and its table slot, then its entry, asked of
         * memory before any is answered: the batch's cache misses overlap
         * instead of adding up (perf: a slot and an entry missed per query).
         */
        if (current_tables(fast, &by_question, &table) < 0)
            goto error;
        for (Py_ssize_t i = 0; i < count; i++) {
            Py_ssize_t n = self->recv[i].msg_len;
            self->shaped[i] = (uint8_t)read_question(self->queries + i * self->max_query,
                                                     n < self->max_query ? n : self->max_query, &self->questions[i]);
            if (self->shaped[i] && table->slots != NULL)
                __builtin_prefetch(&table->slots[self->questions[i].hash & (TABLE_SLOTS - 1)]);
        }
        for (Py_ssize_t i = 0; i < count && table->slots != NULL; i++) {
            const Slot *slot = &table->slots[self->questions[i].hash & (TABLE_SLOTS - 1)];
            if (self->shaped[i] && slot->entry != NULL && slot->hash == self->questions[i].hash) {
                __builtin_prefetch(slot->entry);
                __builtin_prefetch((const uint8_t *)slot->entry + 64);
            }
        }
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        const uint8_t *query = self->queries + i * self->max_query;
        Py_ssize_t n = self->recv[i].msg_len;
        if (n > self->max_query)
            n = self->max_query;
        const uint8_t *ip = v6 ? (const uint8_t *)&self->names[i].sin6_addr
                               : (const uint8_t *)&((struct sockaddr_in *)&self->names[i])->sin_addr;
        Py_ssize_t size = 0;
        const uint8_t *bytes = NULL;
        PyObject *answer = NULL;
        Plan plan;
        int found = 0;
        if (fast != NULL && self->shaped[i]) {
            if (by_question == NULL && current_tables(fast, &by_question, &table) < 0)
                goto error;
            found = plan_answer(fast, by_question, table, query, &self->questions[i], v6, &plan);
            if (found < 0)
                goto error;
            size = plan.size;
        }
        if (!found) {
            /* The Python responder: it may swap the zones, so the cache is read again after it. */
            Py_CLEAR(by_question);
            Py_CLEAR(table);
            PyObject *q = PyBytes_FromStringAndSize((const char *)query, n);
            PyObject *client = q == NULL ? NULL : PyBytes_FromStringAndSize((const char *)ip, ip_len);
            if (client == NULL) {
                Py_XDECREF(q);
                goto error;
            }
            answer = PyObject_CallFunctionObjArgs(respond, q, client, Py_False, NULL);
            Py_DECREF(q);
            if (answer == NULL) {
                if (!PyErr_ExceptionMatches(PyExc_Exception)) {
                    Py_DECREF(client);
                    goto error; /* KeyboardInterrupt, SystemExit: not the query's fault */
                }
                PyObject *kind, *error, *trace;
                PyErr_Fetch(&kind, &error, &trace);
                PyErr_NormalizeException(&kind, &error, &trace);
                if (trace != NULL)
                    PyException_SetTraceback(error, trace);
                PyObject *told = PyObject_CallFunctionObjArgs(failed, client, error, NULL);
                Py_XDECREF(kind);
                Py_XDECREF(error);
                Py_XDECREF(trace);
                Py_DECREF(client);
                if (told == NULL)
                    goto error;
                Py_DECREF(told);
                continue;
            }
            Py_DECREF(client);
            if (answer == Py_None) {
                Py_DECREF(answer);
                continue;
            }
            if (!PyBytes_Check(answer)) {
                Py_DECREF(answer);
                PyErr_SetString(PyExc_TypeError, "respond() must return bytes or None");
                goto error;
            }
            bytes = (const uint8_t *)PyBytes_AS_STRING(answer);
            size = PyBytes_GET_SIZE(answer);
        }
        if (used + size > self->send_space) {
            unsent += flush_sends(self, pending);
            pending = used = 0;
            if (size > self->send_space) {
                unsent++; /* bigger than any datagram: sendto would fail too */
                Py_XDECREF(answer);
                continue;
            }
        }
        uint8_t *out = self->sent + used;
        if (found)
            write_answer(&plan, query, out);
        else
            memcpy(out, bytes, size);
        Py_XDECREF(answer);
        self->send_iov[pending].iov_base = out;
        self->send_iov[pending].iov_len = (size_t)size;
        self->send[pending].msg_hdr.msg_name = &self->names[i]; /* the reply goes where the query came from */
        if (self->control_space)
            set_reply_control(self, i, pending);
        used += size;
        pending++;
    }
    Py_XDECREF(by_question);
    Py_XDECREF(table);
    if (pending)
        unsent += flush_sends(self, pending);
    if (fast != NULL && flush_counts(fast) < 0)
        return -1;
    return unsent;

error:
    /* Answers already queued still leave; the error propagates (as a raise in Python would). */
    Py_XDECREF(by_question);
    Py_XDECREF(table);
    if (pending)
        flush_sends(self, pending);
    if (fast != NULL) {
        PyObject *kind, *error, *trace;
        PyErr_Fetch(&kind, &error, &trace);
        if (flush_counts(fast) < 0)
            PyErr_Clear();
        PyErr_Restore(kind, error, trace);
    }
    return -1;
}

static PyObject *
Batch_answer(Batch *self, PyObject *args)
{
    Py_ssize_t count;
    PyObject *respond, *failed;
    if (!PyArg_ParseTuple(args, "nOO", &count, &respond, &failed))
        return NULL;
    if (self->recv == NULL)
        return PyErr_Format(PyExc_ValueError, "Batch not initialised");
    if (count < 0 || count > self->received)
        return PyErr_Format(PyExc_ValueError, "count %zd outside 0..%zd (the datagrams read)", count, self->received);
    long unsent = answer_batch(self, count, respond, failed);
    return unsent < 0 ? NULL : PyLong_FromLong(unsent);
}

/* Whether ``threads.stopping`` is set: 1, 0, or -1 with an error set. */
static int
stopping(PyObject *threads)
{
    PyObject *flag = PyObject_GetAttr(threads, str_stopping);
    if (flag == NULL)
        return -1;
    int set = PyObject_IsTrue(flag);
    Py_DECREF(flag);
    return set;
}

/*
 * Mirrors ``UdpServer._serve_batches``: until ``threads.stopping``, polls the
 * socket and ``wake_fd`` (GIL released), then drains the socket in batches,
 * answering each (``answer``) and counting ``reqs``, ``recvfail`` and
 * ``sendfail`` in ``counts``. The stop flag is read before every read, so
 * every datagram read is answered and the rest stay queued in the socket.
 */
static PyObject *
Batch_serve(Batch *self, PyObject *args)
{
    int wake_fd;
    PyObject *threads, *respond, *failed, *counts;
    if (!PyArg_ParseTuple(args, "iOOOO!", &wake_fd, &threads, &respond, &failed, &PyDict_Type, &counts))
        return NULL;
    if (self->recv == NULL)
        return PyErr_Format(PyExc_ValueError, "Batch not initialised");
    struct pollfd fds[2] = {{.fd = self->fd, .events = POLLIN}, {.fd = wake_fd, .events = POLLIN}};
    int stop;
    while ((stop = stopping(threads)) == 0) {
        int ready;
        Py_BEGIN_ALLOW_THREADS
        ready = poll(fds, 2, -1);
        Py_END_ALLOW_THREADS
        if (ready < 0 && errno != EINTR)
            return PyErr_SetFromErrno(PyExc_OSError);
        while ((stop = stopping(threads)) == 0) {
            int count = receive_batch(self);
            if (count < 0) {
                if (add_count(counts, str_recvfail, 1) < 0)
                    return NULL;
                break;
            }
            if (count == 0)
                break;
            if (add_count(counts, str_reqs, count) < 0)
                return NULL;
            long unsent = answer_batch(self, count, respond, failed);
            if (unsent < 0 || add_count(counts, str_sendfail, unsent) < 0)
                return NULL;
            if (count < self->size)
                break; /* drained: whatever arrived since wakes the next poll */
        }
        if (stop != 0)
            break;
    }
    if (stop < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef Batch_methods[] = {
    {"receive", (PyCFunction)Batch_receive, METH_NOARGS,
     "receive() -> int: datagrams read without blocking (0: none queued); raises OSError"},
    {"answer", (PyCFunction)Batch_answer, METH_VARARGS,
     "answer(count, respond, failed) -> int: answers the datagrams read; how many were not sent"},
    {"serve", (PyCFunction)Batch_serve, METH_VARARGS,
     "serve(wake_fd, threads, respond, failed, counts): polls, reads and answers until threads.stopping"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Batch_members[] = {
    {"size", T_PYSSIZET, offsetof(Batch, size), READONLY, "datagrams per read"},
    {"control_space", T_PYSSIZET, offsetof(Batch, control_space), READONLY, "control bytes per datagram"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject BatchType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pygdnsd.transport._fastpath.Batch",
    .tp_basicsize = sizeof(Batch),
    .tp_dealloc = (destructor)Batch_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One serving thread's recvmmsg/sendmmsg buffers (see transport/mmsg.py's DatagramBatch).",
    .tp_methods = Batch_methods,
    .tp_members = Batch_members,
    .tp_init = (initproc)Batch_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef fastpath_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pygdnsd.transport._fastpath",
    .m_doc = "pygdnsd's compiled UDP fast path: batched datagrams and prepared answers, bytes only.",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__fastpath(void)
{
    struct { PyObject **slot; const char *text; } names[] = {
        {&str_cache, "_cache"}, {&str_by_question, "by_question"}, {&str_compiled, "compiled"},
        {&str_rotation, "_rotation"},
        {&str_v6, "v6"}, {&str_edns, "edns"}, {&str_edns_do, "edns_do"}, {&str_tc, "tc"},
        {&str_edns_tc, "edns_tc"}, {&str_edns_big, "edns_big"}, {&str_stopping, "stopping"},
        {&str_reqs, "reqs"}, {&str_recvfail, "recvfail"}, {&str_sendfail, "sendfail"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (*names[i].slot == NULL && (*names[i].slot = PyUnicode_InternFromString(names[i].text)) == NULL)
            return NULL;
    if (PyType_Ready(&RememberedType) < 0 || PyType_Ready(&FastAnswersType) < 0 || PyType_Ready(&BatchType) < 0)
        return NULL;
    if (getentropy(&hash_seed, sizeof(hash_seed)) != 0)
        hash_seed = (uint64_t)(uintptr_t)&hash_seed ^ (uint64_t)getpid() << 32;
    PyObject *module = PyModule_Create(&fastpath_module);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObjectRef(module, "FastAnswers", (PyObject *)&FastAnswersType) < 0 ||
        PyModule_AddObjectRef(module, "Batch", (PyObject *)&BatchType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
