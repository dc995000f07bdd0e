"""Exemplar folders: the bundled taxonomy honours its contract; broken files fail clearly."""

from __future__ import annotations

import json
import os
import re
import resource
import socket
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from conftest import ROOT, TINY, write_exemplar_dir

from mlmatch import ExemplarError, ExemplarSet, Tier, load_exemplars, yamlfiles
from mlmatch.exemplars import NONE_LABEL, default_exemplar_dir

# The category ids and tiers are a contract (../shared/taxonomy.md).
CONTRACT = {
    "large-scale-training": Tier.REVOLUTIONARY,
    "ml-infrastructure": Tier.REVOLUTIONARY,
    "transfer-learning": Tier.REVOLUTIONARY,
    "adversarial-attacks": Tier.REVOLUTIONARY,
    "reinforcement-learning": Tier.PROGRESS,
    "robotics": Tier.PROGRESS,
    "interpretability": Tier.PROGRESS,
    "robustness-uncertainty": Tier.PROGRESS,
    "privacy-preserving-ml": Tier.PROGRESS,
    "fairness": Tier.PROGRESS,
    "causal-inference": Tier.LITTLE_PROGRESS,
    "tabular-prediction": Tier.LITTLE_PROGRESS,
    "time-series-forecasting": Tier.LITTLE_PROGRESS,
    "continual-learning": Tier.LITTLE_PROGRESS,
}


