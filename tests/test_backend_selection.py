"""The test suite's backend options (tests/conftest.py): ``--backend`` sets KERAS_BACKEND and skips what
needs TensorFlow with its reason; ``--cross-backend`` keeps only the tests CROSS_BACKEND lists; every entry
of CROSS_BACKEND names a test that exists (a stale entry would drop coverage silently)."""
import ast
from pathlib import Path

import pytest

import conftest

TESTS = Path(conftest.__file__).parent
SUITE = '''
import os
import pytest

@pytest.mark.tensorflow_only("tf.distribute")
def test_needs_tensorflow():
    pass

def test_runs_anywhere():
    assert os.environ["KERAS_BACKEND"] == "{backend}"
'''


def _copy_conftest(pytester):
    """The suite's conftest.py and the plugins it loads, in pytester's folder."""
    pytester.makeconftest((TESTS / "conftest.py").read_text())
    pytester.makepyfile(xla_switch=(TESTS / "xla_switch.py").read_text(),
                        suite_time=(TESTS / "suite_time.py").read_text())


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_backend_option_sets_keras_backend_and_skips_tensorflow_only_tests(pytester, backend):
    _copy_conftest(pytester)
    pytester.makepyfile(test_suite=SUITE.format(backend=backend))
    result = pytester.runpytest_subprocess("--backend", backend, "-rs")
    if backend == "tensorflow":
        result.assert_outcomes(passed=2)
    else:
        result.assert_outcomes(passed=1, skipped=1)
        result.stdout.fnmatch_lines(["*needs KERAS_BACKEND=tensorflow: tf.distribute*"])
    result.stdout.fnmatch_lines([f"keras backend: {backend}"])


def test_cross_backend_keeps_only_the_listed_tests(pytester):
    """A listed test is kept, its unlisted neighbour deselected, and a module with no entry not imported."""
    _copy_conftest(pytester)
    pytester.makepyfile(**{"tests/model/test_model": "def test_keras_round_trip():\n    pass\n\n\n"
                                                     "def test_not_listed():\n    pass\n",
                           "tests/test_unlisted": "raise ImportError('a module CROSS_BACKEND does not name was "
                                                  "imported')\n"})
    result = pytester.runpytest_subprocess("--backend", "torch", "--cross-backend", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()  # an import of test_unlisted would be an error
    result.stdout.fnmatch_lines(["tests/model/test_model.py::test_keras_round_trip",
                                 "1/2 tests collected (1 deselected)*"])


@pytest.mark.parametrize("entry", sorted(conftest.CROSS_BACKEND))
def test_every_cross_backend_entry_names_a_test_that_exists(entry):
    path, _, test = entry.partition("::")
    file = TESTS.parent / path
    assert file.is_file(), f"CROSS_BACKEND names '{path}', which does not exist"
    if test:
        name = test.partition("[")[0]
        functions = {node.name for node in ast.walk(ast.parse(file.read_text())) if isinstance(node, ast.FunctionDef)}
        assert name in functions, f"CROSS_BACKEND names {name}, which '{path}' does not define"


def test_entries_match_whole_files_and_tests_not_prefixes(monkeypatch):
    monkeypatch.setattr(conftest, "CROSS_BACKEND", {"tests/use/test_a.py": "", "tests/test_b.py::test_y": ""})
    match = conftest._in_cross_backend_suite
    assert match("tests/use/test_a.py::test_x") and match("use/test_a.py::test_x[jax]")
    assert match("tests/test_b.py::test_y") and match("tests/test_b.py::test_y[1-2]")
    assert not match("tests/use/test_a_more.py::test_x") and not match("tests/test_b.py::test_y_other")
