"""Data files that travel with the package (so a wheel or a Colab `pip install` has them).

    presets/                    YAML presets, addressed by file stem (`tfmobile presets`)
    spaces/                     HAT design spaces, addressed by file stem (`tfmobile hat spaces`)
    delegates/                  LiteRT TFLiteSettings JSON per device, their schema, devices.json
    bench_result.schema.json    the result of `tfmobile bench` (and of the Android app's benchmark)

There is one copy of each file in the repository: here. The Android app reads the same delegate files.
"""

from __future__ import annotations

from pathlib import Path

RESOURCES_DIR = Path(__file__).resolve().parent
PRESETS_DIR = RESOURCES_DIR / "presets"
SPACES_DIR = RESOURCES_DIR / "spaces"
DELEGATES_DIR = RESOURCES_DIR / "delegates"
BENCH_SCHEMA = RESOURCES_DIR / "bench_result.schema.json"

__all__ = ["BENCH_SCHEMA", "DELEGATES_DIR", "PRESETS_DIR", "RESOURCES_DIR", "SPACES_DIR"]
