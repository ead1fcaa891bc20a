"""Benchmark an export on an Android phone over adb: the demo app (`android_demo`) times it, the host drives.

`tfmobile bench MODEL --adb` runs HAT's measure where the latency matters, on LiteRT's CPU (XNNPACK) or GPU
delegate as the delegate config says, and prints the same table as the host benchmark. This module is the
host side of the device protocol; the app's side is android_demo's `HeadlessBenchActivity`.

    DEV = /sdcard/Android/data/dev.tfmobile.demo/files/tfmobile   (the app's external files folder: the app
          reads it without storage permissions, and `adb push` / `adb pull` reach it)

1. Push the export to DEV/exports/<name>/ (the model, and its model_meta.json and tokenizers when it has
   them; a bare model.tflite, like the HAT latency dataset's, is enough for the benchmark) after removing
   what an earlier push of that name left there, and the TFLiteSettings actually used (the config with the
   threads override applied) to DEV/delegates/<config>.json.
2. `adb shell am start -W -S -n dev.tfmobile.demo/.HeadlessBenchActivity --es model DEV/exports/<name>/model.tflite
   --es delegate DEV/delegates/<config>.json --es out DEV/results/<id>.json --ei runs N --ei warmup N
   --ei source_len N --ei decode_steps N --ef trim F [--es device KEY]`, KEY being the devices.json device the
   config belongs to.
3. The app writes the result to <out>, or one line saying why it could not to <out>.error, each through a
   temporary file and a rename: a file that exists is whole.
4. Poll `adb shell ls <out> <out>.error` until one exists or the timeout passes; pull <out> into a temporary
   folder (nothing half-written is ever left here); validate it against bench_result.schema.json; check that
   it measured the file pushed (sha256) with the settings asked for.

What the host can check it checks before touching the phone: the model (as the host `bench` does), the
delegate config, the measure settings. Every failure is one line (`AdbError`, a `BenchError`) saying what to
do: no adb, no device or several without a serial, an unknown serial, an unauthorized or offline device, the
app not installed (or a device too old for it: LiteRT 2.3 needs API 24), a timeout, the app's own error
line, a result that fails the schema.

Example:
    >>> result = bench_on_phone("exports/small/model.tflite", delegate="pixel8-gpu-fp16")
    >>> print(format_table(result))
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tfmobile.deploy.bench import BenchError, check_model, file_sha256, resolve_delegate
from tfmobile.deploy.delegates import device_of_config, validate
from tfmobile.deploy.runtime import META_FILE, read_meta
from tfmobile.errors import ConfigError
from tfmobile.resources import BENCH_SCHEMA

APP_ID = "dev.tfmobile.demo"
ACTIVITY = f"{APP_ID}/.HeadlessBenchActivity"
DEVICE_DIR = f"/sdcard/Android/data/{APP_ID}/files/tfmobile"
APP_MIN_SDK = 24  # the minSdk of LiteRT 2.3's AARs, hence of android_demo's app
DEFAULT_TIMEOUT = 600.0
POLL_SECONDS = 0.5
COMMAND_SECONDS = 60.0  # one adb call; a push or pull gets a second more per MiB
STATE_HINTS = {"unauthorized": "unlock it and accept its 'Allow USB debugging?' prompt, then try again",
               "offline": "reconnect it (or run `adb kill-server`) and try again"}
# `adb shell` joins its arguments into one command line for the device's sh: device paths keep to these
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class AdbError(BenchError):
    """No adb, no usable device, the app missing, or a phone benchmark that did not come back valid."""


# ---------------------------------------------------------------------------------------------
# adb and the device


def find_adb(adb: str | None = None) -> str:
    """The adb executable: `adb` as given, else $ADB, else adb on PATH, else the SDK's platform-tools."""
    given = adb or os.environ.get("ADB")
    if given:
        path = shutil.which(given)
        if path is None:
            where = "the given path" if adb else "$ADB"
            raise AdbError(f"adb {given!r} ({where}) is not an executable: point it at platform-tools/adb")
        return path
    path = shutil.which("adb")
    if path is None:  # Android Studio installs adb in the SDK, off PATH
        roots = [os.environ[v] for v in ("ANDROID_HOME", "ANDROID_SDK_ROOT") if os.environ.get(v)]
        path = next((c for c in (os.path.join(r, "platform-tools", "adb") for r in roots) if os.access(c, os.X_OK)),
                    None)
    if path is None:
        raise AdbError("adb not found on PATH (nor $ADB, $ANDROID_HOME/platform-tools): install the Android platform "
                       "tools (Debian: apt install adb) or set ADB=/path/to/adb")
    return path


