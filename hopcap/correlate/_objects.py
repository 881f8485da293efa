"""Optional compiled helper (a Python extension module): the Half tuples of a point.

`conns._build_halves` makes one tuple per half (22 k at a point of the 1.6 M-packet
firewall workload) from a dozen columns: their `tolist`, a zip of 19 iterables and a
tuple copy per half cost ~12 ms a point, the interning of their addresses (`_addresses`)
~3 ms more. Made here straight from the columns' memory, with the same values (Python
ints and bools; addresses as shared (hi, lo) tuples, ports as shared ints), in ~4 ms.

Compiled once, like `_fastwalk`'s helpers, into the user's cache directory (it needs
Python's headers as well as a compiler); without them, or with HOPCAP_NO_CC=1, `make_halves`
returns None and the caller takes its pure Python path.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from hopcap.correlate import _fastwalk

_NAME = "_hopcap_objects"

_SRC = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* an address (hi, lo) -> its tuple, one object per distinct address (open addressing) */
typedef struct { uint64_t hi, lo; PyObject *t; } addr_slot;
typedef struct { addr_slot *s; size_t m; } addr_tab;

static inline uint64_t amix(uint64_t hi, uint64_t lo) {
    uint64_t x = lo * 0x9E3779B97F4A7C15ULL ^ (hi + 0x632BE59BD9B4E019ULL);
    x ^= x >> 31; x *= 0xBF58476D1CE4E5B9ULL; x ^= x >> 29;
    return x;
}
/* a new reference to the tuple of (hi, lo); NULL: error */
static PyObject *addr_get(addr_tab *t, uint64_t hi, uint64_t lo) {
    size_t i = (size_t)amix(hi, lo) & t->m;
    while (t->s[i].t != NULL) {
        if (t->s[i].hi == hi && t->s[i].lo == lo) { Py_INCREF(t->s[i].t); return t->s[i].t; }
        i = (i + 1) & t->m;
    }
    PyObject *tup = PyTuple_New(2);
    if (tup == NULL) return NULL;
    PyObject *a = PyLong_FromUnsignedLongLong(hi), *b = a ? PyLong_FromUnsignedLongLong(lo) : NULL;
    if (b == NULL) { Py_XDECREF(a); Py_DECREF(tup); return NULL; }
    PyTuple_SET_ITEM(tup, 0, a);
    PyTuple_SET_ITEM(tup, 1, b);
    t->s[i].hi = hi; t->s[i].lo = lo; t->s[i].t = tup;  /* the table's reference */
    Py_INCREF(tup);
    return tup;
}

/* a new reference to the int of port value v: one object per port (a point's halves
   share a few thousand ports; every half has two) */
static PyObject *port_get(PyObject **ports, int64_t v) {
    if (v < 0 || v > 65535) return PyLong_FromLongLong(v);
    if (ports[v] == NULL && (ports[v] = PyLong_FromLongLong(v)) == NULL) return NULL;
    Py_INCREF(ports[v]);
    return ports[v];
}

#define NCOL 17
/* make_halves(cls, n_rows, order, shared, cols): the list of `cls` tuples (see
   conns._build_halves), one per half; cols: 17 buffers of nh values each, in this order:
   start, tkey, rkey, v, sport, dport, syn, synack, isn, first_ts, last_ts, has_ts, ack0
   (int64, uint64 or uint8 as below), src_hi, src_lo, dst_hi, dst_lo (uint64) */
static const int ITEM[NCOL] = {8, 8, 8, 1, 8, 8, 1, 1, 8, 8, 8, 1, 8, 8, 8, 8, 8};

static PyObject *make_halves(PyObject *self, PyObject *args) {
    PyTypeObject *cls;
    Py_ssize_t n_rows;
    PyObject *order, *shared, *cols;
    if (!PyArg_ParseTuple(args, "O!nOOO", &PyType_Type, &cls, &n_rows, &order, &shared, &cols))
        return NULL;
    if (!PyType_IsSubtype(cls, &PyTuple_Type) || !PyTuple_Check(cols) ||
        PyTuple_GET_SIZE(cols) != NCOL) {
        PyErr_SetString(PyExc_TypeError, "make_halves: a tuple subclass and 17 columns");
        return NULL;
    }
    Py_buffer b[NCOL];
    int got = 0;
    Py_ssize_t nh = -1;
    PyObject *out = NULL;
    addr_tab at = {NULL, 0};
    PyObject **ports = NULL;
    for (; got < NCOL; got++) {
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(cols, got), &b[got], PyBUF_C_CONTIGUOUS) < 0)
            goto done;
        Py_ssize_t k = b[got].len / ITEM[got];
        if (b[got].itemsize != ITEM[got] || (nh >= 0 && k != nh)) {
            got++;
            PyErr_SetString(PyExc_ValueError, "make_halves: column of another size or type");
            goto done;
        }
        nh = k;
    }
    const int64_t *start = b[0].buf, *sport = b[4].buf, *dport = b[5].buf, *isn = b[8].buf,
                  *first = b[9].buf, *last = b[10].buf, *ack0 = b[12].buf;
    const uint64_t *tkey = b[1].buf, *rkey = b[2].buf, *shi = b[13].buf, *slo = b[14].buf,
                   *dhi = b[15].buf, *dlo = b[16].buf;
    const uint8_t *v = b[3].buf, *syn = b[6].buf, *synack = b[7].buf, *has_ts = b[11].buf;
    size_t cap = 16;
    while (cap < 4 * (size_t)nh + 16) cap <<= 1;
    at.s = PyMem_Calloc(cap, sizeof(addr_slot));
    if (at.s == NULL) { PyErr_NoMemory(); goto done; }
    at.m = cap - 1;
    ports = PyMem_Calloc(65536, sizeof(PyObject *));
    if (ports == NULL) { PyErr_NoMemory(); goto done; }
    out = PyList_New(nh);
    if (out == NULL) goto done;
    PyObject *lo = nh ? PyLong_FromLongLong(start[0]) : NULL;
    if (nh && lo == NULL) goto fail;
    for (Py_ssize_t i = 0; i < nh; i++) {
        /* a half's end is the next one's start: the same int object */
        PyObject *hi = i + 1 < nh ? PyLong_FromLongLong(start[i + 1]) : PyLong_FromSsize_t(n_rows);
        if (hi == NULL) { Py_DECREF(lo); goto fail; }
        PyObject *h = cls->tp_alloc(cls, 19);
        if (h == NULL) { Py_DECREF(lo); Py_DECREF(hi); goto fail; }
        PyList_SET_ITEM(out, i, h);
        PyObject **it = ((PyTupleObject *)h)->ob_item;
        it[0] = PyLong_FromSsize_t(i);
        it[1] = PyLong_FromUnsignedLongLong(tkey[i]);
        it[2] = PyLong_FromUnsignedLongLong(rkey[i]);
        it[3] = PyLong_FromLong(v[i]);
        it[4] = addr_get(&at, shi[i], slo[i]);
        it[5] = addr_get(&at, dhi[i], dlo[i]);
        it[6] = port_get(ports, sport[i]);
        it[7] = port_get(ports, dport[i]);
        it[8] = PyBool_FromLong(syn[i]);
        it[9] = PyBool_FromLong(synack[i]);
        it[10] = PyLong_FromLongLong(isn[i]);
        it[11] = PyLong_FromLongLong(first[i]);
        it[12] = PyLong_FromLongLong(last[i]);
        it[13] = PyBool_FromLong(has_ts[i]);
        it[14] = PyLong_FromLongLong(ack0[i]);
        Py_INCREF(order); it[15] = order;
        it[16] = lo;  /* the reference made for it */
        Py_INCREF(hi); it[17] = hi;
        Py_INCREF(shared); it[18] = shared;
        for (int j = 0; j < 15; j++) if (it[j] == NULL) { Py_DECREF(hi); goto fail; }
        lo = hi;
    }
    if (nh) Py_DECREF(lo);  /* the last `hi` made: held by the last half only */
    goto done;
fail:
    Py_CLEAR(out);
done:
    if (at.s) {
        for (size_t i = 0; i <= at.m; i++) Py_XDECREF(at.s[i].t);
        PyMem_Free(at.s);
    }
    if (ports) {
        for (long v = 0; v < 65536; v++) Py_XDECREF(ports[v]);
        PyMem_Free(ports);
    }
    for (int j = 0; j < got; j++) PyBuffer_Release(&b[j]);
    return out;
}

static PyMethodDef methods[] = {
    {"make_halves", make_halves, METH_VARARGS, "conns._build_halves' Half tuples"},
    {NULL, NULL, 0, NULL},
};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_hopcap_objects", NULL, -1, methods};
PyMODINIT_FUNC PyInit__hopcap_objects(void) { return PyModule_Create(&module); }
"""

