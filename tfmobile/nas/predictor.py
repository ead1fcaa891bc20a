"""HAT's latency predictor and two least-squares baselines (Wang et al., ACL 2020, section 3.3).

HAT does not time every candidate of its evolutionary search: it measures a few thousand sampled
SubTransformers on the target device (`tfmobile.nas.latency`) and fits a predictor from an architecture
to its latency. `tfmobile hat predictor latency.csv --out P` fits three, on the same 80% of the rows:

    mlp             HAT's MLP on HAT's 10 features (below): 10 -> 400 -> 3 x (400 -> 400) -> 1, ReLU after
                    every hidden layer, MSE, Adam at 1e-5, 5000 steps of 128 rows (HAT's settings), in
                    tf_keras. The target is standardized (HAT divides it by a constant, `--lat-norm`):
                    with Adam at 1e-5 a target in raw milliseconds would need far more steps.
    hat-lstsq       ordinary least squares on the same 10 features plus an intercept. Refitting HAT's own
                    released latency data, least squares does as well as the MLP (4-7% MAPE).
    profiler-lstsq  ordinary least squares, plus an intercept, on what the profiler
                    (`tfmobile.profiling`) counts from the config alone: Mult-Adds and float32 weight bytes
                    of the two LiteRT signatures HAT's measure times, `encode` and one `decode_step`.

and reports RMSE (ms) and MAPE (%) of each on the held-out 20%. It keeps the SIMPLEST that reaches the
issue's goal, at most 5% MAPE (simplicity: profiler-lstsq, hat-lstsq, mlp); when none does, the one
with the lowest held-out MAPE, and the report says the goal was not met. Nothing is refitted on the
held-out rows, so the table is what the search will see on new architectures.

HAT's 10 features (`hat_features`): encoder embed dim, encoder layers, mean encoder FFN dim, mean encoder
heads, decoder embed dim, decoder layers, mean decoder FFN dim, mean decoder self-attention heads, mean
decoder encoder-decoder heads, mean encoder layers attended (HAT's -1/1/2 is our 1/2/3). HAT divides
them by fixed constants [640, 6, 2048, 6, 640, 6, 2048, 6, 6, 2] written for its WMT space; here each
is divided by the largest choice of its dimension in the space, so every space's features lie in (0, 1].

Profiler features (`profiler_features`), derived from `profile()` and the export's graph
(`tfmobile.deploy.export`), in millions (Mult-Adds) and megabytes:
    encode Mult-Adds    the encoder over the export's S source positions (its static input shape), plus
                        every decoder layer's encoder-decoder W_K / W_V over its memory (k x S positions):
                        `encode` projects them once per sentence.
    encode MB           4 bytes x the weights of both (embeddings excluded, as the profiler does).
    step Mult-Adds      one `decode_step`: the decoder at one target token (profile at tgt_len 1) without
                        the cross W_K / W_V moved into `encode`, with self-attention over the whole static
                        cache (T positions, masked, as the exported graph computes it) and with the logits
                        over the vocabulary (d x V): the profiler reports the output projection aside since
                        the papers leave it out of a model's size, but the step computes it, and for the
                        small space it costs as much as a decoder layer.
    step MB             4 bytes x the decoder's weights less the cross W_K / W_V (embeddings excluded).
Head counts do not change any of these (the qkv width is fixed), which is what HAT's features add.

`load_predictor(P, space)` gives what the search needs: `predict_ms(arch)`, `predict_ms_many(archs)` and
`min_latency_ms()`, the fastest latency it knows (a budget below it is refused). Predictions run in
NumPy, so loading a predictor needs no TensorFlow.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import zipfile

import numpy as np

from tfmobile.errors import ConfigError, DataError
from tfmobile.kinds.costs import linear
from tfmobile.nas.space import CHOICE_DIMS, Arch, Space
from tfmobile.profiling import profile
from tfmobile.run import claim_directory
from tfmobile.utils import atomic_write_bytes, atomic_write_text, new_figure, save_figure

FORMAT = "tfmobile-predictor/1"
PREDICTOR_FILE = "predictor.json"
MLP_WEIGHTS_FILE = "mlp.npz"
SCATTER_FILE = "scatter.png"
GOAL_MAPE = 5.0  # the goal: at most 5% MAPE on the held-out rows
HELD_OUT = 0.2
MLP_STEPS = 5000  # HAT's
MIN_ROWS = 20  # below this a held-out 20% says nothing and 11 least-squares unknowns are barely determined

HAT_FEATURES = ("encoder_embed_dim", "encoder_layers", "mean_encoder_ffn_dim", "mean_encoder_num_heads",
                "decoder_embed_dim", "decoder_layers", "mean_decoder_ffn_dim", "mean_decoder_num_heads",
                "mean_decoder_cross_num_heads", "mean_encoder_layers_attended")
# the space dimension whose largest choice normalizes each feature
_HAT_FEATURE_DIMS = ("encoder_embed_dim", "encoder_layers", "encoder_ffn_dim", "encoder_num_heads",
                     "decoder_embed_dim", "decoder_layers", "decoder_ffn_dim", "decoder_num_heads",
                     "decoder_cross_num_heads", "encoder_layers_attended")
PROFILER_FEATURES = ("encode_mult_adds_M", "encode_weight_MB", "step_mult_adds_M", "step_weight_MB")
BYTES_PER_WEIGHT = 4  # float32


# ---------------------------------------------------------------------------------------------
# Features


def hat_feature_scale(space: Space) -> np.ndarray:
    """The divisor of each HAT feature: the largest choice of its dimension (HAT: fixed constants)."""
    return np.array([space.largest(d) for d in _HAT_FEATURE_DIMS], np.float64)


def hat_features(space: Space, arch: Arch) -> np.ndarray:
    """HAT's 10 features of `arch`, each divided by the largest choice of its dimension in `space`."""
    raw = np.array([arch.encoder_embed_dim, arch.encoder_layers, np.mean(arch.encoder_ffn_dim),
                    np.mean(arch.encoder_num_heads), arch.decoder_embed_dim, arch.decoder_layers,
                    np.mean(arch.decoder_ffn_dim), np.mean(arch.decoder_num_heads),
                    np.mean(arch.decoder_cross_num_heads), np.mean(arch.encoder_layers_attended)], np.float64)
    return raw / hat_feature_scale(space)


