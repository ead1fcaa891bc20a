"""`precision: auto` picks mixed bfloat16 only where the hardware computes in bfloat16."""

import pytest

from tfmobile.errors import ConfigError
from tfmobile.hardware import cpu_flags, cpu_name
from tfmobile.training.precision import resolve_precision


def test_auto_picks_bfloat16_on_a_cpu_with_avx512_bf16_or_amx():
    assert resolve_precision("auto", flags={"avx2", "avx512f", "avx512_bf16"}, gpus=[])[0] == "mixed_bfloat16"
    assert resolve_precision("auto", flags={"avx2", "amx_bf16"}, gpus=[])[0] == "mixed_bfloat16"


def test_auto_picks_float32_on_an_avx2_cpu():
    policy, why = resolve_precision("auto", flags={"avx2", "fma", "avx512f"}, gpus=[])
    assert policy == "float32" and "no bfloat16" in why


def test_auto_on_gpus_follows_the_compute_capability():
    assert resolve_precision("auto", flags=set(), gpus=[(9, 0)])[0] == "mixed_bfloat16"
    assert resolve_precision("auto", flags={"avx512_bf16"}, gpus=[(7, 5)])[0] == "mixed_float16"


def test_an_explicit_precision_is_kept_and_an_unknown_one_refused():
    assert resolve_precision("float32", flags={"avx512_bf16"}, gpus=[(9, 0)]) == ("float32", "set in the config")
    with pytest.raises(ConfigError, match="train.precision"):
        resolve_precision("bf16")


def test_cpu_flags_reads_the_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu avx2\n")
    assert cpu_flags(str(info)) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(str(tmp_path / "missing")) == set()


def test_cpu_name_reads_the_model_name(tmp_path, monkeypatch):
    monkeypatch.setattr("platform.processor", lambda: "")
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9R14\n")
    assert cpu_name(str(info)) == "AMD EPYC 9R14"
