"""Run an exported translator (`tfmobile export`) with ai_edge_litert: by signature, or text in, text out.

`TranslatorRunner` knows only the signature contract (see `tfmobile.deploy.export`): it discovers names,
shapes and dtypes from the model, feeds `decode_step` from `encode`'s outputs and from its own previous
outputs, and starts the caches at zero. `LiteTranslator` adds the export directory around it
(`model_meta.json`, the SentencePiece model) to translate sentences; `evaluate_export` scores one.

An export directory is recognised by its `model_meta.json` and the format marker in it (`META_FORMAT`).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfmobile.data.tokenizer import Tokenizer
from tfmobile.decoding.evaluate import evaluate_translator
from tfmobile.decoding.search import target_length_limit
from tfmobile.decoding.translator import encode_sources
from tfmobile.errors import TfmobileError

REQUIRED_SIGNATURES = ("encode", "decode_step")
DEFAULT_BOS = 2
META_FORMAT = "tfmobile-litert/1"
LM_META_FORMAT = "tfmobile-litert-lm/1"  # a language model's export (`tfmobile.deploy.lm_export`)
MODEL_FILE, META_FILE = "model.tflite", "model_meta.json"
META_KEYS = ("format", "model_file", "quantization", "max_source_len", "max_target_len", "special_ids", "tokenizers",
             "translate_length_limit")


class ModelError(TfmobileError):
    """A file that is not a loadable exported translator."""


def export_dir_of(path: str) -> str:
    """The export directory of `path`: itself, or the folder of the model.tflite inside one."""
    path = str(path)
    return (os.path.dirname(path) or ".") if path.endswith(".tflite") else path


def is_export(path: str) -> bool:
    """An export directory (`tfmobile export`), or the model.tflite inside one: it has a model_meta.json."""
    return os.path.isfile(os.path.join(export_dir_of(path), META_FILE))


def load_meta_json(export_dir: str, hint: str = "`tfmobile export`"):
    """(path, parsed JSON) of an export directory's model_meta.json; ModelError when missing or corrupt."""
    path = os.path.join(export_dir, META_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            return path, json.load(f)
    except FileNotFoundError:
        raise ModelError(f"{export_dir} is not an export directory (no {META_FILE}); make one with {hint}") from None
    except (OSError, ValueError) as e:
        raise ModelError(f"{path} is not valid JSON ({e}); export the model again") from None


def read_meta(export_dir: str) -> dict:
    """model_meta.json of an export directory; ModelError when missing, empty, corrupt or not ours."""
    path, meta = load_meta_json(export_dir)
    if isinstance(meta, dict) and meta.get("format") == LM_META_FORMAT:
        raise ModelError(f"{export_dir} is a language model's export, not a translator's: run it with "
                         f"`tfmobile generate {export_dir}` (tfmobile.deploy.lm_export.LMRunner)")
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT:
        raise ModelError(f"{path} is not tfmobile export metadata (format {META_FORMAT}); export the model again")
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise ModelError(f"{path} lacks {', '.join(missing)}; export the model again")
    return meta


@contextlib.contextmanager
def quiet_stderr():
    """Mute file descriptor 2: the C++ runtime prints INFO lines ("Created ... XNNPACK delegate") there,
    which would mix with the progress bar and with our one-line errors."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@dataclass
class HatRun:
    """One encode + greedy decode loop: its timings (ns), the tokens fed to decode_step, the final state."""

    encode_ns: int
    step_ns: list[int]
    total_ns: int
    tokens: list[int]
    state: dict


class TranslatorRunner:
    """An exported translator's signatures, run by name with `ai_edge_litert`.

    `use_xnnpack=False` disables the default XNNPACK delegate (delegate NONE: builtin kernels only).
    """

    def __init__(self, model_path, num_threads: int = 1, use_xnnpack: bool = True, bos_id: int = DEFAULT_BOS):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        path = Path(model_path)
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        resolver = OpResolverType.AUTO if use_xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            with quiet_stderr():
                self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads,
                                               experimental_op_resolver_type=resolver)
                self.interpreter.allocate_tensors()  # applies the default delegate now, not in the first timed run
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"{path} is not a loadable LiteRT model: {e}") from e
        signatures = self.interpreter.get_signature_list()
        missing = [name for name in REQUIRED_SIGNATURES if name not in signatures]
        if missing:
            found = ", ".join(sorted(signatures)) or "none"
            raise ModelError(f"{path} lacks the signature(s) {', '.join(missing)} (it has: {found}); bench needs an "
                             "exported translator with encode and decode_step (see `tfmobile export`)")
        self._encode = self.interpreter.get_signature_runner("encode")
        self._step = self.interpreter.get_signature_runner("decode_step")
        self._translate = self.interpreter.get_signature_runner("translate") if "translate" in signatures else None
        self.path, self.bos_id = path, bos_id
        self._check_contract()

    def _check_contract(self):
        """Read S, V, T and the cache tensors from the signatures; refuse models that break the contract."""
        enc_in, enc_out = self._encode.get_input_details(), self._encode.get_output_details()
        step_in, step_out = self._step.get_input_details(), self._step.get_output_details()
        if set(enc_in) != {"source_ids"} or len(enc_in["source_ids"]["shape"]) != 2:
            raise ModelError(f"{self.path}: encode must take one input source_ids [1, S] (it takes {sorted(enc_in)})")
        for name in ("token", "position"):
            if name not in step_in:
                raise ModelError(f"{self.path}: decode_step has no input {name!r} (inputs: {sorted(step_in)})")
        if "logits" not in step_out:
            raise ModelError(f"{self.path}: decode_step has no output 'logits' (outputs: {sorted(step_out)})")
        stray = [n for n in step_in if n not in ("token", "position") and n not in enc_out and n not in step_out]
        if stray:
            raise ModelError(f"{self.path}: decode_step input(s) {', '.join(sorted(stray))} are neither encode "
                             "outputs nor decode_step outputs (caches must come back under the same names)")
        self.source_shape = tuple(int(n) for n in enc_in["source_ids"]["shape"])
        self.source_dtype = enc_in["source_ids"]["dtype"]
        self.max_source_len = self.source_shape[1]
        self.vocab_size = int(step_out["logits"]["shape"][-1])
        self.token_dtype, self.position_dtype = step_in["token"]["dtype"], step_in["position"]["dtype"]
        self.cache_specs = {n: (tuple(int(s) for s in d["shape"]), d["dtype"])
                            for n, d in step_in.items() if n in step_out and n not in enc_out}
        self.encoder_feeds = [n for n in step_in if n in enc_out]
        self.has_translate = self._translate is not None
        self.max_target_len = None
        if self.has_translate:
            tr_in, tr_out = self._translate.get_input_details(), self._translate.get_output_details()
            if set(tr_in) != {"source_ids"} or not {"target_ids", "target_length"} <= set(tr_out):
                raise ModelError(f"{self.path}: translate must map source_ids to target_ids and target_length "
                                 f"(it maps {sorted(tr_in)} to {sorted(tr_out)})")
            self.max_target_len = int(tr_out["target_ids"]["shape"][1])

    def source_ids(self, length: int, seed: int = 0) -> np.ndarray:
        """`length` deterministic non-special ids in [4, V), then padding 0 up to S: the HAT sentence."""
        ids = np.zeros(self.source_shape, dtype=self.source_dtype)
        ids[0, :length] = np.random.default_rng(seed).integers(4, self.vocab_size, length)
        return ids

    def encode(self, source_ids) -> dict:
        return self._encode(source_ids=source_ids)

    def start_state(self, encoded: dict) -> dict:
        """decode_step's inputs before the first step: encode's outputs, caches at zero."""
        state = {n: encoded[n] for n in self.encoder_feeds}
        state.update({n: np.zeros(shape, dtype) for n, (shape, dtype) in self.cache_specs.items()})
        return state

    def step(self, state: dict, token: int, position: int) -> int:
        """One decode_step: feeds the caches back into `state` and returns the greedy next token."""
        out = self._step(token=np.array([token], self.token_dtype), position=np.array([position], self.position_dtype),
                         **state)
        for name in self.cache_specs:
            state[name] = out[name]
        return int(np.argmax(out["logits"][0]))

    def run_hat(self, source_ids, steps: int) -> HatRun:
        """encode, then `steps` greedy decode steps from BOS, timing each call with perf_counter_ns."""
        clock = time.perf_counter_ns
        start = clock()
        encoded = self.encode(source_ids)
        encoded_at = clock()
        state, token, tokens, step_ns = self.start_state(encoded), self.bos_id, [], []
        for position in range(steps):
            tokens.append(token)
            t0 = clock()
            token = self.step(state, token, position)
            step_ns.append(clock() - t0)
        end = clock()
        return HatRun(encoded_at - start, step_ns, end - start, tokens, state)

    def translate(self, source_ids) -> dict:
        return self._translate(source_ids=source_ids)


class LiteTranslator:
    """Translate sentences with an export directory (model.tflite, model_meta.json, SentencePiece model).

    `mode="translate"` makes one call of the in-graph greedy loop per sentence; `mode="steps"` drives
    `decode_step` from Python with the same length limit (what an app stepping the decoder itself does);
    `mode="auto"` takes `translate` when the model has it (int8 exports do not). All give the Keras greedy
    translation of the same weights.
    """

    def __init__(self, export_dir: str, num_threads: int = 1, mode: str = "auto"):
        export_dir = export_dir_of(export_dir)
        self.meta = read_meta(export_dir)
        if mode not in ("auto", "translate", "steps"):
            raise ModelError(f"mode must be 'auto', 'translate' or 'steps', got {mode!r}")
        ids = self.meta["special_ids"]
        self.eos_id, self.pad_id = ids["eos"], ids["pad"]
        self.runner = TranslatorRunner(os.path.join(export_dir, self.meta["model_file"]), num_threads=num_threads,
                                       bos_id=ids["bos"])
        if mode == "translate" and not self.runner.has_translate:
            raise ModelError(f"{export_dir}: the model has no translate signature; use mode='steps'")
        self.mode = ("translate" if self.runner.has_translate else "steps") if mode == "auto" else mode
        toks = self.meta["tokenizers"]
        if not toks:
            raise ModelError(f"{export_dir} was exported without a tokenizer: run its signatures with TranslatorRunner")
        src = Tokenizer(os.path.join(export_dir, toks.get("joint") or toks["source"]))
        self.src_tokenizer = src
        self.tgt_tokenizer = src if "joint" in toks else Tokenizer(os.path.join(export_dir, toks["target"]))
        self.max_source_tokens = self.runner.max_source_len - 1  # EOS takes one position

    def encode_source(self, sentences: list[str]) -> list[list[int]]:
        return encode_sources(self.src_tokenizer, sentences, self.max_source_tokens,
                              f"the exported model (max_source_len {self.runner.max_source_len}); split it, "
                              "or export with a larger --max-source-len")

    def length_limit(self, n_source: int) -> int:
        """The export graph's `translate` limit for a source of `n_source` tokens (EOS included)."""
        rule = self.meta["translate_length_limit"]
        model_max = rule.get("model_max_target_len") or self.meta["source_config"]["model"]["max_target_len"]
        return target_length_limit(n_source, model_max, self.meta["max_target_len"])

    def translate_ids(self, sources: list[list[int]], progress: bool = False) -> list[list[int]]:
        from tqdm.auto import tqdm

        results = []
        for src in tqdm(sources, disable=not progress, desc="translate (LiteRT)", unit="sentence"):
            ids = np.full(self.runner.source_shape, self.pad_id, self.runner.source_dtype)
            ids[0, :len(src)] = src
            if self.mode == "translate":
                out = self.runner.translate(ids)
                results.append(out["target_ids"][0, :int(out["target_length"][0])].tolist())
                continue
            state, token, hyp = self.runner.start_state(self.runner.encode(ids)), self.runner.bos_id, []
            for position in range(self.length_limit(len(src))):
                token = self.runner.step(state, token, position)
                if token == self.eos_id:
                    break
                hyp.append(token)
            results.append(hyp)
        return results

    def translate(self, sentences: list[str], progress: bool = False) -> list[str]:
        if not sentences:
            return []
        return self.tgt_tokenizer.decode(self.translate_ids(self.encode_source(sentences), progress=progress))


def evaluate_export(export_dir: str, split: str = "test", limit: int | None = None, data_dir: str | None = None,
                    num_threads: int = 1, progress: bool = True, keep_pairs: bool = False) -> dict:
    """sacreBLEU of an exported LiteRT translator (greedy, its in-graph `translate`), on its run's corpus."""
    translator = LiteTranslator(export_dir, num_threads=num_threads, mode="auto")
    corpus = (translator.meta.get("source_config") or {}).get("data", {}).get("corpus")
    if not corpus:
        raise ModelError(f"{export_dir} records no corpus (it was exported from a model, not a run)")
    result = evaluate_translator(translator, corpus, split, limit, data_dir, progress, keep_pairs)
    result.update({"beam": 1, "length_penalty": 1.0, "engine": "litert", "quantization": translator.meta["quantization"],
                   "model_bytes": translator.meta["model_bytes"]})
    return result


__all__ = ["HatRun", "LiteTranslator", "META_FILE", "META_FORMAT", "MODEL_FILE", "ModelError", "TranslatorRunner",
           "evaluate_export", "export_dir_of", "is_export", "load_meta_json", "read_meta"]
