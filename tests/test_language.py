"""Text that is clearly not English is named, never judged; English text is never flagged."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT

from mlmatch import Matcher, NotEnglishError, detect_language, load_exemplars
from mlmatch.io.rows import output_columns, score_records


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Prognose der Verkaufszahlen für nächstes Jahr", "German"),
        ("Nous voulons prévoir les ventes de nos magasins pour l'année prochaine.", "French"),
        ("¿Podemos usar IA para predecir la demanda de nuestros productos?", "Spanish"),
        ("Queremos prever a procura dos nossos produtos no próximo ano.", "Portuguese"),
        ("Vogliamo prevedere la domanda dei nostri prodotti per il prossimo anno.", "Italian"),
        ("We willen de vraag naar onze producten voor volgend jaar voorspellen.", "Dutch"),
        ("Vi vill förutsäga efterfrågan på våra produkter nästa år.", "Swedish"),
        ("Chcemy przewidzieć popyt na nasze produkty w przyszłym roku.", "Polish"),
        ("Мы хотим прогнозировать спрос на нашу продукцию", "Russian"),
        ("Ми хочемо прогнозувати попит на нашу продукцію", "Ukrainian"),
        ("我们想预测下个月的销售额", "Chinese"),
        ("来月の売上を予測したい", "Japanese"),
        ("다음 달 매출을 예측하고 싶습니다", "Korean"),
        ("نريد التنبؤ بالمبيعات في الشهر القادم", "Arabic"),
    ],
)
def test_languages_are_named(text: str, language: str):
    assert detect_language(text) == language


@pytest.mark.parametrize(
    "text",
    [
        "Forecast demand for Café de la Paix next summer",
        "Fine-tune BERT on Swahili tweets",
        "Smith et al. compare the MIT-licensed tools on example.com for the OS team",
        "I think I need a model per month to do it",
        "Translate our German contracts ('Die Parteien vereinbaren Folgendes') into English",
        "Kubernetes",
        "42 apples",
    ],
)
def test_english_text_is_not_flagged(text: str):
    assert detect_language(text) is None


def test_no_bundled_exemplar_or_eval_item_is_flagged():
    texts = list(load_exemplars().texts)
    for name in ("dev.jsonl", "test.jsonl"):
        lines = (ROOT / "data" / "eval" / name).read_text(encoding="utf-8").splitlines()
        texts += [json.loads(line)["text"] for line in lines if line.strip()]
    assert [t for t in texts if detect_language(t)] == []


GERMAN = "Wir möchten die Nachfrage nach unseren Produkten für das nächste Jahr vorhersagen."


@pytest.fixture
def matcher(tiny_set, fake_encoder) -> Matcher:
    return Matcher(exemplars=tiny_set, encoder=fake_encoder, use_cache=False)


def test_classify_raises_with_the_language(matcher: Matcher):
    with pytest.raises(NotEnglishError, match=r"text looks like German, not English") as caught:
        matcher.classify(GERMAN)
    assert caught.value.language == "German"
    assert isinstance(caught.value, ValueError)


def test_classify_many_names_the_index(matcher: Matcher):
    with pytest.raises(NotEnglishError, match=r"texts\[1\] looks like German"):
        matcher.classify_many(["forecast next month sales demand", GERMAN])


def test_check_language_can_be_turned_off(tiny_set, fake_encoder):
    matcher = Matcher(
        exemplars=tiny_set, encoder=fake_encoder, use_cache=False, check_language=False
    )
    assert matcher.classify(GERMAN).text == GERMAN


def test_a_batch_row_keeps_the_notice_in_its_error_column(matcher: Matcher):
    rows = score_records(matcher, ["forecast next month sales demand", GERMAN])
    columns = output_columns(1)
    first, second = (dict(zip(columns, row, strict=True)) for row in rows)
    assert first["mlmatch_label"] == "forecasting"
    assert second["mlmatch_label"] == ""
    assert "looks like German, not English" in second["mlmatch_error"]
    assert "machine-learning problem" not in second["mlmatch_explanation"]
