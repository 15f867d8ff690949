// The Python module `arpo._C`: empty; importing it runs the TORCH_LIBRARY registrations of the
// other sources, after which the ops are torch.ops.arpo.*.
#include <Python.h>

#define ARPO_CONCAT_(a, b) a##b
#define ARPO_CONCAT(a, b) ARPO_CONCAT_(a, b)

static struct PyModuleDef arpo_c_module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};

PyMODINIT_FUNC ARPO_CONCAT(PyInit_, TORCH_EXTENSION_NAME)(void) { return PyModule_Create(&arpo_c_module); }
