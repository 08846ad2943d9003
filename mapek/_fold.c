/* The Monitor's fold in C: mapek.monitor.Monitor._fold_py, event for event.

Why C. The Monitor folds every event the engine commits, on the event loop's thread,
under the GIL: whatever it costs per event is taken from completions/s (issue 6 asks
for at most 5 % of bench/durable.py). In Python the fold is ~145 bytecodes per
completion; what it does per event is a type test, a dictionary lookup or two and a
few attribute writes, which C does without the interpreter around it.

The contract is the Python fold's (`Monitor._fold_py`, the reference kept beside it):
the same observations, breaches, counts and remembered attributes in the same order,
the same calls (`role_of`, `Monitor._remember`, the give-way every `every` appends),
and `monitor.pos` set to the last append folded whole, also when a call raises part
way. tests/mapek/test_monitor_fold_c.py holds the two to that on random logs of
every event type, live and read.

Only CPython's public C API is used (no internals, no struct offsets): the engine's
events and the sightings are msgspec Structs, read and written by attribute.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Set once by configure(): the Monitor's record types and constants. */
static PyObject *Observation = NULL;   /* mapek.monitor.Observation */
static PyObject *Breach = NULL;        /* mapek.monitor.Breach */
static PyObject *NothingKept = NULL;   /* mapek.sightings.NOTHING_KEPT */
static PyObject *KeptKeys = NULL;      /* tuple of the attribute names kept */

/* Interned names. */
static PyObject *s_item, *s_at, *s_result, *s_output, *s_by, *s_task, *s_parent,
    *s_workflow_id, *s_data, *s_defaults, *s_until, *s_target, *s_alert, *s_closed_at,
    *s_outcome, *s_started_at, *s_held_until, *s_role, *s_resolved_at, *s_open,
    *s_closed, *s_role_of, *s_workflow, *s_fired, *s_breaches, *s_open_breach, *s_pos,
    *s_remember, *s_completed, *s_cancelled, *s_empty, *s_isdisjoint;

enum { COMPLETED, ENABLED, CREATED, HANDED_ON, FIRED, STARTED, HELD, CANCELLED,
       BREACHED, RESOLVED, KINDS };

/* The case data map carries a kept attribute: `not _KEPT.isdisjoint(data)` for the
   engine's dicts, `data != NOTHING_KEPT` for the slim `Kept` read from the log.
   -1 on error. */
static int
carries_kept(PyObject *data, int live)
{
    if (!live)
        return PyObject_RichCompareBool(data, NothingKept, Py_NE);
    if (PyDict_Check(data)) {
        Py_ssize_t n = PyTuple_GET_SIZE(KeptKeys);
        for (Py_ssize_t i = 0; i < n; i++) {
            int has = PyDict_Contains(data, PyTuple_GET_ITEM(KeptKeys, i));
            if (has != 0)
                return has;
        }
        return 0;
    }
    /* Not a dict: ask a frozenset, as the Python fold does. */
    PyObject *kept = PyFrozenSet_New(KeptKeys);
    if (kept == NULL)
        return -1;
    PyObject *disjoint = PyObject_CallMethodOneArg(kept, s_isdisjoint, data);
    Py_DECREF(kept);
    if (disjoint == NULL)
        return -1;
    int r = PyObject_Not(disjoint);
    Py_DECREF(disjoint);
    return r;
}

/* dict.pop(key, None) as a new reference (NULL with no error set: absent). */
static PyObject *
dict_pop(PyObject *dict, PyObject *key)
{
    PyObject *v = PyDict_GetItemWithError(dict, key);
    if (v == NULL)
        return NULL;
    Py_INCREF(v);
    if (PyDict_DelItem(dict, key) < 0) {
        Py_DECREF(v);
        return NULL;
    }
    return v;
}

/* An attribute of `o` set to `e`'s attribute `name`. */
static int
copy_attr(PyObject *o, PyObject *to, PyObject *e, PyObject *name)
{
    PyObject *v = PyObject_GetAttr(e, name);
    if (v == NULL)
        return -1;
    int r = PyObject_SetAttr(o, to, v);
    Py_DECREF(v);
    return r;
}

