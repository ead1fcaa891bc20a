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
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml

from tfmobile.errors import ConfigError
from tfmobile.kinds import get_kind, kind_names
from tfmobile.kinds.ffn import ffn_kind_names, get_ffn_kind
from tfmobile.models.presets import preset_path

STRATEGIES = ("default", "mirrored", "multi-worker")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
ACTIVATIONS = ("relu", "gelu", "swish", "silu", "tanh")


def ranged(default, **rule):
    """A dataclass field with a rule the loader checks beside its type: `min`/`max` (inclusive),
    `above`/`below` (exclusive) or `choices`. E.g. `epochs: int = ranged(10, min=1)`."""
    return field(default=default, metadata=rule)


@dataclass(kw_only=True)
class EncoderLayerConfig:
    """One encoder layer: the self-attention sublayer of its kind (`tfmobile.kinds`), then the FFN of its
    FFN kind (`tfmobile.kinds.ffn`)."""

    ffn_dim: int
    num_heads: int
    qk_dim: int  # total width of the query and key projections (all heads)
    v_dim: int  # total width of the value projection (all heads), input of W_O
    kind: str = "attention"
    # the kind's own settings (its `LayerKind.config` dataclass, None for a kind without any), written in
    # YAML under the kind's name: `kind: lsra, lsra: {kernel_size: 7}`
    kind_config: Any = None
    ffn_kind: str = "dense"
    # the FFN kind's settings (its `FFNKind.config` dataclass, None for a kind without any), written in YAML
    # under the FFN kind's name: `ffn_kind: sparse, sparse: {block_size: 32}`
    ffn_config: Any = None

    def __post_init__(self):
        if self.kind_config is None and self.kind in kind_names():  # an unknown kind: validate() names it
            settings = get_kind(self.kind).config
            self.kind_config = settings() if settings is not None else None
        if self.ffn_config is None and self.ffn_kind in ffn_kind_names():
            settings = get_ffn_kind(self.ffn_kind).config
            self.ffn_config = settings() if settings is not None else None


@dataclass(kw_only=True)
class DecoderLayerConfig(EncoderLayerConfig):
    """One decoder layer: causal self-attention of its kind, encoder-decoder attention, FFN."""

    cross_num_heads: int
    cross_qk_dim: int
    cross_v_dim: int
    # HAT arbitrary encoder-decoder attention: attend to the concatenation (along time) of the
    # outputs of the last `encoder_layers_attended` encoder layers; 1 is the standard Transformer.
    encoder_layers_attended: int = 1


@dataclass
class ModelConfig:
    """An encoder-decoder Transformer, per layer heterogeneous."""

    encoder_embed_dim: int = ranged(256, min=1)
    decoder_embed_dim: int = ranged(256, min=1)
    encoder_layers: list[EncoderLayerConfig] = field(default_factory=list)
    decoder_layers: list[DecoderLayerConfig] = field(default_factory=list)
    vocab_size: int = ranged(8000, min=8)
    share_embeddings: bool = True  # one embedding for source and target (joint vocabulary)
    tie_output: bool = True  # output projection = transposed target embedding
    normalize_before: bool = True  # pre-norm (True) or post-norm (False)
    dropout: float = ranged(0.1, min=0.0, below=1.0)
    attention_dropout: float = ranged(0.0, min=0.0, below=1.0)
    activation_dropout: float = ranged(0.0, min=0.0, below=1.0)
    # DropConnect on lightweight/dynamic convolution kernels (lsra layers)
    weight_dropout: float = ranged(0.0, min=0.0, below=1.0)
    activation: str = ranged("relu", choices=ACTIVATIONS)
    max_source_len: int = ranged(256, min=1)
    max_target_len: int = ranged(256, min=1)

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
            d = self.encoder_embed_dim if side == "encoder" else self.decoder_embed_dim
            for i, l in enumerate(layers):
                self._validate_kind(f"{side} layer {i}", l, d)
                pairs = [("qk_dim", l.qk_dim, l.num_heads), ("v_dim", l.v_dim, l.num_heads)]
                if side == "decoder":
                    pairs += [("cross_qk_dim", l.cross_qk_dim, l.cross_num_heads),
                              ("cross_v_dim", l.cross_v_dim, l.cross_num_heads)]
                for name, dim, heads in pairs:
                    if heads < 1 or dim < 1 or dim % heads:
                        raise ConfigError(f"{side} layer {i}: {name}={dim} must be a positive multiple of its heads ({heads})")
                if l.ffn_dim < 1:
                    raise ConfigError(f"{side} layer {i}: ffn_dim must be positive")
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
    def _validate_kind(where: str, l, d: int) -> None:
        """The layer's kind and FFN kind are registered, their settings are of the kinds' config classes, and the
        kinds accept them."""
        for noun, name, settings, get in (("kind", l.kind, l.kind_config, get_kind),
                                          ("ffn_kind", l.ffn_kind, l.ffn_config, get_ffn_kind)):
            try:
                kind = get(name)
            except ConfigError as e:
                raise ConfigError(f"{where}: {e}") from None
            if kind.config is None and settings is not None:
                raise ConfigError(f"{where}: {noun} {name!r} has no settings (got {settings!r})")
            if kind.config is not None and not isinstance(settings, kind.config):
                raise ConfigError(f"{where}: the settings of {noun} {name!r} must be a {kind.config.__name__} "
                                  f"(got {type(settings).__name__})")
            if kind.validate is not None:
                kind.validate(where, l, d)

    @property
    def max_encoder_layers_attended(self) -> int:
        return max(l.encoder_layers_attended for l in self.decoder_layers)


