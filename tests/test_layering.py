"""The package's layer order: a module imports only modules of its own level or a lower one.

LEVELS is the table the README states (bottom -> top). Every import counts, at the top of a module and
inside functions alike, `from tfmobile.x import y` and relative imports included.
"""

import ast
import os

import pytest

import tfmobile

LEVELS = [
    ("tfmobile", "tfmobile.errors", "tfmobile.utils", "tfmobile.resources", "tfmobile.hardware"),
    ("tfmobile.data", "tfmobile.layers"),
    ("tfmobile.kinds",),
    ("tfmobile.models",),
    ("tfmobile.profiling",),
    ("tfmobile.run",),
    ("tfmobile.training",),
    ("tfmobile.decoding",),
    ("tfmobile.deploy",),
    ("tfmobile.compression",),
    ("tfmobile.nas", "tfmobile.quickstart", "tfmobile.cli", "tfmobile.__main__"),
]
PACKAGE_DIR = os.path.dirname(tfmobile.__file__)


def level_of(module: str) -> int:
    """The level of `module`: that of the longest LEVELS entry it is, or lies in (the bare package
    `tfmobile` only as itself)."""
    best = None
    for level, names in enumerate(LEVELS):
        for name in names:
            inside = module.startswith(name + ".") and name != "tfmobile"
            if (module == name or inside) and (best is None or len(name) > len(best[1])):
                best = (level, name)
    if best is None:
        raise AssertionError(f"{module} has no level in LEVELS: add it to the table (and to the README)")
    return best[0]


def imported_modules(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, module) for every tfmobile import anywhere in `source`, the code of `module`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing module's package
                parts = module.split(".")
                base = parts if is_package else parts[:-1]
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            # `from tfmobile import cli` imports tfmobile.cli, not only the package
            found += [(node.lineno, f"{target}.{a.name}" if target == "tfmobile" else target) for a in node.names]
    return [(line, name) for line, name in found if name == "tfmobile" or name.startswith("tfmobile.")]


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    mine = level_of(module)
    return [f"{module}:{line} imports {name} (level {level_of(name)} > {mine})"
            for line, name in imported_modules(source, module, is_package) if level_of(name) > mine]


def package_modules():
    for root, _, files in os.walk(PACKAGE_DIR):
        for f in sorted(files):
            if f.endswith(".py"):
                path = os.path.join(root, f)
                rel = os.path.relpath(path, os.path.dirname(PACKAGE_DIR))[:-3].split(os.sep)
                is_package = rel[-1] == "__init__"
                yield ".".join(rel[:-1] if is_package else rel), path, is_package


def test_no_module_imports_a_higher_level():
    found = []
    for module, path, is_package in package_modules():
        with open(path, encoding="utf-8") as f:
            found += violations(f.read(), module, is_package)
    assert not found, "\n".join(found)


def test_every_package_module_has_a_level():
    for module, _, _ in package_modules():
        level_of(module)


@pytest.mark.parametrize("source", [
    "from tfmobile.compression.recipes import tprune_run\n",
    "import tfmobile.deploy.export\n",
    "def f():\n    from tfmobile.deploy import runtime\n",  # function-level imports count
    "from tfmobile import cli\n",
])
def test_the_checker_sees_an_upward_import(source):
    assert violations(source, "tfmobile.decoding.translator")


def test_the_checker_resolves_relative_imports():
    assert violations("from ..deploy.runtime import LiteTranslator\n", "tfmobile.decoding.translator")
    assert violations("from ..deploy import export\n", "tfmobile.decoding", is_package=True)
    assert not violations("from .search import IncrementalDecoder\n", "tfmobile.decoding.translator")


def test_the_checker_allows_the_same_and_lower_levels():
    source = "from tfmobile.run import load_run\nfrom tfmobile.training import trainer\nfrom tfmobile.decoding.search import greedy_search\nimport numpy\n"
    assert not violations(source, "tfmobile.decoding.translator")
    with pytest.raises(AssertionError, match="no level"):
        violations("import tfmobile.unknown\n", "tfmobile.decoding.translator")


def readme_levels() -> list[tuple[str, ...]]:
    """The layer table of README.md's Layout section: `| level | modules |` rows of backticked names."""
    import re

    readme = os.path.join(os.path.dirname(PACKAGE_DIR), "README.md")
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    table = text[text.index("| level | modules |"):].split("\n\n", 1)[0]
    levels = []
    for number, modules in re.findall(r"^\| (\d+) \| (.*) \|$", table, flags=re.M):
        assert int(number) == len(levels), f"README level {number} out of order"
        names = re.findall(r"`([\w.]+)`", modules)
        levels.append(tuple("tfmobile" if n == "tfmobile" else f"tfmobile.{n}" for n in names))
    return levels


def test_the_readme_states_the_same_layer_order():
    assert [set(level) for level in readme_levels()] == [set(level) for level in LEVELS]
