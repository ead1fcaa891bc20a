"""The wheel carries the package data and nothing else; an installed (non-editable) package finds its data;
the Makefile accepts exactly the Pythons pyproject.toml declares.

The wheel is built offline from a copy of the working tree (what `git ls-files` lists, committed or not), so
a stale build/ in the checkout cannot leak into it and the checkout is left untouched.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import jsonschema
import pytest

from toy_translator import write_toy_exports

REPO = Path(__file__).resolve().parents[1]


def repo_files() -> list[str]:
    """The working tree's files as a fresh clone plus uncommitted work would have them."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout to know which files are the project's")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            check=True, capture_output=True, text=True).stdout.split("\0")
    return sorted(f for f in listed if f and (REPO / f).is_file())


@pytest.fixture(scope="module")
def source_files():
    return repo_files()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory, source_files):
    """(path, names inside it) of the wheel built from a copy of the tree."""
    root = tmp_path_factory.mktemp("wheel")
    for f in source_files:
        (root / "src" / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, root / "src" / f)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "-q", "-w", str(root / "dist"), str(root / "src")], capture_output=True, text=True)
    assert build.returncode == 0, build.stdout + build.stderr
    (path,) = (root / "dist").glob("tfmobile-*.whl")
    with zipfile.ZipFile(path) as z:
        return path, set(z.namelist())


def test_wheel_carries_every_package_file_and_nothing_else(wheel, source_files):
    _, names = wheel
    package = {f for f in source_files if f.startswith("tfmobile/")}
    assert package - names == set(), "in the package's tree but not in the wheel"
    data = {n for n in names if n.startswith("tfmobile/resources/") and not n.endswith(".py")}
    assert {f for f in package if f.startswith("tfmobile/resources/") and not f.endswith(".py")} == data
    # every preset, delegate config and schema the code reads
    assert {n for n in data if n.startswith("tfmobile/resources/presets/")} >= {
        "tfmobile/resources/presets/lite-wmt-200.yaml", "tfmobile/resources/presets/small.yaml"}
    assert all(n.endswith(".yaml") for n in data if n.startswith("tfmobile/resources/presets/"))
    assert {"tfmobile/resources/bench_result.schema.json", "tfmobile/resources/delegates/devices.json",
            "tfmobile/resources/delegates/devices.schema.json", "tfmobile/resources/delegates/pixel8-cpu1.json",
            "tfmobile/resources/delegates/tflite_settings.schema.json"} <= data
    # no tests, benchmarks, scripts or other top-level folders: only the package and its metadata
    assert {n.split("/")[0] for n in names} == {"tfmobile", "tfmobile-0.1.0.dist-info"}
    assert not [n for n in names if os.path.basename(n).startswith("test_") or n.endswith("conftest.py")]


def test_wheel_metadata_declares_the_cli_and_the_python_range(wheel):
    path, _ = wheel
    with zipfile.ZipFile(path) as z:
        entry_points = z.read("tfmobile-0.1.0.dist-info/entry_points.txt").decode()
        metadata = z.read("tfmobile-0.1.0.dist-info/METADATA").decode()
    assert "tfmobile = tfmobile.cli:main" in entry_points
    (requires,) = [line.split(":", 1)[1].strip() for line in metadata.splitlines()
                   if line.startswith("Requires-Python:")]
    assert specifiers(requires) == specifiers(make("--eval", "print-range: ; @echo '$(PYTHON_RANGE)'",
                                                   "print-range").stdout)


def specifiers(spec: str) -> set[str]:
    return {s.strip().replace(" ", "") for s in spec.split(",")}


def make(*args, **env) -> subprocess.CompletedProcess:
    if shutil.which("make") is None:
        pytest.skip("needs make")
    return subprocess.run(["make", "-s", "-C", str(REPO), *args], capture_output=True, text=True,
                          env={**os.environ, **env})


def outside_range() -> str:
    """A requires-python range this interpreter is not in."""
    major, minor = sys.version_info[:2]
    return f">={major}.{minor + 1},<{major}.{minor + 5}"


def test_makefile_accepts_this_python_and_names_the_range_otherwise(tmp_path):
    assert make("python-check", f"PYTHON={sys.executable}").returncode == 0
    for overrides, needle in ((["PYTHON_RANGE=" + outside_range()], f"is Python {sys.version_info[0]}."),
                              ([f"PYTHON={tmp_path / 'python3.99'}"], "python3.99 found")):
        result = make("python-check", f"PYTHON={sys.executable}", *overrides)
        lines = (result.stdout + result.stderr).strip().splitlines()
        assert result.returncode != 0 and len(lines) == 1 and needle in lines[0] and "needs Python" in lines[0]
    # checked before the venv is made: nothing is created for an interpreter outside the range
    result = make("venv", f"PYTHON={sys.executable}", f"VENV={tmp_path / 'venv'}", "PYTHON_RANGE=" + outside_range())
    assert result.returncode != 0 and "needs Python" in result.stderr and not (tmp_path / "venv").exists()


INSTALLED = """
import os, sys, tfmobile
from tfmobile.cli import main
assert tfmobile.__file__.startswith(sys.argv[1]), tfmobile.__file__
assert sys.argv[2] not in [os.path.realpath(p or ".") for p in sys.path], sys.path
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.slow
def test_installed_wheel_finds_its_presets_delegates_and_schemas(wheel, tmp_path):
    """`pip install` of the wheel (into a target folder; the dependencies come from this venv's site-packages,
    without its .pth files, so neither the checkout nor the editable install is on sys.path) runs `presets`,
    `profile` and `bench --delegate` from an unrelated working directory."""
    path, _ = wheel
    target = tmp_path / "installed"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target",
                              str(target), str(path)], capture_output=True, text=True)
    assert install.returncode == 0, install.stdout + install.stderr
    model = write_toy_exports(tmp_path / "exports")["full"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # -S: no site module, so no .pth file (the editable install's finder) runs
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), sysconfig.get_paths()["purelib"],
                                                        sysconfig.get_paths()["platlib"]])}

    def tfmobile(*argv):
        result = subprocess.run([sys.executable, "-S", "-c", INSTALLED, str(target), str(REPO), *argv],
                                cwd=elsewhere, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    presets = tfmobile("presets")
    assert {line.split()[0] for line in presets.splitlines()} >= {"lite-wmt-200", "small", "transformer-wmt"}
    profile = tfmobile("profile", "lite-wmt-200")
    assert profile.startswith("lite-wmt-200: 30 source + 30 target tokens") and "Mult-Adds 90," in profile
    out_json = elsewhere / "bench.json"
    table = tfmobile("bench", str(model), "--delegate", "pixel8-cpu1", "--source-len", "5", "--steps", "4",
                     "--warmup", "1", "--runs", "4", "--json", str(out_json))
    assert "pixel8-cpu1" in table and "decode_step" in table
    schema = json.loads((target / "tfmobile/resources/bench_result.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(json.loads(out_json.read_text()))
    assert sorted(p.name for p in elsewhere.iterdir()) == ["bench.json"]  # nothing written into the cwd
