"""Keep the notebooks' shared parts in one place: `python notebooks/sync.py` rewrites, in every notebook,

- the Colab badge in the title cell, from the repository URL in pyproject.toml ([project.urls] Repository);
- the setup cell (the first code cell), from SETUP below: it is the same in every notebook but for its name;
- the stored outputs and execution counts, which it clears.

`python notebooks/sync.py --check` changes nothing and exits 1 naming the notebooks that are out of date
(tests/test_notebooks.py runs the check). A fork that publishes elsewhere edits the URL in pyproject.toml and runs
this script.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import sys

import nbformat

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BRANCH = "main"

SETUP = '''\
# Setup, the same in every notebook. Run from a tfmobile checkout, it uses the checkout; elsewhere (Colab) it installs
# the package from TFMOBILE_SOURCE and the Debian packages of the Bible corpora.
import os, subprocess, sys, tempfile

TFMOBILE_SOURCE = "git+{repository}"  # or the path of a wheel you uploaded (`make wheel` builds one)
NOTEBOOK = "{name}"
TINY = os.environ.get("TFMOBILE_NOTEBOOK_TINY") == "1"  # the tests' switch: every step shrinks to seconds
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quieter TensorFlow logs
{extra}


def find_checkout():
    """The checkout this notebook sits in (Jupyter runs a notebook in its own folder), else None."""
    for root in (os.path.abspath(".."), os.path.abspath(".")):
        path = os.path.join(root, "pyproject.toml")
        if os.path.isfile(path) and 'name = "tfmobile"' in open(path, encoding="utf-8").read():
            return root
    return None


CHECKOUT = find_checkout()
if CHECKOUT:  # `make` installs the checkout in editable mode; a plain Jupyter finds it on sys.path
    if CHECKOUT not in sys.path:
        sys.path.insert(0, CHECKOUT)
else:
    try:
        import tfmobile  # noqa: F401
    except ImportError:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", TFMOBILE_SOURCE])
    from tfmobile.data.corpora import BIBLE_PACKAGES

    missing = [p for p in BIBLE_PACKAGES if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode]
    if missing:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.check_call([*sudo, "apt-get", "update", "-qq"])
        subprocess.check_call([*sudo, "apt-get", "install", "-y", "-qq", *missing])

# Where this notebook writes: a fresh temporary folder in tiny mode, else ./nb_runs/NOTEBOOK/, kept between
# sessions: a rerun continues its runs instead of training them again.
WORK = (tempfile.mkdtemp(prefix=f"tfmobile_{{NOTEBOOK}}_") if TINY
        else os.path.abspath(os.path.join("nb_runs", NOTEBOOK)))
os.makedirs(WORK, exist_ok=True)

import tfmobile  # noqa: E402

%matplotlib inline
import matplotlib.pyplot as plt  # noqa: E402

print(f"tfmobile from {{os.path.dirname(tfmobile.__file__)}}; tiny mode: {{TINY}}; writing to {{WORK}}")'''

# Lines only some notebooks need before TensorFlow is imported.
EXTRA = {
    "06_long_sequences": 'os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")  # exact tensor peaks on a CPU',
}

BADGE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)")


def repository() -> str:
    """The repository URL of pyproject.toml's [project.urls] (a regex: Python 3.10 has no tomllib)."""
    text = open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8").read()
    match = re.search(r'^Repository\s*=\s*"(https://github\.com/[^"/]+/[^"/]+?)/?"', text, re.M)
    if not match:
        raise SystemExit("pyproject.toml has no [project.urls] Repository = \"https://github.com/OWNER/NAME\"")
    return match.group(1)


def badge(name: str, repo: str) -> str:
    path = repo.removeprefix("https://github.com/")
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{path}/blob/{BRANCH}/notebooks/{name}.ipynb)")


def setup_source(name: str, repo: str) -> str:
    extra = EXTRA.get(name)
    source = SETUP.format(repository=repo, name=name, extra=extra if extra else "")
    return source.replace("\n\n\n\ndef find_checkout", "\n\n\ndef find_checkout")  # no extra: no blank line


def synced(path: str, repo: str):
    """The notebook at `path` as it should be stored."""
    name = os.path.splitext(os.path.basename(path))[0]
    nb = nbformat.read(path, as_version=4)
    title = nb.cells[0]
    if title.cell_type != "markdown" or not BADGE.search(title.source):
        raise SystemExit(f"{name}: the first cell must be the title with a Colab badge")
    title.source = BADGE.sub(badge(name, repo), title.source, count=1)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    if not code:
        raise SystemExit(f"{name}: no setup cell")
    code[0].source = setup_source(name, repo)
    for cell in code:
        cell.outputs, cell.execution_count = [], None
    nb.metadata.setdefault("colab", {"provenance": []})
    return nb


def notebooks() -> list[str]:
    return sorted(glob.glob(os.path.join(HERE, "*.ipynb")))


def out_of_date() -> list[str]:
    repo = repository()
    return [os.path.basename(p) for p in notebooks()
            if nbformat.writes(synced(p, repo)) != nbformat.writes(nbformat.read(p, as_version=4))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook is out of date")
    args = parser.parse_args(argv)
    if args.check:
        stale = out_of_date()
        if stale:
            print("out of date (run `python notebooks/sync.py`): " + ", ".join(stale), file=sys.stderr)
            return 1
        return 0
    repo = repository()
    for path in notebooks():
        nb = synced(path, repo)
        text = nbformat.writes(nb) + "\n"
        if text != open(path, encoding="utf-8").read():
            tmp = path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
            print("synced", os.path.basename(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
