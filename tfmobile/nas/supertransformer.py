"""The SuperTransformer (HAT, Wang et al. 2020, section 3.2): one Functional model of elastic layers that computes
any SubTransformer of its design space, set by `set_sample(model, arch)`; and the tools around it.

    build_supertransformer(space, vocab_size)   the Keras model, [source_ids, target_ids] -> logits, like
                                                `tfmobile.models.transformer.build_transformer`'s
    set_sample(model, arch)                     assign the SubTransformer's choices to the sample variables
    inherited_loss(model, arch, batches)        HAT's search fitness: the validation loss with inherited weights
    extract_model(model, space, arch)           the standalone Transformer of `arch` with the sliced weights
    extract(run_dir, arch_path, out_dir)        `tfmobile hat extract`: that model as an ordinary run

A SuperTransformer run is an ordinary run directory (config.yaml holds the largest SubTransformer's
experiment; checkpoints, tokenizers, train_state.json, history.csv) plus `space.yaml`, the design space it was
trained on. The verbs that take a plain model refuse it (`tfmobile.run.load_run`): extract a SubTransformer.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile

import tensorflow as tf
import tf_keras as keras

from tfmobile.data import prepare_corpus
from tfmobile.data.pipeline import token_batches, tokenized_pairs
from tfmobile.errors import ConfigError, DataError
from tfmobile.layers import PaddingMask
from tfmobile.models.config import ExperimentConfig, ModelConfig
from tfmobile.models.transformer import build_transformer
from tfmobile.nas.elastic import (ElasticDecoderLayer, ElasticDropout, ElasticEmbedding, ElasticEncoderLayer,
                                  ElasticEncoderMemory, ElasticLayerNorm)
from tfmobile.nas.space import Arch, Space, arch_to_yaml, load_arch, load_space
from tfmobile.run import (RunFiles, latest_checkpoint, load_tokenizers, read_experiment, read_state, restore,
                          write_experiment, write_record, write_state)
from tfmobile.training.losses import label_smoothed_nll
from tfmobile.training.trainer import build_optimizer
from tfmobile.utils import atomic_write_text

EXTRACT_VERB = "hat extract"


def build_supertransformer(space: Space, vocab_size: int, name: str = "supertransformer") -> keras.Model:
    """The SuperTransformer of `space`: the standalone Transformer's structure with elastic layers at the largest
    choices (one embedding table shared by encoder, decoder and the tied output, as in HAT)."""
    m = space.model
    d_enc, d_dec = space.largest("encoder_embed_dim"), space.largest("decoder_embed_dim")
    n_enc, n_dec = space.largest("encoder_layers"), space.largest("decoder_layers")
    k_max = space.largest("encoder_layers_attended")
    normalize_before = m.get("normalize_before", True)
    dropout = m.get("dropout", 0.1)
    common = dict(qkv_dim=space.qkv_dim, normalize_before=normalize_before, dropout=dropout,
                  attention_dropout=m.get("attention_dropout", 0.0), activation_dropout=m.get("activation_dropout", 0.0),
                  activation=m.get("activation", "relu"))
    source = keras.Input((None,), dtype="int32", name="source_ids")
    target = keras.Input((None,), dtype="int32", name="target_ids")
    source_mask = PaddingMask(name="source_mask")(source)
    embedding = ElasticEmbedding(vocab_size, max(d_enc, d_dec), space.choices["encoder_embed_dim"],
                                 space.choices["decoder_embed_dim"],
                                 max_length=max(m.get("max_source_len", 256), m.get("max_target_len", 256)),
                                 name="embedding")
    x = ElasticDropout(dropout, d_enc, name="encoder_embedding_dropout")(embedding(source, side="encoder"))
    outputs = []
    for i in range(n_enc):
        x = ElasticEncoderLayer(d_enc, space.largest("encoder_ffn_dim"), max_heads=space.largest("encoder_num_heads"),
                                name=f"encoder_layer_{i}", **common)([x, source_mask])
        outputs.append(x)
    stack = ElasticEncoderMemory(d_enc, n_enc, k_max, normalize_before, name="encoder_memory")([*outputs, source_mask])
    y = ElasticDropout(dropout, d_dec, name="decoder_embedding_dropout")(embedding(target, side="decoder"))
    for i in range(n_dec):
        y = ElasticDecoderLayer(d_dec, space.largest("decoder_ffn_dim"), max_heads=space.largest("decoder_num_heads"),
                                encoder_dim=d_enc, max_cross_heads=space.largest("decoder_cross_num_heads"),
                                max_encoder_layers_attended=k_max, name=f"decoder_layer_{i}", **common)(
            [y, stack, source_mask])
    if normalize_before:
        y = ElasticLayerNorm(d_dec, name="decoder_norm")(y)
    logits = embedding(y, side="output")
    return keras.Model([source, target], logits, name=name)


def is_supertransformer(model: keras.Model) -> bool:
    return any(isinstance(layer, ElasticEmbedding) for layer in model.layers)


def _layers(model: keras.Model, prefix: str) -> list:
    layers = [l for l in model.layers if l.name.startswith(prefix)]
    return sorted(layers, key=lambda l: int(l.name.rsplit("_", 1)[1]))


def set_sample(model: keras.Model, arch: Arch) -> None:
    """Make the SuperTransformer compute `arch` (checked against the space by the caller): assign its choices to
    the sample variables. Layers past a depth keep their last choices and are switched off."""
    embedding = model.get_layer("embedding")
    embedding.encoder_dim.assign(arch.encoder_embed_dim)
    embedding.decoder_dim.assign(arch.decoder_embed_dim)
    for i, layer in enumerate(_layers(model, "encoder_layer_")):
        layer.active.assign(int(i < arch.encoder_layers))
        if i < arch.encoder_layers:
            layer.sampled_ffn_dim.assign(arch.encoder_ffn_dim[i])
            layer.self_attention.num_heads.assign(arch.encoder_num_heads[i])
    model.get_layer("encoder_memory").encoder_layers.assign(arch.encoder_layers)
    for i, layer in enumerate(_layers(model, "decoder_layer_")):
        layer.active.assign(int(i < arch.decoder_layers))
        if i < arch.decoder_layers:
            layer.sampled_ffn_dim.assign(arch.decoder_ffn_dim[i])
            layer.self_attention.num_heads.assign(arch.decoder_num_heads[i])
            layer.cross_attention.num_heads.assign(arch.decoder_cross_num_heads[i])
            layer.encoder_layers_attended.assign(arch.encoder_layers_attended[i])


# ---------------------------------------------------------------------------------------------
# Inherited weights: fitness and extraction


def _loss_sums(model: keras.Model):
    """A tf.function (one per model, traced once per batch shape) -> (summed token cross entropy, tokens)."""
    fn = getattr(model, "_tfmobile_loss_sums", None)
    if fn is None:
        @tf.function(reduce_retracing=True)
        def fn(source, target_in, target_out):
            logits = model([source, target_in], training=False)
            loss, mask = label_smoothed_nll(target_out, logits, 0.0)
            return tf.reduce_sum(loss), tf.reduce_sum(mask)

        model._tfmobile_loss_sums = fn
    return fn


def inherited_loss(model: keras.Model, arch: Arch, batches) -> float:
    """Mean token cross entropy (nats, no label smoothing) of the SubTransformer `arch` with the SuperTransformer's
    weights on `batches` ((source, target_in), target_out): HAT's fitness (section 3.3)."""
    set_sample(model, arch)
    fn = _loss_sums(model)
    total = tokens = 0.0
    for (source, target_in), target_out in batches:
        loss, count = fn(source, target_in, target_out)
        total += float(loss)
        tokens += float(count)
    if tokens == 0:
        raise DataError("no validation tokens to measure the loss on")
    return total / tokens


