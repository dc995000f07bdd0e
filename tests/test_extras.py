"""extras.require: one message, naming the package and the extra, for every optional import."""

from __future__ import annotations

import pytest

from mlmatch.errors import MissingExtraError, MlmatchError
from mlmatch.extras import require


def test_an_installed_module_is_returned():
    import json

    assert require("json", "none", purpose="reading") is json


def test_a_missing_module_names_its_pypi_package_and_the_extra(monkeypatch):
    import sys

    # Both names: another test may have imported the submodule already.
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.linear_model", None)
    with pytest.raises(MissingExtraError) as caught:
        require("sklearn.linear_model", "sklearn", purpose="fitting the head")
    message = str(caught.value)
    assert message == (
        "fitting the head needs scikit-learn, which is not installed; install it with: "
        'pip install "mlmatch[sklearn]"'
    )
    assert caught.value.extra == "sklearn"
    assert isinstance(caught.value, ImportError)
    assert isinstance(caught.value, MlmatchError)
