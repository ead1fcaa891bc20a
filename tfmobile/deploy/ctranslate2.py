"""Convert a trained Transformer to CTranslate2, and translate with it.

CTranslate2 (OpenNMT) is a C++ inference engine for Transformers with int8/float16 weights; on a
server or a laptop CPU it is the fast reference to compare our phone exports against. Its
`TransformerSpec` describes the standard encoder-decoder of Vaswani et al. 2017 (pre- or post-norm,
sinusoidal positions, tied or separate output projection), so a tfmobile model converts when its
config is that model: every layer an attention layer, one head count per stack, query/key and value
widths equal to the model dim, every decoder layer attending to the last encoder layer only.

How our weights map onto the spec:

- Dense kernels are [in, out]; CTranslate2 linears are [out, in]: every kernel is transposed.
- Self-attention is one fused linear (rows: W_Q, then W_K, then W_V); encoder-decoder attention has
  W_Q alone and a fused W_K, W_V. Both sides scale the projected queries (bias included) by
  d_head^-0.5, so the weights go over unchanged.
- Positions start at 0 on both sides (the decoder's BOS sits at position 0), so the position table is
  our sinusoidal table itself, rows 0..max_len-1 (fairseq's converter drops rows because fairseq
  starts at padding_idx + 1; we do not).
- Embeddings are multiplied by sqrt(d) (`scale_embeddings`); the output projection is the target
  embedding matrix when tied (already [V, d]) or the transposed `output_projection` kernel.
- Vocabularies are the SentencePiece pieces in id order, so CTranslate2's token ids are our ids. A
  tokenizer smaller than the model's vocabulary (separate vocabularies share `vocab_size`, the larger
  of the two) is padded with filler pieces no text can produce.
- Sources are the pieces followed by EOS (`tfmobile.data.pipeline`): the converted model appends EOS
  itself (`add_source_eos`), so it takes a tokenizer's plain output; decoding starts from BOS.

Example:
    >>> exp, model, tokenizers = load_run("runs/small")
    >>> convert_to_ctranslate2(model, exp.model, tokenizers, "runs/small/ct2", quantization="int8")
    >>> CTranslate2Translator("runs/small/ct2", tokenizers).translate(["En el principio era el Verbo."])
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import numpy as np
import tf_keras as keras

from tfmobile.data.tokenizer import BOS_ID, EOS_ID, UNK_ID
from tfmobile.decoding.search import target_length_limit
from tfmobile.deploy.encoder_export import ExportError
from tfmobile.errors import InputError
from tfmobile.kinds import get_kind
from tfmobile.kinds.ffn import get_ffn_kind
from tfmobile.models.config import ModelConfig

__all__ = ["CTranslate2Translator", "check_supported", "convert_to_ctranslate2", "transformer_spec"]

_ACTIVATIONS = {"relu": "RELU", "gelu": "GELU", "swish": "SWISH", "silu": "SWISH"}


def _ctranslate2():
    try:
        import ctranslate2
    except ImportError:
        raise ExportError("CTranslate2 is not installed: pip install ctranslate2") from None
    return ctranslate2


def _read_json(model_dir: str, name: str):
    with open(os.path.join(model_dir, name), encoding="utf-8") as f:
        return json.load(f)


def _tokenizer_pair(tokenizer):
    """(source, target) tokenizers from one joint tokenizer or a pair (what `load_run` returns)."""
    if isinstance(tokenizer, (tuple, list)):
        if len(tokenizer) != 2:
            raise ExportError("pass one joint tokenizer or a (source, target) pair of tokenizers")
        return tokenizer[0], tokenizer[1]
    return tokenizer, tokenizer


def check_supported(cfg: ModelConfig) -> None:
    """Raise `ExportError` naming the first part of `cfg` that CTranslate2's Transformer cannot hold."""
    d = cfg.encoder_embed_dim
    if cfg.decoder_embed_dim != d:
        raise ExportError(f"CTranslate2 export needs encoder_embed_dim == decoder_embed_dim "
                          f"(got {d} and {cfg.decoder_embed_dim})")
    if cfg.activation not in _ACTIVATIONS:
        raise ExportError(f"CTranslate2 export does not support activation {cfg.activation!r} "
                          f"(supported: {', '.join(_ACTIVATIONS)})")
    for side, layers in (("encoder", cfg.encoder_layers), ("decoder", cfg.decoder_layers)):
        for i, l in enumerate(layers):
            reason = get_kind(l.kind).ctranslate2_unsupported
            if reason:
                raise ExportError(f"CTranslate2 export does not support {side} layer {i} of kind {l.kind!r}: {reason}")
            reason = get_ffn_kind(l.ffn_kind).ctranslate2_unsupported
            if reason:
                raise ExportError(f"CTranslate2 export does not support {side} layer {i} of ffn_kind "
                                  f"{l.ffn_kind!r}: {reason}")
            widths = [("qk_dim", l.qk_dim), ("v_dim", l.v_dim)]
            if side == "decoder":
                widths += [("cross_qk_dim", l.cross_qk_dim), ("cross_v_dim", l.cross_v_dim)]
            for name, width in widths:
                if width != d:
                    raise ExportError(f"CTranslate2 export needs attention widths equal to the model dim: "
                                      f"{side} layer {i} has {name}={width}, d={d}")
        heads = {l.num_heads for l in layers}
        if side == "decoder":
            heads |= {l.cross_num_heads for l in layers}
        if len(heads) > 1:
            raise ExportError(f"CTranslate2 export needs one head count for every {side} attention "
                              f"(got {', '.join(map(str, sorted(heads)))})")
    for i, l in enumerate(cfg.decoder_layers):
        if l.encoder_layers_attended != 1:
            raise ExportError(f"CTranslate2 export does not support decoder layer {i} attending to the last "
                              f"{l.encoder_layers_attended} encoder layers: only the last one")