/* An open observation closed: closed_at and outcome (the caller appends it). */
static int
close_item(PyObject *o, PyObject *e, PyObject *outcome)
{
    if (copy_attr(o, s_closed_at, e, s_at) < 0 || PyObject_SetAttr(o, s_outcome, outcome) < 0)
        return -1;
    return 0;
}

/* One event. 0 on success, -1 with an exception set. */
static int
fold_event(PyObject *monitor, PyObject *e, int kind, PyObject *case_id,
           PyObject *open_, PyObject *closed, PyObject *role_of, PyObject *workflow,
           PyObject *fired, int live)
{
    PyObject *key = NULL, *item = NULL, *o = NULL, *v = NULL, *wf = NULL, *task = NULL;
    int rc = -1;

    switch (kind) {
    case COMPLETED: {
        if ((item = PyObject_GetAttr(e, s_item)) == NULL
            || (key = PyTuple_Pack(2, case_id, item)) == NULL)
            goto done;
        o = dict_pop(open_, key);
        if (o == NULL && PyErr_Occurred())
            goto done;
        if (o != NULL) {
            if (close_item(o, e, s_completed) < 0
                || copy_attr(o, s_result, e, s_result) < 0)
                goto done;
            /* o.by = e.by or o.by */
            if ((v = PyObject_GetAttr(e, s_by)) == NULL)
                goto done;
            int truthy = PyObject_IsTrue(v);
            if (truthy < 0 || (truthy && PyObject_SetAttr(o, s_by, v) < 0))
                goto done;
            Py_CLEAR(v);
            if (PyList_Append(closed, o) < 0)
                goto done;
        }
        if ((v = PyObject_GetAttr(e, s_output)) == NULL)
            goto done;
        if (v != Py_None) {
            int kept = carries_kept(v, live);
            if (kept < 0)
                goto done;
            if (kept) {
                PyObject *r = PyObject_CallMethodObjArgs(monitor, s_remember, case_id, v, NULL);
                if (r == NULL)
                    goto done;
                Py_DECREF(r);
            }
        }
        break;
    }
    case ENABLED: {
        if ((v = PyObject_GetAttr(e, s_parent)) == NULL)
            goto done;
        long parent = PyLong_AsLong(v);
        if (parent == -1 && PyErr_Occurred())
            goto done;
        if (parent >= 0)
            break;
        wf = PyDict_GetItemWithError(workflow, case_id);
        if (wf == NULL && PyErr_Occurred())
            goto done;
        wf = wf != NULL ? wf : s_empty;
        Py_INCREF(wf);
        PyObject *at;
        if ((item = PyObject_GetAttr(e, s_item)) == NULL
            || (task = PyObject_GetAttr(e, s_task)) == NULL
            || (at = PyObject_GetAttr(e, s_at)) == NULL)
            goto done;
        PyObject *args[5] = {case_id, wf, task, item, at};
        o = PyObject_Vectorcall(Observation, args, 5, NULL);
        Py_DECREF(at);
        if (o == NULL || (key = PyTuple_Pack(2, case_id, item)) == NULL
            || PyDict_SetItem(open_, key, o) < 0)
            goto done;
        if (role_of != Py_None) {
            PyObject *role = PyObject_CallFunctionObjArgs(role_of, wf, task, NULL);
            if (role == NULL)
                goto done;
            int r = PyObject_SetAttr(o, s_role, role);
            Py_DECREF(role);
            if (r < 0)
                goto done;
        }
        break;
    }
    case CREATED:
    case HANDED_ON: {
        if ((wf = PyObject_GetAttr(e, s_workflow_id)) == NULL
            || PyDict_SetItem(workflow, case_id, wf) < 0)
            goto done;
        if ((v = PyObject_GetAttr(e, kind == CREATED ? s_data : s_defaults)) == NULL)
            goto done;
        if (v != Py_None) {
            int kept = carries_kept(v, live);
            if (kept < 0)
                goto done;
            if (kept) {
                PyObject *r = PyObject_CallMethodObjArgs(monitor, s_remember, case_id, v, NULL);
                if (r == NULL)
                    goto done;
                Py_DECREF(r);
            }
        }
        break;
    }
    case FIRED: {
        /* fired[(workflow.get(case_id, ""), e.task)] += 1 (a Counter: dict storage) */
        wf = PyDict_GetItemWithError(workflow, case_id);
        if (wf == NULL && PyErr_Occurred())
            goto done;
        wf = wf != NULL ? wf : s_empty;
        Py_INCREF(wf);
        if ((task = PyObject_GetAttr(e, s_task)) == NULL
            || (key = PyTuple_Pack(2, wf, task)) == NULL)
            goto done;
        PyObject *count = PyDict_GetItemWithError(fired, key);
        if (count == NULL && PyErr_Occurred())
            goto done;
        PyObject *one = PyLong_FromLong(1);
        if (one == NULL)
            goto done;
        v = count == NULL ? one : PyNumber_Add(count, one);
        if (count != NULL)
            Py_DECREF(one);
        if (v == NULL || PyDict_SetItem(fired, key, v) < 0)
            goto done;
        break;
    }
    case STARTED:
    case HELD: {
        if ((item = PyObject_GetAttr(e, s_item)) == NULL
            || (key = PyTuple_Pack(2, case_id, item)) == NULL)
            goto done;
        PyObject *open_item = PyDict_GetItemWithError(open_, key);
        if (open_item == NULL) {
            if (PyErr_Occurred())
                goto done;
            break;
        }
        o = Py_NewRef(open_item);
        if (kind == STARTED) {
            if (copy_attr(o, s_started_at, e, s_at) < 0 || copy_attr(o, s_by, e, s_by) < 0)
                goto done;
        }
        else if (copy_attr(o, s_held_until, e, s_until) < 0)
            goto done;
        break;
    }
    case CANCELLED: {
        if ((item = PyObject_GetAttr(e, s_item)) == NULL
            || (key = PyTuple_Pack(2, case_id, item)) == NULL)
            goto done;
        o = dict_pop(open_, key);
        if (o == NULL && PyErr_Occurred())
            goto done;
        if (o != NULL && (close_item(o, e, s_cancelled) < 0
                          || PyList_Append(closed, o) < 0))
            goto done;
        break;
    }
    case BREACHED: {
        PyObject *fields[5] = {NULL, NULL, NULL, NULL, NULL};  /* item task at target alert */
        PyObject *names[5] = {s_item, s_task, s_at, s_target, s_alert};
        int ok = 1;
        for (int i = 0; i < 5 && ok; i++)
            ok = (fields[i] = PyObject_GetAttr(e, names[i])) != NULL;
        if (ok) {
            wf = PyDict_GetItemWithError(workflow, case_id);
            if (wf == NULL && PyErr_Occurred())
                ok = 0;
            else {
                wf = wf != NULL ? wf : s_empty;
                Py_INCREF(wf);
            }
        }
        if (ok) {
            PyObject *args[7] = {case_id, wf, fields[0], fields[1], fields[2], fields[3],
                                 fields[4]};
            o = PyObject_Vectorcall(Breach, args, 7, NULL);
            ok = o != NULL;
        }
        if (ok) {
            PyObject *breaches = PyObject_GetAttr(monitor, s_breaches);
            ok = breaches != NULL && PyList_Append(breaches, o) == 0;
            Py_XDECREF(breaches);
        }
        if (ok) {
            PyObject *open_breach = PyObject_GetAttr(monitor, s_open_breach);
            ok = open_breach != NULL && (key = PyTuple_Pack(2, case_id, fields[0])) != NULL
                 && PyDict_SetItem(open_breach, key, o) == 0;
            Py_XDECREF(open_breach);
        }
        for (int i = 0; i < 5; i++)
            Py_XDECREF(fields[i]);
        if (!ok)
            goto done;
        break;
    }
    case RESOLVED: {
        PyObject *open_breach = PyObject_GetAttr(monitor, s_open_breach);
        if (open_breach == NULL)
            goto done;
        if ((item = PyObject_GetAttr(e, s_item)) == NULL
            || (key = PyTuple_Pack(2, case_id, item)) == NULL) {
            Py_DECREF(open_breach);
            goto done;
        }
        o = dict_pop(open_breach, key);
        Py_DECREF(open_breach);
        if (o == NULL && PyErr_Occurred())
            goto done;
        if (o != NULL && copy_attr(o, s_resolved_at, e, s_at) < 0)
            goto done;
        break;
    }
    }
    rc = 0;
done:
    Py_XDECREF(key);
    Py_XDECREF(item);
    Py_XDECREF(o);
    Py_XDECREF(v);
    Py_XDECREF(wf);
    Py_XDECREF(task);
    return rc;
}

