"""Regenerate the real outputs the README shows, or check that they are still true.

Run: python scripts/readme_outputs.py           # rewrite the generated blocks in README.md
     python scripts/readme_outputs.py --check   # exit 1, with a diff, when a block drifted

Each generated block sits between ``<!-- generated: NAME -->`` and ``<!-- end: NAME -->`` in the
README. The commands run here are the ones the README shows; timings ("0.2 s (168 rows/s)") are
ignored by --check, since they change from run to run.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import io
import os
import re
import shlex
import subprocess
import sys
import tempfile
from contextlib import redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SCORE = (
    "mlmatch score data/examples/proposals.csv -o proposals-scored.csv --text-column title "
    "--text-column description --overwrite"
)
CLASSIFY = [
    'mlmatch classify "Our chatbot was tricked into revealing its system prompt by a user." '
    "--top 2",
    'mlmatch classify "Plan the weekly shifts of 80 nurses under the union rules"',
    'mlmatch classify "Wir möchten die Verkaufszahlen unserer Filialen für das nächste Quartal '
    'vorhersagen."',
]
LOOP = [
    "mlmatch score data/examples/requests.csv -o scored.csv -t text",
    "mlmatch report scored.csv -o report.html -t text --review 5 --corrections fix.csv",
    "# in fix.csv, correct_label none for rows 2, 4 and 6 (a leaderboard, a paint estimate "
    "and a ranking by fixed rules: nothing is learned)",
    "mlmatch learn fix.csv --into my-exemplars",
    "mlmatch score data/examples/requests.csv -o scored.csv -t text --exemplars my-exemplars "
    "--overwrite",
]
# The rows of data/examples/requests.csv that the loop corrects, and their right label.
CORRECTIONS = {"2": "none", "4": "none", "6": "none"}
TABLE_ROWS = [
    "P001",
    "P002",
    "P003",
    "P004",
    "P005",
    "P006",
    "P007",
    "P008",
    "P009",
    "P010",
    "P021",
]
TABLE_COLUMNS = [
    "id",
    "title",
    "mlmatch_label",
    "mlmatch_tier",
    "mlmatch_closest",
    "mlmatch_score",
    "mlmatch_runner_up",
]
_BLOCK = re.compile(
    r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end: (?P=name) -->)", re.S
)
_TIMING = re.compile(r"in [\d.,]+ s \([\d,]+ rows/s\)")


def run(command: str, cwd: Path) -> str:
    """The stdout and stderr of a README command, as a terminal would show them.

    Each generation starts from an empty cache (the entries that ship with mlmatch are read),
    so what a first run prints is what the README shows.
    """
    args = shlex.split(command)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MLMATCH_CACHE_DIR": str(cwd / ".cache")}
    env.pop("MLMATCH_BACKEND", None)
    done = subprocess.run(
        [sys.executable, "-m", "mlmatch", *args[1:]],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
    )
    return done.stdout + done.stderr


def loop(work: Path) -> str:
    """The README's teaching loop, run for real; the fill-in step is done here."""
    shown = []
    for command in LOOP:
        if command.startswith("#"):
            _fill_in(work / "fix.csv", CORRECTIONS)
            shown.append(f"$ {command}\n")
            continue
        shown.append(f"$ {command}\n{run(command, work)}")
    return "\n".join(part.rstrip() + "\n" for part in shown)


def _fill_in(path: Path, labels: dict[str, str]) -> None:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for item in rows:
        item["correct_label"] = labels.get(item["row"], "")
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def generate() -> dict[str, str]:
    """The body of every generated block, from real runs in a scratch folder."""
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        (work / "data" / "examples").mkdir(parents=True)
        for name in ("proposals.csv", "requests.csv"):
            (work / "data" / "examples" / name).write_bytes(
                (ROOT / "data" / "examples" / name).read_bytes()
            )
        summary = run(SCORE, work)
        with (work / "proposals-scored.csv").open(newline="", encoding="utf-8") as handle:
            rows = {row["id"]: row for row in csv.DictReader(handle)}
        classified = "".join(
            f"$ {command}\n{run(command, work).rstrip()}\n\n" for command in CLASSIFY
        )
        taught = loop(work)
    table = [
        "| " + " | ".join(TABLE_COLUMNS) + " |",
        "|" + "---|" * len(TABLE_COLUMNS),
        *("| " + " | ".join(rows[i][c] for c in TABLE_COLUMNS) + " |" for i in TABLE_ROWS),
    ]
    return {
        "score": f"```text\n$ {SCORE}\n{summary}```\n",
        "proposals": "\n".join(table) + "\n",
        "classify": f"```text\n{classified.rstrip()}\n```\n",
        "python": f"```text\n{python_example()}```\n",
        "learn": f"```text\n{taught}```\n",
    }


def python_example() -> str:
    """Run the README's first Python example and return what it prints."""
    readme = README.read_text(encoding="utf-8")
    code = re.search(r"## In Python\n\n```python\n(.*?)```", readme, re.S)
    if code is None:
        raise SystemExit("README.md has no Python example under '## In Python'")
    printed = io.StringIO()
    with redirect_stdout(printed):
        exec(compile(code.group(1), "README.md", "exec"), {})
    return printed.getvalue()


def normalized(text: str) -> str:
    """The text with its timings blanked out."""
    return _TIMING.sub("in N s (N rows/s)", text)


def main() -> int:
    """Rewrite or check the README; the exit code is 1 when --check finds a drift."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of rewriting")
    args = parser.parse_args()
    readme = README.read_text(encoding="utf-8")
    found = {m.group("name") for m in _BLOCK.finditer(readme)}
    fresh = generate()
    if found != set(fresh):
        print(f"README blocks {sorted(found)} do not match the generated {sorted(fresh)}")
        return 1
    updated = _BLOCK.sub(lambda m: m.group(1) + fresh[m.group("name")] + m.group(4), readme)
    if not args.check:
        README.write_text(updated, encoding="utf-8")
        return 0
    if normalized(updated) == normalized(readme):
        return 0
    diff = difflib.unified_diff(
        normalized(readme).splitlines(),
        normalized(updated).splitlines(),
        "README.md",
        "a real run",
        lineterm="",
    )
    print("\n".join(diff))
    return 1


if __name__ == "__main__":
    sys.exit(main())