def profiler_features(space: Space, arch: Arch, vocab_size: int, source_positions: int = 30,
                      cache_positions: int = 30) -> np.ndarray:
    """[encode Mult-Adds (M), encode weights (MB), decode-step Mult-Adds (M), decode-step weights (MB)].

    `source_positions` is the encoder's static input length S and `cache_positions` the static
    self-attention cache T of the export (see the module docstring for what each signature computes)."""
    cfg = space.model_config(arch, vocab_size)
    S, T, q = source_positions, cache_positions, space.qkv_dim
    breakdown = profile(cfg, src_len=S, tgt_len=1)["breakdown"]
    enc, dec = breakdown["encoder"]["total"], breakdown["decoder"]["total"]
    d_enc, d_dec = arch.encoder_embed_dim, arch.decoder_embed_dim
    # encoder-decoder W_K and W_V of each decoder layer, over its k x S memory: run by `encode`
    cross_kv = [linear(d_enc, q, k * S) + linear(d_enc, q, k * S) for k in arch.encoder_layers_attended]
    cross_ma, cross_params = sum(c.mult_adds for c in cross_kv), sum(c.params for c in cross_kv)
    # profile(tgt_len=1) scores one key; the step scores the whole cache (QK^T and the weighted V sum)
    cache_ma = arch.decoder_layers * (T - 1) * 2 * q
    logits_ma = d_dec * vocab_size
    encode_ma, encode_params = enc["mult_adds"] + cross_ma, enc["params"] + cross_params
    step_ma, step_params = dec["mult_adds"] - cross_ma + cache_ma + logits_ma, dec["params"] - cross_params
    return np.array([encode_ma / 1e6, encode_params * BYTES_PER_WEIGHT / 1e6,
                     step_ma / 1e6, step_params * BYTES_PER_WEIGHT / 1e6], np.float64)


# ---------------------------------------------------------------------------------------------
# Predictors: fit(x, y) on feature rows and milliseconds, predict(x) -> milliseconds


def rmse(predicted, measured) -> float:
    return float(np.sqrt(np.mean((np.asarray(predicted) - np.asarray(measured)) ** 2)))


def mape(predicted, measured) -> float:
    """Mean absolute percentage error, in percent."""
    measured = np.asarray(measured, np.float64)
    return float(100.0 * np.mean(np.abs(np.asarray(predicted) - measured) / np.abs(measured)))


