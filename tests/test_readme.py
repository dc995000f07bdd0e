"""The README's Quickstart commands are the ones CI runs, verbatim."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import ROOT


def quickstart_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_the_readme_has_exactly_two_quickstart_commands_and_ci_runs_both():
    commands = quickstart_commands()
    assert len(commands) == 2
    assert all("\n" not in command for command in commands)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    for command in commands:
        assert command in ci, f"CI does not run the README command {command!r}"
    assert "python -m pytest" in commands[1]


def test_the_main_jobs_output_stays_out_of_git_status():
    output = re.search(r" -o (\S+)", quickstart_commands()[0])
    assert output is not None
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert output.group(1) in ignored


@pytest.mark.slow
def test_the_outputs_the_readme_shows_are_what_mlmatch_prints(real_matcher):
    # real_matcher fills the session's cache, which the script's runs share.
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "readme_outputs.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert run.returncode == 0, (
        "README outputs drifted; run python scripts/readme_outputs.py\n" + run.stdout[-3000:]
    )
