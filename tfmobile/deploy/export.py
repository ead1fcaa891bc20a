"""Export a trained translator to LiteRT (TFLite): one `.tflite` with on-device decoding, builtin ops only.

The exported model has three signatures, all batch 1 with fixed shapes (S = max source length,
T = max target length, both export options; LiteRT's GPU path, the CompiledModel API, needs static
shapes):

    encode       source_ids [1, S] int32 (SentencePiece ids, EOS, then 0-padding)
                 -> source_mask [1, S], cross_k_{i} / cross_v_{i} per decoder layer i
    decode_step  token [1], position [1], source_mask, cross_k_{i}, cross_v_{i}, cache_{i}_{j}
                 -> logits [1, V] float32, cache_{i}_{j} (the same names: feed them back)
    translate    source_ids [1, S] -> target_ids [1, T] (EOS, then 0), target_length [1]

`encode` projects the encoder-decoder keys and values once per sentence, so `decode_step` only runs
the new token. The self-attention cache of each decoder layer is an explicit tensor [1, H, T, d_h]
(plus the convolution state of a Lite Transformer layer) written in place with DYNAMIC_UPDATE_SLICE.
`translate` is greedy decoding inside the graph (a WHILE loop): one call per sentence for apps that
do not want to step the decoder themselves. Its length limit is `tfmobile.decoding.search.target_length_limit`,
the Keras decoder's, so both give the same translations.

Quantization (`QUANTIZATIONS`): float32, float16 weights, dynamic-range int8 (int8 weights, float
activations) and int8 with activations calibrated on a representative dataset from the training
corpus (the fully connected layers in int8, the rest in float: see `_quantize_int8`; the metadata lists
the float ops).

Beside the model: the SentencePiece model(s) and `model_meta.json` (signatures with input and output
names, shapes and dtypes, special ids, maximum lengths, quantization, the GPU-compatibility verdict of
`tf.lite.experimental.Analyzer`, and the source config).

`export_model` exports a built Keras model and its ModelConfig (tokenizers optional, no run directory);
`export_translator` does it for a trained run. The directory is replaced by renames, and only an
earlier export (its model_meta.json format marker) is ever replaced: see `_check_out`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfmobile.data import prepare_corpus
from tfmobile.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from tfmobile.decoding.search import (LENGTH_EXTRA, LENGTH_RATIO, IncrementalDecoder, source_lengths,
                                      target_length_limit)
from tfmobile.deploy.encoder_export import ExportError, _operator_codes, run_converter, tflite_ops
from tfmobile.deploy.runtime import META_FILE, META_FORMAT, MODEL_FILE, ModelError, read_meta
from tfmobile.layers.attention import dynamic_update_slice
from tfmobile.models.config import ExperimentConfig, ModelConfig
from tfmobile.run import is_run, load_run, same_or_inside
from tfmobile.utils import atomic_write_bytes, atomic_write_text

QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
SIGNATURES = ("encode", "decode_step", "translate")
TOKENIZER_FILES = ("spm.model", "spm.src.model", "spm.tgt.model")


class TranslatorModule(tf.Module):
    """The three signatures over a trained model's own layers (found by name, so the weights are the
    trained ones)."""

    def __init__(self, model: keras.Model, cfg: ModelConfig, max_source_len: int, max_target_len: int):
        super().__init__(name="translator")
        if max_source_len < 2 or max_target_len < 2:
            raise ExportError(f"maximum lengths must be at least 2 (got source {max_source_len}, "
                              f"target {max_target_len})")
        if max_source_len > cfg.max_source_len or max_target_len > cfg.max_target_len:
            raise ExportError(f"the model's position tables cover {cfg.max_source_len} source and "
                              f"{cfg.max_target_len} target tokens; asked for {max_source_len} and {max_target_len}")
        self.cfg = cfg
        self.model = model  # its variables are what the signatures capture (`convert` saves them)
        self.decoder = IncrementalDecoder(model, cfg)
        self.max_source_len, self.max_target_len = S, T = max_source_len, max_target_len
        cache = self.decoder.init_cache(1, T)
        self.cache_names = [[f"cache_{i}_{j}" for j in range(len(c))] for i, c in enumerate(cache)]
        self.cache_specs = [tf.TensorSpec(t.shape, t.dtype, name=n)
                            for layer, names in zip(cache, self.cache_names) for t, n in zip(layer, names)]
        cross = self.decoder.encode(tf.zeros([1, S], tf.int32))
        self.cross_specs = []
        for i, (k, v, _) in enumerate(cross):
            self.cross_specs += [tf.TensorSpec(k.shape, tf.float32, name=f"cross_k_{i}"),
                                 tf.TensorSpec(v.shape, tf.float32, name=f"cross_v_{i}")]
        source = tf.TensorSpec([1, S], tf.int32, name="source_ids")
        self.encode = tf.function(self._encode, input_signature=[source])
        self.translate = tf.function(self._translate, input_signature=[source])
        self.decode_step = tf.function(self._decode_step, input_signature=[
            tf.TensorSpec([1], tf.int32, name="token"), tf.TensorSpec([1], tf.int32, name="position"),
            tf.TensorSpec([1, S], tf.float32, name="source_mask"), *self.cross_specs, *self.cache_specs])

    # -- signatures ----------------------------------------------------------------------------
    def _encode(self, source_ids):
        cross = self.decoder.encode(source_ids)
        out = {"source_mask": tf.cast(tf.not_equal(source_ids, PAD_ID), tf.float32)}
        for i, (k, v, _) in enumerate(cross):
            out[f"cross_k_{i}"], out[f"cross_v_{i}"] = tf.cast(k, tf.float32), tf.cast(v, tf.float32)
        return out

    def _decode_step(self, token, position, source_mask, *tensors):
        n_cross = len(self.cross_specs)
        flat_cross, flat_cache = tensors[:n_cross], tensors[n_cross:]
        biases = self.decoder.memory_biases(source_mask)
        cross = [(flat_cross[2 * i], flat_cross[2 * i + 1], b) for i, b in enumerate(biases)]
        caches = self._unflatten(flat_cache)
        logits, caches = self.decoder.step_logits(token, position[0], caches, cross)
        out = {"logits": logits}
        for names, layer in zip(self.cache_names, caches):
            out.update(zip(names, layer))
        return out

    def _translate(self, source_ids):
        T = self.max_target_len
        cross = self.decoder.encode(source_ids)
        limit = target_length_limit(source_lengths(source_ids)[0], self.cfg.max_target_len, T, minimum=tf.minimum)

        def cond(t, token, done, ids, caches):
            return tf.logical_and(t < limit, tf.logical_not(done))

        def body(t, token, done, ids, caches):
            logits, caches = self.decoder.step_logits(token, t, caches, cross)
            token = tf.argmax(logits, axis=-1, output_type=tf.int32)
            ids = dynamic_update_slice(ids, token[None], tf.stack([0, t]))
            return t + 1, token, tf.equal(token[0], EOS_ID), ids, caches

        start = (tf.constant(0), tf.fill([1], BOS_ID), tf.constant(False), tf.zeros([1, T], tf.int32),
                 self.decoder.init_cache(1, T))
        t, _, done, ids, _ = tf.while_loop(cond, body, start)
        length = t - tf.cast(done, tf.int32)  # tokens before EOS
        return {"target_ids": ids, "target_length": tf.reshape(length, [1])}

    def _unflatten(self, flat):
        it = iter(flat)
        return [tuple(next(it) for _ in names) for names in self.cache_names]

    def concrete_functions(self, names=SIGNATURES) -> dict:
        return {name: getattr(self, name).get_concrete_function() for name in names}


def signatures_for(quantize: str) -> tuple[str, ...]:
    """int8 exports leave out `translate`: TensorFlow's calibrator crashes (SIGSEGV) on the WHILE body, and
    an uncalibrated body stays float, duplicating every weight. Apps step `decode_step` instead."""
    return SIGNATURES[:2] if quantize == "int8" else SIGNATURES


# ---------------------------------------------------------------------------------------------
# Conversion


def representative_samples(module: TranslatorModule, sources: list[list[int]], targets: list[list[int]],
                           steps_per_sentence: int = 8):
    """Calibration inputs for every signature: (signature, inputs) tuples, as the TFLite calibrator takes
    them. decode_step sees real caches: the float model is stepped along the reference (teacher forcing)."""
    S = module.max_source_len
    samples = []
    for src, tgt in zip(sources, targets):
        ids = np.zeros([1, S], np.int32)
        ids[0, :len(src)] = src[:S]
        samples.append(("encode", {"source_ids": ids}))
        enc = {k: v.numpy() for k, v in module.encode(tf.constant(ids)).items()}
        cache = {s.name: np.zeros(s.shape, s.dtype.as_numpy_dtype) for s in module.cache_specs}
        prefix = [BOS_ID] + list(tgt)
        for t in range(min(steps_per_sentence, len(prefix), module.max_target_len)):
            inputs = {"token": np.array([prefix[t]], np.int32), "position": np.array([t], np.int32),
                      **enc, **cache}
            samples.append(("decode_step", inputs))
            out = module.decode_step(*[tf.constant(inputs[n]) for n in _decode_step_input_names(module)])
            cache = {s.name: out[s.name].numpy() for s in module.cache_specs}
    return samples


def _decode_step_input_names(module: TranslatorModule) -> list[str]:
    return ["token", "position", "source_mask"] + [s.name for s in module.cross_specs + module.cache_specs]


SAVED_MODEL_PREFIX = "tfmobile-export-"  # the SavedModel `convert` writes under the temp folder (/tmp)


def convert(module: TranslatorModule, quantize: str = "none", representative=None,
            signatures: tuple[str, ...] | None = None) -> bytes:
    """The signatures (default `signatures_for(quantize)`) as one TFLite flatbuffer with builtin ops only.

    `signatures` picks a subset of SIGNATURES (HAT's latency dataset converts only encode and decode_step).
    Raises UnsupportedOpsError naming any op outside the builtins, ExportError for other failures.
    """
    if quantize not in QUANTIZATIONS:
        raise ExportError(f"unknown quantization {quantize!r}; choose one of {', '.join(QUANTIZATIONS)}")
    if quantize == "int8" and representative is None:
        raise ExportError("int8 quantization needs a representative dataset (calibration sentences)")
    signatures = tuple(signatures or signatures_for(quantize))
    unknown = [s for s in signatures if s not in SIGNATURES]
    if unknown:
        raise ExportError(f"unknown signature(s) {', '.join(unknown)}; choose from {', '.join(SIGNATURES)}")
    # The SavedModel the converter reads holds the signatures and the weights they capture, not the Keras
    # model: tracked, the model makes `save` trace every layer's call and the converter load them back
    # (13.1 s for the largest `small` SubTransformer, 2.3 s without; the flatbuffer is byte-identical).
    weights = tf.Module(name="weights")
    weights.captured = list(module.model.variables)
    with tempfile.TemporaryDirectory(prefix=f"{SAVED_MODEL_PREFIX}{os.getpid()}-") as tmp:
        logger = tf.get_logger()
        level = logger.level
        logger.setLevel("ERROR")  # "Skipping full serialization of ... Dropout": dropout never runs here
        try:
            tf.saved_model.save(weights, tmp, signatures=module.concrete_functions(signatures))
        finally:
            logger.setLevel(level)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=list(signatures))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        converter.allow_custom_ops = False
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "int8":
            samples = list(representative)
            converter.representative_dataset = lambda: iter(samples)
            converter.experimental_mlir_quantizer = True
            converter._experimental_calibrate_only = True  # quantized below, op by op (what the debugger API does)
        return run_converter(converter, _quantize_int8 if quantize == "int8" else None)


INT8_OPS = ("FULLY_CONNECTED",)


def _quantize_int8(calibrated: bytes) -> bytes:
    """int8 weights and activations for the fully connected layers (nearly all Mult-Adds), float for the rest.

    Measured on the `small` run: with every op in int8 the encoder states were off by ~100% and BLEU fell
    to 0.4; the embedding GATHER alone (one per-tensor scale over the whole table) put them 24% off, while
    FULLY_CONNECTED alone kept them within 7%. The other ops (attention products, softmax, layer norm)
    are cheap at these lengths and run in float.
    """
    from tensorflow.lite.python import convert as tflite_convert  # the quantizer behind QuantizationDebugger

    denylist = [op for op in tflite_ops(calibrated) if op not in INT8_OPS]
    return tflite_convert.mlir_quantize(calibrated, fully_quantize=False, denylisted_ops=denylist)


def gpu_compatibility(flatbuffer: bytes) -> dict:
    """`tf.lite.experimental.Analyzer` with gpu_compatibility=True: {"compatible", "incompatible_ops", "report"}.

    The analyzer prints its report; the verdict is read from its "GPU COMPATIBILITY WARNING" lines.
    """
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        tf.lite.experimental.Analyzer.analyze(model_content=flatbuffer, gpu_compatibility=True)
    report = buf.getvalue()
    incompatible = []
    for line in report.splitlines():
        if "GPU COMPATIBILITY WARNING" in line:
            # e.g. "GPU COMPATIBILITY WARNING: Not supported op WHILE" or "...: op 'FOO' ..."
            detail = line.split("GPU COMPATIBILITY WARNING:", 1)[-1].strip()
            if detail and detail not in incompatible:
                incompatible.append(detail)
    verdict = "Your model looks compatible with GPU delegate" in report and not incompatible
    return {"compatible": bool(verdict), "incompatible": incompatible,
            "report_lines": [l for l in report.splitlines() if "GPU" in l]}


# ---------------------------------------------------------------------------------------------
# The export directory


def _io_details(flatbuffer: bytes) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=flatbuffer)
    out = {}
    for name in interp.get_signature_list():
        runner = interp.get_signature_runner(name)

        def describe(details):
            return {k: {"shape": [int(n) for n in d["shape"]], "dtype": np.dtype(d["dtype"]).name}
                    for k, d in sorted(details.items())}

        out[name] = {"inputs": describe(runner.get_input_details()),
                     "outputs": describe(runner.get_output_details())}
    return out


def float_fallback_ops(flatbuffer: bytes) -> list[str]:
    """Builtin ops of an int8 model that still run on float tensors."""
    from ai_edge_litert import schema_py_generated as schema

    codes = _operator_codes(flatbuffer)
    model = schema.Model.GetRootAs(flatbuffer, 0)
    found = set()
    for g in range(model.SubgraphsLength()):
        sub = model.Subgraphs(g)
        for o in range(sub.OperatorsLength()):
            op = sub.Operators(o)
            name = codes[op.OpcodeIndex()][0]
            if name in ("QUANTIZE", "DEQUANTIZE"):
                continue
            inputs = [op.Inputs(i) for i in range(op.InputsLength()) if op.Inputs(i) >= 0]
            if any(sub.Tensors(i).Type() == schema.TensorType.FLOAT32 for i in inputs):
                found.add(name)
    return sorted(found)


# ---------------------------------------------------------------------------------------------
# The export directory: checked before any work, built beside --out, renamed in


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _stale(name: str, prefix: str, base: str | None = None) -> bool:
    """`name` is PREFIX{pid}.{base}.* (or PREFIX{pid}-* without base) of a process that is gone."""
    if not name.startswith(prefix):
        return False
    rest = name[len(prefix):]
    pid, _, tail = rest.partition("." if base is not None else "-")
    if not pid.isdigit() or (base is not None and tail.rsplit(".", 1)[0] != base):  # mkdtemp suffixes have no dots
        return False
    return not _pid_alive(int(pid))


TMP_PREFIX, ASIDE_PREFIX = ".tmp-export-", ".old-export-"


def clean_interrupted(out_dir: str) -> None:
    """Tidy what an export killed mid-way left: its `.tmp-export-*` build folder beside `out_dir`, its
    SavedModel under the temp folder, and an earlier export renamed aside (`.old-export-*`), which is
    put back when `out_dir` is missing (the kill fell between the two renames) and removed otherwise.
    Only folders of processes that are gone are touched."""
    parent, base = os.path.dirname(out_dir), os.path.basename(out_dir)
    for name in sorted(os.listdir(parent)) if os.path.isdir(parent) else []:
        path = os.path.join(parent, name)
        if _stale(name, ASIDE_PREFIX, base):
            old = os.path.join(path, "export")
            if not os.path.exists(out_dir) and os.path.isdir(old):
                os.replace(old, out_dir)
            shutil.rmtree(path, ignore_errors=True)
        elif _stale(name, TMP_PREFIX, base):
            shutil.rmtree(path, ignore_errors=True)
    clean_stale_temp()


def clean_stale_temp() -> None:
    """Remove the folders under the temp folder (`SAVED_MODEL_PREFIX{pid}-*`: a conversion's SavedModel, HAT's
    latency model) of processes that are gone."""
    tmp = tempfile.gettempdir()
    for name in os.listdir(tmp):
        if _stale(name, SAVED_MODEL_PREFIX):
            shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)


def _check_out(out_dir: str, force: bool, protect: list[str], reader=read_meta) -> None:
    """Refuse an --out that must not be written, before any work: a file, a run, a directory holding one
    of `protect` (the source run), and, without `force`, a non-empty directory. `force` replaces only an
    earlier export: a directory with tfmobile's model_meta.json (as `reader` reads it: a translator's, or a
    language model's for `tfmobile.deploy.lm_export`) and nothing but the files an export writes."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ExportError(f"--out {out_dir} is a file; choose a directory")
    for path in protect:
        if same_or_inside(path, out_dir):
            raise ExportError(f"--out {out_dir} is the run {path} or holds it; choose another --out")
    if is_run(out_dir):
        raise ExportError(f"--out {out_dir} holds a run; choose another --out")
    if not os.path.isdir(out_dir) or not os.listdir(out_dir):
        return
    if not force:
        raise ExportError(f"{out_dir} exists and is not empty; choose another --out or pass --force")
    try:
        reader(out_dir)
    except ModelError:
        raise ExportError(f"--force replaces only an earlier export, and {out_dir} is not one (no tfmobile "
                          f"{META_FILE}); choose another --out") from None
    other = sorted(set(os.listdir(out_dir)) - {MODEL_FILE, META_FILE, *TOKENIZER_FILES})
    if other:
        raise ExportError(f"--force would remove {', '.join(other)} in {out_dir}, which an export did not write; "
                          "move them or choose another --out")


def _swap_in(new_dir: str, out_dir: str) -> None:
    """Rename `new_dir` to `out_dir`. An earlier export there is renamed aside first and removed last, so
    at every moment `out_dir` is the old export whole, or the new one whole (or, after a kill between the
    two renames, missing with the old one whole aside, which `clean_interrupted` puts back)."""
    aside = None
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        aside = tempfile.mkdtemp(prefix=f"{ASIDE_PREFIX}{os.getpid()}.{os.path.basename(out_dir)}.",
                                 dir=os.path.dirname(out_dir))
        os.replace(out_dir, os.path.join(aside, "export"))
    try:
        os.replace(new_dir, out_dir)
    except BaseException:
        if aside is not None:
            os.replace(os.path.join(aside, "export"), out_dir)
            os.rmdir(aside)
        raise
    if aside is not None:
        shutil.rmtree(aside)


def export_model(model: keras.Model, cfg: ModelConfig, out_dir: str, *, tokenizers=None, quantize: str = "none",
                 max_source_len: int | None = None, max_target_len: int | None = None, calibration=None,
                 source_config: dict | None = None, source_run: str | None = None, force: bool = False,
                 protect: tuple[str, ...] = ()) -> dict:
    """Export a built model (`build_transformer(cfg)`, any weights) to `out_dir`; returns the metadata.

    tokenizers: (source, target) `Tokenizer`s to ship beside the model (the same object for a joint
    vocabulary), or None for a model without (HAT's latency dataset). Default maximum lengths: the
    model's position tables. calibration: int8 only, (source id lists ending in EOS, target id lists).
    source_config / source_run: what the metadata records the model came from. protect: paths --out
    must not hold (the source run). `force` replaces an earlier export (see `_check_out`).
    """
    if quantize not in QUANTIZATIONS:
        raise ExportError(f"unknown quantization {quantize!r}; choose one of {', '.join(QUANTIZATIONS)}")
    out_dir = os.path.abspath(out_dir)
    clean_interrupted(out_dir)
    _check_out(out_dir, force, [os.path.abspath(p) for p in protect])
    S, T = max_source_len or cfg.max_source_len, max_target_len or cfg.max_target_len
    module = TranslatorModule(model, cfg, S, T)
    representative = None
    if quantize == "int8":
        if not calibration:
            raise ExportError("int8 quantization needs calibration sentences (source and target ids)")
        representative = representative_samples(module, *calibration)
    flatbuffer = convert(module, quantize, representative)

    shipped = {}
    if tokenizers is not None:
        src, tgt = tokenizers
        shipped = ({"joint": (src, "spm.model")} if src is tgt
                   else {"source": (src, "spm.src.model"), "target": (tgt, "spm.tgt.model")})
    meta = {
        "format": META_FORMAT,
        "model_file": MODEL_FILE,
        "model_bytes": len(flatbuffer),
        "model_sha256": hashlib.sha256(flatbuffer).hexdigest(),
        "quantization": quantize,
        "max_source_len": S,
        "max_target_len": T,
        "source_format": "SentencePiece ids of the sentence, then EOS, then PAD up to max_source_len",
        "translate_length_limit": {"ratio": LENGTH_RATIO[0] / LENGTH_RATIO[1], "extra": LENGTH_EXTRA,
                                   "model_max_target_len": cfg.max_target_len,
                                   "rule": "min(floor(ratio * source tokens incl. EOS) + extra, max_target_len, "
                                           "model_max_target_len - 1)"},
        "special_ids": {"pad": PAD_ID, "unk": UNK_ID, "bos": BOS_ID, "eos": EOS_ID},
        "vocab_size": cfg.vocab_size,
        "tokenizers": {side: name for side, (_, name) in shipped.items()},
        "signatures": _io_details(flatbuffer),
        "ops": tflite_ops(flatbuffer),
        "gpu_compatibility": gpu_compatibility(flatbuffer),
        "source_run": os.path.abspath(source_run) if source_run else None,
        "source_config": source_config or {"model": ExperimentConfig(model=cfg).to_dict()["model"]},
    }
    if quantize == "int8":
        meta["int8_float_fallback_ops"] = float_fallback_ops(flatbuffer)
        meta["calibration_sentences"] = len(calibration[0])

    write_export_dir(out_dir, flatbuffer, meta, {name: tok.model_path for tok, name in shipped.values()})
    return meta


def write_export_dir(out_dir: str, flatbuffer: bytes, meta: dict, copies: dict[str, str]) -> None:
    """Assemble an export (model.tflite, model_meta.json, `copies`: {file name: source path}) in a temporary
    sibling folder and rename it into place, so `out_dir` is never seen half written."""
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}.{os.path.basename(out_dir)}.", dir=parent)
    try:
        atomic_write_bytes(os.path.join(tmp, MODEL_FILE), flatbuffer)
        for name, source in copies.items():
            shutil.copyfile(source, os.path.join(tmp, name))
        atomic_write_text(os.path.join(tmp, META_FILE), json.dumps(meta, indent=2) + "\n")
        _swap_in(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def export_translator(run_dir: str, out_dir: str, quantize: str = "none", max_source_len: int | None = None,
                      max_target_len: int | None = None, calibration_sentences: int = 100,
                      data_dir: str | None = None, force: bool = False, progress: bool = False) -> dict:
    """Export a trained run to `out_dir` (model.tflite, model_meta.json, SentencePiece model(s)): `export_model`
    with the run's model, tokenizers and config. Default maximum lengths: the run's training length limit
    (`data.max_len`), within the model's position tables. int8 calibrates on `calibration_sentences` of
    the run's training corpus."""
    if quantize not in QUANTIZATIONS:
        raise ExportError(f"unknown quantization {quantize!r}; choose one of {', '.join(QUANTIZATIONS)}")
    _check_out(os.path.abspath(out_dir), force, [os.path.abspath(run_dir)])  # before loading anything
    exp, model, (src_tok, tgt_tok) = load_run(run_dir)
    cfg = exp.model
    S = max_source_len or min(exp.data.max_len, cfg.max_source_len)
    T = max_target_len or min(exp.data.max_len, cfg.max_target_len)
    calibration = None
    if quantize == "int8":
        pairs = prepare_corpus(exp.data.corpus, data_dir=data_dir).read("train")
        pairs = pairs[:: max(1, len(pairs) // calibration_sentences)][:calibration_sentences]
        encoded = [(s + [EOS_ID], t) for s, t in zip(src_tok.encode([p[0] for p in pairs]),
                                                      tgt_tok.encode([p[1] for p in pairs])) if len(s) < S]
        calibration = ([s for s, _ in encoded], [t for _, t in encoded])
    return export_model(model, cfg, out_dir, tokenizers=(src_tok, tgt_tok), quantize=quantize, max_source_len=S,
                        max_target_len=T, calibration=calibration, source_config=exp.to_dict(), source_run=run_dir,
                        force=force, protect=(run_dir,))


__all__ = ["META_FILE", "MODEL_FILE", "QUANTIZATIONS", "SIGNATURES", "TranslatorModule", "clean_interrupted",
           "clean_stale_temp", "convert", "export_model", "export_translator", "float_fallback_ops", "gpu_compatibility",
           "representative_samples", "write_export_dir"]