def _last_line(*texts: str) -> str:
    for text in texts:
        lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return "no output"


def _adb(adb: str, args: list[str], timeout: float = COMMAND_SECONDS,
         check: bool = True) -> subprocess.CompletedProcess:
    """Run `adb ARGS`; a failure (when `check`), a hang or an adb that cannot start is one AdbError line."""
    shown = " ".join(args)
    try:
        proc = subprocess.run([adb, *args], capture_output=True, text=True, errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AdbError(f"`adb {shown}` did not answer in {timeout:.0f} s: reconnect the device (or run "
                       "`adb kill-server`) and try again") from None
    except OSError as e:
        raise AdbError(f"cannot run {adb}: {e.strerror or e}") from None
    if check and proc.returncode != 0:
        raise AdbError(f"`adb {shown}` failed (exit {proc.returncode}): {_last_line(proc.stderr, proc.stdout)}")
    return proc


def list_devices(adb: str) -> list[tuple[str, str]]:
    """(serial, state) of each device `adb devices` lists; state "device" is the usable one."""
    rows = [line.split("\t", 1) for line in _adb(adb, ["devices"]).stdout.splitlines() if "\t" in line]
    return [(serial.strip(), state.strip()) for serial, state in rows]


def select_device(adb: str, serial: str | None = None) -> str:
    """The serial to drive: `serial` (or $ANDROID_SERIAL, as adb itself), else the only device connected."""
    serial = serial or os.environ.get("ANDROID_SERIAL") or None
    devices = list_devices(adb)
    listed = ", ".join(f"{s} ({state})" for s, state in devices) or "none"
    if serial is not None:
        state = dict(devices).get(serial)
        if state is None:
            raise AdbError(f"no device {serial!r} is connected (adb devices lists {listed})")
    elif not devices:
        raise AdbError("no Android device is connected (adb devices lists none): connect a phone with USB debugging "
                       "on, or start an emulator")
    elif len(devices) > 1:
        raise AdbError(f"{len(devices)} devices are connected ({listed}): choose one with --serial")
    else:
        serial, state = devices[0]
    if state != "device":
        raise AdbError(f"device {serial} is not ready ({state}): "
                       f"{STATE_HINTS.get(state, 'adb cannot use it in that state')}")
    return serial


# ---------------------------------------------------------------------------------------------
# One benchmark: what the host checks and pushes, what the phone is asked


def _safe(name: str) -> str:
    return _UNSAFE.sub("_", name) or "model"


@dataclass
class BenchRequest:
    """A phone benchmark checked on the host: the files to push, the delegate settings, the measure."""

    model: Path
    sha256: str
    files: list[Path]  # the model first, then model_meta.json and its tokenizers when it has them
    export_name: str
    delegate_name: str | None
    settings: dict  # the TFLiteSettings actually used, threads override applied
    device: str | None  # the devices.json key the config belongs to
    measure: dict  # source_len, decode_steps, warmup, runs, trim


def prepare(model_path, delegate=None, num_threads=None, source_len=30, decode_steps=30, warmup=5, runs=50, trim=0.1,
            export_name: str | None = None) -> BenchRequest:
    """Check everything the host can before any phone is involved; `export_name` defaults to the model's folder."""
    name, settings, _ = resolve_delegate(delegate, num_threads, gpu=True)
    model = Path(model_path)
    check_model(model, source_len, decode_steps, warmup, runs, trim)
    files = [model]
    if (model.parent / META_FILE).is_file():
        meta = read_meta(str(model.parent))  # the app reads it with the same rules: refuse a bad one here
        if meta["model_file"] == model.name:
            files.append(model.parent / META_FILE)
            files += [model.parent / f for f in dict.fromkeys(meta["tokenizers"].values())
                      if (model.parent / f).is_file()]
    return BenchRequest(model=model, sha256=file_sha256(model), files=files,
                        export_name=_safe(export_name or model.resolve().parent.name),
                        delegate_name=name, settings=settings,
                        device=device_of_config(delegate) if delegate is not None else None,
                        measure={"source_len": source_len, "decode_steps": decode_steps, "warmup": warmup,
                                 "runs": runs, "trim": trim})


def _run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


class Phone:
    """One connected device with the demo app installed, driven over adb."""

    def __init__(self, serial: str | None = None, adb: str | None = None):
        self.adb = find_adb(adb)
        self.serial = select_device(self.adb, serial)
        self._check_app()

    def run(self, *args: str, timeout: float = COMMAND_SECONDS, check: bool = True) -> subprocess.CompletedProcess:
        return _adb(self.adb, ["-s", self.serial, *args], timeout, check)

    def shell(self, *args: str, check: bool = True) -> str:
        return self.run("shell", *args, check=check).stdout

    def getprop(self, name: str) -> str:
        return self.shell("getprop", name).strip()

    def _check_app(self) -> None:
        if f"package:{APP_ID}" in self.shell("pm", "list", "packages", APP_ID).split():
            return
        sdk = self.getprop("ro.build.version.sdk")
        if sdk.isdigit() and int(sdk) < APP_MIN_SDK:
            raise AdbError(f"the tfmobile app ({APP_ID}) cannot run on {self.serial}: it runs Android API {sdk}, and "
                           f"LiteRT 2.3 needs API {APP_MIN_SDK} or later (see devices.json)")
        raise AdbError(f"the tfmobile app ({APP_ID}) is not installed on {self.serial}: build and install it "
                       "(android_demo/README.md), then try again")

    def push(self, local: Path, remote: str) -> None:
        self.run("push", str(local), remote, timeout=COMMAND_SECONDS + os.path.getsize(local) / 2**20)

    def bench(self, request: BenchRequest, timeout: float = DEFAULT_TIMEOUT, progress: bool = True) -> dict:
        """Push, start the app's benchmark, wait for it, pull, validate: the result dict (bench_result schema)."""
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise AdbError(f"the adb timeout must be a positive number of seconds, got {timeout!r}")
        exports = f"{DEVICE_DIR}/exports/{request.export_name}"
        delegate = f"{DEVICE_DIR}/delegates/{_safe(request.delegate_name or 'default')}.json"
        out = f"{DEVICE_DIR}/results/{_run_id()}.json"
        self.shell("rm", "-rf", exports)  # an earlier export of that name: none of its files may linger
        self.shell("mkdir", "-p", exports, f"{DEVICE_DIR}/delegates", f"{DEVICE_DIR}/results")
        for file in request.files:
            self.push(file, f"{exports}/{_safe(file.name)}")
        with tempfile.TemporaryDirectory(prefix="tfmobile-adb-") as tmp:
            config = Path(tmp) / "delegate.json"
            config.write_text(json.dumps(request.settings, indent=2) + "\n", encoding="utf-8")
            self.push(config, delegate)
            self._start(request, f"{exports}/{_safe(request.model.name)}", delegate, out)
            self._wait(out, timeout, progress)
            local = Path(tmp) / "result.json"
            self.run("pull", out, str(local))
            try:
                result = json.loads(local.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise AdbError(f"the result pulled from {self.serial} ({out}) is not JSON: {e}") from None
        self._check_result(result, request, out)
        return result

    def _start(self, request: BenchRequest, model: str, delegate: str, out: str) -> None:
        extras = ["--es", "model", model, "--es", "delegate", delegate, "--es", "out", out]
        for key in ("runs", "warmup", "source_len", "decode_steps"):
            extras += ["--ei", key, str(request.measure[key])]
        extras += ["--ef", "trim", repr(float(request.measure["trim"]))]
        if request.device:
            extras += ["--es", "device", request.device]
        proc = self.run("shell", "am", "start", "-W", "-S", "-n", ACTIVITY, *extras, check=False)
        # am reports a missing activity on its output ("Error type 3", then "Error: Activity class {...} does not
        # exist."), with exit status 0 on many Android versions: the last Error line is the one that says what
        errors = [line.strip() for line in (proc.stdout + "\n" + proc.stderr).splitlines() if line.startswith("Error")]
        error = errors[-1] if errors else None
        if error or proc.returncode != 0:
            raise AdbError(f"the app's benchmark could not be started on {self.serial}: "
                           f"{error or _last_line(proc.stderr, proc.stdout)} (reinstall the app from android_demo)")

    def _wait(self, out: str, timeout: float, progress: bool) -> None:
        from tqdm import tqdm

        start = time.monotonic()
        # a terminal gets a seconds counter on stderr; tqdm's disable=None turns it off elsewhere
        with tqdm(total=math.ceil(timeout), desc=f"benchmark on {self.serial}", file=sys.stderr, leave=False,
                  disable=None if progress else True, bar_format="{desc}: {n} s of {total} s") as bar:
            while True:
                found = self.shell("ls", out, f"{out}.error", check=False).split()
                if out in found:
                    return
                if f"{out}.error" in found:
                    lines = [line.strip() for line in self.shell("cat", f"{out}.error").splitlines() if line.strip()]
                    raise AdbError(f"the app's benchmark failed on {self.serial}: "
                                   f"{lines[0] if lines else 'it left an empty error file'}")
                elapsed = time.monotonic() - start
                if elapsed >= timeout:
                    raise AdbError(f"no result from the app on {self.serial} after {timeout:g} s (it writes {out}): "
                                   f"keep the phone unlocked with its screen on, look for a crash of {APP_ID} in "
                                   f"`adb -s {self.serial} logcat`, or allow longer with --adb-timeout")
                bar.update(min(int(elapsed), bar.total) - bar.n)
                time.sleep(min(POLL_SECONDS, timeout - elapsed))

    def _check_result(self, result, request: BenchRequest, out: str) -> None:
        try:
            validate(result, BENCH_SCHEMA, f"benchmark result from {self.serial} ({out})")
        except ConfigError as e:
            raise AdbError(f"{e}: install the app built from this tfmobile") from None
        if result["model"]["sha256"] != request.sha256:
            raise AdbError(f"the result from {self.serial} measured another file (sha256 "
                           f"{result['model']['sha256'][:12]}...) than {request.model} ({request.sha256[:12]}...)")
        got = result["settings"]
        # the app receives trim as a float extra (32 bits): 0.1 comes back as 0.10000000149...
        same = all(got[k] == v for k, v in request.measure.items() if k != "trim") and \
            abs(got["trim"] - request.measure["trim"]) < 1e-6
        if not same:
            raise AdbError(f"the result from {self.serial} was measured with other settings ({got}, asked "
                           f"{request.measure}): install the app built from this tfmobile")


def bench_on_phone(model_path, delegate=None, num_threads=None, source_len=30, decode_steps=30, warmup=5, runs=50,
                   trim=0.1, serial: str | None = None, adb: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                   progress: bool = True) -> dict:
    """`tfmobile.deploy.bench.bench`'s measure, run by the Android app on a phone over adb (GPU configs too)."""
    request = prepare(model_path, delegate, num_threads, source_len, decode_steps, warmup, runs, trim)
    return Phone(serial, adb).bench(request, timeout, progress)


__all__ = ["ACTIVITY", "APP_ID", "APP_MIN_SDK", "AdbError", "BenchRequest", "DEFAULT_TIMEOUT", "DEVICE_DIR", "Phone",
           "bench_on_phone", "find_adb", "list_devices", "prepare", "select_device"]
