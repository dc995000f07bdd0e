"""The ``mlmatch`` command line (see :mod:`mlmatch.cli.app` for what the commands share).

Importing this package registers every command on :func:`main`: ``classify``, ``categories``,
``score``, ``report``, ``evaluate``, ``calibrate``, ``diagnose``, ``learn``, ``tune`` and
``prepare``.
"""

from mlmatch.cli import classify, evaluate, learn, report, score, tune
from mlmatch.cli.app import main

__all__ = ["classify", "evaluate", "learn", "main", "report", "score", "tune"]