_mod: Any = None
_tried = False


def _load() -> Any:
    """The compiled module (built on first use), or None."""
    global _mod, _tried
    if _fastwalk.disabled:  # one switch for every compiled helper (tests compare the paths)
        return None
    if _tried:
        return _mod
    _tried = True
    if os.environ.get("HOPCAP_NO_CC"):
        return None
    # built for this interpreter's ABI, with its headers
    abi = f"{sys.implementation.cache_tag}{sys.abiflags}-{sys.hexversion:x}-"
    so = _fastwalk.compiled("objects", _SRC, ("-O2",), abi, _include)
    if so is None:
        return None
    from importlib.machinery import ExtensionFileLoader, ModuleSpec

    try:
        loader = ExtensionFileLoader(_NAME, str(so))
        mod = loader.create_module(ModuleSpec(_NAME, loader, origin=str(so)))
        loader.exec_module(mod)
    except (OSError, ImportError):
        return None
    _mod = mod
    return mod


def _include() -> list[str] | None:
    """The flag for Python's headers (None: not installed, e.g. no python3-dev)."""
    import sysconfig  # only to build it (~2 ms)

    include = sysconfig.get_paths()["include"]
    return [f"-I{include}"] if (Path(include) / "Python.h").exists() else None


def make_halves(
    cls: type, n_rows: int, order: Any, shared: Any, cols: tuple[Any, ...]
) -> list[Any] | None:
    """The `cls` tuples of `conns._build_halves` (None without the compiled module): per
    half i, (i, tkey, rkey, v, (src_hi, src_lo), (dst_hi, dst_lo), sport, dport, syn,
    synack, isn, first_ts, last_ts, has_ts, ack0, order, start, end, shared), where
    `cols` = (start, tkey, rkey, v, sport, dport, syn, synack, isn, first_ts, last_ts,
    has_ts, ack0, src_hi, src_lo, dst_hi, dst_lo) one value per half, and end is the next
    half's start (`n_rows` for the last)."""
    mod = _load()
    if mod is None:
        return None
    types = (np.int64, np.uint64, np.uint64, np.uint8, np.int64, np.int64, np.uint8, np.uint8,
             np.int64, np.int64, np.int64, np.uint8, np.int64, np.uint64, np.uint64, np.uint64,
             np.uint64)  # fmt: skip
    arrs = tuple(
        np.ascontiguousarray(x.view(np.uint8) if x.dtype == np.bool_ else x, t)
        for x, t in zip(cols, types, strict=True)
    )
    got: list[Any] = mod.make_halves(cls, n_rows, order, shared, arrs)
    return got
