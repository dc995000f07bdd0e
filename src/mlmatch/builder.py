"""Building a matcher: from one :class:`~mlmatch.MatcherConfig` to the parts a Matcher holds.

:func:`build_parts` does every slow or fallible step once, in order, and each step reads only
what the steps before it produced:

1. read the files the config names (exemplars, a calibration file) and open the artifact store;
2. check, before any slow work, that the optional packages the build will need are installed;
3. find the exemplar folder's adapter and load the encoder (:class:`~mlmatch.encoders.EncoderSpec`);
4. build the :class:`~mlmatch.index.ExemplarIndex` (embeddings per text, the head);
5. decide the confidence and the threshold (:func:`decide_confidence`, the one place).

A :class:`~mlmatch.Matcher` is then only the parts; :meth:`Matcher.from_parts
<mlmatch.Matcher.from_parts>` joins parts built elsewhere without loading anything.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

from mlmatch.adapter import Adapter, adapter_for
from mlmatch.calibration import Calibration, Calibrator
from mlmatch.config import DEFAULT_THRESHOLD, MatcherConfig
from mlmatch.encoders import (
    Backend,
    Encoder,
    EncoderSpec,
    batch_size_of,
    load_spec,
    parse_backend,
)
from mlmatch.errors import MissingExtraError
from mlmatch.exemplars import ExemplarSet
from mlmatch.index import ExemplarIndex, calibration_key, head_key, scoring_id
from mlmatch.pipeline.scoring import Aggregation
from mlmatch.store import ArtifactStore

logger = logging.getLogger(__name__)

__all__ = [
    "MatcherParts",
    "build_parts",
    "decide_confidence",
    "decide_threshold",
    "with_exemplars",
]


@dataclass(frozen=True)
class MatcherParts:
    """Everything a matcher is made of: built once, never changed."""

    config: MatcherConfig
    """The settings, with their files read (exemplars loaded, a calibration file parsed)."""
    encoder: Encoder
    index: ExemplarIndex
    calibrator: Calibrator | None
    threshold: float
    batch_size: int
    adapter: Adapter | None = None
    store: ArtifactStore | None = None


def build_parts(config: MatcherConfig, encoder: Encoder | None = None) -> MatcherParts:
    """Read, load, embed and fit everything ``config`` describes (see the module docstring).

    ``encoder`` replaces the model ``config`` names (then ``config.model`` must be None).
    """
    if encoder is not None and config.model is not None:
        raise ValueError("pass either model or encoder, not both")
    source = str(config.calibration) if isinstance(config.calibration, (str, Path)) else ""
    config = config.resolved()
    exemplars = config.exemplars
    assert isinstance(exemplars, ExemplarSet)  # resolved() loads them
    store = ArtifactStore.open(config.cache_dir, enabled=config.use_cache)
    adapter = None
    if encoder is None:
        # An adapter is tuned on its folder's own set: layers on top do not make it stale.
        adapter = adapter_for(exemplars.source, exemplars.base_hash) if config.adapter else None
        backend = parse_backend(config.backend)
        spec = EncoderSpec(config.model, backend, config.device, config.threads, adapter)
        check_extras_ahead(spec, config, exemplars, store)
        # A model's own files (an export, a merged adapter) are kept even with use_cache=False:
        # they are the model, not data derived from the exemplars.
        encoder = load_spec(spec, ArtifactStore.open(config.cache_dir))
    batch_size = config.batch_size or batch_size_of(encoder)
    index = ExemplarIndex.build(exemplars, encoder, config, batch_size=batch_size, store=store)
    calibrator, threshold = decide_confidence(config, index, encoder.model_id, store, source)
    return MatcherParts(config, encoder, index, calibrator, threshold, batch_size, adapter, store)


def with_exemplars(parts: MatcherParts, exemplars: ExemplarSet) -> MatcherParts:
    """``parts`` with other exemplars: the same encoder and store; the index and confidence anew.

    Texts embedded before come from the store, and a head warm-starts from the base set's.
    """
    config = parts.config.replace(exemplars=exemplars)
    if isinstance(config.calibration, Calibration):
        # A calibration holds for the exemplars it was fitted on, never for others: these get
        # their own, cross-fitted (or, for a small layer, the base set's).
        logger.warning(
            "the given calibration was fitted for other exemplars; these use their own "
            "(fit one for them with mlmatch calibrate)"
        )
        config = config.replace(calibration=True)
    store = parts.store or ArtifactStore(None)
    index = ExemplarIndex.build(
        exemplars, parts.encoder, config, batch_size=parts.batch_size, store=store
    )
    calibrator, threshold = decide_confidence(config, index, parts.encoder.model_id, store)
    return dataclasses.replace(
        parts, config=config, index=index, calibrator=calibrator, threshold=threshold
    )


def decide_confidence(
    config: MatcherConfig,
    index: ExemplarIndex,
    model_id: str,
    store: ArtifactStore | None,
    source: str = "",
) -> tuple[Calibrator | None, float]:
    """The calibrator a matcher uses and its threshold (see ``MatcherConfig.calibration``).

    A given :class:`~mlmatch.Calibration` is refused unless fitted for this model, these
    exemplars and these scoring settings; ``True`` cross-fits one on the exemplars (stored).
    """
    calibration = config.calibration
    if isinstance(calibration, Calibration):
        calibration.check(model_id, index.exemplars.content_hash, index.scoring_id(), source=source)
        return calibration.calibrator, decide_threshold(config.threshold, calibration.threshold)
    calibrator = None
    if calibration is True and store is not None:
        calibrator = index.exemplar_calibration(model_id, store)
    return calibrator, decide_threshold(config.threshold, None)


def decide_threshold(explicit: float | None, calibrated: float | None) -> float:
    """The abstention threshold: the one given, else the calibration's, else the default."""
    if explicit is not None:
        return explicit
    return calibrated if calibrated is not None else DEFAULT_THRESHOLD


