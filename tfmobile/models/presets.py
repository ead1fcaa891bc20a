"""Presets are the YAML files in `tfmobile/resources/presets/`, addressed by file stem."""

from __future__ import annotations

import difflib

from tfmobile.errors import ConfigError
from tfmobile.resources import PRESETS_DIR as CONFIG_DIR


def preset_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def preset_path(name: str) -> str:
    path = CONFIG_DIR / f"{name}.yaml"
    if not path.exists():
        close = difflib.get_close_matches(name, preset_names(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(
            f"unknown preset {name!r}{hint}; known presets: {', '.join(preset_names())}, or give a path to a YAML file"
        )
    return str(path)
