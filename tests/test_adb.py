"""`tfmobile bench --adb` and `hat latency --measurer adb`: the host driver of the Android app, against a fake adb.

The phone is the only thing replaced. `adb` is a small Python script first on PATH: it logs every call's
argv, serves a device folder from disk (push, pull, ls, cat, rm, mkdir, pm, getprop), and answers
`am start` of HeadlessBenchActivity as the app does: it reads the pushed model (size, sha256), model_meta.json
and delegate config and the intent's extras, and writes a result (canned timings) through a temporary
file and a rename; or, as the scenario says, an .error line, nothing (a timeout), JSON that breaks the
schema, or not JSON at all. Everything on the host side is the real code: the toy export is a real
LiteRT file, checked by the same code as the host bench, the config is a shipped delegate file.
"""

import json
import os
import re
import shutil
import stat
import sys

import pytest

from conftest import assert_one_line_error, run_cli
from test_nas_latency import write_space
from tfmobile.deploy import adb
from tfmobile.deploy.adb import ACTIVITY, APP_ID, APP_MIN_SDK, DEVICE_DIR, AdbError, bench_on_phone
from tfmobile.deploy.bench import format_table
from tfmobile.deploy.delegates import DEVICES_INDEX, load_delegate_config, validate
from tfmobile.deploy.runtime import META_KEYS
from tfmobile.errors import ConfigError
from tfmobile.nas.latency import read_latency
from tfmobile.resources import BENCH_SCHEMA
from toy_translator import BOS, EOS, S, T, write_toy_exports

SERIAL = "39021FDH2000J1"
MEANS = {"encoder": 1.5, "decode_step": 0.25, "hat": 9.125, "translate": 8.0}
SMALL = ["--source-len", "5", "--steps", "4", "--warmup", "1", "--runs", "10"]

