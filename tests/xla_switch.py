"""A pytest plugin (loaded by conftest.py): models built in tests run without XLA, except in tests marked
``@pytest.mark.xla``, which test the XLA fast path itself.

vit_zoo compiles a ``VisionTransformer``'s inference and training steps with XLA by default on TensorFlow
(``vit_zoo.model.fast_path``): seconds of compiling per fresh model, for a call of milliseconds on the tiny
configs of the tests. Here the one decision function, ``fast_path.xla_by_default``, answers False outside
``xla`` tests, which gives every model Keras' own defaults: ``jit_compile`` False on a CPU, eager
``model(x)``, Keras' ``predict``. The switch is set before each test's fixtures are made, so a
module-scoped model is built under the setting of the first test that asks for it. Subprocesses started
by tests keep vit_zoo's defaults.

On TensorFlow, unmarked tests also run every ``tf.function`` eagerly (``tf.config.run_functions_eagerly``):
Keras' own ``predict`` / ``fit`` / ``evaluate`` steps then skip tracing, which took ~0.3 s per fresh tiny model
against milliseconds of running it (measured, one run each way: 69 tests of evaluate, features and the HF family
parity took 61 s with tracing, 37.5 s without, back to back; the whole TensorFlow run 547 s against 497 s). Exporters still trace (a
concrete function is always traced), ``tf.data`` functions are not affected, and ``xla`` tests run every
function as users get it.

``xla`` tests run as on a CPU without native bf16, where XLA is vit_zoo's engine for every policy (on an
AVX-512 BF16 / AMX CPU vit_zoo runs TensorFlow's oneDNN graph instead: ``fast_path.default_engine``): the
CPU flags read as AVX2-only there, whichever machine runs the suite. Tests of the engine choice set the
flags they need with monkeypatch.
"""
import os

import pytest

_xla = {"on": True}


def pytest_configure(config):
    config.addinivalue_line("markers", "xla: tests vit_zoo's XLA fast path (every other test builds its models "
                                       "with XLA off and, on TensorFlow, runs tf.functions eagerly; "
                                       "tests/xla_switch.py)")
    # TensorFlow's reminder, each time a tf.data function is traced under run_functions_eagerly, that the
    # option does not reach tf.data (as intended here)
    config.addinivalue_line("filterwarnings", "ignore:Even though the `tf.config.experimental_run_functions_"
                                              "eagerly`:UserWarning")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    _install()
    _xla["on"] = item.get_closest_marker("xla") is not None
    if os.environ.get("KERAS_BACKEND") == "tensorflow":
        import tensorflow as tf

        tf.config.run_functions_eagerly(not _xla["on"])


AVX2_ONLY = frozenset({"avx2", "fma"})


def _install():
    from vit_zoo.model import fast_path

    decide = fast_path.xla_by_default
    if getattr(decide, "switched", False):
        return

    def xla_by_default(model) -> bool:
        return _xla["on"] and decide(model)
    xla_by_default.switched = True
    fast_path.xla_by_default = xla_by_default
    machine_flags = fast_path.cpu_flags

    def cpu_flags():
        return AVX2_ONLY if _xla["on"] else machine_flags()
    fast_path.cpu_flags = cpu_flags
