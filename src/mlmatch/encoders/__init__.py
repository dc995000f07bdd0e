"""Sentence encoders: the protocol the matcher needs and three backends that satisfy it.

* :mod:`~mlmatch.encoders.base`: the :class:`Encoder` protocol, :class:`Backend`, long-text
  windows; numpy only.
* :mod:`~mlmatch.encoders.resolve`: which model files to load and the id of their embedding space.
* :mod:`~mlmatch.encoders.onnx`: int8 ONNX on onnxruntime (the default; no torch at run time).
* :mod:`~mlmatch.encoders.export`: exporting a model to ONNX (tooling; needs the ``torch`` extra).
* :mod:`~mlmatch.encoders.static`: a distilled token table (fastest, least accurate).
* :mod:`~mlmatch.encoders.torch`: sentence-transformers on torch (the reference; needs the
  ``torch`` extra).

Nothing heavy is imported until :func:`load_encoder` loads a backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mlmatch.encoders import base
from mlmatch.encoders.base import *  # noqa: F403  (re-exports base.__all__, listed there once)
from mlmatch.encoders.base import Backend, Encoder, EncoderSpec, parse_backend
from mlmatch.store import ArtifactStore

if TYPE_CHECKING:
    from mlmatch.adapter import Adapter

__all__ = ["load_encoder", "load_spec"]
__all__ += base.__all__


def load_encoder(
    model: str | Path | None = None,
    *,
    device: str | None = None,
    backend: Backend | str | None = None,
    cache_dir: str | Path | None = None,
    threads: int | None = None,
    adapter: Adapter | None = None,
    store: ArtifactStore | None = None,
) -> Encoder:
    """Load a sentence model from local files only, run by the chosen backend.

    ``None`` or ``"all-MiniLM-L6-v2"`` is the bundled model. Anything else must be a local folder
    or a model name already in the local Hugging Face cache; nothing is downloaded. ``backend``
    (default: :func:`default_backend`) picks how the model runs; the onnx and static backends
    build their files once in the artifact store (``store``, else the one at ``cache_dir``,
    default: the mlmatch cache folder). ``threads`` caps the CPU threads the encoder uses
    (default: every available core); for torch it sets torch's process-wide count. ``adapter``
    (see :mod:`mlmatch.adapter`) is merged into the model before any backend uses it.
    """
    spec = EncoderSpec(model, parse_backend(backend), device, threads, adapter)
    return load_spec(spec, store or ArtifactStore.open(cache_dir))


def load_spec(spec: EncoderSpec, store: ArtifactStore) -> Encoder:
    """The encoder ``spec`` describes, its derived files kept in ``store``."""
    if spec.backend is Backend.ONNX:
        from mlmatch.encoders.onnx import load_onnx_encoder

        return load_onnx_encoder(spec, store)
    if spec.backend is Backend.STATIC:
        from mlmatch.encoders.static import load_static_encoder

        return load_static_encoder(spec, store)
    from mlmatch.encoders.torch import load_torch_encoder

    return load_torch_encoder(spec, store)
