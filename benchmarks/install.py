"""What installing mlmatch costs: the default install against the torch extra, in fresh venvs.

Run: python benchmarks/install.py [--wheel dist/mlmatch-....whl] [--no-cache] [--keep]

Builds the wheel from the checkout (unless --wheel is given), then for each install (the default
one, and with the ``torch`` extra) creates a fresh virtual environment in a temporary folder and
measures:

* install time: wall time of ``pip install -c constraints.txt <wheel>[extra]`` (pip's own cache
  is used unless --no-cache; the machine's pip configuration, such as local wheel folders,
  applies);
* venv size: ``du`` of the whole environment, and of a fresh empty venv for reference;
* cold start: ``mlmatch classify TEXT`` with an empty ``MLMATCH_CACHE_DIR`` (the default backend
  reads the shipped data/prepared entries; other backends embed the exemplars and fit heads),
  then the second run with that cache filled;
* whether torch can be imported in the environment at all.

In the torch install the same command also runs with ``--backend torch``. Prints a table and
writes benchmarks/results/install.md. Targets for the default install here: at most 400 MB and
60 s.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, write_result

QUERY = "How many umbrellas will we sell next week, from past weeks?"
INSTALLS = {"default": "", "torch": "[torch]"}
SIZE_TARGET_MB = 400
TIME_TARGET_S = 60


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--wheel", type=Path, help="a built wheel (default: build one)")
    parser.add_argument("--no-cache", action="store_true", help="pass --no-cache-dir to pip")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mlmatch-install-"))
    try:
        wheel = args.wheel.resolve() if args.wheel else build_wheel(work / "dist")
        wheel_mb = wheel.stat().st_size / 1e6
        print(f"wheel: {wheel.name}, {wheel_mb:.1f} MB", flush=True)
        empty = work / "empty"
        subprocess.run([sys.executable, "-m", "venv", str(empty)], check=True)
        empty_mb = du_mb(empty)
        rows = []
        for name, extra in INSTALLS.items():
            rows.append(measure(name, f"{wheel}{extra}", work, no_cache=args.no_cache))
            print(format_row(rows[-1]), flush=True)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    default = rows[0]
    verdict = (
        f"default install: {default['venv_mb']:.0f} MB (target ≤ {SIZE_TARGET_MB} MB: "
        f"{'met' if default['venv_mb'] <= SIZE_TARGET_MB else 'missed'}), "
        f"{default['install_s']:.0f} s (target ≤ {TIME_TARGET_S} s: "
        f"{'met' if default['install_s'] <= TIME_TARGET_S else 'missed'})"
    )
    table = [
        "| install | pip install | venv size | packages | torch importable | cold start "
        "`mlmatch classify` | second run | cold start `--backend torch` | second run |",
        "|---|---|---|---|---|---|---|---|---|",
        *(format_row(row) for row in rows),
    ]
    largest = "\n".join(
        f"| {row['name']} | " + ", ".join(f"{n} {mb:.0f} MB" for n, mb in row["largest"]) + " |"
        for row in rows
    )
    text = "\n".join(
        [
            "# Install cost: default against the torch extra",
            "",
            f"Measured {datetime.date.today()} on {platform.machine()}, "
            f"{os.cpu_count()} cores, Python {platform.python_version()}, by "
            "`python benchmarks/install.py`"
            + (" --no-cache" if args.no_cache else " (pip's cache as it was)")
            + f". Wheel: {wheel_mb:.1f} MB. An empty venv is {empty_mb:.0f} MB, included in "
            "every venv size.",
            "",
            *table,
            "",
            verdict + ".",
            "",
            "Cold start: `mlmatch classify` with a fresh, empty `MLMATCH_CACHE_DIR`; the second "
            "run has that cache. The default backend runs the int8 ONNX model shipped in the "
            "wheel (data/model: no export, no torch) and reads the bundled exemplars' "
            "embeddings and fitted heads from the entries shipped in data/prepared, so its "
            "first run embeds and fits nothing. `--backend torch` (torch extra) has no shipped "
            "entries: its first run embeds the exemplars and fits the heads.",
            "",
            "Largest installed packages:",
            "",
            "| install | largest folders in site-packages |",
            "|---|---|",
            largest,
            "",
        ]
    )
    path = write_result("install.md", text)
    print("\n" + text)
    print(f"written to {path}")
    return 0


def build_wheel(out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("mlmatch-*.whl")
    return wheel


def measure(name: str, requirement: str, work: Path, *, no_cache: bool) -> dict:
    env_dir = work / f"venv-{name}"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    command = [str(python), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt")]
    if no_cache:
        command.append("--no-cache-dir")
    print(f"[{name}] pip install {requirement.rpartition('/')[2]}", flush=True)
    started = time.perf_counter()
    subprocess.run([*command, requirement], check=True)
    install_s = time.perf_counter() - started
    packages = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=freeze"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    has_torch = subprocess.run(
        [str(python), "-c", "import importlib.util as u; print(bool(u.find_spec('torch')))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    row = {
        "name": name,
        "install_s": install_s,
        "venv_mb": du_mb(env_dir),
        "packages": len(packages),
        "torch": has_torch == "True",
        "largest": largest_packages(env_dir),
    }
    row["cold_s"], row["warm_s"] = classify_twice(env_dir, work / f"cache-{name}", [])
    if name == "torch":
        row["torch_cold_s"], row["torch_warm_s"] = classify_twice(
            env_dir, work / f"cache-{name}-torch", ["--backend", "torch"]
        )
    return row


def classify_twice(env_dir: Path, cache: Path, options: list[str]) -> tuple[float, float]:
    """Seconds of `mlmatch classify` with an empty cache, then again with it filled."""
    cache.mkdir()
    env = {
        "PATH": f"{env_dir / 'bin'}:/usr/bin:/bin",
        "HOME": str(cache.parent),
        "MLMATCH_CACHE_DIR": str(cache),
        "HF_HUB_OFFLINE": "1",
    }
    times = []
    for _ in range(2):
        started = time.perf_counter()
        run = subprocess.run(
            [str(env_dir / "bin" / "mlmatch"), "classify", *options, QUERY],
            capture_output=True,
            text=True,
            env=env,
            cwd=cache.parent,
            check=False,
        )
        times.append(time.perf_counter() - started)
        if run.returncode != 0:
            raise RuntimeError(f"mlmatch classify failed:\n{run.stderr[-3000:]}")
    return times[0], times[1]


def du_mb(folder: Path) -> float:
    out = subprocess.run(["du", "-sk", str(folder)], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[0]) / 1024


def largest_packages(env_dir: Path, count: int = 6) -> list[tuple[str, float]]:
    (site,) = env_dir.glob("lib/python*/site-packages")
    sizes = [
        (entry.name, du_mb(entry))
        for entry in site.iterdir()
        if entry.is_dir() and not entry.name.endswith((".dist-info", "__pycache__"))
    ]
    return sorted(sizes, key=lambda item: -item[1])[:count]


def format_row(row: dict) -> str:
    torch_cold = f"{row['torch_cold_s']:.1f} s" if "torch_cold_s" in row else "n/a (no torch)"
    torch_warm = f"{row['torch_warm_s']:.1f} s" if "torch_warm_s" in row else "n/a"
    return (
        f"| {row['name']} | {row['install_s']:.0f} s | {row['venv_mb']:,.0f} MB | "
        f"{row['packages']} | {'yes' if row['torch'] else 'no'} | {row['cold_s']:.1f} s | "
        f"{row['warm_s']:.1f} s | {torch_cold} | {torch_warm} |"
    )


if __name__ == "__main__":
    sys.exit(main())