MODEL_TYPES = ("translator", "lm")
# the per-layer widths that must agree across the layers of a reversible language model (see LMConfig.validate)
REVERSIBLE_WIDTHS = ("num_heads", "qk_dim", "v_dim", "ffn_dim")


@dataclass
class LMConfig:
    """A decoder-only language model (`tfmobile.models.lm.build_lm`), YAML `model: {type: lm, ...}`.

    Token embedding (scaled, plus sinusoidal positions up to `max_len`), dropout, then `layers`: each a
    pre-norm causal self-attention sublayer of the layer's kind and an FFN of its FFN kind, wired as a plain
    residual stack or, `reversible: true`, as the Reformer's reversible stack (`ReversibleStack`); a final
    LayerNorm and the output projection (tied to the embedding by default). The layers are written as an
    encoder's (`layers: {num_layers: 6, num_heads: 4, kind: lsh, lsh: {chunk_len: 128}}`, per-layer lists
    broadcast); `max_len` bounds the positions, the training sequences (`data.seq_len`) and the decoding caches.
    """

    type: str = ranged("lm", choices=("lm",))
    embed_dim: int = ranged(256, min=1)
    layers: list[EncoderLayerConfig] = field(default_factory=list)
    vocab_size: int = ranged(8000, min=8)
    max_len: int = ranged(2048, min=2)
    reversible: bool = False
    tie_output: bool = True  # output projection = transposed token embedding
    dropout: float = ranged(0.1, min=0.0, below=1.0)  # on the embeddings and every residual branch
    attention_dropout: float = ranged(0.0, min=0.0, below=1.0)
    activation_dropout: float = ranged(0.0, min=0.0, below=1.0)
    activation: str = ranged("relu", choices=ACTIVATIONS)

    def __post_init__(self):
        self.layers = [l if isinstance(l, EncoderLayerConfig) else EncoderLayerConfig(**l) for l in self.layers]

    def validate(self) -> "LMConfig":
        if not self.layers:
            raise ConfigError("model.layers: a language model needs at least one layer")
        for i, l in enumerate(self.layers):
            where = f"model.layers[{i}]"
            ModelConfig._validate_kind(where, l, self.embed_dim)
            for name, dim in (("qk_dim", l.qk_dim), ("v_dim", l.v_dim)):
                if l.num_heads < 1 or dim < 1 or dim % l.num_heads:
                    raise ConfigError(f"{where}: {name}={dim} must be a positive multiple of its heads ({l.num_heads})")
            if l.ffn_dim < 1:
                raise ConfigError(f"{where}: ffn_dim must be positive")
        if self.reversible:
            # A rule of this kit, not of the algorithm: the Reformer's reversible stack repeats one block (trax builds
            # it so), and its memory claim (one block's activations whatever the depth) is about such stacks; the
            # per-layer widths of HAT / TPrune models are for the plain stack. Every F and G keeps the width d.
            first = self.layers[0]
            for i, l in enumerate(self.layers[1:], 1):
                for name in REVERSIBLE_WIDTHS:
                    if getattr(l, name) != getattr(first, name):
                        raise ConfigError(f"model.reversible: the layers of a reversible stack must have one width, but "
                                          f"layer {i} has {name} {getattr(l, name)} and layer 0 has {getattr(first, name)}")
        for name in ("dropout", "attention_dropout", "activation_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"model.{name} must be in [0, 1)")
        if self.vocab_size < 8:
            raise ConfigError("model.vocab_size must be at least 8")
        if self.max_len < 2:
            raise ConfigError("model.max_len must be at least 2")
        return self


@dataclass
class DataConfig:
    corpus: str = "bible-es-en"
    src_lang: str | None = None  # None: the corpus's default direction
    tgt_lang: str | None = None
    vocab_size: int = ranged(8000, min=8)
    joint_vocab: bool = True
    max_len: int = ranged(128, min=1)  # training pairs longer than this (in tokens) are dropped
    # a language model's training sequences, in tokens (null: the model's max_len); translators leave it out
    seq_len: int | None = ranged(None, min=2)


@dataclass
class TrainConfig:
    max_tokens: int = ranged(4096, min=1)  # tokens per batch (source + target padded), batches by token count
    epochs: int = ranged(10, min=1)
    steps_per_epoch: int | None = ranged(None, min=1)  # None: one pass over the training split
    learning_rate: float = ranged(1e-3, above=0.0)  # peak, reached after warmup_steps
    warmup_steps: int = ranged(4000, min=0)
    adam_beta_1: float = ranged(0.9, min=0.0, below=1.0)
    adam_beta_2: float = ranged(0.98, min=0.0, below=1.0)
    label_smoothing: float = ranged(0.1, min=0.0, below=1.0)
    clip_norm: float | None = ranged(None, above=0.0)
    seed: int = ranged(1, min=0, max=2**32 - 1)  # NumPy's seed range (keras.utils.set_random_seed)
    # XLA measured slower than graph mode for our models on a 2-core CPU (benchmarks/train_step_speed.py)
    jit_compile: bool = False
    strategy: str = ranged("default", choices=STRATEGIES)
    # Keras mixed-precision policy for training: "auto" (mixed_bfloat16 where the CPU or GPU computes in
    # bfloat16, else float32: tfmobile.training.precision), "float32", "mixed_bfloat16" or "mixed_float16";
    # weights stay float32, decoding and export run in float32
    precision: str = ranged("auto", choices=PRECISIONS)
    time_budget_minutes: float | None = ranged(None, above=0.0)  # stop after the epoch that crosses the budget


@dataclass
class ExperimentConfig:
    """A preset: model + data + training. Every YAML in tfmobile/resources/presets/ is one of these."""

    name: str = "custom"
    model: ModelConfig | LMConfig = field(default_factory=ModelConfig)  # a translator, or a language model
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    description: str = ""

    @property
    def is_lm(self) -> bool:
        return isinstance(self.model, LMConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain data; each layer's kind settings under the kind's name, as YAML writes them."""
        d = dataclasses.asdict(self)
        if d["data"]["seq_len"] is None:  # a translator's data section, as it always was
            del d["data"]["seq_len"]
        for side in ("layers",) if self.is_lm else ("encoder_layers", "decoder_layers"):
            for layer in d["model"][side]:
                settings = layer.pop("kind_config")
                if settings is not None:
                    layer[layer["kind"]] = settings
                ffn_settings = layer.pop("ffn_config")
                if ffn_settings is not None:
                    layer[layer["ffn_kind"]] = ffn_settings
        return d

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


# One type checker for every config dataclass: each field is checked against its annotation (int, float,
# bool, str, X | None, list[X], Literal[...], a nested config dataclass) and its `ranged` rule.


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def describe(kind, rule: dict) -> str:
    """What a value of the scalar type `kind` under `rule` must be, in words: 'a positive integer'."""
    if rule.get("choices"):
        return "one of " + ", ".join(map(str, rule["choices"]))
    if kind is bool:
        return "true or false"
    if kind is str:
        return "a string"
    noun = "integer" if kind is int else "number"
    low, high = rule.get("min", rule.get("above")), rule.get("max", rule.get("below"))
    if low is None and high is None:
        return "an integer" if kind is int else "a finite number"
    if high is None:
        if low == 0 or (kind is int and low == 1 and "min" in rule):
            return f"a {'non-negative' if low == 0 and 'min' in rule else 'positive'} {noun}"
        return f"{'an' if kind is int else 'a'} {noun} {'>=' if 'min' in rule else '>'} {low:g}"
    if kind is int and low is not None:
        return f"an integer in {low}..{high}"
    if low is None:
        return f"{'an' if kind is int else 'a'} {noun} {'<=' if 'max' in rule else '<'} {high:g}"
    return f"a number in {'[' if 'min' in rule else '('}{low:g}, {high:g}{']' if 'max' in rule else ')'}"


def rule_problem(value, kind, rule: dict) -> str | None:
    """None where `value` is a `kind` (int, float, bool or str) that keeps `rule`, else what it must be.
    An int is a float, but a bool is neither (YAML reads `yes` as true), and a float is never an int."""
    if kind is float:
        try:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        except OverflowError:  # an int too large for a float
            ok = False
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    ok = ok and (not rule.get("choices") or value in rule["choices"])
    if ok and kind in (int, float):
        ok = (value >= rule.get("min", value) and value <= rule.get("max", value)
              and ("above" not in rule or value > rule["above"]) and ("below" not in rule or value < rule["below"]))
    return None if ok else describe(kind, rule)


def _describe_hint(hint, rule: dict) -> str:
    origin = typing.get_origin(hint)
    if origin is list:
        return "a list"
    if origin is dict or hint is dict or dataclasses.is_dataclass(hint):
        return "a mapping"
    if origin is typing.Literal:
        return describe(str, {"choices": typing.get_args(hint)})
    return describe(hint, rule)


def check_value(value, hint, rule: dict, where: str, nullable: bool = False):
    """`value` as a field annotated `hint` with the `ranged` rule `rule` (ints of float fields become floats,
    mappings of dataclass fields become that dataclass); a ConfigError naming `where` otherwise."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    null = " (or null)" if nullable else ""

    def wrong(what: str) -> ConfigError:
        return ConfigError(f"{where} must be {what}{null} (got {_show(value)})")

    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        nullable = type(None) in args
        if value is None and nullable:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # X | None: X's own messages, deeper fields included
            return check_value(value, options[0], rule, where, nullable)
        for option in options:
            try:
                return check_value(value, option, rule, where)
            except ConfigError:
                pass
        null = " (or null)" if nullable else ""
        raise wrong(" or ".join(_describe_hint(a, rule) for a in options))
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise wrong("a mapping")
        return _fill(hint, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise wrong("a list")
        item = args[0] if args else Any
        return [check_value(v, item, {}, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise wrong("a mapping")
        return value
    if origin is typing.Literal:
        hint, rule = str, {"choices": args}
    problem = rule_problem(value, hint, rule)
    if problem:
        raise wrong(problem)
    return float(value) if hint is float else value


def field_rule(cls, name: str) -> tuple[type, dict]:
    """The scalar type (without `| None`) and the `ranged` rule of the field `cls.name`."""
    hint = typing.get_type_hints(cls)[name]
    options = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return options[0], dict(next(f for f in dataclasses.fields(cls) if f.name == name).metadata)


def _fill(cls, raw, where: str):
    """`cls(**raw)` with every value checked against its field's annotation and rule (see `check_value`)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping (got {_show(raw)})")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = set(map(str, raw)) - set(fields)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(fields))})")
    missing = [n for n, f in fields.items() if n not in raw
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where}: missing {', '.join(missing)}")
    hints = typing.get_type_hints(cls)
    return cls(**{n: check_value(v, hints[n], dict(fields[n].metadata), f"{where}.{n}") for n, v in raw.items()})


# The LSRA fields that every saved layer config carried, flat, before `tfmobile.kinds`: such runs still load.
SAVED_LSRA_FIELDS = frozenset({"attention_dim", "conv_type", "kernel_size", "conv_heads", "glu"})


def _misplaced_kind_setting(where: str, keys, prefer=()) -> None:
    """The old flat form (`kind: lsra, kernel_size: 7` at layer level), or an FFN kind's setting written flat
    (`ffn_kind: sparse, block_size: 32`): say how to write it now. `prefer`: the layer's own kind and FFN kind,
    asked first (lsh and the chunked FFN both have a chunk_len)."""
    owners = [(name, get_kind(name).config, "kind") for name in kind_names()]
    owners += [(name, get_ffn_kind(name).config, "FFN kind") for name in ffn_kind_names()]
    owners.sort(key=lambda owner: owner[0] not in prefer)  # stable: the layer's own kinds first
    for key in sorted(map(str, keys)):
        for name, settings, noun in owners:
            if settings is not None and key in {f.name for f in dataclasses.fields(settings)}:
                raise ConfigError(f"{where}: {key!r} belongs to the {name} {noun}: write it as {name}: {{{key}: ...}}")


def _ffn_kind_settings(layer: dict, where: str) -> None:
    """Parse the FFN kind's settings, written under the FFN kind's name, into `ffn_config` (in place)."""
    name = layer.get("ffn_kind", "dense")
    try:
        kind = get_ffn_kind(name)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    if "ffn_config" in layer:
        raise ConfigError(f"{where}: unknown key ffn_config (an FFN kind's settings go under its name, "
                          f"e.g. sparse: {{...}})")
    others = [k for k in ffn_kind_names() if k in layer and k != name]
    if others:
        raise ConfigError(f"{where}: {others[0]} settings given for a layer of ffn_kind {name!r}")
    settings = layer.pop(name, None)
    if kind.config is not None:
        layer["ffn_config"] = _fill(kind.config, {} if settings is None else settings, f"{where}.{name}")
    elif settings is not None:
        raise ConfigError(f"{where}: ffn_kind {name!r} has no settings (got {_show(settings)})")


def _kind_settings(layer, where: str):
    """A per-layer dict with its kind's settings, written under the kind's name, parsed into `kind_config`
    (and its FFN kind's into `ffn_config`)."""
    if not isinstance(layer, dict):
        return layer  # the loader says what a layer must be
    layer = dict(layer)
    name = layer.get("kind", "attention")
    try:
        kind = get_kind(name)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    if SAVED_LSRA_FIELDS <= set(layer):  # a run saved before kinds nested their settings: every layer had all five
        flat = {key: layer.pop(key) for key in SAVED_LSRA_FIELDS}
        if name == "lsra":
            layer.setdefault("lsra", flat)
    _ffn_kind_settings(layer, where)
    _misplaced_kind_setting(where, set(layer) - {f.name for f in dataclasses.fields(DecoderLayerConfig)},
                            prefer=(name, layer.get("ffn_kind", "dense")))
    if "kind_config" in layer:
        raise ConfigError(f"{where}: unknown key kind_config (a kind's settings go under its name, e.g. lsra: {{...}})")
    others = [k for k in kind_names() if k in layer and k != name]
    if others:
        raise ConfigError(f"{where}: {others[0]} settings given for a layer of kind {name!r}")
    if kind.config is None:
        return layer
    settings = layer.pop(name, None)
    layer["kind_config"] = _fill(kind.config, {} if settings is None else settings, f"{where}.{name}")
    return layer


def _stack(raw, side: str, embed_dim: int) -> list[dict]:
    """Expand `encoder:`/`decoder:` (compact or explicit `layers:` list) into per-layer dicts.

    A kind's settings sit under its name, `lsra: {kernel_size: [3, 7], conv_type: dynamic}`, an FFN kind's under
    its own (`ffn_kind: sparse, sparse: {block_size: 32}`); in the compact form their lists broadcast per layer
    like the other fields, and apply to the layers of that kind."""
    if raw is None:
        raise ConfigError(f"model.{side} is missing")
    if isinstance(raw, dict) and "layers" in raw:
        if len(raw) > 1:
            raise ConfigError(f"model.{side}: give either 'layers' or compact per-layer fields, not both")
        raw = raw["layers"]
        if not isinstance(raw, list):
            return raw  # the loader says what `layers` must be
    if isinstance(raw, list):  # already per-layer (as a saved config.yaml writes them)
        return [_kind_settings(l, f"model.{side}.layers[{i}]") for i, l in enumerate(raw)]
    if not isinstance(raw, dict):
        raise ConfigError(f"model.{side} must be a mapping or a list of layers")
    raw = dict(raw)
    n = raw.pop("num_layers", None)
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"model.{side}.num_layers must be a positive integer")
    sections = {name: raw.pop(name) for name in kind_names() if name in raw}
    ffn_sections = {name: raw.pop(name) for name in ffn_kind_names() if name in raw}
    defaults = {"ffn_dim": 4 * embed_dim, "num_heads": 8, "kind": "attention", "ffn_kind": "dense"}
    keys = ["ffn_dim", "num_heads", "qk_dim", "v_dim", "kind", "ffn_kind"]
    if side == "decoder":
        keys += ["cross_num_heads", "cross_qk_dim", "cross_v_dim", "encoder_layers_attended"]
    unknown = set(raw) - set(keys)
    if unknown:
        _misplaced_kind_setting(f"model.{side}", unknown)
        raise ConfigError(f"model.{side}: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                          f"(known: num_layers, {', '.join(keys)}, and a kind's or FFN kind's settings under its "
                          f"name: {', '.join(k for k in kind_names() if get_kind(k).config is not None)}, "
                          f"{', '.join(k for k in ffn_kind_names() if get_ffn_kind(k).config is not None)})")
    cols = {k: _per_layer(raw[k] if k in raw else defaults[k], n, f"model.{side}.{k}")
            for k in keys if k in raw or k in defaults}
    for name in cols["kind"]:
        try:
            get_kind(name)
        except ConfigError as e:
            raise ConfigError(f"model.{side}.kind: {e}") from None
    for name in cols["ffn_kind"]:
        try:
            get_ffn_kind(name)
        except ConfigError as e:
            raise ConfigError(f"model.{side}.ffn_kind: {e}") from None
    for found, key, noun in ((sections, "kind", "kind"), (ffn_sections, "ffn_kind", "FFN kind")):
        for name, section in found.items():
            if section is None:
                section = {}
            if not isinstance(section, dict):
                raise ConfigError(f"model.{side}.{name} must be a mapping of the {name} {noun}'s settings "
                                  f"(got {_show(section)})")
            if name not in cols[key]:
                raise ConfigError(f"model.{side}.{name}: no layer is of {key} {name!r}")
            found[name] = {k: _per_layer(v, n, f"model.{side}.{name}.{k}") for k, v in section.items()}
    layers = []
    for i in range(n):
        d = {k: v[i] for k, v in cols.items()}
        d.setdefault("qk_dim", embed_dim)
        d.setdefault("v_dim", embed_dim)
        if side == "decoder":
            d.setdefault("cross_num_heads", d["num_heads"])
            d.setdefault("cross_qk_dim", embed_dim)
            d.setdefault("cross_v_dim", embed_dim)
        if d["kind"] in sections:
            d[d["kind"]] = {k: v[i] for k, v in sections[d["kind"]].items()}
        if d["ffn_kind"] in ffn_sections:
            d[d["ffn_kind"]] = {k: v[i] for k, v in ffn_sections[d["ffn_kind"]].items()}
        layers.append(_kind_settings(d, f"model.{side}.layers[{i}]"))
    return layers


def model_config_from_dict(raw: dict) -> ModelConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"model must be a mapping (got {_show(raw)})")
    raw = dict(raw)
    if raw.get("type") == "translator":  # the default type, written out
        del raw["type"]
    if "embed_dim" in raw:  # shorthand for both sides
        d = check_value(raw.pop("embed_dim"), *field_rule(ModelConfig, "encoder_embed_dim"), "model.embed_dim")
        raw.setdefault("encoder_embed_dim", d)
        raw.setdefault("decoder_embed_dim", d)
    encoder, decoder = raw.pop("encoder", None), raw.pop("decoder", None)
    raw.pop("encoder_layers", None)
    raw.pop("decoder_layers", None)
    cfg = _fill(ModelConfig, raw, "model")  # first: the layers' default widths come from the embedding dims
    hints = typing.get_type_hints(ModelConfig)
    cfg.encoder_layers = check_value(_stack(encoder, "encoder", cfg.encoder_embed_dim), hints["encoder_layers"], {},
                                     "model.encoder.layers")
    cfg.decoder_layers = check_value(_stack(decoder, "decoder", cfg.decoder_embed_dim), hints["decoder_layers"], {},
                                     "model.decoder.layers")
    return cfg.validate()


def lm_config_from_dict(raw: dict) -> LMConfig:
    """`model: {type: lm, ...}`: the layers compact (`layers: {num_layers: N, ...}`, lists broadcast per layer) or
    one mapping per layer (`layers: [...]`, as a saved config.yaml writes them)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"model must be a mapping (got {_show(raw)})")
    raw = dict(raw)
    layers = raw.pop("layers", None)
    cfg = _fill(LMConfig, raw, "model")  # first: the layers' default widths come from the embedding dim
    cfg.layers = check_value(_stack(layers, "layers", cfg.embed_dim), typing.get_type_hints(LMConfig)["layers"], {},
                             "model.layers")
    return cfg.validate()


def model_from_dict(raw) -> ModelConfig | LMConfig:
    """The model section by its `type`: a translator (`translator`, the default) or a language model (`lm`)."""
    kind = raw.get("type", "translator") if isinstance(raw, dict) else "translator"
    if kind not in MODEL_TYPES:
        raise ConfigError(f"model.type must be one of {', '.join(MODEL_TYPES)} (got {_show(kind)})")
    return lm_config_from_dict(raw) if kind == "lm" else model_config_from_dict(raw)


def _check_lm_experiment(exp: "ExperimentConfig", train_raw: dict) -> None:
    """What the data and train sections mean for a language model, and refuse what does not apply."""
    if not exp.is_lm:
        if exp.data.seq_len is not None:
            raise ConfigError("data.seq_len applies to a language model (model: {type: lm}); a translator's "
                              "length limit is data.max_len")
        return
    if exp.data.seq_len is None:
        exp.data.seq_len = exp.model.max_len
    if exp.data.seq_len > exp.model.max_len:
        raise ConfigError(f"data.seq_len {exp.data.seq_len} is longer than model.max_len {exp.model.max_len} "
                          "(the positions and decoding caches cover max_len tokens): raise max_len or shorten seq_len")
    if not exp.data.joint_vocab:
        raise ConfigError("data.joint_vocab: false applies to a translator; a language model has one vocabulary")
    if train_raw.get("label_smoothing") not in (None, 0, 0.0):
        raise ConfigError("train.label_smoothing does not apply to a language model: it trains on plain "
                          "cross-entropy, so its loss is the log-perplexity; leave it out")
    exp.train.label_smoothing = 0.0


def _section(raw: dict, key: str) -> dict:
    """`raw[key]` as a mapping; left out or empty (`train:`) is an empty one."""
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key} must be a mapping (got {_show(value)})")
    return dict(value)


def experiment_from_dict(raw: dict, name: str = "custom") -> ExperimentConfig:
    if not isinstance(raw, dict):
        raise ConfigError("a config must be a YAML mapping with a 'model' section")
    raw = dict(raw)
    unknown = set(map(str, raw)) - {"name", "model", "data", "train", "description"}
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {', '.join(sorted(unknown))} (known: name, description, model, data, train)")
    if "model" not in raw:
        raise ConfigError("config has no 'model' section")
    model_raw = _section(raw, "model")
    # a dumped config carries the expanded per-layer lists under encoder_layers/decoder_layers
    if "encoder_layers" in model_raw and "encoder" not in model_raw:
        model_raw["encoder"] = model_raw.pop("encoder_layers")
    if "decoder_layers" in model_raw and "decoder" not in model_raw:
        model_raw["decoder"] = model_raw.pop("decoder_layers")
    exp = ExperimentConfig(
        name=check_value(raw.get("name", name), str, {}, "name"),
        description=check_value(raw.get("description", ""), str, {}, "description"),
        model=model_from_dict(model_raw),
        data=_fill(DataConfig, _section(raw, "data"), "data"),
        train=_fill(TrainConfig, _section(raw, "train"), "train"),
    )
    _check_lm_experiment(exp, _section(raw, "train"))
    if "vocab_size" not in model_raw:  # a trained run records the tokenizer's real size in the model section
        exp.model.vocab_size = exp.data.vocab_size
    return exp


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads `1e-3` as a number, as YAML 1.2 does (PyYAML's YAML 1.1 wants `1.0e-3`)."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                              re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def load_yaml(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            data = f.read()
        text = data.decode("utf-8")
        raw = yaml.load(text, Loader=_Loader)
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ConfigError(f"{path}: not a UTF-8 text file (byte 0x{data[e.start]:02x} on line {line})") from None
    except yaml.reader.ReaderError as e:  # a control character: binary data
        line = text.count("\n", 0, e.position) + 1
        raise ConfigError(f"{path}: not a text file ({e.reason}: #x{e.character:04x} on line {line})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{path}: malformed YAML{where}: {' '.join(str(problem).split())}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror})") from None
    if raw is None:
        raise ConfigError(f"{path}: config file is empty")
    return raw


def load_config(name_or_path: str) -> ExperimentConfig:
    """A preset name (see `tfmobile presets`) or a path to a YAML file."""
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
