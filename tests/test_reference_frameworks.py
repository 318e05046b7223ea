"""``require``: a missing reference framework skips its tests, except under ``CI=true``, where it fails."""
import pytest

from reference_frameworks import require


def test_a_missing_reference_fails_under_ci_and_skips_elsewhere(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"reference framework 'vit_zoo_no_such_reference' is missing "
                                                    r"under CI=true .*; .ci/run installs it"):
        require("vit_zoo_no_such_reference")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="reference framework 'vit_zoo_no_such_reference' is not "
                                                    "installed"):
        require("vit_zoo_no_such_reference")
    assert require("numpy").__name__ == "numpy"