class LeastSquares:
    """Ordinary least squares with an intercept (numpy.linalg.lstsq: the minimum-norm solution, so
    collinear features, such as Mult-Adds and weight bytes, are harmless)."""

    kind = "lstsq"

    def __init__(self, coef=None, intercept: float = 0.0):
        self.coef = None if coef is None else np.asarray(coef, np.float64)
        self.intercept = float(intercept)

    def fit(self, x: np.ndarray, y: np.ndarray) -> "LeastSquares":
        a = np.hstack([np.asarray(x, np.float64), np.ones((len(x), 1))])
        solution, *_ = np.linalg.lstsq(a, np.asarray(y, np.float64), rcond=None)
        self.coef, self.intercept = solution[:-1], float(solution[-1])
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float64) @ self.coef + self.intercept

    def to_dict(self) -> dict:
        return {"kind": self.kind, "coef": self.coef.tolist(), "intercept": self.intercept}

    @classmethod
    def from_dict(cls, d: dict, arrays=None) -> "LeastSquares":
        return cls(d["coef"], d["intercept"])


class MLP:
    """HAT's latency MLP (its `latency_predictor.py`): Dense(400) + ReLU, 3 x (Dense(400) + ReLU),
    Dense(1); MSE, Adam at 1e-5, `steps` batches of 128 rows. Trained in tf_keras; `predict` is the same
    forward pass in NumPy (tested equal), so a loaded predictor needs no TensorFlow."""

    kind = "mlp"

    def __init__(self, hidden: int = 400, hidden_layers: int = 3, steps: int = 5000, batch_size: int = 128,
                 learning_rate: float = 1e-5, seed: int = 1, progress: bool = True):
        self.hidden, self.hidden_layers, self.steps = hidden, hidden_layers, steps
        self.batch_size, self.learning_rate, self.seed, self.progress = batch_size, learning_rate, seed, progress
        self.weights: list[np.ndarray] = []  # kernel, bias per Dense layer
        self.target_mean, self.target_std = 0.0, 1.0

    def build(self, n_features: int):
        """The Keras model (seeded initializers, so a seed gives the same predictor)."""
        import tf_keras as keras

        init = lambda i: keras.initializers.GlorotUniform(seed=self.seed * 100 + i)  # noqa: E731
        layers = [keras.Input((n_features,))]
        layers += [keras.layers.Dense(self.hidden, activation="relu", kernel_initializer=init(i))
                   for i in range(1 + self.hidden_layers)]
        layers.append(keras.layers.Dense(1, kernel_initializer=init(self.hidden_layers + 1)))
        return keras.Sequential(layers)

    def fit(self, x: np.ndarray, y: np.ndarray) -> "MLP":
        import tensorflow as tf
        import tf_keras as keras
        from tqdm import tqdm

        y = np.asarray(y, np.float64)
        self.target_mean, self.target_std = float(y.mean()), float(y.std()) or 1.0
        z = ((y - self.target_mean) / self.target_std).astype(np.float32)
        model = self.build(x.shape[1])
        model.compile(optimizer=keras.optimizers.Adam(self.learning_rate), loss="mse")
        data = (tf.data.Dataset.from_tensor_slices((np.asarray(x, np.float32), z[:, None]))
                .shuffle(len(z), seed=self.seed, reshuffle_each_iteration=True).repeat().batch(self.batch_size))
        bar = tqdm(total=self.steps, desc="MLP", file=sys.stderr, disable=not self.progress, leave=False)

        class _Bar(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                bar.update(1)

        try:
            model.fit(data, steps_per_epoch=self.steps, epochs=1, verbose=0, callbacks=[_Bar()])
        finally:
            bar.close()
        self.weights = [w.astype(np.float32) for w in model.get_weights()]
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        h = np.asarray(x, np.float32)
        pairs = list(zip(self.weights[::2], self.weights[1::2]))
        for kernel, bias in pairs[:-1]:
            h = np.maximum(h @ kernel + bias, 0.0)
        kernel, bias = pairs[-1]
        return (h @ kernel + bias)[:, 0].astype(np.float64) * self.target_std + self.target_mean

    def to_dict(self) -> dict:
        """The settings and target scaling; the weights go to `arrays()` (an .npz beside the JSON)."""
        return {"kind": self.kind, "hidden": self.hidden, "hidden_layers": self.hidden_layers, "steps": self.steps,
                "batch_size": self.batch_size, "learning_rate": self.learning_rate, "seed": self.seed,
                "target_mean": self.target_mean, "target_std": self.target_std, "weights_file": MLP_WEIGHTS_FILE}

    def arrays(self) -> dict[str, np.ndarray]:
        return {f"w{i}": w for i, w in enumerate(self.weights)}

    @classmethod
    def from_dict(cls, d: dict, arrays=None) -> "MLP":
        mlp = cls(d["hidden"], d["hidden_layers"], d["steps"], d["batch_size"], d["learning_rate"], d["seed"])
        mlp.target_mean, mlp.target_std = float(d["target_mean"]), float(d["target_std"])
        arrays = arrays or {}
        mlp.weights = [np.asarray(arrays[f"w{i}"], np.float32) for i in range(len(arrays))]
        if len(mlp.weights) != 2 * (mlp.hidden_layers + 2):
            raise DataError(f"{d.get('weights_file', MLP_WEIGHTS_FILE)} holds {len(mlp.weights)} arrays, "
                            f"not the {2 * (mlp.hidden_layers + 2)} of the MLP")
        return mlp


# The three predictors in order of simplicity: the chooser keeps the first that reaches the goal.
PREDICTORS = (
    {"name": "profiler-lstsq", "features": "profiler", "model": LeastSquares},
    {"name": "hat-lstsq", "features": "hat", "model": LeastSquares},
    {"name": "mlp", "features": "hat", "model": MLP},
)
FEATURE_NAMES = {"hat": HAT_FEATURES, "profiler": PROFILER_FEATURES}


# ---------------------------------------------------------------------------------------------
# What the features need to know about a latency file


def _feature_settings(meta: dict, space: Space) -> dict:
    """Vocabulary and static lengths of the exports the latency file timed (the profiler features need them):
    `read_latency` puts the header's vocab_size into the space; the lengths are the header's settings."""
    settings = meta["settings"]
    return {"vocab_size": space.data.vocab_size,
            "source_positions": int(settings.get("max_source_len", settings["source_len"])),
            "cache_positions": int(settings.get("max_target_len", settings["decode_steps"]))}


def _features(kind: str, space: Space, archs, settings: dict) -> np.ndarray:
    if kind == "hat":
        return np.stack([hat_features(space, a) for a in archs])
    return np.stack([profiler_features(space, a, **settings) for a in archs])


def held_out_split(n: int, seed: int, fraction: float = HELD_OUT) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out indices): a seeded random `fraction` of the n rows held out."""
    order = np.random.default_rng(seed).permutation(n)
    n_held = max(1, int(round(fraction * n)))
    return np.sort(order[n_held:]), np.sort(order[:n_held])


def choose(table: list[dict], goal: float = GOAL_MAPE) -> tuple[str, bool]:
    """(name, goal met): the first row (the simplest) with MAPE <= goal, else the lowest MAPE."""
    for row in table:
        if row["mape_pct"] <= goal:
            return row["name"], True
    return min(table, key=lambda r: r["mape_pct"])["name"], False


# ---------------------------------------------------------------------------------------------
# Fitting: `tfmobile hat predictor`


def fit_predictors(csv_path: str, out_dir: str, seed: int = 1, progress: bool = True,
                   mlp_steps: int | None = None) -> dict:
    """Fit the three predictors on 80% of the latency file's rows, report them on the other 20%, keep the
    simplest within the goal, and write predictor.json (+ mlp.npz) and scatter.png into `out_dir`."""
    from tfmobile.nas.latency import read_latency  # it imports TensorFlow; loading a predictor does not need it

    mlp_steps = MLP_STEPS if mlp_steps is None else mlp_steps
    meta, space, rows = read_latency(csv_path)
    if len(rows) < MIN_ROWS:
        raise DataError(f"{csv_path}: {len(rows)} measured rows; a predictor needs at least {MIN_ROWS} "
                        "(HAT measures 2000; the issue's goal is met from at most 300)")
    archs = [r["arch"] for r in rows]
    measured = np.array([float(r["latency_ms"]) for r in rows])
    if measured.min() <= 0:  # MAPE divides by it
        raise DataError(f"{csv_path}: row {int(measured.argmin())} has a latency of {measured.min():g} ms; "
                        "every measured latency must be positive")
    claim_directory(out_dir, "hat predictor", "predictor")
    train, held = held_out_split(len(rows), seed)
    settings = _feature_settings(meta, space)
    features = {kind: _features(kind, space, archs, settings) for kind in FEATURE_NAMES}

    fitted, table, predictions = {}, [], {}
    for spec in PREDICTORS:
        x = features[spec["features"]]
        is_mlp = spec["model"] is MLP
        model = MLP(steps=mlp_steps, seed=seed, progress=progress) if is_mlp else spec["model"]()
        model.fit(x[train], measured[train])
        predicted = model.predict(x[held])
        fitted[spec["name"]], predictions[spec["name"]] = model, predicted
        table.append({"name": spec["name"], "features": spec["features"], "rmse_ms": rmse(predicted, measured[held]),
                      "mape_pct": mape(predicted, measured[held])})
    chosen, goal_met = choose(table)
    for row in table:
        row["chosen"] = row["name"] == chosen

    record = {
        "format": FORMAT,
        # the choices, and the model settings the profiler features see (pre-norm adds the final LayerNorms)
        "space": {"name": space.name, **{d: list(space.choices[d]) for d in CHOICE_DIMS}, "qkv_dim": space.qkv_dim,
                  "model": dict(space.model)},
        "latency_file": os.path.abspath(csv_path),
        "machine": meta.get("machine"), "measurer": meta.get("measurer"), "settings": meta.get("settings"),
        "feature_settings": settings,
        "hat_feature_scale": hat_feature_scale(space).tolist(),
        "chosen": chosen, "goal_mape_pct": GOAL_MAPE, "goal_met": goal_met,
        "samples": {"total": len(rows), "train": len(train), "held_out": len(held), "seed": seed},
        "min_measured_ms": float(measured.min()),
        "table": table,
        "predictors": {spec["name"]: {"features": spec["features"], **fitted[spec["name"]].to_dict()}
                       for spec in PREDICTORS},
    }
    buffer = io.BytesIO()
    np.savez(buffer, **fitted["mlp"].arrays())
    # the JSON names the weights' digest: a kill between the two writes leaves a mismatch that loading refuses
    record["predictors"]["mlp"]["weights_sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    atomic_write_bytes(os.path.join(out_dir, MLP_WEIGHTS_FILE), buffer.getvalue())
    atomic_write_text(os.path.join(out_dir, PREDICTOR_FILE), json.dumps(record, indent=1) + "\n")
    _scatter(os.path.join(out_dir, SCATTER_FILE), measured[held], predictions, table, space.name)
    return {"out_dir": out_dir, "chosen": chosen, "goal_met": goal_met, "goal_mape_pct": GOAL_MAPE,
            "table": table, "samples": record["samples"], "min_measured_ms": record["min_measured_ms"],
            "files": [PREDICTOR_FILE, MLP_WEIGHTS_FILE, SCATTER_FILE]}


def _scatter(path: str, measured: np.ndarray, predictions: dict, table: list[dict], space_name: str) -> None:
    fig = new_figure(figsize=(5.2, 5))
    ax = fig.subplots()
    for row in table:
        label = f"{row['name']}: MAPE {row['mape_pct']:.1f}%" + (" (chosen)" if row["chosen"] else "")
        ax.scatter(measured, predictions[row["name"]], s=14, alpha=0.7, label=label, zorder=3 if row["chosen"] else 2)
    lo = min(measured.min(), *(p.min() for p in predictions.values()))
    hi = max(measured.max(), *(p.max() for p in predictions.values()))
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8, label="y = x")
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(f"{space_name}: {len(measured)} held-out SubTransformers", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def format_report(report: dict) -> str:
    """The predictor table, for the CLI."""
    lines = [f"{'predictor':<16}{'features':<10}{'RMSE ms':>10}{'MAPE %':>9}  chosen"]
    for row in report["table"]:
        lines.append(f"{row['name']:<16}{row['features']:<10}{row['rmse_ms']:>10.3f}{row['mape_pct']:>9.2f}  "
                     f"{'*' if row['chosen'] else ''}")
    s = report["samples"]
    goal = "met" if report["goal_met"] else "NOT met: none reached it, the lowest MAPE is kept"
    lines.append(f"{s['train']} rows fitted, {s['held_out']} held out; goal MAPE <= {report['goal_mape_pct']:g}%: "
                 f"{goal}; chosen {report['chosen']}; wrote {report['out_dir']}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Loading: what `tfmobile hat search` uses


class LatencyPredictor:
    """A fitted predictor: milliseconds from an architecture of its space."""

    def __init__(self, record: dict, space: Space, model, path: str):
        self.record, self.space, self.model, self.path = record, space, model, path
        self.name, self.feature_kind = record["chosen"], record["predictors"][record["chosen"]]["features"]
        self.feature_settings = record["feature_settings"]

    def predict_ms_many(self, archs) -> np.ndarray:
        archs = [self.space.check(a) for a in archs]
        if not archs:
            return np.zeros(0)
        return self.model.predict(_features(self.feature_kind, self.space, archs, self.feature_settings))

    def predict_ms(self, arch: Arch) -> float:
        return float(self.predict_ms_many([arch])[0])

    def min_latency_ms(self) -> float:
        """The fastest latency it knows: its prediction for the smallest SubTransformer, or the fastest
        measured one, whichever is lower (a budget below it cannot be met)."""
        return min(self.predict_ms(self.space.smallest_arch), float(self.record["min_measured_ms"]))

    def describe(self) -> str:
        row = next(r for r in self.record["table"] if r["name"] == self.name)
        return f"{self.name} (held-out MAPE {row['mape_pct']:.1f}%, RMSE {row['rmse_ms']:.2f} ms)"


def _predictor_path(path: str) -> str:
    return os.path.join(path, PREDICTOR_FILE) if os.path.isdir(path) else path


def load_predictor(path: str, space: Space | None = None) -> LatencyPredictor:
    """The predictor of a directory `tfmobile hat predictor` wrote (or its predictor.json). A DataError if
    it is missing, corrupt or not a predictor; a ConfigError if `space` is given and is not its space."""
    file = _predictor_path(path)
    try:
        with open(file, encoding="utf-8") as f:
            record = json.load(f)
    except FileNotFoundError:
        raise DataError(f"{file}: no predictor here (write one with `tfmobile hat predictor LATENCY.csv "
                        "--out DIR`)") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{file}: not a readable predictor file ({type(e).__name__})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        found = record.get("format") if isinstance(record, dict) else None
        raise DataError(f"{file}: not a tfmobile predictor (format {found!r}, expected {FORMAT!r})")
    try:
        own = Space(name=str(record["space"]["name"]),
                    choices={d: tuple(int(v) for v in record["space"][d]) for d in CHOICE_DIMS},
                    qkv_dim=int(record["space"]["qkv_dim"]), model=dict(record["space"].get("model") or {}))
        chosen = record["predictors"][record["chosen"]]
        float(record["min_measured_ms"])
        own.model_config(own.smallest_arch, int(record["feature_settings"]["vocab_size"]))
        if chosen["kind"] == MLP.kind:
            weights = os.path.join(os.path.dirname(file), chosen["weights_file"])
            try:
                with open(weights, "rb") as f:
                    data = f.read()
                if hashlib.sha256(data).hexdigest() != chosen["weights_sha256"]:
                    raise ValueError("not the weights predictor.json was written with")
                with np.load(io.BytesIO(data)) as z:
                    arrays = {k: z[k] for k in z.files}
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
                raise DataError(f"{weights}: the MLP's weights are missing or corrupt "
                                f"({type(e).__name__}: {e})") from None
            model = MLP.from_dict(chosen, arrays)
        else:
            model = LeastSquares.from_dict(chosen)
            if model.coef.shape != (len(FEATURE_NAMES[chosen["features"]]),):
                raise ValueError("coefficients")
    except (KeyError, TypeError, ValueError, AttributeError, ConfigError) as e:
        raise DataError(f"{file}: a corrupt predictor ({type(e).__name__}: {e})") from None
    if space is not None and not space.same_as(own):
        differ = [d for d in CHOICE_DIMS if space.choices[d] != own.choices[d]] or ["qkv_dim"]
        raise ConfigError(f"{file}: a predictor fitted on space {own.name!r}, not on {space.name!r} (they differ in "
                          f"{', '.join(differ)}); fit one on a latency file of this space")
    if space is not None:
        own = Space(name=space.name, choices=own.choices, qkv_dim=own.qkv_dim, model=own.model, data=space.data,
                    train=space.train, description=space.description)
    return LatencyPredictor(record, own, model, file)


__all__ = ["FORMAT", "GOAL_MAPE", "HAT_FEATURES", "LatencyPredictor", "LeastSquares", "MLP", "PROFILER_FEATURES",
           "choose", "fit_predictors", "format_report", "hat_feature_scale", "hat_features", "held_out_split",
           "load_predictor", "mape", "profiler_features", "rmse"]
