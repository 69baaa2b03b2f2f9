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
 * The GIL is held throughout, as the ctypes path does (``transport/mmsg.py``):
 * the calls never block (MSG_DONTWAIT), and the serving loop that calls them
 * is Python, which lets other threads in between batches.
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
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

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
/* FastAnswers: the engine's prepared answers, assembled in C                */
/* ------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *responder;       /* engine.responder.Responder: reads _cache, _rotation */
    PyObject *opt_plain;       /* bytes: our OPT for a bare-OPT query, DO clear (_bare_opts[0]) */
    PyObject *opt_do;          /* bytes: the same with DO set (_bare_opts[2]) */
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

static PyObject *str_cache, *str_by_question, *str_rotation;
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

/* Adds what was counted in C since the last call to the Stats dicts. */
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

/* The current ``responder._cache.by_question`` (a new reference), or NULL with an error set. */
static PyObject *
current_by_question(FastAnswers *self)
{
    PyObject *cache = PyObject_GetAttr(self->responder, str_cache);
    if (cache == NULL)
        return NULL;
    PyObject *parts = PyObject_GetAttr(cache, str_by_question);
    Py_DECREF(cache);
    if (parts != NULL && (!PyList_Check(parts) || PyList_GET_SIZE(parts) != self->part_mask + 1)) {
        Py_DECREF(parts);
        PyErr_SetString(PyExc_TypeError, "AnswerCache.by_question is not a list of PARTS dicts");
        return NULL;
    }
    return parts;
}

/* ``int(item)`` of a Prepared slot when within [low, high], else -1 (the tuple is not used). */
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
 * Mirrors the common-shape branch of ``Responder.respond`` for UDP, with
 * ``_prebuilt_answer`` (its IN/ANY branch) and the sizing and counting of
 * ``_assemble`` (no OPT) / ``_assemble_bare_edns``: finds the prepared answer
 * and sizes the response into ``plan``. 1: planned (counted, rotation
 * advanced; ``plan->prepared`` holds a reference); 0: not handled here, the
 * Python responder answers; -1: error set.
 */