def _vocabulary(tokenizer, size: int, side: str) -> list[str]:
    """The pieces of ids 0..size-1, padded with filler pieces past the tokenizer's own size."""
    n = tokenizer.vocab_size
    if n > size:
        raise ExportError(f"the {side} tokenizer has {n} pieces but the model's vocab_size is {size}: "
                          "pass the tokenizer the model was trained with")
    pieces = [tokenizer.id_to_piece(i) for i in range(n)]
    taken = set(pieces)
    filler = [f"<unused_{i}>" for i in range(n, size)]
    if taken.intersection(filler):
        raise ExportError(f"the {side} tokenizer already has a piece named like the filler '<unused_N>'")
    return pieces + filler


def _linear(spec, dense) -> None:
    spec.weight = dense.kernel.numpy().T
    if dense.bias is not None:
        spec.bias = dense.bias.numpy()


def _fused_linear(spec, denses) -> None:
    """One linear whose output rows are the outputs of `denses`, in order (CTranslate2's fused QKV)."""
    spec.weight = np.concatenate([d.kernel.numpy().T for d in denses], axis=0)
    spec.bias = np.concatenate([d.bias.numpy() for d in denses], axis=0)


def _layer_norm(spec, norm) -> None:
    spec.gamma = norm.gamma.numpy()
    spec.beta = norm.beta.numpy()


def _attention(spec, attention, self_attention: bool) -> None:
    if self_attention:
        _fused_linear(spec.linear[0], [attention.query_dense, attention.key_dense, attention.value_dense])
    else:
        _linear(spec.linear[0], attention.query_dense)
        _fused_linear(spec.linear[1], [attention.key_dense, attention.value_dense])
    _linear(spec.linear[-1], attention.output_dense)


def _ffn(spec, layer) -> None:
    _layer_norm(spec.layer_norm, layer.ffn_norm)
    _linear(spec.linear_0, layer.ffn.fc1)
    _linear(spec.linear_1, layer.ffn.fc2)


def _embedding(stack_spec, embedding) -> None:
    table = stack_spec.embeddings[0] if isinstance(stack_spec.embeddings, list) else stack_spec.embeddings
    table.weight = embedding.embeddings.numpy()
    stack_spec.scale_embeddings = bool(embedding.scale)
    stack_spec.position_encodings.encodings = embedding.positions.numpy()


def _layer_norm_epsilon(model: keras.Model) -> float:
    """The one epsilon of all LayerNormalization layers (CTranslate2 has one per model)."""
    eps = {float(m.epsilon) for m in model.submodules if isinstance(m, keras.layers.LayerNormalization)}
    if len(eps) != 1:
        raise ExportError(f"CTranslate2 export needs one layer norm epsilon for the model (got {sorted(eps)})")
    return eps.pop()