/* fold(monitor, appends, kinds, live, give_way, every) -> None

   `appends`: an iterable of (pos, case_id, events); `kinds`: the ten event classes in
   the order of mapek.monitor._READ_KINDS; `live`: data maps are dicts. */
static PyObject *
fold(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "fold() takes 6 positional arguments");
        return NULL;
    }
    PyObject *monitor = args[0], *appends = args[1], *kinds = args[2],
             *give_way = args[4];
    int live = PyObject_IsTrue(args[3]);
    long every = PyLong_AsLong(args[5]);
    if (live < 0 || (every == -1 && PyErr_Occurred()))
        return NULL;
    if (Observation == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "mapek._fold.configure() was not called");
        return NULL;
    }
    if (!PyTuple_Check(kinds) || PyTuple_GET_SIZE(kinds) != KINDS) {
        PyErr_SetString(PyExc_TypeError, "kinds: a tuple of the ten folded event types");
        return NULL;
    }
    PyTypeObject *kind_of[KINDS];
    for (int i = 0; i < KINDS; i++)
        kind_of[i] = (PyTypeObject *)PyTuple_GET_ITEM(kinds, i);

    PyObject *open_ = NULL, *closed = NULL, *role_of = NULL, *workflow = NULL,
             *fired = NULL, *it = NULL, *done = NULL, *append = NULL;
    int ok = 0;
    if ((open_ = PyObject_GetAttr(monitor, s_open)) == NULL
        || (closed = PyObject_GetAttr(monitor, s_closed)) == NULL
        || (role_of = PyObject_GetAttr(monitor, s_role_of)) == NULL
        || (workflow = PyObject_GetAttr(monitor, s_workflow)) == NULL
        || (fired = PyObject_GetAttr(monitor, s_fired)) == NULL
        || (done = PyObject_GetAttr(monitor, s_pos)) == NULL)
        goto out;
    if (!PyDict_Check(open_) || !PyList_Check(closed) || !PyDict_Check(workflow)
        || !PyDict_Check(fired)) {
        PyErr_SetString(PyExc_TypeError, "a Monitor's open, closed, _workflow and fired");
        goto out;
    }
    if ((it = PyObject_GetIter(appends)) == NULL)
        goto out;
    long n = 0;
    while ((append = PyIter_Next(it)) != NULL) {
        if (!PyTuple_Check(append) || PyTuple_GET_SIZE(append) != 3) {
            PyErr_SetString(PyExc_TypeError, "an append: (pos, case_id, events)");
            goto out;
        }
        if (++n == every) {
            PyObject *r = PyObject_CallNoArgs(give_way);
            if (r == NULL)
                goto out;
            Py_DECREF(r);
            n = 0;
        }
        PyObject *pos = PyTuple_GET_ITEM(append, 0), *case_id = PyTuple_GET_ITEM(append, 1);
        PyObject *events = PySequence_Fast(PyTuple_GET_ITEM(append, 2),
                                           "an append's events: a sequence");
        if (events == NULL)
            goto out;
        Py_ssize_t count = PySequence_Fast_GET_SIZE(events);
        PyObject **items = PySequence_Fast_ITEMS(events);
        for (Py_ssize_t i = 0; i < count; i++) {
            PyObject *e = items[i];
            PyTypeObject *t = Py_TYPE(e);
            int kind = 0;
            while (kind < KINDS && kind_of[kind] != t)
                kind++;
            if (kind == KINDS)
                continue;  /* not folded: timers, tokens, case ends, ... */
            if (fold_event(monitor, e, kind, case_id, open_, closed, role_of, workflow,
                           fired, live) < 0) {
                Py_DECREF(events);
                goto out;
            }
        }
        Py_DECREF(events);
        Py_SETREF(done, Py_NewRef(pos));
        Py_CLEAR(append);
    }
    ok = !PyErr_Occurred();
