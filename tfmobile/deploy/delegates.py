"""Delegate configs: how a phone should run an exported model, as LiteRT `TFLiteSettings` JSON files.

The files live in `tfmobile/resources/delegates/` and travel with the package. Each is one `tflite.proto.TFLiteSettings` message in protobuf JSON form, so the
Android app can parse it with protobuf and `tfmobile bench` reads the same file on the host; nothing else is
allowed in it. `devices.json` indexes the files by device with the hardware facts. Every config is
validated against `tflite_settings.schema.json`, so a typo fails here with one line instead of being
silently ignored by the runtime.

Example:
    >>> load_delegate_config("pixel8-cpu4")
    {'delegate': 'XNNPACK', 'xnnpack_settings': {'num_threads': 4}, 'cpu_settings': {'num_threads': 4}}
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import jsonschema

from tfmobile.errors import ConfigError
from tfmobile.resources import DELEGATES_DIR

SETTINGS_SCHEMA = DELEGATES_DIR / "tflite_settings.schema.json"
DEVICES_INDEX = DELEGATES_DIR / "devices.json"


def _is_config_file(path: Path) -> bool:
    return path.suffix == ".json" and path != DEVICES_INDEX and not path.name.endswith(".schema.json")


def list_delegate_configs() -> list[str]:
    """Names of the shipped delegate configs (file stems), e.g. `pixel8-gpu-fp16`."""
    return sorted(p.stem for p in DELEGATES_DIR.glob("*.json") if _is_config_file(p))


def read_json(path: Path, what: str):
    """Parse a JSON file, turning a missing or malformed file into one ConfigError line."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror or e}") from e
    except json.JSONDecodeError as e:
        raise ConfigError(f"malformed JSON in {what} {path}: {e.msg} at line {e.lineno} column {e.colno}") from e


def validate(instance, schema_path: Path, what: str) -> None:
    """Raise one ConfigError line naming the most relevant schema violation (and where it is)."""
    schema = read_json(schema_path, "schema")
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(instance))
    if error is not None:
        # a failed `not` says nothing useful ("0 should not be valid under ..."): its schema's description does
        message = error.schema.get("description", error.message) if error.validator == "not" else error.message
        where = error.json_path if error.path else "the top level"
        raise ConfigError(f"invalid {what}: {message} (at {where}; see {schema_path.name})")


def delegate_config_path(path_or_name: str) -> Path:
    """A path as given, or a bare name resolved in DELEGATES_DIR; unknown names list the shipped ones."""
    text = str(path_or_name)
    if text.endswith(".json") or "/" in text:
        return Path(text)
    path = DELEGATES_DIR / f"{text}.json"
    if not _is_config_file(path) or not path.exists():
        names = list_delegate_configs()
        close = difflib.get_close_matches(text, names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown delegate config {text!r}{hint}; available: {', '.join(names)}, "
                          "or give a path to a TFLiteSettings JSON file")
    return path


def load_delegate_config(path_or_name: str) -> dict:
    """The TFLiteSettings dict of a config path or a bare name like `pixel8-cpu4`, checked against the schema."""
    path = delegate_config_path(path_or_name)
    config = read_json(path, "delegate config")
    validate(config, SETTINGS_SCHEMA, f"delegate config {path}")
    return config


def device_of_config(path_or_name: str) -> str | None:
    """The devices.json key of the device a shipped config belongs to (`pixel8-gpu-fp16` -> `pixel8`);
    None for a config file of one's own."""
    path = delegate_config_path(path_or_name).resolve()
    if path.parent != DELEGATES_DIR.resolve():
        return None
    devices = read_json(DEVICES_INDEX, "device index")["devices"]
    return next((key for key, device in devices.items() if path.name in device["configs"].values()), None)


__all__ = ["DELEGATES_DIR", "DEVICES_INDEX", "SETTINGS_SCHEMA", "delegate_config_path", "device_of_config",
           "list_delegate_configs", "load_delegate_config", "read_json", "validate"]
