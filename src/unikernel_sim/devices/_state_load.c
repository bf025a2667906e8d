/* The two bulk steps of a device-state load (device.py, LoadPlan.apply) in C: a board
 * restore puts back ~150 plain values into 27 objects and compares 27 containers, and
 * the Python loops over them were 4.6 us of a ~20 us restore. The steps and their order
 * are LoadPlan's; only the loops moved. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* load_plain(pairs): for each (values, saved) in the list, values.update(saved). */
static PyObject *load_plain(PyObject *module, PyObject *pairs)
{
    (void)module;
    if (!PyList_Check(pairs))
        return PyErr_Format(PyExc_TypeError, "load_plain takes a list of (dict, dict), not %s",
                            Py_TYPE(pairs)->tp_name);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(pairs); i++) {
        PyObject *pair = PyList_GET_ITEM(pairs, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2)
            return PyErr_Format(PyExc_TypeError, "load_plain: item %zd is not a (dict, dict)", i);
        if (PyDict_Update(PyTuple_GET_ITEM(pair, 0), PyTuple_GET_ITEM(pair, 1)) != 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

/* load_containers(triples): for each (values, name, saved), values[name] becomes a new
 * copy of saved, type(saved)(saved), where it differs from saved (the snapshot keeps
 * its own copy; comparing a register file is cheaper than making a new one). */
static PyObject *load_containers(PyObject *module, PyObject *triples)
{
    (void)module;
    if (!PyList_Check(triples))
        return PyErr_Format(PyExc_TypeError, "load_containers takes a list of (dict, name, saved), not %s",
                            Py_TYPE(triples)->tp_name);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(triples); i++) {
        PyObject *triple = PyList_GET_ITEM(triples, i);
        if (!PyTuple_Check(triple) || PyTuple_GET_SIZE(triple) != 3)
            return PyErr_Format(PyExc_TypeError, "load_containers: item %zd is not a (dict, name, saved)", i);
        PyObject *values = PyTuple_GET_ITEM(triple, 0);
        PyObject *name = PyTuple_GET_ITEM(triple, 1);
        PyObject *saved = PyTuple_GET_ITEM(triple, 2);
        PyObject *current = PyObject_GetItem(values, name);       /* new reference, KeyError if absent */
        if (current == NULL)
            return NULL;
        int same = PyObject_RichCompareBool(current, saved, Py_EQ);
        Py_DECREF(current);
        if (same < 0)
            return NULL;
        if (same)
            continue;
        PyObject *copy = PyObject_CallOneArg((PyObject *)Py_TYPE(saved), saved);
        if (copy == NULL)
            return NULL;
        int status = PyObject_SetItem(values, name, copy);
        Py_DECREF(copy);
        if (status != 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef state_load_methods[] = {
    {"load_plain", load_plain, METH_O,
     "load_plain(pairs): values.update(saved) for each (values, saved) in the list."},
    {"load_containers", load_containers, METH_O,
     "load_containers(triples): values[name] = type(saved)(saved) for each (values, name, saved)\n"
     "in the list where values[name] != saved."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef state_load_module = {
    PyModuleDef_HEAD_INIT, "_state_load",
    "The loops of a device-state load (LoadPlan.apply in device.py).", -1, state_load_methods,
};

PyMODINIT_FUNC PyInit__state_load(void)
{
    return PyModule_Create(&state_load_module);
}
