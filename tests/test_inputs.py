"""Bad input gets a clear error or a documented result, never a deep traceback."""

from __future__ import annotations

import pytest

from mlmatch import Matcher
from mlmatch.config import DEFAULT_MAX_CHARS


@pytest.fixture
def matcher(tiny_set, fake_encoder) -> Matcher:
    return Matcher(exemplars=tiny_set, encoder=fake_encoder, use_cache=False)


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("", ValueError, r"text is empty; pass a sentence"),
        ("   \n\t ", ValueError, r"text is only whitespace or control characters"),
        ("\x00\x07\x1b", ValueError, r"text is only whitespace or control characters"),
        ("42", ValueError, r"text has no letters \('42'\); pass words describing a problem"),
        ("3.14 -- 2,000 %", ValueError, r"text has no letters"),
        (None, TypeError, r"text is None; pass a string"),
        (42, TypeError, r"text must be a str, not int"),
        (["a list"], TypeError, r"text must be a str, not list"),
        (b"robot arm", TypeError, r"not bytes \(decode bytes with \.decode\('utf-8'\) first\)"),
    ],
)
def test_bad_single_inputs(matcher: Matcher, text, error, message):
    with pytest.raises(error, match=message):
        matcher.classify(text)


def test_one_megabyte_string_is_refused_quickly_with_advice(matcher, fake_encoder):
    huge = "forecast demand " * (1 << 16)  # 1 MiB
    with pytest.raises(ValueError, match=r"1,048,576 characters, more than max_chars=100,000"):
        matcher.classify(huge)
    assert fake_encoder.encoded[-1] != huge  # refused before any encoding
    assert DEFAULT_MAX_CHARS == 100_000


def test_one_megabyte_string_is_classified_when_the_limit_is_lifted(tiny_set, fake_encoder):
    matcher = Matcher(exemplars=tiny_set, encoder=fake_encoder, max_chars=None, use_cache=False)
    huge = "a b c d e f g h " * (1 << 16) + "robot arm grasping boxes warehouse"
    result = matcher.classify(huge)
    assert result.label == "robots"
    assert len(result.text) == len(huge)


def test_control_characters_are_neutralized(matcher: Matcher, fake_encoder):
    result = matcher.classify("robot\x00 arm\x1b grasping\u2028boxes")
    assert result.label == "robots"
    assert result.text == "robot\x00 arm\x1b grasping\u2028boxes"  # the user's text is kept
    assert "\x00" not in fake_encoder.encoded[-1]


def test_mixed_scripts_give_a_normal_result(matcher: Matcher):
    result = matcher.classify("Прогноз продаж 売上予測 forecast next month sales demand 📈")
    assert result.label == "forecasting"


def test_unicode_is_normalized(matcher: Matcher):
    composed = matcher.classify("caf\u00e9 robot arm grasping")
    decomposed = matcher.classify("cafe\u0301 robot arm grasping")
    assert [m.score for m in composed.matches] == [m.score for m in decomposed.matches]


@pytest.mark.parametrize(
    ("texts", "error", "message"),
    [
        (["robot arm", "", "ok"], ValueError, r"texts\[1\] is empty"),
        (["robot arm", None], TypeError, r"texts\[1\] is None"),
        (["fine", "fine", 3.5], TypeError, r"texts\[2\] must be a str, not float"),
        ("a single string", TypeError, r"expects a list of strings, not a single string"),
        (None, TypeError, r"texts is None"),
        (17, TypeError, r"texts must be an iterable of strings, not int"),
        (
            ["robot arm", "bad \ud800 cell"],
            ValueError,
            r"texts\[1\] holds a lone surrogate \('\\ud800' at character 4\)",
        ),
    ],
)
def test_bad_batches_name_the_index(matcher: Matcher, texts, error, message):
    with pytest.raises(error, match=message):
        matcher.classify_many(texts)


def test_batch_accepts_any_iterable(matcher: Matcher):
    results = matcher.classify_many(t for t in ["robot arm", "forecast sales"])
    assert [r.label for r in results] == ["robots", "forecasting"]


def test_bad_batch_size(matcher: Matcher):
    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        matcher.classify_many(["robot"], batch_size=0)