def valid_batches(run_dir: str, exp: ExperimentConfig, sentences: int, data_dir: str | None = None) -> list:
    """The first `sentences` pairs of the valid split (a fixed subset: every candidate is scored on the same
    tokens), tokenized with the run's tokenizers, as a list of batches held in memory."""
    prepared = prepare_corpus(exp.data.corpus, data_dir=data_dir)
    src_tok, tgt_tok = load_tokenizers(run_dir, exp)
    max_len = min(exp.data.max_len, exp.model.max_source_len, exp.model.max_target_len)
    pairs = tokenized_pairs(prepared.splits["valid"], src_tok, tgt_tok, max_len=max_len).take(sentences)
    batches = list(token_batches(pairs, 4 * exp.train.max_tokens, max_len))
    if not batches:
        raise DataError(f"the valid split of {exp.data.corpus} has no pairs of at most {max_len} tokens")
    return batches


def _slice(weight, *sizes):
    """The front slice [:sizes[0], :sizes[1], ...] of a weight, as a NumPy array."""
    return weight.numpy()[tuple(slice(0, s) for s in sizes)]


def _assign(variable, value) -> None:
    if tuple(variable.shape) != value.shape:
        raise AssertionError(f"{variable.name}: shape {tuple(variable.shape)} != slice {value.shape}")
    variable.assign(value)


