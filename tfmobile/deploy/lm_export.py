"""Export a language model (`model: {type: lm}`) to LiteRT with a `decode_step` signature, and run it.

The model has one signature, batch 1 and fixed shapes (T = the cache length, default the model's max_len):

    decode_step  token [1] int32, position [1] int32, cache_{i}_{j}
                 -> logits [1, V] float32 (the next token's), cache_{i}_{j} (the same names: feed them back)

Layer i's state is its self-attention sublayer's (`initial_cache`): key and value caches [1, H, T, d_h] for
full attention; for LSH attention also the buckets of every round [1, H, n_hashes, T] (int32); the
convolution window of an LSRA layer or of sparse QKV. A reversible model has one layer, the stack, whose
caches are its blocks' in order. The step writes position p in place (DYNAMIC_UPDATE_SLICE): start with
zeros and feed position 0, 1, ... with the token at that position. Ops are TFLite builtins only (the LSH
rotations are constants, the sparse FFN's gather of its active rows is GATHER + BATCH_MATMUL), so the model
is deterministic. Beside it: `spm.model` and `model_meta.json` (format `tfmobile-litert-lm/1`: signature
inputs and outputs with shapes and dtypes, cache names, special ids, max_len, quantization, ops, the GPU
analyzer's verdict, the source config).

Quantization: none (float32), float16 weights or dynamic-range int8 weights; calibrated int8 is the
translator's only.

`LMRunner` runs an exported `.tflite` by its signature with ai_edge_litert (caches at zero, fed back);
`LiteLM` adds the export directory's tokenizer for text in, text out, generating as
`tfmobile.decoding.lm.LMGenerator` does.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfmobile.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer
from tfmobile.decoding.lm import draw
from tfmobile.deploy.encoder_export import ExportError, tflite_ops
from tfmobile.deploy.export import (_check_out, _io_details, clean_interrupted, convert, gpu_compatibility,
                                    write_export_dir)
from tfmobile.deploy.runtime import (LM_META_FORMAT, META_FILE, MODEL_FILE, ModelError, export_dir_of,
                                     load_meta_json, quiet_stderr)
from tfmobile.errors import InputError
from tfmobile.models.config import ExperimentConfig, LMConfig
from tfmobile.models.lm import LMDecoder
from tfmobile.run import load_lm_run

LM_QUANTIZATIONS = ("none", "float16", "dynamic")
LM_META_KEYS = ("format", "model_file", "quantization", "max_len", "vocab_size", "special_ids", "tokenizers",
                "cache_names")


class LMModule(tf.Module):
    """`decode_step` over a built language model's own layers (`LMDecoder`), caches of length `max_len`."""

    def __init__(self, model: keras.Model, cfg: LMConfig, max_len: int | None = None):
        super().__init__(name="lm")
        max_len = max_len or cfg.max_len
        if not 1 <= max_len <= cfg.max_len:
            raise ExportError(f"the cache length must be in 1..{cfg.max_len} (the model's max_len; got {max_len})")
        self.cfg, self.max_len = cfg, max_len
        self.model = model  # its variables are what the signature captures (`convert` saves them)
        self.decoder = LMDecoder(model, cfg)
        cache = self.decoder.initial_cache(1, max_len)
        self.cache_names = [[f"cache_{i}_{j}" for j in range(len(c))] for i, c in enumerate(cache)]
        self.cache_specs = [tf.TensorSpec(t.shape, t.dtype, name=n)
                            for layer, names in zip(cache, self.cache_names) for t, n in zip(layer, names)]
        self.decode_step = tf.function(self._decode_step, input_signature=[
            tf.TensorSpec([1], tf.int32, name="token"), tf.TensorSpec([1], tf.int32, name="position"),
            *self.cache_specs])

    def _decode_step(self, token, position, *flat):
        it = iter(flat)
        cache = [tuple(next(it) for _ in names) for names in self.cache_names]
        logits, cache = self.decoder.step(token, position[0], cache)
        out = {"logits": logits}
        for names, layer in zip(self.cache_names, cache):
            out.update(zip(names, layer))
        return out

    def concrete_functions(self, names=("decode_step",)) -> dict:
        return {name: getattr(self, name).get_concrete_function() for name in names}


