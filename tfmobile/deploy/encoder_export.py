"""Export the encoder of a Transformer / Lite Transformer to LiteRT (TFLite) with builtin ops only.

The encoder is the part of a translator that runs once per sentence; it is the first piece a phone must
run, and the one where Lite Transformer's Long-Short Range Attention (convolution + narrow attention)
differs from the Transformer. This module builds it, from the trained layers of a Functional model
(fetched by name, as `tfmobile.decoding.IncrementalDecoder` does), as a fixed-shape function

    source ids [1, S] int32 (padding id 0 at the end)  ->  encoder states [1, S, d] float32

that computes exactly the model's encoder path: embedding (scaled, plus sinusoidal positions), every
encoder layer with the padding mask, and the final `encoder_norm` of pre-norm models. The states are
the memory of the last encoder layer (what a standard decoder layer attends to).

Conversion uses `tf.lite.TFLiteConverter` restricted to `TFLITE_BUILTINS`: Flex (SELECT_TF_OPS) cannot
run in the Python LiteRT runtime and has no Android artifact. When a graph needs an op
outside the builtins the converter fails; `convert_builtins` turns that into an `UnsupportedOpsError`
naming the ops. `tflite_ops` lists the operators of a converted model (from its flatbuffer), so tests
can assert that no custom or Flex op slipped in.

The runtime is `ai_edge_litert` (`tf.lite.Interpreter` is deprecated): `interpreter(...)` and
`EncoderRunner` wrap it with a `num_threads` option.

Example:
    >>> exp, model, _ = load_run("runs/lite")                       # or build_transformer(cfg) for latency
    >>> tflite = export_encoder(model, exp.model, seq_len=30)
    >>> states = EncoderRunner(tflite, num_threads=1)(ids)          # ids [1, 30] int32 -> [1, 30, d]

The full translator export (decoder step with fixed-shape caches) is a later piece; this module only
carries what the encoder needs.
"""

from __future__ import annotations

import re

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfmobile.decoding.search import IncrementalDecoder
from tfmobile.errors import TfmobileError
from tfmobile.models.config import ModelConfig

DEFAULT_SEQ_LEN = 30  # the papers' source length for Mult-Adds; a fixed shape, as LiteRT's GPU path needs


class ExportError(TfmobileError):
    """A model that cannot be exported as asked (bad shapes, a failed conversion)."""


class UnsupportedOpsError(ExportError):
    """The graph needs operators outside the TFLite builtins (Flex / custom ops)."""

    def __init__(self, ops: list[str], details: str = ""):
        self.ops = ops
        listed = ", ".join(ops) if ops else "(the converter did not name them)"
        super().__init__(f"conversion with TFLite builtins only failed: the graph needs non-builtin op(s) {listed}; "
                         "Flex/custom ops cannot run in LiteRT on phones: rewrite them with builtin ops"
                         + (f" ({details})" if details else ""))


# ---------------------------------------------------------------------------------------------
# The encoder as a fixed-shape function


class EncoderModule(tf.Module):
    """The encoder path of a Functional Transformer, reusing its layers (and so its weights).

    `encode(source_ids [1, S] int32) -> [1, S, d] float32`, traced for one fixed S.
    """

    def __init__(self, model: keras.Model, cfg: ModelConfig, seq_len: int = DEFAULT_SEQ_LEN, batch_size: int = 1):
        super().__init__(name="encoder")
        if seq_len < 1 or batch_size < 1:
            raise ExportError(f"seq_len and batch_size must be positive (got {seq_len} and {batch_size})")
        limit = cfg.max_source_len
        if seq_len > limit:
            raise ExportError(f"seq_len={seq_len} exceeds the model's max_source_len={limit}")
        self.decoder = IncrementalDecoder(model, cfg)  # the model's own layers, found by name
        self.seq_len, self.batch_size = seq_len, batch_size
        self.encode = tf.function(self._encode, input_signature=[
            tf.TensorSpec([batch_size, seq_len], tf.int32, name="source_ids")])

    def _encode(self, source_ids):
        last, _ = self.decoder.encoder_outputs(source_ids)
        return {"encoder_states": tf.cast(last[-1], tf.float32)}


def encoder_module(model: keras.Model, cfg: ModelConfig, seq_len: int = DEFAULT_SEQ_LEN) -> EncoderModule:
    """The fixed-shape encoder of `model` (built from `cfg`), ready to convert or to call in TensorFlow."""
    return EncoderModule(model, cfg, seq_len)


# ---------------------------------------------------------------------------------------------
# Conversion with builtins only

_OP_PATTERNS = (
    re.compile(r"'tf\.(\w+)' op is neither a custom op nor a flex op"),
    re.compile(r"Flex ops: ([\w, ]+)"),
    re.compile(r"Custom ops: ([\w, ]+)"),
    re.compile(r"\btf\.(\w+)\s*\{"),  # the "Details:" lines: tf.Op {attrs} ...
)