static int
plan_answer(FastAnswers *self, PyObject *by_question, const uint8_t *q, Py_ssize_t n, int v6, Plan *plan)
{
    /* QR=0, opcode 0, AA clear; one question with an uncompressed name. */
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
    int bare_edns;
    static const uint8_t no_records[6] = {0, 0, 0, 0, 0, 0};
    static const uint8_t one_additional[6] = {0, 0, 0, 0, 0, 1};
    if (n == qend && memcmp(q + 6, no_records, 6) == 0)
        bare_edns = 0;
    else if (n == qend + 11 && memcmp(q + 6, one_additional, 6) == 0 && q[qend] == 0 && q[qend + 1] == 0 &&
             q[qend + 2] == 41 && q[qend + 6] == 0 && q[qend + 9] == 0 && q[qend + 10] == 0)
        bare_edns = 1; /* a version-0 OPT without options, owner the root */
    else
        return 0;
    unsigned qclass = (unsigned)q[qend - 2] << 8 | q[qend - 1];
    if (qclass != 1 && qclass != 255)
        return 0; /* CHAOS and other classes: the Python responder */

    /* The question key: lowercased qname + qtype (``_prebuilt_answer``). */
    Py_ssize_t name_len = qend - 4 - 12;
    PyObject *key = PyBytes_FromStringAndSize(NULL, name_len + 2);
    if (key == NULL)
        return -1;
    uint8_t *k = (uint8_t *)PyBytes_AS_STRING(key);
    for (Py_ssize_t i = 0; i < name_len; i++) {
        uint8_t c = q[12 + i];
        k[i] = (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
    }
    k[name_len] = q[qend - 4];
    k[name_len + 1] = q[qend - 3];
    Py_hash_t hash = PyObject_Hash(key);
    if (hash == -1) {
        Py_DECREF(key);
        return -1;
    }
    PyObject *part = PyList_GET_ITEM(by_question, hash & self->part_mask);
    PyObject *prepared = PyDict_Check(part) ? PyDict_GetItemWithError(part, key) : NULL;
    Py_DECREF(key);
    if (prepared == NULL)
        return PyErr_Occurred() ? -1 : 0;

    /* Prepared: (flags, rcode, an, ns, ar, scope, tails, rotations); anything unexpected: Python. */
    if (!PyTuple_CheckExact(prepared) || PyTuple_GET_SIZE(prepared) != 8)
        return 0;
    long flags = prepared_int(prepared, 0, 0, 255);
    long rcode = prepared_int(prepared, 1, 0, RCODES - 1);
    long an = prepared_int(prepared, 2, 0, 65535);
    long ns = prepared_int(prepared, 3, 0, 65535);
    long ar = prepared_int(prepared, 4, 0, 65534); /* + our OPT */
    long rotations = prepared_int(prepared, 7, 1, LONG_MAX);
    PyObject *tails = PyTuple_GET_ITEM(prepared, 6);
    if (flags < 0 || rcode < 0 || an < 0 || ns < 0 || ar < 0 || rotations < 1 || !PyBytes_CheckExact(tails) ||
        self->rcode_names[rcode] == NULL)
        return 0;
    const uint8_t *tail = (const uint8_t *)PyBytes_AS_STRING(tails);
    Py_ssize_t tail_len = PyBytes_GET_SIZE(tails);
    Py_INCREF(prepared);

    if (rotations != 1) {
        /* ``self._rotation += 1; tail = rotated_tail(prepared, self._rotation)`` */
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
        Py_ssize_t size = tail_len / rotations;
        long long at = rotation % rotations;
        if (at < 0)
            at += rotations; /* Python's modulo */
        tail += at * size;
        tail_len = size;
    }

    plan->prepared = prepared;
    plan->question = q + 12;
    plan->question_len = qend - 12;
    plan->flags2 = (uint8_t)(0x80 | flags | (q[2] & 0x01));
    plan->rcode = (uint8_t)rcode;
    plan->an = (unsigned)an;
    plan->ns = (unsigned)ns;
    plan->tail = tail;
    plan->tail_len = tail_len;
    Counts *counts = &self->counts;
    if (v6)
        counts->v6++;
    counts->rcode[rcode]++;
    if (!bare_edns) {
        /* ``_assemble`` with no OPT: 512 bytes at most over UDP, or max_nocookie_response. */
        long limit = PLAIN_LIMIT;
        if (self->nocookie && self->nocookie < limit)
            limit = self->nocookie;
        plan->opt = NULL;
        plan->opt_len = 0;
        plan->ar = (unsigned)ar;
        plan->size = qend + tail_len;
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
    plan->ar = (unsigned)ar + 1;
    long udp_size = (long)q[qend + 3] << 8 | q[qend + 4];
    long limit = v6 ? self->limit_v6 : self->limit_v4;
    if (udp_size < limit)
        limit = udp_size > PLAIN_LIMIT ? udp_size : PLAIN_LIMIT;
    if (self->nocookie && self->nocookie < limit)
        limit = self->nocookie;
    plan->size = qend + tail_len + plan->opt_len;
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

error:
    Py_DECREF(prepared);
    return -1;
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
    if (!PyArg_ParseTuple(args, "y*p", &query, &v6))
        return NULL;
    PyObject *result = NULL;
    PyObject *by_question = current_by_question(self);
    if (by_question == NULL)
        goto done;
    Plan plan;
    int found = plan_answer(self, by_question, query.buf, query.len, v6, &plan);
    Py_DECREF(by_question);
    if (found < 0)
        goto done;
    if (found == 0) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, plan.size);
    if (result == NULL) {
        Py_CLEAR(plan.prepared);
        goto done;
    }
    write_answer(&plan, query.buf, (uint8_t *)PyBytes_AS_STRING(result));
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
    FastAnswers *fast; /* or NULL: every datagram goes to the Python responder */
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
    if (fast != Py_None && !PyObject_TypeCheck(fast, &FastAnswersType)) {
        PyErr_SetString(PyExc_TypeError, "fast must be a FastAnswers or None");
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
    if (!self->recv || !self->send || !self->recv_iov || !self->send_iov || !self->names || !self->queries ||
        !self->controls || !self->sent || !self->send_controls) {
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

/* Mirrors ``DatagramBatch.receive``: up to ``size`` queued datagrams without blocking; how many. */
static PyObject *
Batch_receive(Batch *self, PyObject *Py_UNUSED(ignored))
{
    if (self->recv == NULL)
        return PyErr_Format(PyExc_ValueError, "Batch not initialised");
    for (Py_ssize_t i = 0; i < self->size; i++) {
        /* The kernel overwrites these with what it stored. */
        self->recv[i].msg_hdr.msg_namelen = self->namelen;
        self->recv[i].msg_hdr.msg_controllen = (size_t)self->control_space;
    }
    for (;;) {
        int count = recvmmsg(self->fd, self->recv, (unsigned)self->size, MSG_DONTWAIT, NULL);
        if (count >= 0)
            return PyLong_FromLong(count);
        if (errno == EINTR)
            continue; /* a signal handler ran; the socket module retries too */
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return PyLong_FromLong(0);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
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
static PyObject *
Batch_answer(Batch *self, PyObject *args)
{
    Py_ssize_t count;
    PyObject *respond, *failed;
    if (!PyArg_ParseTuple(args, "nOO", &count, &respond, &failed))
        return NULL;
    if (self->recv == NULL)
        return PyErr_Format(PyExc_ValueError, "Batch not initialised");
    if (count < 0 || count > self->size)
        return PyErr_Format(PyExc_ValueError, "count %zd outside 0..%zd", count, self->size);
    FastAnswers *fast = self->fast;
    PyObject *by_question = NULL;
    Py_ssize_t pending = 0, used = 0;
    long unsent = 0;
    int v6 = self->family == AF_INET6;
    Py_ssize_t ip_len = v6 ? 16 : 4;
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
        if (fast != NULL) {
            if (by_question == NULL && (by_question = current_by_question(fast)) == NULL)
                goto error;
            found = plan_answer(fast, by_question, query, n, v6, &plan);
            if (found < 0)
                goto error;
            size = plan.size;
        }
        if (!found) {
            /* The Python responder: it may swap the zones, so the cache is read again after it. */
            Py_CLEAR(by_question);
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
    if (pending)
        unsent += flush_sends(self, pending);
    if (fast != NULL && flush_counts(fast) < 0)
        return NULL;
    return PyLong_FromLong(unsent);

error:
    /* Answers already queued still leave; the error propagates (as a raise in Python would). */
    Py_XDECREF(by_question);
    if (pending)
        flush_sends(self, pending);
    if (fast != NULL) {
        PyObject *kind, *error, *trace;
        PyErr_Fetch(&kind, &error, &trace);
        if (flush_counts(fast) < 0)
            PyErr_Clear();
        PyErr_Restore(kind, error, trace);
    }
    return NULL;
}

static PyMethodDef Batch_methods[] = {
    {"receive", (PyCFunction)Batch_receive, METH_NOARGS,
     "receive() -> int: datagrams read without blocking (0: none queued); raises OSError"},
    {"answer", (PyCFunction)Batch_answer, METH_VARARGS,
     "answer(count, respond, failed) -> int: answers the datagrams read; how many were not sent"},
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
        {&str_cache, "_cache"}, {&str_by_question, "by_question"}, {&str_rotation, "_rotation"},
        {&str_v6, "v6"}, {&str_edns, "edns"}, {&str_edns_do, "edns_do"}, {&str_tc, "tc"},
        {&str_edns_tc, "edns_tc"}, {&str_edns_big, "edns_big"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (*names[i].slot == NULL && (*names[i].slot = PyUnicode_InternFromString(names[i].text)) == NULL)
            return NULL;
    if (PyType_Ready(&FastAnswersType) < 0 || PyType_Ready(&BatchType) < 0)
        return NULL;
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