FAKE_ADB = r'''#!PYTHON
"""A fake adb for tests/test_adb.py: one phone's folder on disk, and the app's answer to `am start`."""
import hashlib, json, math, os, shutil, struct, sys

STATE = STATE_DIR
ROOT = os.path.join(STATE, "device")
cfg = json.load(open(os.path.join(STATE, "config.json")))


def dev(path):
    return os.path.join(ROOT, path.lstrip("/"))


def fail(message):
    print(message, file=sys.stderr)
    return 1


def result(extras):
    model = dev(extras["model"])
    data = open(model, "rb").read()
    meta_path = os.path.join(os.path.dirname(model), "model_meta.json")
    meta = json.load(open(meta_path)) if os.path.exists(meta_path) else {}
    settings = json.load(open(dev(extras["delegate"])))
    kind = "GPU" if settings["delegate"] == "GPU" else "CPU"
    sources = (settings.get("xnnpack_settings", {}), settings.get("cpu_settings", {}))
    runs, trim = int(extras["runs"]), struct.unpack("f", struct.pack("f", float(extras["trim"])))[0]  # --ef: a float
    kept = runs - 2 * math.floor(runs * trim + 1e-9)

    def stats(mean):
        return {"mean_ms": mean, "p50_ms": mean, "p90_ms": round(mean * 1.1, 4), "min_ms": round(mean * 0.9, 4),
                "max_ms": round(mean * 1.2, 4), "samples": kept}

    measures = {k: stats(v) for k, v in cfg["means"].items() if k != "translate"}
    accelerators = {sig: {"requested": kind, "fully_accelerated": True} for sig in ("encode", "decode_step")}
    if kind == "GPU":
        accelerators["translate"] = {"requested": "GPU", "fully_accelerated": None,
                                     "note": "skipped: LiteRT's GPU path does not take translate's WHILE loop"}
    elif "translate" in cfg["means"]:
        measures["translate"] = {**stats(cfg["means"]["translate"]), "target_length_mean": 4.0}
        accelerators["translate"] = {"requested": "CPU", "fully_accelerated": True}
    host = {"platform": "Android 14 (API 34)", "cpu_count": 9, "processor": "Google Tensor G3"}
    if "device" in extras:
        host["device"] = extras["device"]
    return {"schema": "tfmobile-bench/1", "created": "2025-06-01T12:00:00+00:00",
            "model": {"file": os.path.basename(model), "bytes": len(data),
                      "sha256": hashlib.sha256(data if cfg["app"] != "other_model" else b"x").hexdigest(),
                      "quantization": meta.get("quantization"),
                      "max_source_len": meta.get("max_source_len", cfg["max_source_len"]),
                      "max_target_len": meta.get("max_target_len")},
            "runtime": {"name": "litert-android", "version": "2.3.0"}, "host": host,
            "delegate": {"name": os.path.basename(extras["delegate"])[:-len(".json")], "settings": settings},
            "threads": next((s["num_threads"] for s in sources if "num_threads" in s), -1),
            "settings": {"source_len": int(extras["source_len"]), "decode_steps": int(extras["decode_steps"]),
                         "warmup": int(extras["warmup"]), "runs": runs, "trim": trim},
            "measures": measures, "accelerators": accelerators}


def write(path, text):  # as the app: a temporary file, then a rename
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def am_start(args):
    if APP not in cfg["packages"] or cfg["app"] == "no_activity" or args[args.index("-n") + 1] != ACTIVITY:
        print(f"Starting: Intent {{ cmp={ACTIVITY} }}")
        print("Error type 3")
        print(f"Error: Activity class {{{ACTIVITY}}} does not exist.")
        return 0  # as am does
    extras, i = {}, args.index("-n") + 2
    while i < len(args):
        assert args[i] in ("--es", "--ei", "--ef"), args[i]
        extras[args[i + 1]] = args[i + 2]
        i += 3
    out = dev(extras["out"])
    if cfg["app"] == "error":
        write(out + ".error", "decode_step: GPU delegate could not be applied (OpenCL unavailable)\n")
    elif cfg["app"] == "garbage":
        write(out, "{not json")
    elif cfg["app"] in ("ok", "other_model", "invalid"):
        record = result(extras)
        if cfg["app"] == "invalid":
            del record["measures"]
        # the result appears after `polls` polls: the app is still measuring before that
        if cfg["polls"] <= 1:
            write(out, json.dumps(record, indent=2))
        else:
            write(os.path.join(STATE, "pending"), json.dumps(record, indent=2))
            json.dump({"out": out, "polls": cfg["polls"]}, open(os.path.join(STATE, "pending.json"), "w"))
    print(f"Starting: Intent {{ cmp={ACTIVITY} (has extras) }}")
    print("Status: ok")
    return 0


def shell(args):
    if args[:3] == ["pm", "list", "packages"]:
        print("\n".join("package:" + p for p in cfg["packages"] if args[3] in p))
    elif args[0] == "getprop":
        print(cfg["props"].get(args[1], ""))
    elif args[:2] == ["rm", "-rf"]:
        shutil.rmtree(dev(args[2]), ignore_errors=True)
    elif args[:2] == ["mkdir", "-p"]:
        for path in args[2:]:
            os.makedirs(dev(path), exist_ok=True)
    elif args[0] == "ls":
        pending = os.path.join(STATE, "pending.json")
        if os.path.exists(pending):
            state = json.load(open(pending))
            state["polls"] -= 1
            if state["polls"] <= 0:
                os.replace(os.path.join(STATE, "pending"), state["out"])
                os.remove(pending)
            else:
                json.dump(state, open(pending, "w"))
        rc = 0
        for path in args[1:]:
            if os.path.exists(dev(path)):
                print(path)
            else:
                rc = fail(f"ls: {path}: No such file or directory")
        return rc
    elif args[0] == "cat":
        sys.stdout.write(open(dev(args[1])).read())
    elif args[:2] == ["am", "start"]:
        return am_start(args)
    else:
        return fail(f"/system/bin/sh: {args[0]}: inaccessible or not found")
    return 0


def main(argv):
    with open(os.path.join(STATE, "calls.jsonl"), "a") as log:
        log.write(json.dumps(argv) + "\n")
    serial = None
    if argv[:1] == ["-s"]:
        serial, argv = argv[1], argv[2:]
    if argv == ["devices"]:
        print("List of devices attached")
        print("".join(f"{s}\t{state}\n" for s, state in cfg["devices"]))
        return 0
    states = dict(cfg["devices"])
    if serial is None:
        if len(states) != 1:
            return fail("adb: more than one device/emulator" if states else "adb: no devices/emulators found")
        serial = next(iter(states))
    if serial not in states:
        return fail(f"adb: device '{serial}' not found")
    if states[serial] != "device":
        return fail(f"adb: device {states[serial]}")
    if argv[0] == "push":
        os.makedirs(os.path.dirname(dev(argv[2])), exist_ok=True)
        shutil.copyfile(argv[1], dev(argv[2]))
        print(f"{argv[1]}: 1 file pushed.")
    elif argv[0] == "pull":
        if not os.path.exists(dev(argv[1])):
            return fail(f"adb: error: failed to stat remote object '{argv[1]}': No such file or directory")
        shutil.copyfile(dev(argv[1]), argv[2])
        print(f"{argv[1]}: 1 file pulled.")
    elif argv[0] == "shell":
        return shell(" ".join(argv[1:]).split())  # adb joins the arguments into one command line
    else:
        return fail(f"adb: unknown command {argv[0]}")
    return 0


APP, ACTIVITY = "dev.tfmobile.demo", "dev.tfmobile.demo/.HeadlessBenchActivity"
sys.exit(main(sys.argv[1:]))
'''


