"""Fixtures shared by the test modules."""

import numpy as np
import pytest

NUMBERS_ES = "cero uno dos tres cuatro cinco seis siete ocho nueve".split()
NUMBERS_EN = "zero one two three four five six seven eight nine".split()


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """Digit strings spelled out in Spanish and English (a TSV path): a corpus a tiny model learns in seconds."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("corpus")
    lines = []
    for _ in range(1500):
        digits = rng.integers(0, 10, rng.integers(2, 7))
        lines.append(" ".join(NUMBERS_ES[d] for d in digits) + "\t" + " ".join(NUMBERS_EN[d] for d in digits))
    path = root / "numbers.tsv"
    path.write_text("\n".join(lines) + "\n")
    return str(path)