def read_lm_meta(export_dir: str) -> dict:
    """model_meta.json of a language model's export; ModelError when missing, corrupt or not one."""
    path, meta = load_meta_json(export_dir, "`tfmobile export RUN --out DIR`")
    if not isinstance(meta, dict) or meta.get("format") != LM_META_FORMAT:
        raise ModelError(f"{path} is not a language model's export metadata (format {LM_META_FORMAT}): "
                         "a translator's export takes `tfmobile translate` and `tfmobile evaluate`")
    missing = [k for k in LM_META_KEYS if k not in meta]
    if missing:
        raise ModelError(f"{path} lacks {', '.join(missing)}; export the model again")
    return meta


def is_lm_export(path: str) -> bool:
    """An export directory (or its model.tflite) whose metadata says it is a language model's."""
    try:
        with open(os.path.join(export_dir_of(path), META_FILE), encoding="utf-8") as f:
            return json.load(f).get("format") == LM_META_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def export_lm_model(model: keras.Model, cfg: LMConfig, out_dir: str, *, tokenizer: Tokenizer | None = None,
                    quantize: str = "none", max_len: int | None = None, source_config: dict | None = None,
                    source_run: str | None = None, force: bool = False, protect: tuple[str, ...] = ()) -> dict:
    """Export a built language model (`build_lm(cfg)`, any weights) to `out_dir`; returns the metadata."""
    if quantize not in LM_QUANTIZATIONS:
        raise ExportError(f"a language model exports with --quantize {', '.join(LM_QUANTIZATIONS)} "
                          f"(got {quantize!r}; calibrated int8 is for translators)")
    out_dir = os.path.abspath(out_dir)
    clean_interrupted(out_dir)
    _check_out(out_dir, force, [os.path.abspath(p) for p in protect], reader=read_lm_meta)
    module = LMModule(model, cfg, max_len)
    flatbuffer = convert(module, quantize, signatures=("decode_step",))
    meta = {
        "format": LM_META_FORMAT,
        "model_type": "lm",
        "model_file": MODEL_FILE,
        "model_bytes": len(flatbuffer),
        "model_sha256": hashlib.sha256(flatbuffer).hexdigest(),
        "quantization": quantize,
        "max_len": module.max_len,
        "vocab_size": cfg.vocab_size,
        "special_ids": {"pad": PAD_ID, "unk": UNK_ID, "bos": BOS_ID, "eos": EOS_ID},
        "tokenizers": {"joint": "spm.model"} if tokenizer is not None else {},
        "cache_names": [name for names in module.cache_names for name in names],
        "decode_step": "token [1] and position [1] (int32) with the caches (zeros before position 0) -> logits "
                       "[1, V] of the next token and the caches with this position written: feed them back by name",
        "signatures": _io_details(flatbuffer),
        "ops": tflite_ops(flatbuffer),
        "gpu_compatibility": gpu_compatibility(flatbuffer),
        "source_run": os.path.abspath(source_run) if source_run else None,
        "source_config": source_config or {"model": ExperimentConfig(model=cfg).to_dict()["model"]},
    }
    write_export_dir(out_dir, flatbuffer, meta, {"spm.model": tokenizer.model_path} if tokenizer is not None else {})
    return meta


def export_lm(run_dir: str, out_dir: str, quantize: str = "none", max_len: int | None = None,
              force: bool = False) -> dict:
    """Export a trained language-model run (model.tflite, model_meta.json, spm.model)."""
    if quantize not in LM_QUANTIZATIONS:
        raise ExportError(f"a language model exports with --quantize {', '.join(LM_QUANTIZATIONS)} "
                          f"(got {quantize!r}; calibrated int8 is for translators)")
    _check_out(os.path.abspath(out_dir), force, [os.path.abspath(run_dir)], reader=read_lm_meta)  # before loading
    exp, model, tokenizer = load_lm_run(run_dir)
    return export_lm_model(model, exp.model, out_dir, tokenizer=tokenizer, quantize=quantize, max_len=max_len,
                           source_config=exp.to_dict(), source_run=run_dir, force=force, protect=(run_dir,))


