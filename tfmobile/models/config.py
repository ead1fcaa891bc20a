"""One config describes a model: typed dataclasses that round-trip through YAML.

The config is heterogeneous per layer because HAT SubTransformers and TPrune-shrunk models are:
each encoder and decoder layer has its own FFN dim, head count and query/key and value widths, and
each decoder layer chooses how many of the last encoder layers it attends to (HAT's arbitrary
encoder-decoder attention, Wang et al. 2020, section 3.1).

In YAML every per-layer field may be written once (a scalar, used for every layer) or as a list with
one entry per layer; `num_layers` sets the depth. Widths left out default to the embedding dim
(query/key and value) and 4x the embedding dim (FFN).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

import yaml

from tfmobile.errors import ConfigError

LAYER_KINDS = ("attention", "lsra")  # lsra: Lite Transformer's Long-Short Range Attention replaces self-attention
CONV_TYPES = ("lightweight", "dynamic")


@dataclass(kw_only=True)
class EncoderLayerConfig:
    """One encoder layer: self-attention (or LSRA) then FFN."""

    ffn_dim: int
    num_heads: int
    qk_dim: int  # total width of the query and key projections (all heads)
    v_dim: int  # total width of the value projection (all heads), input of W_O
    kind: str = "attention"
    # kind "lsra" only (Wu et al. 2020): channels for the attention branch (None: embed_dim // 2; the rest
    # go to the convolution branch), the convolution and its heads (None: num_heads), GLU before it
    attention_dim: int | None = None
    conv_type: str = "lightweight"
    kernel_size: int = 3
    conv_heads: int | None = None
    glu: bool = True


@dataclass(kw_only=True)
class DecoderLayerConfig(EncoderLayerConfig):
    """One decoder layer: causal self-attention (or LSRA), encoder-decoder attention, FFN."""

    cross_num_heads: int
    cross_qk_dim: int
    cross_v_dim: int
    # HAT arbitrary encoder-decoder attention: attend to the concatenation (along time) of the
    # outputs of the last `encoder_layers_attended` encoder layers; 1 is the standard Transformer.
    encoder_layers_attended: int = 1


@dataclass
class ModelConfig:
    """An encoder-decoder Transformer, per layer heterogeneous."""

    encoder_embed_dim: int = 256
    decoder_embed_dim: int = 256
    encoder_layers: list[EncoderLayerConfig] = field(default_factory=list)
    decoder_layers: list[DecoderLayerConfig] = field(default_factory=list)
    vocab_size: int = 8000
    share_embeddings: bool = True  # one embedding for source and target (joint vocabulary)
    tie_output: bool = True  # output projection = transposed target embedding
    normalize_before: bool = True  # pre-norm (True) or post-norm (False)
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    weight_dropout: float = 0.0  # DropConnect on lightweight/dynamic convolution kernels (lsra layers)
    activation: str = "relu"
    max_source_len: int = 256
    max_target_len: int = 256

    def __post_init__(self):
        self.encoder_layers = [
            l if isinstance(l, EncoderLayerConfig) else EncoderLayerConfig(**l) for l in self.encoder_layers
        ]
        self.decoder_layers = [
            l if isinstance(l, DecoderLayerConfig) else DecoderLayerConfig(**l) for l in self.decoder_layers
        ]

    def validate(self) -> "ModelConfig":
        if not self.encoder_layers or not self.decoder_layers:
            raise ConfigError("model needs at least one encoder and one decoder layer")
        if self.share_embeddings and self.encoder_embed_dim != self.decoder_embed_dim:
            raise ConfigError(
                f"share_embeddings needs encoder_embed_dim == decoder_embed_dim "
                f"(got {self.encoder_embed_dim} and {self.decoder_embed_dim})"
            )
        for side, layers in (("encoder", self.encoder_layers), ("decoder", self.decoder_layers)):
            for i, l in enumerate(layers):
                if l.kind not in LAYER_KINDS:
                    raise ConfigError(f"{side} layer {i}: unknown kind {l.kind!r} (known: {', '.join(LAYER_KINDS)})")
                pairs = [("qk_dim", l.qk_dim, l.num_heads), ("v_dim", l.v_dim, l.num_heads)]
                if side == "decoder":
                    pairs += [("cross_qk_dim", l.cross_qk_dim, l.cross_num_heads),
                              ("cross_v_dim", l.cross_v_dim, l.cross_num_heads)]
                for name, dim, heads in pairs:
                    if heads < 1 or dim < 1 or dim % heads:
                        raise ConfigError(f"{side} layer {i}: {name}={dim} must be a positive multiple of its heads ({heads})")
                if l.ffn_dim < 1:
                    raise ConfigError(f"{side} layer {i}: ffn_dim must be positive")
                if l.kind == "lsra":
                    d = self.encoder_embed_dim if side == "encoder" else self.decoder_embed_dim
                    self._validate_lsra(f"{side} layer {i}", l, d)
        for i, l in enumerate(self.decoder_layers):
            if not 1 <= l.encoder_layers_attended <= len(self.encoder_layers):
                raise ConfigError(
                    f"decoder layer {i}: encoder_layers_attended={l.encoder_layers_attended} must be in "
                    f"1..{len(self.encoder_layers)}"
                )
        for name in ("dropout", "attention_dropout", "activation_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1)")
        if self.vocab_size < 8:
            raise ConfigError("vocab_size must be at least 8")
        return self

    @staticmethod
    def _validate_lsra(where: str, l, d: int) -> None:
        d_a = l.attention_dim if l.attention_dim is not None else d // 2
        d_c = d - d_a
        conv_heads = l.conv_heads or l.num_heads
        if l.conv_type not in CONV_TYPES:
            raise ConfigError(f"{where}: unknown conv_type {l.conv_type!r} (known: {', '.join(CONV_TYPES)})")
        if not 0 < d_a < d:
            raise ConfigError(f"{where}: attention_dim={d_a} must leave channels for both branches of d={d}")
        if d_a % l.num_heads or d_c % conv_heads:
            raise ConfigError(f"{where}: attention channels {d_a} must be a multiple of num_heads ({l.num_heads}) "
                              f"and convolution channels {d_c} of conv_heads ({conv_heads})")
        if l.kernel_size < 1:
            raise ConfigError(f"{where}: kernel_size must be positive")

    @property
    def max_encoder_layers_attended(self) -> int:
        return max(l.encoder_layers_attended for l in self.decoder_layers)


@dataclass
class DataConfig:
    corpus: str = "bible-es-en"
    src_lang: str | None = None  # None: the corpus's default direction
    tgt_lang: str | None = None
    vocab_size: int = 8000
    joint_vocab: bool = True
    max_len: int = 128  # training pairs longer than this (in tokens) are dropped


@dataclass
class TrainConfig:
    max_tokens: int = 4096  # tokens per batch (source + target padded), batches by token count
    epochs: int = 10
    steps_per_epoch: int | None = None  # None: one pass over the training split
    learning_rate: float = 1e-3  # peak, reached after warmup_steps
    warmup_steps: int = 4000
    adam_beta_1: float = 0.9
    adam_beta_2: float = 0.98
    label_smoothing: float = 0.1
    clip_norm: float | None = None
    seed: int = 1
    # XLA measured slower than graph mode for our models on a 2-core CPU (benchmarks/train_step_speed.py)
    jit_compile: bool = False
    strategy: str = "default"  # default | mirrored | multi-worker
    # Keras mixed-precision policy for training: "auto" (mixed_bfloat16 where the CPU or GPU computes in
    # bfloat16, else float32: tfmobile.training.precision), "float32", "mixed_bfloat16" or "mixed_float16";
    # weights stay float32, decoding and export run in float32
    precision: str = "auto"
    time_budget_minutes: float | None = None  # stop after the epoch that crosses the budget


@dataclass
class ExperimentConfig:
    """A preset: model + data + training. Every YAML in tfmobile/resources/presets/ is one of these."""

    name: str = "custom"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# ---------------------------------------------------------------------------------------------
# Parsing: compact YAML (scalars broadcast per layer) -> typed config


def _per_layer(value, n: int, name: str) -> list:
    if isinstance(value, list):
        if len(value) != n:
            raise ConfigError(f"{name} lists {len(value)} values but num_layers is {n}")
        return value
    return [value] * n


def _fill(cls, raw: dict, where: str):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - names
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(names))})")
    try:
        return cls(**raw)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


def _stack(raw, side: str, embed_dim: int) -> list[dict]:
    """Expand `encoder:`/`decoder:` (compact or explicit `layers:` list) into per-layer dicts."""
    if raw is None:
        raise ConfigError(f"model.{side} is missing")
    if isinstance(raw, list):  # already per-layer
        return raw
    if not isinstance(raw, dict):
        raise ConfigError(f"model.{side} must be a mapping or a list of layers")
    raw = dict(raw)
    if "layers" in raw:
        if len(raw) > 1:
            raise ConfigError(f"model.{side}: give either 'layers' or compact per-layer fields, not both")
        return raw["layers"]
    n = raw.pop("num_layers", None)
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"model.{side}.num_layers must be a positive integer")
    defaults = {"ffn_dim": 4 * embed_dim, "num_heads": 8, "kind": "attention"}
    keys = ["ffn_dim", "num_heads", "qk_dim", "v_dim", "kind", "attention_dim", "conv_type", "kernel_size",
            "conv_heads", "glu"]
    if side == "decoder":
        keys += ["cross_num_heads", "cross_qk_dim", "cross_v_dim", "encoder_layers_attended"]
    unknown = set(raw) - set(keys)
    if unknown:
        raise ConfigError(f"model.{side}: unknown key(s) {', '.join(sorted(unknown))} (known: num_layers, {', '.join(keys)})")
    cols = {k: _per_layer(raw[k] if k in raw else defaults[k], n, f"model.{side}.{k}")
            for k in keys if k in raw or k in defaults}
    layers = []
    for i in range(n):
        d = {k: v[i] for k, v in cols.items()}
        d.setdefault("qk_dim", embed_dim)
        d.setdefault("v_dim", embed_dim)
        if side == "decoder":
            d.setdefault("cross_num_heads", d["num_heads"])
            d.setdefault("cross_qk_dim", embed_dim)
            d.setdefault("cross_v_dim", embed_dim)
        layers.append(d)
    return layers


def model_config_from_dict(raw: dict) -> ModelConfig:
    if not isinstance(raw, dict):
        raise ConfigError("model must be a mapping")
    raw = dict(raw)
    if "embed_dim" in raw:  # shorthand for both sides
        d = raw.pop("embed_dim")
        raw.setdefault("encoder_embed_dim", d)
        raw.setdefault("decoder_embed_dim", d)
    enc_dim = raw.get("encoder_embed_dim", ModelConfig.encoder_embed_dim)
    dec_dim = raw.get("decoder_embed_dim", ModelConfig.decoder_embed_dim)
    enc = [_fill(EncoderLayerConfig, l, f"model.encoder layer {i}") for i, l in enumerate(_stack(raw.pop("encoder", None), "encoder", enc_dim))]
    dec = [_fill(DecoderLayerConfig, l, f"model.decoder layer {i}") for i, l in enumerate(_stack(raw.pop("decoder", None), "decoder", dec_dim))]
    raw.pop("encoder_layers", None)
    raw.pop("decoder_layers", None)
    cfg = _fill(ModelConfig, raw, "model")
    cfg.encoder_layers, cfg.decoder_layers = enc, dec
    return cfg.validate()


def experiment_from_dict(raw: dict, name: str = "custom") -> ExperimentConfig:
    if not isinstance(raw, dict):
        raise ConfigError("a config must be a YAML mapping with a 'model' section")
    raw = dict(raw)
    unknown = set(raw) - {"name", "model", "data", "train", "description"}
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {', '.join(sorted(unknown))} (known: name, description, model, data, train)")
    if "model" not in raw:
        raise ConfigError("config has no 'model' section")
    model_raw = dict(raw["model"] or {})
    # a dumped config carries the expanded per-layer lists under encoder_layers/decoder_layers
    if "encoder_layers" in model_raw and "encoder" not in model_raw:
        model_raw["encoder"] = model_raw.pop("encoder_layers")
    if "decoder_layers" in model_raw and "decoder" not in model_raw:
        model_raw["decoder"] = model_raw.pop("decoder_layers")
    exp = ExperimentConfig(
        name=raw.get("name", name),
        description=raw.get("description", ""),
        model=model_config_from_dict(model_raw),
        data=_fill(DataConfig, raw.get("data") or {}, "data"),
        train=_fill(TrainConfig, raw.get("train") or {}, "train"),
    )
    if "vocab_size" not in model_raw:  # a trained run records the tokenizer's real size in the model section
        exp.model.vocab_size = exp.data.vocab_size
    return exp


def load_yaml(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: malformed YAML{where}: {getattr(e, 'problem', e)}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror})") from None
    if raw is None:
        raise ConfigError(f"{path}: config file is empty")
    return raw


def load_config(name_or_path: str) -> ExperimentConfig:
    """A preset name (see `tfmobile presets`) or a path to a YAML file."""
    from tfmobile.models.presets import preset_path

    if os.path.exists(name_or_path) or name_or_path.endswith((".yaml", ".yml")):
        path = name_or_path
        name = os.path.splitext(os.path.basename(path))[0]
    else:
        path = preset_path(name_or_path)
        name = name_or_path
    try:
        return experiment_from_dict(load_yaml(path), name=name)
    except ConfigError as e:
        msg = str(e)
        raise ConfigError(msg if msg.startswith(path) else f"{path}: {msg}") from None
