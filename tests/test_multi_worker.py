"""`--strategy multi-worker`: two worker processes on localhost (a `TF_CONFIG` cluster) train a tiny model
together, and both end with the same weights.

Each worker trains the same config into the same run directory (what `tfmobile train --strategy multi-worker
--out RUN` does on every host), as on hosts that share a file system: the chief (worker 0) writes the run, the
other worker trains in a scratch copy (TensorFlow's pattern for multi-worker checkpoints) that it removes at
the end. A small driver around `trainer.train` has each worker print its final weights' checksum, and the
chief's checkpoint holds those weights.
"""

import hashlib
import json
import os
import socket
import subprocess
import sys

import numpy as np

from conftest import tiny_config
from tfmobile.run import load_run

TESTS = os.path.dirname(os.path.abspath(__file__))

DRIVER = """
import sys
import tf_keras as keras
from tfmobile.models.config import load_config
from tfmobile.training.trainer import train
sys.path.insert(0, sys.argv[4])
from test_multi_worker import weights_digest

class Checksum(keras.callbacks.Callback):
    def on_train_end(self, logs=None):
        print("weights", weights_digest(self.model), flush=True)

exp = load_config(sys.argv[1])
exp.train.strategy = "multi-worker"
train(exp, sys.argv[2], data_dir=sys.argv[3], verbose=0, callbacks=[Checksum()])
"""


def weights_digest(model) -> str:
    return hashlib.sha256(b"".join(np.ascontiguousarray(w).tobytes() for w in model.get_weights())).hexdigest()


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports



def test_two_workers_train_in_step_and_end_with_the_same_weights(tmp_path, corpus):
    config = tiny_config(tmp_path, corpus, name="multi", steps=6, layers=1)
    out = tmp_path / "run"
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    workers = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
               "CUDA_VISIBLE_DEVICES": ""}
        workers.append(subprocess.Popen(
            [sys.executable, "-c", DRIVER, config, str(out), str(tmp_path / f"data{index}"), TESTS],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        outputs = [w.communicate(timeout=300) for w in workers]
    finally:  # a worker whose peer died waits on the collectives for ever
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    results = [(w.returncode, stdout, stderr) for w, (stdout, stderr) in zip(workers, outputs)]
    for rc, stdout, stderr in results:
        assert rc == 0, stderr[-3000:]
    checksums = [[line.split()[1] for line in stdout.splitlines() if line.startswith("weights ")]
                 for _, stdout, _ in results]
    assert len(checksums[0]) == 1 and checksums[0] == checksums[1]

    # the chief wrote the run; its checkpoint holds the weights both workers ended with
    assert json.loads((out / "train_state.json").read_text())["epochs_done"] == 1
    _, model, _ = load_run(str(out))
    assert weights_digest(model) == checksums[0][0]
    # the other worker left nothing behind
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("run")) == ["run"]
    assert not [p for p in out.iterdir() if "worker" in p.name]