def transformer_spec(model: keras.Model, cfg: ModelConfig, tokenizer):
    """A validated `ctranslate2.specs.TransformerSpec` holding `model`'s weights.

    `tokenizer`: one joint `Tokenizer`, or a (source, target) pair as `load_run` returns.
    """
    ct2 = _ctranslate2()
    from ctranslate2.specs import common_spec, transformer_spec as ts

    check_supported(cfg)
    activation = getattr(common_spec.Activation, _ACTIVATIONS[cfg.activation])
    encoder = ts.TransformerEncoderSpec(len(cfg.encoder_layers), cfg.encoder_layers[0].num_heads,
                                        pre_norm=cfg.normalize_before, activation=activation)
    decoder = ts.TransformerDecoderSpec(len(cfg.decoder_layers), cfg.decoder_layers[0].num_heads,
                                        pre_norm=cfg.normalize_before, activation=activation)
    spec = ct2.specs.TransformerSpec(encoder, decoder)

    shared = not any(l.name == "encoder_embedding" for l in model.layers)
    _embedding(encoder, model.get_layer("shared_embedding" if shared else "encoder_embedding"))
    target_embedding = model.get_layer("shared_embedding" if shared else "decoder_embedding")
    _embedding(decoder, target_embedding)
    for i, layer_spec in enumerate(encoder.layer):
        layer = model.get_layer(f"encoder_layer_{i}")
        _attention(layer_spec.self_attention, layer.self_attention, self_attention=True)
        _layer_norm(layer_spec.self_attention.layer_norm, layer.self_attention_norm)
        _ffn(layer_spec.ffn, layer)
    for i, layer_spec in enumerate(decoder.layer):
        layer = model.get_layer(f"decoder_layer_{i}")
        _attention(layer_spec.self_attention, layer.self_attention, self_attention=True)
        _layer_norm(layer_spec.self_attention.layer_norm, layer.self_attention_norm)
        _attention(layer_spec.attention, layer.cross_attention, self_attention=False)
        _layer_norm(layer_spec.attention.layer_norm, layer.cross_attention_norm)
        _ffn(layer_spec.ffn, layer)
    if cfg.normalize_before:
        _layer_norm(encoder.layer_norm, model.get_layer("encoder_norm"))
        _layer_norm(decoder.layer_norm, model.get_layer("decoder_norm"))
    if cfg.tie_output:
        decoder.projection.weight = target_embedding.embeddings.numpy()
    else:
        decoder.projection.weight = model.get_layer("output_projection").kernel.numpy().T

    src_tok, tgt_tok = _tokenizer_pair(tokenizer)
    source_vocab = _vocabulary(src_tok, cfg.vocab_size, "source")
    target_vocab = _vocabulary(tgt_tok, cfg.vocab_size, "target")
    for name, i in (("unk", UNK_ID), ("bos", BOS_ID), ("eos", EOS_ID)):
        if source_vocab[i] != target_vocab[i]:
            raise ExportError(f"source and target tokenizers name the {name} token differently "
                              f"({source_vocab[i]!r} and {target_vocab[i]!r}): CTranslate2 needs one name")
    spec.register_source_vocabulary(source_vocab)
    spec.register_target_vocabulary(target_vocab)
    spec.config.unk_token = target_vocab[UNK_ID]
    spec.config.bos_token = spec.config.decoder_start_token = target_vocab[BOS_ID]
    spec.config.eos_token = target_vocab[EOS_ID]
    spec.config.add_source_bos, spec.config.add_source_eos = False, True
    spec.config.layer_norm_epsilon = _layer_norm_epsilon(model)
    # CTranslate2 ignores this key; `CTranslate2Translator` reads it to keep the model's length limits
    spec.config.add_attribute("tfmobile", {"max_source_len": cfg.max_source_len, "max_target_len": cfg.max_target_len})
    try:
        spec.validate()
    except ValueError as e:
        raise ExportError(f"CTranslate2 rejected the converted model: {str(e).strip().splitlines()[0]}") from None
    return spec


def convert_to_ctranslate2(model: keras.Model, cfg: ModelConfig, tokenizer, output_dir: str,
                           quantization: str | None = None, force: bool = False) -> str:
    """Write `model` as a CTranslate2 model directory; returns its path.

    `quantization`: None keeps float32 weights; otherwise one of CTranslate2's weight types ("int8",
    "int8_float32", "float16", ...). The directory is written beside `output_dir` and renamed into
    place, so an interrupted conversion never leaves a half-written model; an existing non-empty
    `output_dir` is replaced only with `force`.
    """
    ct2 = _ctranslate2()
    from ctranslate2.specs.model_spec import ACCEPTED_MODEL_TYPES

    if quantization is not None and quantization not in ACCEPTED_MODEL_TYPES:
        raise ExportError(f"unknown quantization {quantization!r}: use one of {', '.join(ACCEPTED_MODEL_TYPES)}")
    output_dir = os.path.abspath(output_dir)
    if os.path.isfile(output_dir):
        raise ExportError(f"{output_dir} is a file: choose a directory for the CTranslate2 model")
    exists = os.path.isdir(output_dir) and bool(os.listdir(output_dir))
    if exists and not force:
        raise ExportError(f"{output_dir} already exists and is not empty: pass force=True to replace it")
    spec = transformer_spec(model, cfg, tokenizer)

    class _SpecConverter(ct2.converters.Converter):
        def _load(self):
            return spec

    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(output_dir)}.", dir=parent)
    try:
        _SpecConverter().convert(staging, quantization=quantization, force=True)  # validate, optimize, save
        if os.path.isdir(output_dir):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(output_dir)}.old.", dir=parent)
            os.replace(output_dir, old)  # onto an empty directory: atomic on POSIX
            os.replace(staging, output_dir)
            shutil.rmtree(old)
        else:
            os.replace(staging, output_dir)
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging)
    return output_dir


