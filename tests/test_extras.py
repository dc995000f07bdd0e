"""extras.require: one message, naming the package and the extra, for every optional import."""

from __future__ import annotations

import re

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


def test_the_torch_hint_pins_torch_with_the_constraints_file(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingExtraError) as caught:
        require("torch", "torch", purpose="the torch backend")
    assert str(caught.value) == (
        "the torch backend needs torch, which is not installed; install it with: "
        'pip install "mlmatch[torch]" -c constraints.txt'
    )


# One format for every missing extra: "<purpose> needs <package>, which is not installed;
# install it with: pip install "mlmatch[<extra>]"", the extra in double quotes.
ONE_FORMAT = re.compile(
    r'[^;]+ needs [\w-]+, which is not installed; install it with: pip install "mlmatch\[(\w+)\]"'
)


def _report():
    from mlmatch.evaluation import EvaluationReport

    return EvaluationReport.model_construct()


@pytest.mark.parametrize(
    ("hidden", "call", "extra"),
    [
        (["pyarrow", "pyarrow.parquet"], lambda tmp: _parquet(), "parquet"),
        (["ray", "ray.data"], lambda tmp: _ray(), "ray"),
        (["openpyxl"], lambda tmp: _xlsx_in(tmp), "xlsx"),
        (["openpyxl", "openpyxl.cell"], lambda tmp: _xlsx_out(), "xlsx"),
        (["pandas"], lambda tmp: _report().to_frame(), "pandas"),
    ],
    ids=["parquet", "ray", "xlsx-in", "xlsx-out", "to_frame"],
)
def test_every_optional_import_says_the_same(monkeypatch, tmp_path, hidden, call, extra):
    import sys

    for name in hidden:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingExtraError) as caught:
        call(tmp_path)
    match = ONE_FORMAT.fullmatch(str(caught.value))
    assert match is not None, str(caught.value)
    assert match.group(1) == caught.value.extra == extra


def _parquet():
    from mlmatch.io.tables import pyarrow_parquet

    pyarrow_parquet()


def _ray():
    from mlmatch.io.ray import require_ray

    require_ray()


def _xlsx_in(tmp):
    from mlmatch.io.excel import xlsx_reader

    (tmp / "in.xlsx").write_bytes(b"PK")
    xlsx_reader(str(tmp / "in.xlsx"), None)


def _xlsx_out():
    import io

    from mlmatch.io.workbook import SheetWriter

    SheetWriter(io.BytesIO(), ["text"], ["mlmatch_label"])