out:
    Py_XDECREF(append);
    if (done != NULL) {
        /* The position moves to the last append folded whole, also on an error: a
           fold that fails part way resumes at the append it failed on. */
        PyObject *exc_type, *exc_value, *exc_tb;
        PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
        if (PyObject_SetAttr(monitor, s_pos, done) < 0 && exc_type == NULL)
            ok = 0;
        else if (exc_type != NULL)
            PyErr_Restore(exc_type, exc_value, exc_tb);
        else
            PyErr_Clear();
    }
    Py_XDECREF(it);
    Py_XDECREF(done);
    Py_XDECREF(fired);
    Py_XDECREF(workflow);
    Py_XDECREF(role_of);
    Py_XDECREF(closed);
    Py_XDECREF(open_);
    if (!ok)
        return NULL;
    Py_RETURN_NONE;
}

/* configure(Observation, Breach, NOTHING_KEPT, kept_names) -> None */
static PyObject *
configure(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "configure() takes 4 positional arguments");
        return NULL;
    }
    if (!PyTuple_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "kept_names: a tuple of str");
        return NULL;
    }
    Py_XSETREF(Observation, Py_NewRef(args[0]));
    Py_XSETREF(Breach, Py_NewRef(args[1]));
    Py_XSETREF(NothingKept, Py_NewRef(args[2]));
    Py_XSETREF(KeptKeys, Py_NewRef(args[3]));
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"fold", (PyCFunction)(void (*)(void))fold, METH_FASTCALL,
     "fold(monitor, appends, kinds, live, give_way, every): Monitor._fold_py in C."},
    {"configure", (PyCFunction)(void (*)(void))configure, METH_FASTCALL,
     "configure(Observation, Breach, NOTHING_KEPT, kept_names): the Monitor's types."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "mapek._fold", "The Monitor's fold in C (see _fold.c).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__fold(void)
{
    struct { PyObject **slot; const char *name; } names[] = {
        {&s_item, "item"}, {&s_at, "at"}, {&s_result, "result"}, {&s_output, "output"},
        {&s_by, "by"}, {&s_task, "task"}, {&s_parent, "parent"},
        {&s_workflow_id, "workflow_id"}, {&s_data, "data"}, {&s_defaults, "defaults"},
        {&s_until, "until"}, {&s_target, "target"}, {&s_alert, "alert"},
        {&s_closed_at, "closed_at"}, {&s_outcome, "outcome"},
        {&s_started_at, "started_at"}, {&s_held_until, "held_until"}, {&s_role, "role"},
        {&s_resolved_at, "resolved_at"}, {&s_open, "open"}, {&s_closed, "closed"},
        {&s_role_of, "role_of"}, {&s_workflow, "_workflow"}, {&s_fired, "fired"},
        {&s_breaches, "breaches"}, {&s_open_breach, "_open_breach"}, {&s_pos, "pos"},
        {&s_remember, "_remember"}, {&s_completed, "completed"},
        {&s_cancelled, "cancelled"}, {&s_empty, ""}, {&s_isdisjoint, "isdisjoint"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if ((*names[i].slot = PyUnicode_InternFromString(names[i].name)) == NULL)
            return NULL;
    return PyModule_Create(&module);
}