def _ops_from_converter_message(message: str) -> list[str]:
    found = []
    for pattern in _OP_PATTERNS:
        for match in pattern.finditer(message):
            for name in match.group(1).split(","):
                name = name.strip()
                if name.startswith("Flex"):
                    name = name[len("Flex"):]
                if name and name not in found:
                    found.append(name)
    return found


def convert_builtins(concrete_function, trackable=None, optimizations=None) -> bytes:
    """Convert one concrete function to a TFLite flatbuffer with `TFLITE_BUILTINS` only.

    Raises `UnsupportedOpsError` naming the Flex/custom ops when the graph needs any, `ExportError` on
    any other conversion failure.
    """
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete_function], trackable)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.allow_custom_ops = False
    if optimizations:
        converter.optimizations = list(optimizations)
    return run_converter(converter)


def run_converter(converter, postprocess=None) -> bytes:
    """`converter.convert()` with the converter's failures as our errors, and the builtins-only guarantee.

    `postprocess` (flatbuffer -> flatbuffer) runs before the final check (the int8 quantizer).
    """
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")  # mutes "Skipping full serialization of ... Dropout" for the never-called dropouts
    try:
        flatbuffer = converter.convert()
    except Exception as e:  # the converter raises ConverterError (not public API) with the MLIR diagnostics
        message = str(e)
        ops = _ops_from_converter_message(message)
        if ops or "flex" in message.lower() or "custom op" in message.lower():
            raise UnsupportedOpsError(ops) from e
        first = message.strip().splitlines()[0] if message.strip() else type(e).__name__
        raise ExportError(f"TFLite conversion failed: {first}") from e
    finally:
        logger.setLevel(level)
    if postprocess is not None:
        flatbuffer = postprocess(flatbuffer)
    custom = non_builtin_ops(flatbuffer)
    if custom:  # cannot happen with allow_custom_ops=False, but the guarantee is what callers rely on
        raise UnsupportedOpsError(custom)
    return flatbuffer


def _operator_codes(flatbuffer: bytes) -> list[tuple[str, bool]]:
    """(name, is_custom) for every operator code of a TFLite flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(flatbuffer, 0)
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        # the schema keeps small codes in the deprecated int8 field and large ones in builtin_code
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            codes.append(((code.CustomCode() or b"?").decode("utf-8"), True))
        else:
            codes.append((names.get(builtin, f"BUILTIN_{builtin}"), False))
    return codes


def tflite_ops(flatbuffer: bytes) -> list[str]:
    """Operator names used by a TFLite model, sorted: builtins by their schema name (FULLY_CONNECTED, ...),
    custom ops (Flex ops included, e.g. FlexErfinv) by their custom code."""
    return sorted({name for name, _ in _operator_codes(flatbuffer)})


def non_builtin_ops(flatbuffer: bytes) -> list[str]:
    """The custom and Flex ops of a TFLite model (empty for a builtins-only model)."""
    return sorted({name for name, custom in _operator_codes(flatbuffer) if custom})


def export_encoder(model: keras.Model, cfg: ModelConfig, seq_len: int = DEFAULT_SEQ_LEN) -> bytes:
    """The model's encoder as a float32 TFLite flatbuffer: source_ids [1, seq_len] int32 -> [1, seq_len, d]."""
    module = encoder_module(model, cfg, seq_len)
    return convert_builtins(module.encode.get_concrete_function(), module)


# ---------------------------------------------------------------------------------------------
# Running with ai_edge_litert


def interpreter(flatbuffer: bytes, num_threads: int = 1):
    """An allocated `ai_edge_litert` Interpreter for a flatbuffer."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=flatbuffer, num_threads=num_threads)
    interp.allocate_tensors()
    return interp


class EncoderRunner:
    """Runs an exported encoder: `runner(ids [1, S] int) -> states [1, S, d] float32` (a copy)."""

    def __init__(self, flatbuffer: bytes, num_threads: int = 1):
        self.interpreter = interpreter(flatbuffer, num_threads)
        (inp,), outs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        self.input_index, self.output_index = inp["index"], outs[0]["index"]
        self.input_shape = tuple(int(n) for n in inp["shape"])

    def __call__(self, ids) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int32)
        if ids.shape != self.input_shape:
            raise ExportError(f"the encoder takes source ids of shape {self.input_shape}, got {ids.shape}: "
                              "pad with 0 (or cut) to the exported length")
        self.interpreter.set_tensor(self.input_index, ids)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output_index)


__all__ = ["DEFAULT_SEQ_LEN", "EncoderModule", "EncoderRunner", "ExportError", "UnsupportedOpsError",
           "convert_builtins", "encoder_module", "export_encoder", "interpreter", "non_builtin_ops", "tflite_ops"]