def _copy_attention(dense_layer, elastic, d_query: int, d_memory: int) -> None:
    """Standalone MultiHeadAttention <- the elastic attention's slices (qkv width fixed)."""
    for dense, kernel, bias, rows in ((dense_layer.query_dense, elastic.wq, elastic.bq, d_query),
                                      (dense_layer.key_dense, elastic.wk, elastic.bk, d_memory),
                                      (dense_layer.value_dense, elastic.wv, elastic.bv, d_memory)):
        _assign(dense.kernel, _slice(kernel, rows))
        _assign(dense.bias, bias.numpy())
    _assign(dense_layer.output_dense.kernel, _slice(elastic.wo, elastic.qkv_dim, d_query))
    _assign(dense_layer.output_dense.bias, _slice(elastic.bo, d_query))


def _copy_norm(norm, elastic_norm, d: int) -> None:
    _assign(norm.gamma, _slice(elastic_norm.gamma, d))
    _assign(norm.beta, _slice(elastic_norm.beta, d))


def _copy_layer(layer, elastic, d: int, ffn_dim: int) -> None:
    _copy_attention(layer.self_attention, elastic.self_attention, d, d)
    _copy_norm(layer.self_attention_norm, elastic.self_attention_norm, d)
    _copy_norm(layer.ffn_norm, elastic.ffn_norm, d)
    _assign(layer.ffn.fc1.kernel, _slice(elastic.fc1_kernel, d, ffn_dim))
    _assign(layer.ffn.fc1.bias, _slice(elastic.fc1_bias, ffn_dim))
    _assign(layer.ffn.fc2.kernel, _slice(elastic.fc2_kernel, ffn_dim, d))
    _assign(layer.ffn.fc2.bias, _slice(elastic.fc2_bias, d))


def extract_model(model: keras.Model, space: Space, arch: Arch) -> tuple[keras.Model, ModelConfig]:
    """The standalone heterogeneous Transformer of `arch` (`Space.model_config`) holding the SuperTransformer's
    front slices: it computes what `model` computes after `set_sample(model, arch)`."""
    space.check(arch)
    embedding = model.get_layer("embedding")
    cfg = space.model_config(arch, embedding.vocab_size)
    sub = build_transformer(cfg)
    d_enc, d_dec = arch.encoder_embed_dim, arch.decoder_embed_dim
    if cfg.share_embeddings:
        _assign(sub.get_layer("shared_embedding").embeddings, _slice(embedding.embeddings, cfg.vocab_size, d_enc))
    else:
        _assign(sub.get_layer("encoder_embedding").embeddings, _slice(embedding.embeddings, cfg.vocab_size, d_enc))
        _assign(sub.get_layer("decoder_embedding").embeddings, _slice(embedding.embeddings, cfg.vocab_size, d_dec))
    encoder = _layers(model, "encoder_layer_")
    for i in range(arch.encoder_layers):
        _copy_layer(sub.get_layer(f"encoder_layer_{i}"), encoder[i], d_enc, arch.encoder_ffn_dim[i])
    decoder = _layers(model, "decoder_layer_")
    for i in range(arch.decoder_layers):
        layer, elastic = sub.get_layer(f"decoder_layer_{i}"), decoder[i]
        _copy_layer(layer, elastic, d_dec, arch.decoder_ffn_dim[i])
        _copy_attention(layer.cross_attention, elastic.cross_attention, d_dec, d_enc)
        _copy_norm(layer.cross_attention_norm, elastic.cross_attention_norm, d_dec)
    if cfg.normalize_before:
        _copy_norm(sub.get_layer("encoder_norm"), model.get_layer("encoder_memory").encoder_norm, d_enc)
        _copy_norm(sub.get_layer("decoder_norm"), model.get_layer("decoder_norm"), d_dec)
    return sub, cfg


