"""MatcherConfig: every matcher option declared, coerced and checked once."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlmatch import Aggregation, Calibration, ExemplarSet, Matcher, MatcherConfig
from mlmatch.encoders import Backend


def test_strings_become_enums_and_defaults_are_the_matchers():
    config = MatcherConfig(aggregation="centroid", backend="static")
    assert config.aggregation is Aggregation.CENTROID
    assert config.backend is Backend.STATIC
    assert MatcherConfig().threshold is None  # the matcher's 0.22 unless a calibration brings one


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"k": 0}, "k must be at least 1"),
        ({"threshold": 1.5}, "threshold must be in"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"max_chars": 0}, "max_chars must be positive"),
        ({"threads": 0}, "threads must be at least 1"),
        ({"description_weight": 2}, "description_weight must be in"),
        ({"context_similarity": 3}, "context_similarity must be in"),
        ({"aggregation": "mean"}, "unknown aggregation 'mean'"),
        ({"backend": "tensorflow"}, "unknown backend 'tensorflow'"),
    ],
)
def test_bad_values_say_what_is_wrong(options, message):
    with pytest.raises(ValueError, match=message):
        MatcherConfig(**options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"adapter": "/some/folder"}, "adapter must be True or False, got '/some/folder'"),
        ({"check_language": "no"}, "check_language must be True or False, got 'no'"),
        ({"use_cache": "false"}, "use_cache must be True or False, got 'false'"),
        ({"use_none": 1}, "use_none must be True or False, got 1"),
        ({"k": 2.5}, "k must be a whole number, got 2.5"),
        ({"batch_size": True}, "batch_size must be a whole number, got True"),
        ({"threshold": "0.3"}, "threshold must be a number, got '0.3'"),
        ({"calibration": 3}, "calibration must be True, False, a Calibration or the path"),
    ],
)
def test_options_of_the_wrong_type_are_refused_by_name(options, message):
    """Issue 28: a string such as "false" was read as True."""
    with pytest.raises(TypeError, match=message):
        MatcherConfig(**options)
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        MatcherConfig(threshold=float("nan"))


def test_an_unknown_option_is_named_with_the_known_ones():
    with pytest.raises(TypeError, match=r"unknown matcher option\(s\) 'treshold'.*threshold"):
        MatcherConfig.from_options({"treshold": 0.3})
    with pytest.raises(TypeError, match="'treshold'"):
        Matcher(treshold=0.3)


def test_replace_validates_and_keeps_the_rest():
    config = MatcherConfig(threshold=0.3).replace(k=5)
    assert (config.threshold, config.k) == (0.3, 5)
    with pytest.raises(ValueError, match="k must be at least 1"):
        config.replace(k=0)


def test_resolved_reads_the_exemplars_and_the_calibration_file(
    tiny_dir: Path, fake_encoder, tmp_path
):
    matcher = Matcher(exemplars=tiny_dir, encoder=fake_encoder, use_cache=False)
    texts = ["robot arm grasping", "weekly demand forecast", "a cake recipe"] * 12
    labels = ["robots", "forecasting", "none"] * 12
    path = matcher.calibrate(texts, labels).save(tmp_path / "calibration.json")
    config = MatcherConfig(exemplars=tiny_dir, calibration=path).resolved()
    assert isinstance(config.exemplars, ExemplarSet)
    assert isinstance(config.calibration, Calibration)
    with pytest.raises(ValueError, match="calibration"):
        MatcherConfig(calibration=tmp_path / "absent.json").resolved()


def test_matcher_takes_a_config_and_options_override_it(tiny_set, fake_encoder):
    config = MatcherConfig(exemplars=tiny_set, threshold=0.4, use_cache=False)
    matcher = Matcher(encoder=fake_encoder, config=config, threshold=0.3)
    assert matcher.threshold == 0.3
    assert matcher.config.exemplars is tiny_set
