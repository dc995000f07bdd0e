"""Typed, JSON-serializable results: categories, evidence, matches and classifications."""

from __future__ import annotations

from enum import Enum
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, computed_field

__all__ = ["CalibrationReport", "Category", "Classification", "Evidence", "Match", "Tier"]


class Tier(str, Enum):
    """How much machine learning has advanced in an area over the last decade."""

    REVOLUTIONARY = "revolutionary"
    PROGRESS = "progress"
    LITTLE_PROGRESS = "little-progress"


_F = TypeVar("_F", bound="_Frozen")
_new = object.__new__
_set = object.__setattr__


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def trusted(cls: type[_F], values: dict[str, Any]) -> _F:
        """An instance from ``values`` that are known valid, skipping validation.

        The fast constructor for results mlmatch computed itself, built by the thousand, where
        validating each field again cost more than the rest of building them. What
        :meth:`model_construct` does, minus its generic handling of defaults and aliases:
        ``values`` must name every field, with values of the declared types.
        ``tests/pipeline/test_explain.py`` checks the results equal validated ones.
        """
        instance = _new(cls)
        _set(instance, "__dict__", values)
        _set(instance, "__pydantic_fields_set__", set(values))
        _set(instance, "__pydantic_extra__", None)
        _set(instance, "__pydantic_private__", None)
        return instance


class Category(_Frozen):
    """One area of machine-learning progress from the taxonomy."""

    id: str = Field(description="Stable identifier, e.g. 'time-series-forecasting'.")
    name: str = Field(description="Human-readable name.")
    tier: Tier
    description: str = Field(description="What kind of problem belongs here.")


class Evidence(_Frozen):
    """An exemplar problem description that supported a match."""

    text: str
    similarity: float = Field(description="Cosine similarity between the query and this exemplar.")


class Match(_Frozen):
    """How strongly a text matches one category, with the nearest exemplars as evidence."""

    category: Category
    score: float = Field(description="Match strength in [0, 1]; the ranking uses it.")
    confidence: float | None = Field(
        default=None,
        description="Calibrated probability that this category is the right one "
        "(None when the matcher has no calibration).",
    )
    evidence: list[Evidence] = Field(description="The nearest exemplars of this category.")


class Classification(_Frozen):
    """The answer for one text: the best category (or none), every match, and plain advice."""

    # `category` and `tier` are derived and serialized; ignoring them on input lets a dumped
    # Classification be validated back.
    model_config = ConfigDict(frozen=True, extra="ignore")

    text: str
    label: str | None = Field(description="Best category id, or None when no category fits.")
    matches: list[Match] = Field(description="All categories, best first.")
    verdict: str = Field(description="The tier's advice, or why no category was given.")
    explanation: str = Field(description="One or two sentences for a non-expert.")
    reads_like: str | None = Field(
        default=None,
        description="When mlmatch abstains, what the text reads like (the group of its nearest "
        "counter-examples, e.g. 'ordinary software development'); None otherwise.",
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def category(self) -> Category | None:
        """The matched category, or None when mlmatch abstained."""
        return self.matches[0].category if self.label is not None else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def tier(self) -> Tier | None:
        """The matched category's tier, or None when mlmatch abstained."""
        return self.category.tier if self.category is not None else None

    @property
    def score(self) -> float:
        """Score of the best-ranked category (also when abstaining)."""
        return self.matches[0].score

    @property
    def runner_up(self) -> Match | None:
        """The second-ranked match."""
        return self.matches[1] if len(self.matches) > 1 else None

    @property
    def margin(self) -> float:
        """Score gap between the best and the second-ranked category."""
        return self.matches[0].score - self.matches[1].score if len(self.matches) > 1 else 1.0

    def __str__(self) -> str:
        """One line, as ``mlmatch classify`` starts its answer; ``repr()`` keeps every field.

        ``"time-series-forecasting · Time-series forecasting · little-progress · score 0.93"``,
        or ``"no category (closest: time-series-forecasting, score 0.39)"``.
        """
        best = self.matches[0]
        if self.label is None:
            return f"no category (closest: {best.category.id}, score {best.score:.2f})"
        return (
            f"{self.label} · {best.category.name} · {best.category.tier.value} "
            f"· score {best.score:.2f}"
        )

    def _repr_html_(self) -> str:
        from mlmatch.display import classification_html

        return classification_html(self)


class CalibrationReport(_Frozen):
    """What :meth:`mlmatch.Matcher.calibrate` fitted."""

    method: str = Field(description="The calibration method kept: isotonic or platt.")
    brier: dict[str, float] = Field(description="Held-out Brier score of each method tried.")
    threshold: float | None = Field(
        description="The abstention threshold fitted on the texts (None when not fitted)."
    )
    n: int = Field(description="Number of labelled texts used.")
