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
    """One encoder layer: the self-attention sublayer of its kind (`tfmobile.kinds`), then FFN."""

    ffn_dim: int
    num_heads: int
    qk_dim: int  # total width of the query and key projections (all heads)
    v_dim: int  # total width of the value projection (all heads), input of W_O
    kind: str = "attention"
    # the kind's own settings (its `LayerKind.config` dataclass, None for a kind without any), written in
    # YAML under the kind's name: `kind: lsra, lsra: {kernel_size: 7}`
    kind_config: Any = None

    def __post_init__(self):
        if self.kind_config is None and self.kind in kind_names():  # an unknown kind: validate() names it
            settings = get_kind(self.kind).config
            self.kind_config = settings() if settings is not None else None


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
        """The layer's kind is registered, its settings are of the kind's config class, and the kind accepts them."""
        try:
            kind = get_kind(l.kind)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        if kind.config is None and l.kind_config is not None:
            raise ConfigError(f"{where}: kind {l.kind!r} has no settings (got {l.kind_config!r})")
        if kind.config is not None and not isinstance(l.kind_config, kind.config):
            raise ConfigError(f"{where}: the settings of kind {l.kind!r} must be a {kind.config.__name__} "
                              f"(got {type(l.kind_config).__name__})")
        if kind.validate is not None:
            kind.validate(where, l, d)

    @property
    def max_encoder_layers_attended(self) -> int:
        return max(l.encoder_layers_attended for l in self.decoder_layers)


@dataclass
class DataConfig:
    corpus: str = "bible-es-en"
    src_lang: str | None = None  # None: the corpus's default direction
    tgt_lang: str | None = None
    vocab_size: int = ranged(8000, min=8)
    joint_vocab: bool = True
    max_len: int = ranged(128, min=1)  # training pairs longer than this (in tokens) are dropped


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
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain data; each layer's kind settings under the kind's name, as YAML writes them."""
        d = dataclasses.asdict(self)
        for side in ("encoder_layers", "decoder_layers"):
            for layer in d["model"][side]:
                settings = layer.pop("kind_config")
                if settings is not None:
                    layer[layer["kind"]] = settings
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


def _misplaced_kind_setting(where: str, keys) -> None:
    """The old flat form (`kind: lsra, kernel_size: 7` at layer level): say how to write it now."""
    for key in sorted(map(str, keys)):
        for name in kind_names():
            settings = get_kind(name).config
            if settings is not None and key in {f.name for f in dataclasses.fields(settings)}:
                raise ConfigError(f"{where}: {key!r} belongs to the {name} kind: write it as {name}: {{{key}: ...}}")


def _kind_settings(layer, where: str):
    """A per-layer dict with its kind's settings, written under the kind's name, parsed into `kind_config`."""
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
    _misplaced_kind_setting(where, set(layer) - {f.name for f in dataclasses.fields(DecoderLayerConfig)})
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

    A kind's settings sit under its name, `lsra: {kernel_size: [3, 7], conv_type: dynamic}`; in the compact
    form their lists broadcast per layer like the other fields, and apply to the layers of that kind."""
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
    defaults = {"ffn_dim": 4 * embed_dim, "num_heads": 8, "kind": "attention"}
    keys = ["ffn_dim", "num_heads", "qk_dim", "v_dim", "kind"]
    if side == "decoder":
        keys += ["cross_num_heads", "cross_qk_dim", "cross_v_dim", "encoder_layers_attended"]
    unknown = set(raw) - set(keys)
    if unknown:
        _misplaced_kind_setting(f"model.{side}", unknown)
        raise ConfigError(f"model.{side}: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                          f"(known: num_layers, {', '.join(keys)}, and a kind's settings under its name: "
                          f"{', '.join(k for k in kind_names() if get_kind(k).config is not None)})")
    cols = {k: _per_layer(raw[k] if k in raw else defaults[k], n, f"model.{side}.{k}")
            for k in keys if k in raw or k in defaults}
    for name in cols["kind"]:
        try:
            get_kind(name)
        except ConfigError as e:
            raise ConfigError(f"model.{side}.kind: {e}") from None
    for name, section in sections.items():
        if section is None:
            section = {}
        if not isinstance(section, dict):
            raise ConfigError(f"model.{side}.{name} must be a mapping of the {name} kind's settings (got {_show(section)})")
        if name not in cols["kind"]:
            raise ConfigError(f"model.{side}.{name}: no layer is of kind {name!r}")
        sections[name] = {k: _per_layer(v, n, f"model.{side}.{name}.{k}") for k, v in section.items()}
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
        layers.append(_kind_settings(d, f"model.{side}.layers[{i}]"))
    return layers


def model_config_from_dict(raw: dict) -> ModelConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"model must be a mapping (got {_show(raw)})")
    raw = dict(raw)
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
        model=model_config_from_dict(model_raw),
        data=_fill(DataConfig, _section(raw, "data"), "data"),
        train=_fill(TrainConfig, _section(raw, "train"), "train"),
    )
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
