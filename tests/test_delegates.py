"""Delegate configs: every shipped file is a valid TFLiteSettings message, the device index is complete,
and bad configs or names are refused with one clear line."""

import json

import jsonschema
import pytest

from tfmobile.deploy.delegates import (
    DELEGATES_DIR,
    DEVICES_INDEX,
    SETTINGS_SCHEMA,
    list_delegate_configs,
    load_delegate_config,
)
from tfmobile.errors import ConfigError


def load(path):
    return json.loads(path.read_text())


def schema_validator(path):
    schema = load(path)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("name", list_delegate_configs())
def test_every_config_validates(name):
    schema_validator(SETTINGS_SCHEMA).validate(load(DELEGATES_DIR / f"{name}.json"))
    config = load_delegate_config(name)
    threads = config.get("xnnpack_settings", config.get("cpu_settings", {})).get("num_threads")
    if name.endswith("-cpu1") or name.endswith("-cpu4"):
        assert config["delegate"] == "XNNPACK" and threads == int(name[-1])
        assert config["cpu_settings"]["num_threads"] == threads
    else:
        assert name.endswith("-gpu-fp16")
        assert config["delegate"] == "GPU" and config["gpu_settings"]["is_precision_loss_allowed"] is True


def test_every_json_file_is_a_config_the_index_or_a_schema():
    names = set(list_delegate_configs())
    for path in DELEGATES_DIR.glob("*.json"):
        assert path.stem in names or path == DEVICES_INDEX or path.name.endswith(".schema.json"), path
        json.loads(path.read_text())  # all parse


def test_index_is_valid_and_references_every_config():
    index = load(DEVICES_INDEX)
    schema_validator(DELEGATES_DIR / "devices.schema.json").validate(index)
    referenced = []
    for key, device in index["devices"].items():
        configs = device["configs"]
        assert {"cpu1", "cpu4"} <= set(configs), key
        for kind, file in configs.items():
            assert (DELEGATES_DIR / file).is_file(), file
            assert file == f"{key}-{kind}.json"
            referenced.append(file[:-len(".json")])
        assert ("gpu-fp16" in configs) != ("no_gpu_config" in device), key
    assert sorted(referenced) == list_delegate_configs()
    devices = index["devices"]
    assert "OpenGL ES 3.0" in devices["nexus5"]["no_gpu_config"]
    assert {"pixel2", "pixel3", "lg-g8", "pixel8"} <= {k for k, d in devices.items() if "gpu-fp16" in d["configs"]}


def test_load_by_path_and_by_name_agree():
    assert load_delegate_config(str(DELEGATES_DIR / "pixel8-cpu4.json")) == load_delegate_config("pixel8-cpu4")


@pytest.mark.parametrize("config, needle", [
    ({"delegate": "TPU"}, "'TPU' is not one of"),
    ({"delegate": "GPU"}, "'gpu_settings' is a required property"),
    ({"delegate": "XNNPACK", "xnnpack_settings": {"num_threads": 4}, "device": "pixel8"}, "'device' was unexpected"),
    ({"delegate": "XNNPACK", "xnnpack_settings": {"num_threads": "4"}}, "'4' is not of type 'integer'"),
    ({"delegate": "XNNPACK", "cpu_settings": {"num_threads": 0}}, "0 is not valid"),
    ({"delegate": "XNNPACK", "cpu_settings": {"num_threads": -2}}, "less than the minimum of -1"),
    ({"delegate": "XNNPACK", "gpu_settings": {"is_precision_loss_allowed": True}}, "only for delegate GPU"),
    ({"delegate": "NONE", "xnnpack_settings": {"num_threads": 1}}, "only for delegate XNNPACK"),
    ({"delegate": "GPU", "gpu_settings": {"precision_loss": True}}, "'precision_loss' was unexpected"),
])
def test_invalid_configs_are_rejected(tmp_path, config, needle):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(config))
    with pytest.raises(ConfigError) as e:
        load_delegate_config(str(path))
    message = str(e.value)
    assert needle in message and "\n" not in message, message


def test_malformed_json_and_missing_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"delegate": "XNNPACK",')
    with pytest.raises(ConfigError, match="malformed JSON .* line 1"):
        load_delegate_config(str(path))
    with pytest.raises(ConfigError, match="cannot read delegate config"):
        load_delegate_config(str(tmp_path / "absent.json"))


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(ConfigError) as e:
        load_delegate_config("pixel9-cpu4")
    message = str(e.value)
    assert "unknown delegate config 'pixel9-cpu4'" in message and "did you mean pixel8-cpu4" in message
    assert all(name in message for name in list_delegate_configs())
    with pytest.raises(ConfigError, match="unknown delegate config 'devices'"):
        load_delegate_config("devices")  # the index is not a config
