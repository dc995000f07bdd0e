"""Telling text that is clearly not English, so it is never judged as "not an ML problem".

The bundled model and exemplars are English. A German request embedded by an English model lands
near nothing and would be answered "no category", which is wrong: mlmatch simply cannot read it.
:func:`detect_language` names the language of such text so the caller can say so instead.

The rule is deliberately cautious (undecided text counts as English):

* letters of a non-Latin script (Cyrillic, Greek, Arabic, Han, Kana, Hangul, Devanagari and
  others) make up more than half of the letters: that script's language;
* Latin-script text whose common function words ("der", "und", "les", "para", "och") are mostly
  those of one other language, with at least two of them and more than three times as many as
  English ones: that language.

A short title without function words ("Absatzprognose Filialen") is not detected.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

from mlmatch.errors import NotEnglishError

__all__ = ["detect_language", "refuse_foreign"]

# Frequent function words per language. Words that are also common in English text ("die", "in",
# "also", "per", "OS", ".com") are left out of the other languages' lists on purpose.
_FUNCTION_WORDS: dict[str, frozenset[str]] = {
    # One ASCII letter ("a", "e", "o", "y") is as often a list item or an initial as a word.
    name: frozenset(word for word in words.split() if len(word) > 1 or not word.isascii())
    for name, words in {
        "English": (
            "the and of to is are was were be been for with that this these those from by on "
            "at it its we our you your they their which what how can could should would not "
            "have has had do does did there here about into than then when where who will "
            "an or but if as all any some more most other such only also just very"
        ),
        "German": (
            "der das und ist nicht ein eine einen einem einer den dem des mit für auf sich "
            "wir ich sie es auch nach bei aus wie oder aber wenn noch nur zum zur vom über "
            "unsere unser unseren wird werden kann können möchten sind hat haben diese dieser "
            "dass welche welcher jahr nächste nächstes bitte danke"
        ),
        "French": (
            "le la les des du un une est et pour dans sur avec nous vous qui que ne pas "
            "par au aux ce cette ces sont être avoir mais ou où  notre nos votre "
            "leur leurs très  aussi je il elle ils elles peut pouvons voudrions merci"
        ),
        "Spanish": (
            "el la los las del y es en por para con una unos unas que se su sus al lo "
            "como pero más muy está están  ser hay nuestro nuestra nuestros nosotros "
            "podemos queremos cómo qué cuál gracias también sobre entre"
        ),
        "Portuguese": (
            "o    da  das e é em um uma para  que não se por mais como mas "
            "nosso nossa nossos nós podemos queremos está estão são ser também obrigado "
            "obrigada você vocês sobre entre ao aos à"
        ),
        "Italian": (
            "il lo gli della delle dei degli di e è un una  con che non si sono "
            " ma più anche nostro nostra nostri noi possiamo vogliamo questo questa "
            "questi sul sulla nella nel grazie essere molto"
        ),
        "Dutch": (
            "de het een en van  niet dat  voor   zijn wij  ons onze ook "
            "maar bij naar uit om kunnen willen wordt worden dit deze hoe wat graag "
            "bedankt volgend jaar hebben heeft"
        ),
        "Swedish": (
            "och att det är en ett för  på som inte  jag har av  från om "
            "kan vill våra vår hur vad också eller  detta denna tack nästa år"
        ),
        "Danish": (
            "og at det er en et   på som ikke  jeg har af  fra om kan vil "
            "vores hvordan hvad også eller men dette denne tak næste år"
        ),
        "Norwegian": (
            "og at det er en et   på som ikke  jeg har av  fra om kan vil "
            "våre vår hvordan hva også eller men dette denne takk neste år"
        ),
        "Polish": (
            " w na z że się nie  jest  jak od  przez dla oraz  czy nasz nasza "
            "nasze naszych jesteśmy możemy chcemy który która które być jest są dziękuję"
        ),
        "Czech": (
            " v na se že je  jak od    jsou nebo náš naše našich chceme "
            "můžeme který která které být děkuji také při"
        ),
        "Turkish": (
            "ve bir bu için ile de da ne nasıl gibi daha çok olan olarak bizim biz "  # noqa: RUF001
            "istiyoruz mı mi mu mü ama veya teşekkürler sonraki yıl"  # noqa: RUF001
        ),
        "Indonesian": (
            " yang di ke dari untuk dengan ini itu tidak adalah kami kita bisa akan "
            "pada juga atau tetapi bagaimana  terima kasih tahun depan"
        ),
        "Finnish": (
            "ja  ei se että tämä mutta kun niin myös tai miten mitä meidän voimme "
            "haluamme kiitos ensi vuonna"
        ),
    }.items()
}
# Each function word's languages, so a text's words are looked up once, not once per language.
_LANGUAGES_OF: dict[str, tuple[str, ...]] = {}
for _name, _vocabulary in _FUNCTION_WORDS.items():
    for _word in _vocabulary:
        _LANGUAGES_OF[_word] = (*_LANGUAGES_OF.get(_word, ()), _name)
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_ASCII_LETTER = re.compile(r"[A-Za-z]")
# At least this many function words of one other language, and more than _RATIO times as many
# as English ones, so a name or a quoted phrase ("Café de la Paix") leaves English text English.
_MIN_HITS = 2
_RATIO = 3

# Unicode script of a letter (the first word of its character name) to a language name.
_SCRIPTS = {
    "GREEK": "Greek",
    "ARABIC": "Arabic",
    "HEBREW": "Hebrew",
    "DEVANAGARI": "Hindi",
    "BENGALI": "Bengali",
    "GURMUKHI": "Punjabi",
    "GUJARATI": "Gujarati",
    "TAMIL": "Tamil",
    "TELUGU": "Telugu",
    "KANNADA": "Kannada",
    "MALAYALAM": "Malayalam",
    "SINHALA": "Sinhala",
    "THAI": "Thai",
    "LAO": "Lao",
    "KHMER": "Khmer",
    "MYANMAR": "Burmese",
    "GEORGIAN": "Georgian",
    "ARMENIAN": "Armenian",
    "ETHIOPIC": "Amharic",
    "HANGUL": "Korean",
    "HIRAGANA": "Japanese",
    "KATAKANA": "Japanese",
    "CJK": "Chinese",
    "CYRILLIC": "Russian",
}


def detect_language(text: str) -> str | None:
    """The name of the language of ``text`` when it is clearly not English, else ``None``."""
    # NFKC folds styled Latin (mathematical bold, fullwidth letters) into plain letters.
    text = unicodedata.normalize("NFKC", text)
    if text.isascii():
        # Every ASCII letter is Latin: no need to look up each character's script.
        if not _ASCII_LETTER.search(text):
            return None
    else:
        scripts = Counter(_script(ch) for ch in text if ch.isalpha())
        letters = sum(scripts.values())
        if not letters:
            return None
        latin = scripts.pop("LATIN", 0)
        if scripts and sum(scripts.values()) > letters / 2:
            return _script_language(text, scripts)
        if latin == 0:
            return None
    hits = dict.fromkeys(_FUNCTION_WORDS, 0)
    for word in _WORD.findall(text):
        for name in _LANGUAGES_OF.get(word.casefold(), ()):
            hits[name] += 1
    english = hits.pop("English")
    best = max(hits, key=lambda name: hits[name])
    if hits[best] >= _MIN_HITS and hits[best] > _RATIO * english:
        return best
    return None


def refuse_foreign(text: str, what: str = "text") -> None:
    """Raise :class:`~mlmatch.errors.NotEnglishError` when ``text`` is clearly not English."""
    language = detect_language(text)
    if language is not None:
        raise NotEnglishError(
            f"{what} looks like {language}, not English; mlmatch's model and exemplars are "
            "English, so translate it first (with a multilingual model, turn the check off: "
            "Matcher(check_language=False) or --no-language-check)",
            language,
        )


def _script(character: str) -> str:
    name = unicodedata.name(character, "")
    return name.split(" ", 1)[0] if name else "UNKNOWN"


def _script_language(text: str, scripts: Counter[str]) -> str:
    if scripts["HIRAGANA"] or scripts["KATAKANA"]:
        return "Japanese"
    script = scripts.most_common(1)[0][0]
    if script == "CYRILLIC":
        if any(ch in text for ch in "іїєґІЇЄҐ"):
            return "Ukrainian"
        if any(ch in text for ch in "ђћљњџЂЋЉЊЏ"):
            return "Serbian"
    if script == "ARABIC":
        if any(ch in text for ch in "ٹڈڑںے"):
            return "Urdu"
        if any(ch in text for ch in "پچژگی"):
            return "Persian"
    return _SCRIPTS.get(script, f"{script.title()}-script text")