class LMRunner:
    """An exported language model's `decode_step`, run with ai_edge_litert: `step(token, position)` -> logits [V]
    with the caches kept here (zeros after `reset`)."""

    def __init__(self, model_path, num_threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        if not os.path.isfile(model_path):
            raise ModelError(f"model file not found: {model_path}")
        try:
            with quiet_stderr():
                self.interpreter = Interpreter(model_path=str(model_path), num_threads=num_threads)
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"{model_path} is not a loadable LiteRT model: {e}") from e
        if "decode_step" not in self.interpreter.get_signature_list():
            raise ModelError(f"{model_path} has no decode_step signature; export the language model again")
        self._step = self.interpreter.get_signature_runner("decode_step")
        inputs, outputs = self._step.get_input_details(), self._step.get_output_details()
        if not {"token", "position"} <= set(inputs) or "logits" not in outputs:
            raise ModelError(f"{model_path}: decode_step must take token and position and give logits")
        self.cache_specs = {n: (tuple(int(s) for s in d["shape"]), d["dtype"]) for n, d in inputs.items()
                            if n not in ("token", "position")}
        stray = [n for n in self.cache_specs if n not in outputs]
        if stray:
            raise ModelError(f"{model_path}: decode_step input(s) {', '.join(sorted(stray))} do not come back as outputs")
        self.vocab_size = int(outputs["logits"]["shape"][-1])
        self.reset()

    def reset(self):
        self.cache = {n: np.zeros(shape, dtype) for n, (shape, dtype) in self.cache_specs.items()}

    def step(self, token: int, position: int) -> np.ndarray:
        out = self._step(token=np.array([token], np.int32), position=np.array([position], np.int32), **self.cache)
        for name in self.cache_specs:
            self.cache[name] = out[name]
        return out["logits"][0]

    def generate_ids(self, prompt: list[int], tokens: int, temperature: float = 1.0, seed: int = 0,
                     max_len: int | None = None) -> list[int]:
        """As `LMGenerator.generate_ids`, stepping the export; `max_len`: its cache length (model_meta.json)."""
        if not prompt:
            raise InputError("the prompt gives no tokens; give some text to continue")
        if max_len is not None and len(prompt) + tokens - 1 > max_len:
            raise InputError(f"the prompt ({len(prompt)} tokens) and {tokens} new tokens need "
                             f"{len(prompt) + tokens - 1} positions; the export's caches hold {max_len}")
        rng = np.random.default_rng(seed)
        self.reset()
        out = []
        for position in range(len(prompt) + tokens - 1):
            logits = self.step(prompt[position] if position < len(prompt) else out[-1], position)
            if position >= len(prompt) - 1:
                out.append(draw(logits, temperature, rng))
        return out


class LiteLM:
    """Text generation with a language model's export directory (model.tflite, model_meta.json, spm.model)."""

    def __init__(self, export_dir: str, num_threads: int = 1):
        export_dir = export_dir_of(export_dir)
        self.meta = read_lm_meta(export_dir)
        if not self.meta["tokenizers"]:
            raise ModelError(f"{export_dir} was exported without a tokenizer: run its decode_step with LMRunner")
        self.tokenizer = Tokenizer(os.path.join(export_dir, self.meta["tokenizers"]["joint"]))
        self.runner = LMRunner(os.path.join(export_dir, self.meta["model_file"]), num_threads=num_threads)

    def generate(self, prompt: str, tokens: int = 50, temperature: float = 1.0, seed: int = 0) -> dict:
        ids = self.tokenizer.encode(prompt)
        new = self.runner.generate_ids(ids, tokens, temperature, seed, max_len=self.meta["max_len"])
        return {"prompt": prompt, "text": self.tokenizer.decode(ids + new), "continuation": self.tokenizer.decode(new),
                "prompt_ids": ids, "ids": new, "temperature": temperature, "seed": seed}


__all__ = ["LMModule", "LMRunner", "LM_QUANTIZATIONS", "LiteLM", "export_lm", "export_lm_model", "is_lm_export",
           "read_lm_meta"]
