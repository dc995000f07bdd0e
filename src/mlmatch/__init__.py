"""mlmatch names the area of machine learning a problem description belongs to, and its tier.

Each of its 14 areas sits in one of three tiers, by how far machine learning has come there:
``revolutionary``, ``progress`` or ``little-progress``. A text that is no learning problem gets
no category (label ``none``, ``None`` in Python).

>>> import mlmatch
>>> result = mlmatch.classify("Forecast next month's electricity demand for our region")
>>> result.label, result.tier
('time-series-forecasting', <Tier.LITTLE_PROGRESS: 'little-progress'>)

Importing this package is cheap: the model loads on the first classification.
"""

from mlmatch.calibration import Calibration
from mlmatch.config import MatcherConfig
from mlmatch.diagnostics import HealthReport, diagnose
from mlmatch.encoders import DEFAULT_MODEL, Encoder, load_encoder
from mlmatch.errors import (
    CalibrationError,
    DataFileError,
    ExemplarError,
    MissingExtraError,
    MlmatchError,
    ModelLoadError,
    NotEnglishError,
)
from mlmatch.evaluation import EvaluationReport, evaluate
from mlmatch.exemplars import NONE_LABEL, ExemplarSet, load_exemplars
from mlmatch.frames import classify_frame
from mlmatch.language import detect_language
from mlmatch.matcher import Matcher, classify, classify_many, default_matcher
from mlmatch.models import Category, Classification, Evidence, Match, Tier
from mlmatch.pipeline.scoring import Aggregation
from mlmatch.version import __version__

__all__ = [
    "DEFAULT_MODEL",
    "NONE_LABEL",
    "Aggregation",
    "Calibration",
    "CalibrationError",
    "Category",
    "Classification",
    "DataFileError",
    "Encoder",
    "EvaluationReport",
    "Evidence",
    "ExemplarError",
    "ExemplarSet",
    "HealthReport",
    "Match",
    "Matcher",
    "MatcherConfig",
    "MissingExtraError",
    "MlmatchError",
    "ModelLoadError",
    "NotEnglishError",
    "Tier",
    "__version__",
    "classify",
    "classify_frame",
    "classify_many",
    "default_matcher",
    "detect_language",
    "diagnose",
    "evaluate",
    "load_encoder",
    "load_exemplars",
]
