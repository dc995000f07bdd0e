"""Optional dependencies, imported only when a feature needs them.

Every optional import in mlmatch goes through :func:`require`, so a missing package always gives
the same one-line message naming the extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from mlmatch.errors import MissingExtraError

__all__ = ["EXTRAS", "require"]

# What each extra brings, for the messages (pyproject.toml's [project.optional-dependencies]).
EXTRAS = {
    "torch": "sentence-transformers, torch, transformers, onnx and the model's PyTorch weights",
    "sklearn": "scikit-learn",
    "ray": "Ray Data",
    "parquet": "pyarrow",
    "pandas": "pandas",
    "xlsx": "openpyxl",
    "plot": "matplotlib and scikit-learn",
}


# Import names whose package on PyPI is called otherwise.
_DISTRIBUTIONS = {"sklearn": "scikit-learn", "sentence_transformers": "sentence-transformers"}
# Extras that bring torch: pip must take it through the README's constraints.txt, which pins the
# CPU build (pip would otherwise download a multi-GB CUDA build).
_PINNED = {"torch"}


def require(module: str, extra: str | None, *, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`~mlmatch.errors.MissingExtraError` naming ``extra``.

    ``purpose`` starts the message: "<purpose> needs <package>, which is not installed; install
    it with: pip install "mlmatch[<extra>]"" (and ``-c constraints.txt`` for extras with torch).
    ``extra=None`` marks one of mlmatch's own dependencies: the message asks for a reinstall.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        # The missing piece may be a dependency of `module` (torch under sentence-transformers).
        missing = (error.name or module).partition(".")[0]
        missing = _DISTRIBUTIONS.get(missing, missing)
        pin = " -c constraints.txt" if extra in _PINNED else ""
        fix = (
            f'pip install "mlmatch[{extra}]"{pin}'
            if extra
            else "pip install --force-reinstall mlmatch"
        )
        raise MissingExtraError(
            f"{purpose} needs {missing}, which is not installed; install it with: {fix}",
            extra or "",
        ) from error