def _key(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def test_bundled_taxonomy_matches_the_contract():
    exemplars = load_exemplars()
    assert {c.id: c.tier for c in exemplars.categories} == CONTRACT
    counts = exemplars.counts()
    assert all(counts[cid] >= 60 for cid in CONTRACT), counts
    assert counts[NONE_LABEL] >= 120
    assert {t.id for t in exemplars.tiers} == set(Tier)
    # Categories come best tier first.
    order = [c.tier for c in exemplars.categories]
    assert order == sorted(order, key=list(Tier).index)


def test_dev_set_is_labelled_and_disjoint_from_the_exemplars():
    lines = (ROOT / "data" / "eval" / "dev.jsonl").read_text(encoding="utf-8").splitlines()
    items = [json.loads(line) for line in lines if line.strip()]
    labels = [item["label"] for item in items]
    assert set(labels) == set(CONTRACT) | {NONE_LABEL}
    assert all(labels.count(cid) >= 10 for cid in CONTRACT)
    assert labels.count(NONE_LABEL) >= 30
    exemplar_keys = {_key(t) for t in load_exemplars().texts}
    assert not [item["text"] for item in items if _key(item["text"]) in exemplar_keys]


def test_default_folder_is_the_checkout_data_in_development():
    assert (default_exemplar_dir() / "tiers.yaml").is_file()


def test_tiny_folder_loads(tiny_set: ExemplarSet):
    assert tiny_set.category_ids == ("finetune", "robots", "forecasting")
    assert tiny_set.has_none
    assert len(tiny_set) == sum(len(texts) for _, texts in TINY.values())
    assert tiny_set.exemplars_of("robots") == list(TINY["robots"][1])
    with pytest.raises(KeyError, match="unknown category 'nope'"):
        tiny_set.category("nope")


def test_content_hash_changes_with_any_exemplar(tmp_path: Path):
    first = ExemplarSet.from_directory(write_exemplar_dir(tmp_path / "a"))
    changed = dict(TINY, robots=("progress", [*TINY["robots"][1], "robot vacuum maps a flat"]))
    second = ExemplarSet.from_directory(write_exemplar_dir(tmp_path / "b", changed))
    assert first.content_hash == ExemplarSet.from_directory(tmp_path / "a").content_hash
    assert first.content_hash != second.content_hash


def _break(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text, encoding="utf-8")


GOOD_HEADER = "id: robots\nname: Robots\ntier: progress\ndescription: Robots.\n"


@pytest.mark.parametrize(
    ("file_text", "message"),
    [
        (
            GOOD_HEADER.replace("progress", "mythical") + "exemplars:\n  - a robot\n",
            r"robots\.yaml: unknown tier 'mythical'",
        ),
        (
            GOOD_HEADER + "exemplars:\n  - a robot\n  - '   '\n",
            r"robots\.yaml: exemplars: entry 1 is empty",
        ),
        (
            GOOD_HEADER + "exemplars:\n  - a robot arm\n  - A  robot ARM\n",
            r"robots\.yaml: exemplars: entry 1 repeats entry 0: 'A robot ARM'",
        ),
        (
            "id: robots\nname: Robots\ntier: progress\nexemplars:\n  - a robot\n",
            r"robots\.yaml: missing field 'description'",
        ),
        (
            GOOD_HEADER + "colour: blue\nexemplars:\n  - a robot\n",
            r"robots\.yaml: unknown field 'colour'",
        ),
        (
            GOOD_HEADER + "exemplars:\n  - a robot\nexemplars:\n  - another robot\n",
            r"robots\.yaml: invalid YAML at line 7, column 1: the key 'exemplars' is given twice",
        ),
        (GOOD_HEADER + "exemplars: []\n", r"robots\.yaml: no exemplars: give an `exemplars` list"),
        (
            GOOD_HEADER + "groups:\n  - reads_like: tools\n    exemplars: []\n",
            r"robots\.yaml: groups\.0\.exemplars: List should have at least 1",
        ),
        (
            GOOD_HEADER + "exemplars:\n  - a robot\n"
            "groups:\n  - reads_like: x\n    exemplars:\n      - A Robot\n",
            r"robots\.yaml: .*groups\.0 repeats an entry of exemplars: 'A Robot'",
        ),
        (GOOD_HEADER + "exemplars:\n  - [unclosed\n", r"robots\.yaml: invalid YAML at line 7"),
        ("- just\n- a list\n", r"robots\.yaml: expected a mapping of fields, found list"),
        (
            GOOD_HEADER.replace("id: robots", "id: Robots!") + "exemplars:\n  - a robot\n",
            r"robots\.yaml: id: String should match pattern",
        ),
        (
            GOOD_HEADER.replace("tier: progress", "tier: none") + "exemplars:\n  - a robot\n",
            r"robots\.yaml: only the category with id 'none' may",
        ),
    ],
)
def test_broken_category_file_names_file_and_entry(tiny_dir: Path, file_text: str, message: str):
    _break(tiny_dir, "robots.yaml", file_text)
    with pytest.raises(ExemplarError, match=message):
        ExemplarSet.from_directory(tiny_dir)


def test_duplicate_category_id_names_both_files(tiny_dir: Path):
    _break(tiny_dir, "robots2.yaml", GOOD_HEADER + "exemplars:\n  - another robot\n")
    with pytest.raises(ExemplarError, match=r"robots2\.yaml: category id 'robots' is already"):
        ExemplarSet.from_directory(tiny_dir)


def test_exemplar_shared_by_two_categories_is_rejected(tiny_dir: Path):
    _break(
        tiny_dir, "robots.yaml", GOOD_HEADER + "exemplars:\n  - forecast next month sales demand\n"
    )
    with pytest.raises(ExemplarError, match=r"also appears in .*forecasting\.yaml"):
        ExemplarSet.from_directory(tiny_dir)


def test_missing_folder_and_missing_tiers(tmp_path: Path, tiny_dir: Path):
    with pytest.raises(ExemplarError, match="does not exist"):
        ExemplarSet.from_directory(tmp_path / "nowhere")
    (tiny_dir / "tiers.yaml").unlink()
    with pytest.raises(ExemplarError, match=r"has no tiers\.yaml"):
        ExemplarSet.from_directory(tiny_dir)


def test_non_utf8_file_is_reported(tiny_dir: Path):
    (tiny_dir / "robots.yaml").write_bytes(GOOD_HEADER.encode() + b"exemplars:\n  - caf\xe9\n")
    with pytest.raises(ExemplarError, match=r"robots\.yaml: not UTF-8 text"):
        ExemplarSet.from_directory(tiny_dir)


def test_from_examples_uses_the_taxonomy(tiny_set: ExemplarSet):
    built = ExemplarSet.from_examples(
        ["robot arm", "forecast demand", "cake recipe"],
        ["robots", "forecasting", "none"],
        taxonomy=tiny_set,
    )
    assert built.category_ids == ("robots", "forecasting")
    assert built.category("robots") == tiny_set.category("robots")
    assert built.has_none
    with pytest.raises(ExemplarError, match=r"labels\[1\] is 'robotz', not a category"):
        ExemplarSet.from_examples(["a", "b"], ["robots", "robotz"], taxonomy=tiny_set)
    with pytest.raises(ExemplarError, match=r"texts\[0\] is not a non-empty string"):
        ExemplarSet.from_examples(["  "], ["robots"], taxonomy=tiny_set)
    with pytest.raises(ExemplarError, match="2 texts for 1 labels"):
        ExemplarSet.from_examples(["a", "b"], ["robots"], taxonomy=tiny_set)


def test_yml_files_are_read(tiny_dir: Path):
    (tiny_dir / "robots.yaml").rename(tiny_dir / "robots.yml")
    assert "robots" in ExemplarSet.from_directory(tiny_dir).category_ids


# ----------------------------------------------------------------------------- untrusted folders


def _mlmatch_limited(*args: str) -> subprocess.CompletedProcess[str]:
    """``mlmatch ARGS`` in a process held to 2 GB of memory and a minute, for hostile files."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 * 1024**3, 2 * 1024**3))

    return subprocess.run(
        [sys.executable, "-m", "mlmatch", *args],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limit,
        check=False,
    )


def _replace_with_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _replace_with_zero(path: Path) -> None:
    path.unlink()
    path.symlink_to("/dev/zero")


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("robots.yaml", _replace_with_zero, r"\(a link to /dev/zero\) is a character device"),
        ("robots.yaml", _replace_with_fifo, r"is a FIFO \(named pipe\)"),
        ("tiers.yaml", _replace_with_zero, r"\(a link to /dev/zero\) is a character device"),
    ],
)
def test_a_device_or_fifo_is_refused_on_the_command_line(
    tiny_dir: Path, name: str, make, message: str
):
    # Before: a link to /dev/zero read until MemoryError, a FIFO hung forever.
    make(tiny_dir / name)
    run = _mlmatch_limited("classify", "--exemplars", str(tiny_dir), "a robot arm")
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and str(tiny_dir / name) in lines[0], run.stderr
    assert re.search(message, lines[0])
    assert "must be regular YAML files" in lines[0]


def test_a_folder_or_socket_named_like_a_category_file_is_refused(tiny_dir: Path):
    (tiny_dir / "zz.yaml").mkdir()
    with pytest.raises(ExemplarError, match=r"zz\.yaml is a folder; exemplar files must be"):
        ExemplarSet.from_directory(tiny_dir)
    (tiny_dir / "zz.yaml").rmdir()
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tiny_dir / "zz.yaml"))
        with pytest.raises(ExemplarError, match=r"zz\.yaml is a socket"):
            ExemplarSet.from_directory(tiny_dir)


def test_a_file_over_the_size_limit_is_refused(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch):
    assert yamlfiles.MAX_FILE_BYTES == 4 * 1024 * 1024  # the limit docs/cli.md states
    limit = max(path.stat().st_size for path in tiny_dir.iterdir())
    monkeypatch.setattr(yamlfiles, "MAX_FILE_BYTES", limit)
    head = GOOD_HEADER + "exemplars:\n  - a robot arm "
    _break(tiny_dir, "robots.yaml", head + "x" * (limit - len(head) - 1) + "\n")
    assert "robots" in ExemplarSet.from_directory(tiny_dir).category_ids  # at the limit: read
    _break(tiny_dir, "robots.yaml", head + "x" * (limit - len(head)) + "\n")
    with pytest.raises(ExemplarError, match=rf"robots\.yaml is larger than {limit:,} bytes"):
        ExemplarSet.from_directory(tiny_dir)


def test_deep_nesting_is_refused_naming_the_file(tiny_dir: Path):
    # Before: 50,000 nested brackets ended as "internal error: RecursionError".
    _break(tiny_dir, "robots.yaml", GOOD_HEADER + "exemplars: " + "[" * 50_000 + "]" * 50_000)
    with pytest.raises(
        ExemplarError, match=r"robots\.yaml: invalid YAML at line 5, column 43: nested deeper"
    ):
        ExemplarSet.from_directory(tiny_dir)
    # Nesting up to the limit is read (and then refused by the schema, not by the reader).
    levels = yamlfiles.MAX_NESTING - 2  # the file's mapping and the string are two
    _break(tiny_dir, "robots.yaml", GOOD_HEADER + f"exemplars: {'[' * levels}x{']' * levels}\n")
    with pytest.raises(ExemplarError, match=r"robots\.yaml: exemplars\.0: Input should be a valid"):
        ExemplarSet.from_directory(tiny_dir)


def test_yaml_aliases_are_refused(tiny_dir: Path):
    # An alias stands for a whole earlier node: a few kB could stand for gigabytes of text.
    _break(
        tiny_dir,
        "robots.yaml",
        "id: robots\nname: &n Robots\ntier: progress\ndescription: *n\nexemplars: [a robot]\n",
    )
    with pytest.raises(ExemplarError, match=r"robots\.yaml: .*line 4, .*the alias \*n is not"):
        ExemplarSet.from_directory(tiny_dir)