class CTranslate2Translator:
    """Greedy translation with a converted model, in tfmobile ids or in text.

    Args:
        model_dir: a directory written by `convert_to_ctranslate2`.
        tokenizer: the run's joint tokenizer or (source, target) pair.
        inter_threads: batches translated in parallel; intra_threads: threads per batch.
        compute_type: CTranslate2's compute type ("default" keeps the saved weight type, "int8", ...).
    """

    def __init__(self, model_dir: str, tokenizer, inter_threads: int = 1, intra_threads: int = 1,
                 compute_type: str = "default"):
        ct2 = _ctranslate2()
        self.src_tokenizer, self.tgt_tokenizer = _tokenizer_pair(tokenizer)
        try:
            config = _read_json(model_dir, "config.json")
            shared = os.path.exists(os.path.join(model_dir, "shared_vocabulary.json"))
            self._source_pieces = _read_json(model_dir, f"{'shared' if shared else 'source'}_vocabulary.json")
            target_pieces = _read_json(model_dir, f"{'shared' if shared else 'target'}_vocabulary.json")
            self.translator = ct2.Translator(model_dir, device="cpu", compute_type=compute_type,
                                             inter_threads=inter_threads, intra_threads=intra_threads)
        except (OSError, ValueError, RuntimeError) as e:
            raise ExportError(f"cannot load a CTranslate2 model from {model_dir}: {e}") from None
        if "tfmobile" not in config:
            raise ExportError(f"{model_dir} was not written by tfmobile's convert_to_ctranslate2: "
                              "convert the run with it")
        self.max_source_len = config["tfmobile"]["max_source_len"]
        self.max_target_len = config["tfmobile"]["max_target_len"]
        self._target_ids = {p: i for i, p in enumerate(target_pieces)}

    def max_decoding_length(self, sources: list[list[int]]) -> int:
        """`tfmobile.decoding.search.target_length_limit` for a batch (tfmobile's Translator batches the
        same way): tokens including EOS."""
        longest = max(len(s) for s in sources) + 1  # the EOS the model appends
        return target_length_limit(longest, self.max_target_len)

    def translate_ids(self, sources: list[list[int]], max_decoding_length: int | None = None,
                      batch_size: int = 32) -> list[list[int]]:
        """Greedy translations of source ids (the tokenizer's ids, without EOS) as target ids without
        BOS/EOS. `max_decoding_length` counts EOS; None: per batch, the limit of tfmobile's Translator,
        which batches the same way (sorted by length, `batch_size` sentences), so both stop alike."""
        limit = self.max_source_len - 1  # EOS takes one position
        for i, s in enumerate(sources):
            if len(s) > limit:
                raise InputError(f"sentence {i + 1} has {len(s)} tokens but the model allows at most {limit}; "
                                 "split it into shorter sentences")
        if max_decoding_length is not None and not 0 < max_decoding_length < self.max_target_len:
            raise InputError(f"max_decoding_length must be in 1..{self.max_target_len - 1}")
        order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
        batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
        pending = [self.translator.translate_batch(  # asynchronous: inter_threads batches run at once
            [[self._source_pieces[t] for t in sources[i]] for i in batch], beam_size=1, asynchronous=True,
            max_input_length=0, min_decoding_length=0,
            max_decoding_length=max_decoding_length or self.max_decoding_length([sources[i] for i in batch]))
            for batch in batches]
        results: list[list[int]] = [None] * len(sources)  # type: ignore[list-item]
        for batch, outputs in zip(batches, pending):
            for i, output in zip(batch, outputs):
                results[i] = [self._target_ids[p] for p in output.result().hypotheses[0]]
        return results

    def translate(self, sentences: list[str], batch_size: int = 32) -> list[str]:
        """Greedy translations of sentences, through the source and target tokenizers."""
        if not sentences:
            return []
        ids = self.translate_ids(self.src_tokenizer.encode(list(sentences)), batch_size=batch_size)
        return self.tgt_tokenizer.decode(ids)
