/* The two bulk steps of a device-state load (device.py, LoadPlan.apply) in C: a board
 * restore puts back ~150 plain values into 27 objects and compares 27 containers, and
 * the Python loops over them were 4.6 us of a ~20 us restore. The steps and their order
 * are LoadPlan's; only the loops moved. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Put saved's items into values, skipping those values already holds (the same
 * object: what the previous load put there, if nothing changed it since). Returns 1 if
 * an item was put, 0 if none, -1 with an exception set. */
static int put_plain(PyObject *values, PyObject *saved)
{
    if (!PyDict_Check(values) || !PyDict_Check(saved)) {
        PyErr_SetString(PyExc_TypeError, "load_plain: a pair is not (dict, dict)");
        return -1;
    }
    PyObject *key, *value;
    Py_ssize_t position = 0;
    int changed = 0;
    while (PyDict_Next(saved, &position, &key, &value)) {
        PyObject *current = PyDict_GetItemWithError(values, key);     /* borrowed */
        if (current == value)
            continue;
        if (current == NULL && PyErr_Occurred())
            return -1;
        if (PyDict_SetItem(values, key, value) != 0)
            return -1;
        changed = 1;
    }
    return changed;
}

typedef int (*put_fn)(PyObject *item);          /* 1 put, 0 left alone, -1 error */

/* put() each item of list, a tuple of `arity` items each (shape names them in errors);
 * bytes with put()'s flag per item, or NULL with an exception set. */
static PyObject *put_each(PyObject *list, Py_ssize_t arity, put_fn put, const char *function, const char *shape)
{
    if (!PyList_Check(list))
        return PyErr_Format(PyExc_TypeError, "%s takes a list of %s, not %s", function, shape, Py_TYPE(list)->tp_name);
    Py_ssize_t count = PyList_GET_SIZE(list);
    PyObject *flags = PyBytes_FromStringAndSize(NULL, count);
    if (flags == NULL)
        return NULL;
    char *flag = PyBytes_AS_STRING(flags);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyList_GET_ITEM(list, i);
        int changed = -1;
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != arity)
            PyErr_Format(PyExc_TypeError, "%s: item %zd is not a %s", function, i, shape);
        else
            changed = put(item);
        if (changed < 0) {
            Py_DECREF(flags);
            return NULL;
        }
        flag[i] = (char)changed;
    }
    return flags;
}

static int put_pair(PyObject *pair)
{
    return put_plain(PyTuple_GET_ITEM(pair, 0), PyTuple_GET_ITEM(pair, 1));
}

/* load_plain(pairs): for each (values, saved) in the list, values.update(saved).
 * Returns bytes with one flag per pair: 1 where a value was not already there. */
static PyObject *load_plain(PyObject *module, PyObject *pairs)
{
    (void)module;
    return put_each(pairs, 2, put_pair, "load_plain", "(dict, dict)");
}

/* values[name] = type(saved)(saved) unless equal to saved already: 1 if put, 0 if
 * not, -1 with an exception set (KeyError when values has no such entry). */
static int put_container(PyObject *values, PyObject *name, PyObject *saved)
{
    PyObject *current = PyObject_GetItem(values, name);                 /* new reference */
    if (current == NULL)
        return -1;
    int same = PyObject_RichCompareBool(current, saved, Py_EQ);
    Py_DECREF(current);
    if (same != 0)
        return same < 0 ? -1 : 0;
    PyObject *copy = PyObject_CallOneArg((PyObject *)Py_TYPE(saved), saved);
    if (copy == NULL)
        return -1;
    int status = PyObject_SetItem(values, name, copy);
    Py_DECREF(copy);
    return status != 0 ? -1 : 1;
}

static int put_triple(PyObject *triple)
{
    return put_container(PyTuple_GET_ITEM(triple, 0), PyTuple_GET_ITEM(triple, 1), PyTuple_GET_ITEM(triple, 2));
}

/* load_containers(triples): for each (values, name, saved), values[name] becomes a new
 * copy of saved, type(saved)(saved), where it differs from saved (the snapshot keeps
 * its own copy; comparing a register file is cheaper than making a new one). Returns
 * bytes with one flag per triple: 1 where a copy was put. */
static PyObject *load_containers(PyObject *module, PyObject *triples)
{
    (void)module;
    return put_each(triples, 3, put_triple, "load_containers", "(dict, name, saved)");
}

/* links_hold(links): whether each (owner's __dict__, name, index or None, child) still
 * holds child at owner[name] (or at owner[name][index], a list): the nested objects a
 * plan was made for have not been replaced. */
static PyObject *links_hold(PyObject *module, PyObject *links)
{
    (void)module;
    if (!PyList_Check(links))
        return PyErr_Format(PyExc_TypeError, "links_hold takes a list, not %s", Py_TYPE(links)->tp_name);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(links); i++) {
        PyObject *link = PyList_GET_ITEM(links, i);
        if (!PyTuple_Check(link) || PyTuple_GET_SIZE(link) != 4 || !PyDict_Check(PyTuple_GET_ITEM(link, 0)))
            return PyErr_Format(PyExc_TypeError, "links_hold: item %zd is not a (dict, name, index, child)", i);
        PyObject *current = PyDict_GetItemWithError(PyTuple_GET_ITEM(link, 0), PyTuple_GET_ITEM(link, 1));
        if (current == NULL) {
            if (PyErr_Occurred())
                return NULL;
            Py_RETURN_FALSE;
        }
        PyObject *index = PyTuple_GET_ITEM(link, 2);
        if (index != Py_None) {
            Py_ssize_t at = PyLong_AsSsize_t(index);
            if (at == -1 && PyErr_Occurred())
                return NULL;
            if (!PyList_Check(current) || at < 0 || at >= PyList_GET_SIZE(current))
                Py_RETURN_FALSE;
            current = PyList_GET_ITEM(current, at);
        }
        if (current != PyTuple_GET_ITEM(link, 3))
            Py_RETURN_FALSE;
    }
    Py_RETURN_TRUE;
}

static PyMethodDef state_load_methods[] = {
    {"links_hold", links_hold, METH_O,
     "links_hold(links): whether every (owner's __dict__, name, index or None, child) still holds child."},
    {"load_plain", load_plain, METH_O,
     "load_plain(pairs): values.update(saved) for each (values, saved) in the list; bytes, 1\n"
     "for each pair where a value was not already the saved object."},
    {"load_containers", load_containers, METH_O,
     "load_containers(triples): values[name] = type(saved)(saved) for each (values, name, saved)\n"
     "in the list where values[name] != saved; bytes, 1 for each triple copied."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef state_load_module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "_state_load",
    .m_doc = "The loops of a device-state load (LoadPlan.apply in device.py).",
    .m_size = -1,
    .m_methods = state_load_methods,
};

PyMODINIT_FUNC PyInit__state_load(void)
{
    return PyModule_Create(&state_load_module);
}