def check_extras_ahead(
    spec: EncoderSpec, config: MatcherConfig, exemplars: ExemplarSet, store: ArtifactStore
) -> None:
    """Refuse at once, naming the extra, a build that would need scikit-learn and lacks it.

    Fitting a head or cross-fitting the calibration needs scikit-learn; the bundled setup ships
    both fitted, but other exemplars, another model or the static backend fit them on first use.
    Without this check the missing package would surface after a minute of embedding.
    """
    if _installed("sklearn") or spec.backend is Backend.TORCH:
        return  # the torch extra brings scikit-learn too
    model_id = _expected_model_id(spec)
    use_none = config.use_none and exemplars.has_none
    needs = []
    linear = config.aggregation in (Aggregation.LINEAR, Aggregation.HYBRID)
    if linear and not store.has_arrays(head_key(model_id, exemplars.content_hash, use_none)):
        needs.append("fitting the scoring head")
    scoring = scoring_id(config.aggregation, config.k, use_none, config.description_weight)
    key = calibration_key(model_id, exemplars.content_hash, scoring)
    if config.calibration is True and not store.has_arrays(key):
        needs.append("cross-fitting calibrated confidence")
    if needs:
        raise MissingExtraError(
            f"{' and '.join(needs)} for exemplars of your own, another model or the static "
            "backend needs scikit-learn, which is not installed; install it with: "
            'pip install "mlmatch[sklearn]"',
            "sklearn",
        )


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # blocked, or a broken installation
        return False


def _expected_model_id(spec: EncoderSpec) -> str:
    from mlmatch.encoders.onnx import onnx_model_id

    model_id = onnx_model_id(spec.model, spec.adapter)
    if spec.backend is Backend.STATIC:
        from mlmatch.encoders.static import static_model_id

        return static_model_id(model_id)
    return model_id