# ---------------------------------------------------------------------------------------------
# SuperTransformer runs


def is_supertransformer_run(run_dir: str) -> bool:
    return os.path.isfile(RunFiles(run_dir).space)


def read_space(run_dir: str) -> Space:
    if not is_supertransformer_run(run_dir):
        raise ConfigError(f"{run_dir} is not a SuperTransformer run (no space.yaml); train one with `tfmobile hat train`")
    return load_space(RunFiles(run_dir).space)


def load_supertransformer(run_dir: str):
    """(space, experiment, SuperTransformer with its latest checkpoint, (src_tokenizer, tgt_tokenizer))."""
    space = read_space(run_dir)
    exp = read_experiment(run_dir)
    latest = latest_checkpoint(RunFiles(run_dir).checkpoints)
    if latest is None:
        raise DataError(f"{run_dir} has no checkpoint yet; train (or `--resume`) first")
    model = build_supertransformer(space, exp.model.vocab_size)
    restore(tf.train.Checkpoint(model=model), latest)
    return space, exp, model, load_tokenizers(run_dir, exp)


def extract(run_dir: str, arch_path: str, out_dir: str) -> dict:
    """`tfmobile hat extract`: the SubTransformer of `arch_path` with its inherited weights as an ordinary run in
    `out_dir` (config, weights, tokenizers), which `train --resume`, `evaluate`, `export`, `bench` and `tprune`
    take like any run. The run is assembled in a temporary folder and renamed into place: nothing half-written
    is left under `out_dir`. `train --resume` fine-tunes it with the space's recipe, continuing the
    SuperTransformer's learning-rate schedule."""
    space = read_space(run_dir)
    arch = load_arch(arch_path, space)
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
        raise ConfigError(f"{out_dir} already exists and is not empty; choose another --out or remove it yourself")
    _, exp, model, _ = load_supertransformer(run_dir)
    sub, cfg = extract_model(model, space, arch)
    sub_exp = dataclasses.replace(exp, name=f"{exp.name}-{arch.key()}", model=cfg,
                                  description=f"a SubTransformer of the {space.name} SuperTransformer {os.path.abspath(run_dir)}: "
                                              f"{arch.describe()}")
    super_steps = int(read_state(run_dir).get("steps_done", 0))
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}-extract-", dir=parent)
    try:
        write_experiment(tmp, sub_exp)
        files, source = RunFiles(tmp), RunFiles(run_dir)
        for src, dst in zip(source.tokenizer_files(exp), files.tokenizer_files(exp)):
            shutil.copyfile(src, dst)
        # a trainer-shaped checkpoint (model, optimizer, epoch), so that `train --resume` continues it
        optimizer = build_optimizer(sub_exp.train)
        optimizer.build(sub.trainable_variables)
        optimizer.iterations.assign(super_steps)
        ckpt = tf.train.Checkpoint(model=sub, optimizer=optimizer, epoch=tf.Variable(0, dtype=tf.int64))
        tf.train.CheckpointManager(ckpt, files.checkpoints, max_to_keep=2).save(checkpoint_number=0)
        write_state(tmp, {"epochs_done": 0, "steps_done": super_steps, "inherited_steps": super_steps})
        atomic_write_text(os.path.join(tmp, "arch.yaml"), arch_to_yaml(space, arch))
        write_record(tmp, EXTRACT_VERB, run_dir, arch=arch.to_dict())
        if os.path.isdir(out_dir):
            os.rmdir(out_dir)  # empty (checked above)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"run_dir": out_dir, "source": run_dir, "arch": arch.to_dict(), "inherited_steps": super_steps,
            "params": int(sub.count_params())}


__all__ = ["build_supertransformer", "extract", "extract_model", "inherited_loss", "is_supertransformer",
           "is_supertransformer_run", "load_supertransformer", "read_space", "set_sample", "valid_batches"]