class FakePhone:
    """The fake adb's folder: its scenario (config.json), its call log, the device's files."""

    def __init__(self, root):
        self.root = root
        (root / "device").mkdir(parents=True)
        self.adb = root / "bin" / "adb"
        self.adb.parent.mkdir()
        self.adb.write_text(FAKE_ADB.replace("PYTHON", sys.executable).replace("STATE_DIR", repr(str(root))))
        self.adb.chmod(self.adb.stat().st_mode | stat.S_IXUSR)
        self.config = {"devices": [[SERIAL, "device"]], "packages": [APP_ID, "com.android.chrome"],
                       "props": {"ro.product.model": "Pixel 8", "ro.build.version.sdk": "34"},
                       "app": "ok", "polls": 1, "means": MEANS, "max_source_len": 32}
        self.set()

    def set(self, **changes):
        self.config.update(changes)
        (self.root / "config.json").write_text(json.dumps(self.config))

    def calls(self) -> list[list[str]]:
        log = self.root / "calls.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def file(self, device_path: str):
        return self.root / "device" / device_path.lstrip("/")


@pytest.fixture
def phone(tmp_path, monkeypatch):
    fake = FakePhone(tmp_path / "phone")
    monkeypatch.setenv("PATH", f"{fake.adb.parent}{os.pathsep}{os.environ['PATH']}")
    for variable in ("ADB", "ANDROID_SERIAL", "ANDROID_HOME", "ANDROID_SDK_ROOT"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(adb, "POLL_SECONDS", 0.05)
    monkeypatch.setattr(adb, "DEFAULT_TIMEOUT", 20.0)  # a scenario gone wrong fails the test instead of hanging it
    return fake


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """The toy LiteRT translator (tests/toy_translator.py) as `tfmobile export` lays it out (model.tflite,
    model_meta.json naming its tokenizer, spm.model), plus its variants without translate / decode_step."""
    root = tmp_path_factory.mktemp("adb_exports")
    paths = write_toy_exports(root)
    export = root / "toy-export"
    export.mkdir()
    shutil.copyfile(paths["full"], export / "model.tflite")
    (export / "spm.model").write_bytes(b"\x0a\x05piece")  # pushed, not read: the benchmark needs no tokenizer
    meta = {"format": "tfmobile-litert/1", "model_file": "model.tflite", "quantization": "none",
            "max_source_len": S, "max_target_len": T, "special_ids": {"pad": 0, "unk": 1, "bos": BOS, "eos": EOS},
            "tokenizers": {"joint": "spm.model"},
            "translate_length_limit": {"ratio": 1.5, "extra": 10, "model_max_target_len": T}}
    assert set(META_KEYS) <= set(meta)
    (export / "model_meta.json").write_text(json.dumps(meta))
    return {**paths, "export": export / "model.tflite"}


def tfmobile(capsys, *argv):
    """conftest's run_cli, with paths as arguments."""
    return run_cli(capsys, *map(str, argv))


def device_paths(export_name="toy-export", config="pixel8-cpu4"):
    return f"{DEVICE_DIR}/exports/{export_name}", f"{DEVICE_DIR}/delegates/{config}.json"


def pushes(calls):
    return [c[3:] for c in calls if c[2:3] == ["push"]]


def start_call(calls):
    return next(c for c in calls if c[2:5] == ["shell", "am", "start"])


def out_of(calls) -> str:
    start = start_call(calls)
    return start[start.index("out") + 1]


# ---------------------------------------------------------------------------------------------
# The happy path


def test_bench_pushes_the_export_starts_the_app_polls_and_pulls(exports, phone, tmp_path, capsys):
    phone.set(polls=3)  # the result appears on the third poll
    out_json = tmp_path / "out" / "bench.json"
    rc, stdout, err = tfmobile(capsys, "bench", exports["export"], "--adb", "--delegate", "pixel8-cpu4", *SMALL,
                              "--json", out_json)
    assert rc == 0, err
    calls, s = phone.calls(), ["-s", SERIAL]
    exports_dir, delegate = device_paths()
    out = out_of(calls)
    assert re.fullmatch(re.escape(f"{DEVICE_DIR}/results/") + r"\d{8}-\d{6}-[0-9a-f]{6}\.json", out)
    model = exports["export"]
    assert calls[:8] == [
        ["devices"],
        s + ["shell", "pm", "list", "packages", APP_ID],
        s + ["shell", "rm", "-rf", exports_dir],
        s + ["shell", "mkdir", "-p", exports_dir, f"{DEVICE_DIR}/delegates", f"{DEVICE_DIR}/results"],
        s + ["push", str(model), f"{exports_dir}/model.tflite"],
        s + ["push", str(model.parent / "model_meta.json"), f"{exports_dir}/model_meta.json"],
        s + ["push", str(model.parent / "spm.model"), f"{exports_dir}/spm.model"],
        s + ["push", calls[7][3], delegate]]
    assert calls[8] == s + ["shell", "am", "start", "-W", "-S", "-n", ACTIVITY,
                            "--es", "model", f"{exports_dir}/model.tflite", "--es", "delegate", delegate,
                            "--es", "out", out, "--ei", "runs", "10", "--ei", "warmup", "1",
                            "--ei", "source_len", "5", "--ei", "decode_steps", "4", "--ef", "trim", "0.1",
                            "--es", "device", "pixel8"]
    assert calls[9:12] == [s + ["shell", "ls", out, f"{out}.error"]] * 3  # polled until the result was there
    assert calls[12][:4] == s + ["pull", out] and len(calls) == 13
    assert not os.path.exists(calls[12][4]) and not os.path.exists(calls[7][3])  # the host's temporary files
    # what reached the phone: the export's files as they are, and the shipped config's settings
    for name in ("model.tflite", "model_meta.json", "spm.model"):
        assert phone.file(f"{exports_dir}/{name}").read_bytes() == (model.parent / name).read_bytes()
    assert json.loads(phone.file(delegate).read_text()) == load_delegate_config("pixel8-cpu4")

    result = json.loads(out_json.read_text())
    validate(result, BENCH_SCHEMA, "result")
    assert stdout == format_table(result) + "\n"
    lines = stdout.splitlines()
    assert lines[0] == ("model.tflite: XNNPACK, 4 thread(s) (pixel8-cpu4) on pixel8; 5 source tokens, 4 decode steps; "
                        "10 runs, 8 kept")
    assert [line.split()[:4] for line in lines[2:6]] == [
        ["encoder", "1.500", "1.650", "1.500"], ["decode_step", "0.250", "0.275", "0.250"],
        ["hat", "9.125", "10.037", "9.125"], ["translate", "8.000", "8.800", "8.000"]]
    assert lines[6] == ("accelerators: encode CPU fully accelerated; decode_step CPU fully accelerated; "
                        "translate CPU fully accelerated")
    assert result["host"]["device"] == "pixel8" and result["model"]["quantization"] == "none"
    assert [p.name for p in out_json.parent.iterdir()] == ["bench.json"]  # written whole, no temporary left


def test_a_gpu_config_runs_with_adb_and_the_table_says_what_ran_where(exports, phone, capsys):
    rc, stdout, err = tfmobile(capsys, "bench", exports["export"], "--adb", "--delegate", "pixel8-gpu-fp16", *SMALL)
    assert rc == 0, err
    _, delegate = device_paths(config="pixel8-gpu-fp16")
    assert json.loads(phone.file(delegate).read_text())["delegate"] == "GPU"
    lines = stdout.splitlines()
    assert lines[0].startswith("model.tflite: GPU, -1 thread(s) (pixel8-gpu-fp16) on pixel8;")
    assert [line.split()[0] for line in lines[2:-1]] == ["encoder", "decode_step", "hat"]  # no translate on GPU
    assert lines[-1] == ("accelerators: encode GPU fully accelerated; decode_step GPU fully accelerated; translate GPU "
                         "not reported (skipped: LiteRT's GPU path does not take translate's WHILE loop)")
    # the host runtime still refuses it
    rc, _, err = tfmobile(capsys, "bench", exports["export"], "--delegate", "pixel8-gpu-fp16", *SMALL)
    assert_one_line_error(rc, err, "GPU delegate", "Android app")


def test_a_threads_override_is_in_the_pushed_config_and_a_bare_model_is_pushed_alone(exports, phone, capsys):
    rc, stdout, err = tfmobile(capsys, "bench", exports["no_translate"], "--adb", "--threads", "2", *SMALL)
    assert rc == 0, err
    calls = phone.calls()
    exports_dir, delegate = device_paths("no_translate", "default")
    # no model_meta.json beside it: the model alone, then the config
    assert [p[1] for p in pushes(calls)] == [f"{exports_dir}/model.tflite", delegate]
    assert pushes(calls)[0][0] == str(exports["no_translate"])
    assert json.loads(phone.file(delegate).read_text()) == {
        "delegate": "XNNPACK", "xnnpack_settings": {"num_threads": 2}, "cpu_settings": {"num_threads": 2}}
    assert "device" not in start_call(calls)  # not a config of a devices.json phone
    assert stdout.splitlines()[0].startswith("model.tflite: XNNPACK, 2 thread(s) (default); 5 source tokens")


def test_serial_chooses_among_several_devices_and_android_serial_too(exports, phone, capsys, monkeypatch):
    phone.set(devices=[["emulator-5554", "device"], [SERIAL, "device"]])
    rc, _, err = tfmobile(capsys, "bench", exports["export"], "--adb", "--serial", SERIAL, *SMALL)
    assert rc == 0, err
    assert all(c[:2] == ["-s", SERIAL] for c in phone.calls()[1:])
    monkeypatch.setenv("ANDROID_SERIAL", "emulator-5554")
    rc, _, err = tfmobile(capsys, "bench", exports["export"], "--adb", *SMALL)
    assert rc == 0, err
    assert phone.calls()[-1][:2] == ["-s", "emulator-5554"]


def test_the_adb_path_can_come_from_the_environment(exports, phone, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(phone.root))  # no adb on PATH
    monkeypatch.setenv("ADB", str(phone.adb))
    rc, _, err = tfmobile(capsys, "bench", exports["export"], "--adb", *SMALL)
    assert rc == 0, err


def test_a_progress_counter_goes_to_a_terminal(exports, phone, monkeypatch):
    class Terminal:
        def __init__(self):
            self.text = ""

        def write(self, text):
            self.text += text

        def flush(self):
            pass

        def isatty(self):
            return True

    terminal = Terminal()
    phone.set(polls=4)
    monkeypatch.setattr(sys, "stderr", terminal)
    bench_on_phone(exports["export"], source_len=5, decode_steps=4, warmup=1, runs=10, timeout=30)
    assert f"benchmark on {SERIAL}: 0 s of 30 s" in terminal.text


# ---------------------------------------------------------------------------------------------
# Errors: one line each, exit 2, and nothing written


@pytest.mark.parametrize("scenario, argv, needles", [
    (dict(devices=[]), [], ["no Android device is connected", "USB debugging"]),
    (dict(devices=[[SERIAL, "device"], ["emulator-5554", "device"]]), [],
     [f"2 devices are connected ({SERIAL} (device), emulator-5554 (device)): choose one with --serial"]),
    ({}, ["--serial", "R58M123"], ["no device 'R58M123' is connected", f"lists {SERIAL} (device)"]),
    (dict(devices=[[SERIAL, "unauthorized"]]), [], [f"device {SERIAL} is not ready (unauthorized)",
                                                    "Allow USB debugging"]),
    (dict(devices=[[SERIAL, "offline"]]), [], [f"device {SERIAL} is not ready (offline)", "adb kill-server"]),
    (dict(packages=["com.android.chrome", "dev.tfmobile.demo.old"]), [],
     [f"the tfmobile app ({APP_ID}) is not installed on {SERIAL}", "android_demo/README.md"]),
    (dict(packages=[], props={"ro.build.version.sdk": "23"}), [],
     [f"cannot run on {SERIAL}: it runs Android API 23", f"needs API {APP_MIN_SDK}"]),
    (dict(app="no_activity"), [], ["could not be started", "Activity class", "does not exist", "reinstall"]),
    (dict(app="silent"), ["--adb-timeout", "0.3"], [f"no result from the app on {SERIAL} after 0.3 s",
                                                     f"adb -s {SERIAL} logcat", "--adb-timeout"]),
    (dict(app="error"), [], [f"the app's benchmark failed on {SERIAL}: decode_step: GPU delegate could not be applied "
                             "(OpenCL unavailable)"]),
    (dict(app="invalid"), [], [f"invalid benchmark result from {SERIAL}", "'measures' is a required property",
                               "bench_result.schema.json", "install the app built from this tfmobile"]),
    (dict(app="garbage"), [], [f"the result pulled from {SERIAL}", "is not JSON"]),
    (dict(app="other_model"), [], [f"the result from {SERIAL} measured another file"]),
])
def test_phone_errors_are_one_line(exports, phone, tmp_path, capsys, scenario, argv, needles):
    phone.set(**scenario)
    out_json = tmp_path / "bench.json"
    rc, stdout, err = tfmobile(capsys, "bench", exports["export"], "--adb", *SMALL, *argv, "--json", out_json)
    assert_one_line_error(rc, err, *needles)
    assert stdout == "" and not out_json.exists() and list(tmp_path.glob("*.json")) == []


def test_no_adb_on_path(exports, phone, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(phone.root))
    rc, _, err = tfmobile(capsys, "bench", exports["export"], "--adb", *SMALL)
    assert_one_line_error(rc, err, "adb not found on PATH", "apt install adb", "ADB=")
    monkeypatch.setenv("ADB", str(phone.root / "config.json"))  # not an executable
    rc, _, err = tfmobile(capsys, "bench", exports["export"], "--adb", *SMALL)
    assert_one_line_error(rc, err, "config.json", "($ADB) is not an executable")


def _corrupt(exports, root):
    (root / "corrupt.tflite").write_bytes(b"not a flatbuffer")
    return root / "corrupt.tflite"


def _foreign_meta(exports, root):
    (root / "model.tflite").write_bytes(exports["export"].read_bytes())
    (root / "model_meta.json").write_text('{"format": "someone-else/1"}')
    return root / "model.tflite"


@pytest.mark.parametrize("model, needle", [
    (lambda e, root: root / "absent.tflite", "model file not found"),
    (lambda e, root: e["export"].parent, "model file not found"),  # a folder is not a model file
    (_corrupt, "not a loadable LiteRT model"),
    (lambda e, root: e["encode_only"], "lacks the signature(s) decode_step"),
    (_foreign_meta, "is not tfmobile export metadata"),
])
def test_a_model_that_is_not_an_export_is_refused_before_adb_runs(exports, phone, tmp_path, capsys, model, needle):
    rc, _, err = tfmobile(capsys, "bench", model(exports, tmp_path), "--adb", *SMALL)
    assert_one_line_error(rc, err, needle)
    assert phone.calls() == []


@pytest.mark.parametrize("argv, needle", [
    (["--source-len", str(S + 1)], "fixed source length S=8"),
    (["--delegate", "pixel9-gpu"], "unknown delegate config 'pixel9-gpu'"),
])
def test_bad_settings_are_refused_before_adb_runs(exports, phone, capsys, argv, needle):
    rc, _, err = tfmobile(capsys, "bench", exports["export"], "--adb", *SMALL, *argv)
    assert_one_line_error(rc, err, needle)
    assert phone.calls() == []


@pytest.mark.parametrize("argv, needle", [
    (["--serial", SERIAL], "--serial needs --adb"),
    (["--adb-timeout", "5", "--serial", SERIAL], "--serial and --adb-timeout need --adb"),
    (["--adb", "--adb-timeout", "0"], "argument --adb-timeout: must be"),
])
def test_adb_flags_without_adb_or_out_of_range(exports, phone, capsys, argv, needle):
    rc, _, err = tfmobile(capsys, "bench", exports["export"], *SMALL, *argv)
    assert_one_line_error(rc, err, needle)
    assert phone.calls() == []


def test_the_library_call_refuses_a_bad_timeout(exports, phone):
    with pytest.raises(AdbError, match="timeout must be a positive number"):
        bench_on_phone(exports["export"], source_len=5, decode_steps=4, timeout=0)


# ---------------------------------------------------------------------------------------------
# The schema's accelerators and devices.json


def test_the_schema_takes_accelerators_and_refuses_unknown_ones(exports, phone, tmp_path, capsys):
    out_json = tmp_path / "bench.json"
    assert tfmobile(capsys, "bench", exports["export"], "--adb", *SMALL, "--json", out_json)[0] == 0
    result = json.loads(out_json.read_text())
    validate(result, BENCH_SCHEMA, "result")
    for change, needle in [
        (lambda a: a["encode"].update(requested="NPU"), "'NPU' is not one of"),
        (lambda a: a.update(embed={"requested": "CPU", "fully_accelerated": True}), "'embed' was unexpected"),
        (lambda a: a.pop("decode_step"), "'decode_step' is a required property"),
        (lambda a: a["encode"].update(fully_accelerated="yes"), "'yes' is not of type 'boolean', 'null'"),
        (lambda a: a["encode"].update(note=""), "should be non-empty"),
    ]:
        bad = json.loads(json.dumps(result))
        change(bad["accelerators"])
        with pytest.raises(ConfigError, match=re.escape(needle)):
            validate(bad, BENCH_SCHEMA, "result")


def test_devices_json_says_the_app_cannot_run_on_the_nexus5():
    devices = json.loads(DEVICES_INDEX.read_text())["devices"]
    note = devices["nexus5"]["no_android_app"]
    assert "API 23" in note and f"minSdk {APP_MIN_SDK}" in note and "LiteRT 2.3" in note
    assert [key for key, d in devices.items() if "no_android_app" in d] == ["nexus5"]


# ---------------------------------------------------------------------------------------------
# HAT's latency dataset measured on the phone


def test_hat_latency_rows_measured_on_the_phone(phone, tmp_path, capsys):
    out = tmp_path / "latency.csv"
    rc, stdout, err = tfmobile(capsys, "hat", "latency", write_space(tmp_path), "--samples", "1", "--out", out,
                              "--quiet", "--measurer", "adb", "--delegate", "pixel8-gpu-fp16", "--runs", "4",
                              "--warmup", "1")
    assert rc == 0, err
    meta, _, rows = read_latency(str(out))
    assert meta["measurer"] == {"name": "adb-phone", "serial": SERIAL, "device_model": "Pixel 8", "delegate": "GPU",
                                "threads": -1, "delegate_config": "pixel8-gpu-fp16",
                                "tflite_settings": load_delegate_config("pixel8-gpu-fp16")}
    assert json.loads(stdout)["measurer"] == meta["measurer"]
    # HostLiteRT's mapping: the encoder's mean, 30 decode steps' total, the whole loop's mean
    assert (rows[0]["encoder_ms"], rows[0]["decoder_ms"], rows[0]["latency_ms"]) == (1.5, 0.25 * 30, 9.125)
    calls = phone.calls()
    exports_dir, delegate = device_paths("hat-latency", "pixel8-gpu-fp16")
    # a SubTransformer export is a bare model.tflite: it goes alone, then the config
    assert [p[1] for p in pushes(calls)] == [f"{exports_dir}/model.tflite", delegate]
    start = start_call(calls)
    assert start[start.index("--ei"):] == ["--ei", "runs", "4", "--ei", "warmup", "1", "--ei", "source_len", "30",
                                           "--ei", "decode_steps", "30", "--ef", "trim", "0.1", "--es", "device",
                                           "pixel8"]
    assert ["-s", SERIAL, "shell", "getprop", "ro.product.model"] in calls


def test_hat_latency_without_a_phone_fails_before_any_export(phone, tmp_path, capsys):
    phone.set(devices=[])
    out = tmp_path / "latency.csv"
    rc, _, err = tfmobile(capsys, "hat", "latency", write_space(tmp_path), "--samples", "1", "--out", out,
                         "--measurer", "adb")
    assert_one_line_error(rc, err, "no Android device is connected")
    assert not out.exists()
    rc, _, err = tfmobile(capsys, "hat", "latency", write_space(tmp_path), "--samples", "1", "--out", out,
                         "--serial", SERIAL)
    assert_one_line_error(rc, err, "--serial needs --measurer adb")
    assert not out.exists()


def test_the_drivers_app_constants_match_the_android_build():
    """adb.py names the app, its headless activity and its minSdk; the Gradle build and manifest are where they are set."""
    from tfmobile.deploy import adb

    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "android_demo", "app")
    with open(os.path.join(root, "build.gradle.kts"), encoding="utf-8") as f:
        gradle = f.read()
    assert re.search(r'applicationId = "([^"]+)"', gradle).group(1) == adb.APP_ID
    assert int(re.search(r"minSdk = (\d+)", gradle).group(1)) == adb.APP_MIN_SDK
    with open(os.path.join(root, "src", "main", "AndroidManifest.xml"), encoding="utf-8") as f:
        manifest = f.read()
    assert f'android:name="{adb.ACTIVITY.split("/")[1]}"' in manifest
