"""HAT design spaces and SubTransformer architectures (Wang et al., ACL 2020, section 3.1 and table 7).

A design space lists the choices of every elastic dimension. The SuperTransformer is the largest
choice of each; a SubTransformer (`Arch`) takes one choice per dimension and per layer:

    encoder_embed_dim, decoder_embed_dim   one each, front slices of one shared embedding table
    encoder_layers, decoder_layers         depths: layers past them are identity
    encoder_ffn_dim, encoder_num_heads     one per active encoder layer
    decoder_ffn_dim, decoder_num_heads,
    decoder_cross_num_heads,
    encoder_layers_attended                one per active decoder layer; the last 1, 2 or 3 encoder
                                           outputs, concatenated along time (HAT's -1, 1, 2)

The query/key/value width is fixed (`qkv_dim`, 512 in HAT's spaces): the head count only changes the
head width. A space is a YAML file (`tfmobile/resources/spaces/*.yaml`, addressed by file stem) with the
`space:` choices, the rest of the `model:` (dropout, norm placement), and the `data:` and `train:`
sections of the SuperTransformer's training, as in a preset:

    name: small
    space:
      encoder_embed_dim: [256, 192]
      decoder_layers: [1, 2, 3]
      ...
      qkv_dim: 256
    model: {dropout: 0.0, normalize_before: true}
    data: {corpus: bible-es-en, vocab_size: 4000, max_len: 96}
    train: {max_tokens: 2048, epochs: 12, steps_per_epoch: 100, learning_rate: 0.002}

Sampling is HAT's: independent and uniform per dimension and per layer (not uniform over
architectures). For the evolutionary search an architecture is also a fixed-length gene
(`Space.gene`), which keeps the choices of the layers past the sampled depth, as HAT's does.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field

import numpy as np
import yaml

from tfmobile.errors import ConfigError
from tfmobile.models.config import (DataConfig, DecoderLayerConfig, EncoderLayerConfig, ExperimentConfig,
                                    ModelConfig, TrainConfig, _fill, _section, check_value, field_rule,
                                    load_yaml)
from tfmobile.resources import SPACES_DIR
from tfmobile.utils import atomic_write_text

# The elastic dimensions, in the order of a gene's head; the per-layer ones follow, one block per layer.
GLOBAL_DIMS = ("encoder_embed_dim", "decoder_embed_dim", "encoder_layers", "decoder_layers")
ENCODER_DIMS = ("encoder_ffn_dim", "encoder_num_heads")
DECODER_DIMS = ("decoder_ffn_dim", "decoder_num_heads", "decoder_cross_num_heads", "encoder_layers_attended")
CHOICE_DIMS = GLOBAL_DIMS + ENCODER_DIMS + DECODER_DIMS
# The settings of the space's `model:` section: the rest is what the choices decide.
MODEL_FIELDS = ("normalize_before", "dropout", "attention_dropout", "activation_dropout", "activation",
                "max_source_len", "max_target_len")


@dataclass(frozen=True)
class Arch:
    """One SubTransformer: global choices and one value per active layer (lists as long as the depth)."""

    encoder_embed_dim: int
    decoder_embed_dim: int
    encoder_ffn_dim: tuple[int, ...]
    encoder_num_heads: tuple[int, ...]
    decoder_ffn_dim: tuple[int, ...]
    decoder_num_heads: tuple[int, ...]
    decoder_cross_num_heads: tuple[int, ...]
    encoder_layers_attended: tuple[int, ...]

    @property
    def encoder_layers(self) -> int:
        return len(self.encoder_ffn_dim)

    @property
    def decoder_layers(self) -> int:
        return len(self.decoder_ffn_dim)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def key(self) -> str:
        """A short stable name: 'e256x3-d192x2-...' is too long to read; a hash of the choices is enough."""
        import hashlib

        return hashlib.sha1(repr(sorted(self.to_dict().items())).encode()).hexdigest()[:10]

    def describe(self) -> str:
        """One line for people: widths, depths and the per-layer lists."""
        return (f"encoder {self.encoder_embed_dim}x{self.encoder_layers} ffn {list(self.encoder_ffn_dim)} "
                f"heads {list(self.encoder_num_heads)}; decoder {self.decoder_embed_dim}x{self.decoder_layers} "
                f"ffn {list(self.decoder_ffn_dim)} heads {list(self.decoder_num_heads)} "
                f"cross {list(self.decoder_cross_num_heads)} attends {list(self.encoder_layers_attended)}")


@dataclass
class Space:
    """A HAT design space: the choices, the fixed qkv width, the other model settings, data and training."""

    name: str
    choices: dict[str, tuple[int, ...]]
    qkv_dim: int
    model: dict = field(default_factory=dict)  # MODEL_FIELDS given in the YAML
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    description: str = ""

    # -- the SuperTransformer ------------------------------------------------------------------
    def largest(self, dim: str) -> int:
        return max(self.choices[dim])

    @property
    def super_arch(self) -> Arch:
        """The largest SubTransformer: every dimension at its largest choice (the SuperTransformer itself)."""
        return self._extreme(max)

    @property
    def smallest_arch(self) -> Arch:
        return self._extreme(min)

    def _extreme(self, pick) -> Arch:
        ne, nd = pick(self.choices["encoder_layers"]), pick(self.choices["decoder_layers"])
        per = {d: (pick(self.choices[d]),) * ne for d in ENCODER_DIMS}
        per.update({d: (pick(self.choices[d]),) * nd for d in DECODER_DIMS})
        return Arch(encoder_embed_dim=pick(self.choices["encoder_embed_dim"]),
                    decoder_embed_dim=pick(self.choices["decoder_embed_dim"]), **per)

    def size(self) -> int:
        """How many SubTransformers the space holds (HAT's WMT space: about 1e15)."""
        c = {d: len(v) for d, v in self.choices.items()}
        enc = sum((c["encoder_ffn_dim"] * c["encoder_num_heads"]) ** n for n in self.choices["encoder_layers"])
        per_dec = c["decoder_ffn_dim"] * c["decoder_num_heads"] * c["decoder_cross_num_heads"] * c["encoder_layers_attended"]
        dec = sum(per_dec ** n for n in self.choices["decoder_layers"])
        return c["encoder_embed_dim"] * c["decoder_embed_dim"] * enc * dec

    # -- sampling ------------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Arch:
        """HAT's sampler: every dimension and every layer drawn independently and uniformly."""
        return self.from_gene(self.random_gene(rng))

    def random_gene(self, rng: np.random.Generator) -> list[int]:
        return [int(rng.choice(self.choices[dim])) for dim in self.gene_dims()]

    # -- genes ---------------------------------------------------------------------------------
    def gene_dims(self) -> list[str]:
        """The dimension of each gene position: the global ones, then one block per encoder and decoder layer."""
        ne, nd = self.largest("encoder_layers"), self.largest("decoder_layers")
        return list(GLOBAL_DIMS) + [d for d in ENCODER_DIMS for _ in range(ne)] + [d for d in DECODER_DIMS for _ in range(nd)]

    def gene(self, arch: Arch) -> list[int]:
        """`arch` as a fixed-length gene; the layers past its depths repeat its last layer."""
        self.check(arch)
        ne, nd = self.largest("encoder_layers"), self.largest("decoder_layers")
        values = [arch.encoder_embed_dim, arch.decoder_embed_dim, arch.encoder_layers, arch.decoder_layers]
        for dim in ENCODER_DIMS:
            v = list(getattr(arch, dim))
            values += v + [v[-1]] * (ne - len(v))
        for dim in DECODER_DIMS:
            v = list(getattr(arch, dim))
            values += v + [v[-1]] * (nd - len(v))
        return values

    def from_gene(self, gene) -> Arch:
        dims = self.gene_dims()
        if len(gene) != len(dims):
            raise ConfigError(f"a gene of space {self.name!r} has {len(dims)} values, got {len(gene)}")
        ne, nd = int(gene[2]), int(gene[3])
        cols: dict[str, list[int]] = {}
        for dim, value in zip(dims, gene):
            cols.setdefault(dim, []).append(int(value))
        arch = Arch(encoder_embed_dim=int(gene[0]), decoder_embed_dim=int(gene[1]),
                    **{d: tuple(cols[d][:ne]) for d in ENCODER_DIMS}, **{d: tuple(cols[d][:nd]) for d in DECODER_DIMS})
        self.check(arch)
        return arch

    # -- checks --------------------------------------------------------------------------------
    def check(self, arch: Arch, where: str = "architecture") -> Arch:
        """`arch` if every value is one of the space's choices; a ConfigError naming the first that is not."""
        def allowed(dim, value, at):
            if value not in self.choices[dim]:
                raise ConfigError(f"{where}: {at}={value!r} is outside space {self.name!r} "
                                  f"(choices: {', '.join(map(str, self.choices[dim]))})")
        allowed("encoder_embed_dim", arch.encoder_embed_dim, "encoder_embed_dim")
        allowed("decoder_embed_dim", arch.decoder_embed_dim, "decoder_embed_dim")
        allowed("encoder_layers", arch.encoder_layers, "encoder_layers (the length of the encoder lists)")
        allowed("decoder_layers", arch.decoder_layers, "decoder_layers (the length of the decoder lists)")
        for dims, n, side in ((ENCODER_DIMS, arch.encoder_layers, "encoder"), (DECODER_DIMS, arch.decoder_layers, "decoder")):
            for dim in dims:
                values = getattr(arch, dim)
                if len(values) != n:
                    raise ConfigError(f"{where}: {dim} lists {len(values)} values for {n} {side} layers")
                for i, v in enumerate(values):
                    allowed(dim, v, f"{dim}[{i}]")
        return arch

    # -- the standalone model ------------------------------------------------------------------
    def model_config(self, arch: Arch, vocab_size: int | None = None) -> ModelConfig:
        """The ordinary (heterogeneous) Transformer config of a SubTransformer: what extraction builds.

        Encoder and decoder share one embedding table in the SuperTransformer; a SubTransformer with
        equal widths shares it too, one with different widths gets the two slices as separate tables."""
        self.check(arch)
        q = self.qkv_dim
        enc = [EncoderLayerConfig(ffn_dim=f, num_heads=h, qk_dim=q, v_dim=q)
               for f, h in zip(arch.encoder_ffn_dim, arch.encoder_num_heads)]
        dec = [DecoderLayerConfig(ffn_dim=f, num_heads=h, qk_dim=q, v_dim=q, cross_num_heads=c, cross_qk_dim=q,
                                  cross_v_dim=q, encoder_layers_attended=k)
               for f, h, c, k in zip(arch.decoder_ffn_dim, arch.decoder_num_heads, arch.decoder_cross_num_heads,
                                     arch.encoder_layers_attended)]
        return ModelConfig(encoder_embed_dim=arch.encoder_embed_dim, decoder_embed_dim=arch.decoder_embed_dim,
                           encoder_layers=enc, decoder_layers=dec, share_embeddings=arch.encoder_embed_dim == arch.decoder_embed_dim,
                           tie_output=True, vocab_size=vocab_size or self.data.vocab_size, **self.model).validate()

    def experiment(self, arch: Arch | None = None, vocab_size: int | None = None, name: str | None = None) -> ExperimentConfig:
        """An ordinary experiment (model, data, train) for `arch` (default: the largest) with the space's recipe."""
        arch = arch or self.super_arch
        return ExperimentConfig(name=name or self.name, model=self.model_config(arch, vocab_size),
                                data=dataclasses.replace(self.data), train=dataclasses.replace(self.train),
                                description=self.description)

    # -- YAML ----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description,
                "space": {**{d: list(v) for d, v in self.choices.items()}, "qkv_dim": self.qkv_dim},
                "model": dict(self.model), "data": dataclasses.asdict(self.data),
                "train": dataclasses.asdict(self.train)}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def same_as(self, other: "Space") -> bool:
        """Equal choices and qkv width (what a latency file or a predictor depends on)."""
        return self.choices == other.choices and self.qkv_dim == other.qkv_dim


def space_names() -> list[str]:
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


def space_path(name_or_path: str) -> str:
    if os.path.exists(name_or_path) or name_or_path.endswith((".yaml", ".yml")):
        return name_or_path
    path = SPACES_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        close = difflib.get_close_matches(name_or_path, space_names(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown design space {name_or_path!r}{hint}; known spaces: {', '.join(space_names())}, "
                          "or give a path to a YAML file")
    return str(path)


def load_space(name_or_path: str) -> Space:
    """A shipped space by name (`tfmobile hat spaces`) or a YAML file; a ConfigError names what is wrong."""
    path = space_path(name_or_path)
    try:
        return space_from_dict(load_yaml(path), name=os.path.splitext(os.path.basename(path))[0])
    except ConfigError as e:
        msg = str(e)
        raise ConfigError(msg if msg.startswith(path) else f"{path}: {msg}") from None


def space_from_dict(raw, name: str = "custom") -> Space:
    if not isinstance(raw, dict):
        raise ConfigError("a design space must be a YAML mapping with a 'space' section")
    unknown = set(map(str, raw)) - {"name", "description", "space", "model", "data", "train"}
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {', '.join(sorted(unknown))} "
                          "(known: name, description, space, model, data, train)")
    if "space" not in raw:
        raise ConfigError("no 'space' section (the choices of every elastic dimension)")
    choices_raw = _section(raw, "space")
    unknown = set(map(str, choices_raw)) - set(CHOICE_DIMS) - {"qkv_dim"}
    if unknown:
        raise ConfigError(f"space: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(CHOICE_DIMS)}, qkv_dim)")
    missing = [d for d in (*CHOICE_DIMS, "qkv_dim") if d not in choices_raw]
    if missing:
        raise ConfigError(f"space: missing {', '.join(missing)}")
    qkv = choices_raw.pop("qkv_dim")
    if isinstance(qkv, bool) or not isinstance(qkv, int) or qkv < 1:
        raise ConfigError(f"space.qkv_dim must be a positive integer (got {qkv!r:.40})")
    choices = {}
    for dim in CHOICE_DIMS:
        values = choices_raw[dim]
        values = values if isinstance(values, list) else [values]
        if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
            raise ConfigError(f"space.{dim} must be a positive integer or a non-empty list of them (got {values!r:.40})")
        if len(set(values)) != len(values):
            raise ConfigError(f"space.{dim} lists a choice twice ({values})")
        choices[dim] = tuple(sorted(values, reverse=True))
    for dim in ("encoder_num_heads", "decoder_num_heads", "decoder_cross_num_heads"):
        bad = [h for h in choices[dim] if qkv % h]
        if bad:
            raise ConfigError(f"space.{dim}: {bad[0]} heads do not divide qkv_dim={qkv}")
    if max(choices["encoder_layers_attended"]) > min(choices["encoder_layers"]):
        raise ConfigError(f"space.encoder_layers_attended: up to {max(choices['encoder_layers_attended'])} encoder "
                          f"layers attended, but the shallowest encoder has {min(choices['encoder_layers'])}")
    model_raw = _section(raw, "model")
    unknown = set(map(str, model_raw)) - set(MODEL_FIELDS)
    if unknown:
        raise ConfigError(f"model: unknown key(s) {', '.join(sorted(unknown))} (a space's model section takes "
                          f"{', '.join(MODEL_FIELDS)}; widths and depths are the space's choices)")
    model = {k: check_value(v, *field_rule(ModelConfig, k), f"model.{k}") for k, v in model_raw.items()}
    data = _fill(DataConfig, _section(raw, "data"), "data")
    if not data.joint_vocab:
        raise ConfigError("data.joint_vocab must be true: the SuperTransformer shares one embedding table between "
                          "encoder and decoder, as HAT does")
    space = Space(name=check_value(raw.get("name", name), str, {}, "name"), choices=choices, qkv_dim=qkv, model=model,
                  data=data, train=_fill(TrainConfig, _section(raw, "train"), "train"),
                  description=check_value(raw.get("description", ""), str, {}, "description"))
    space.model_config(space.super_arch)  # the largest model is a valid Transformer config
    return space


# ---------------------------------------------------------------------------------------------
# Architecture files (what `hat search` writes and `hat extract --arch` reads)


def arch_to_yaml(space: Space, arch: Arch, **extra) -> str:
    """An architecture file: the space's name, the choices, and any `extra` facts (predicted latency, loss)."""
    space.check(arch)
    return yaml.safe_dump({"space": space.name, **arch.to_dict(), **extra}, sort_keys=False)


def write_arch(path: str, space: Space, arch: Arch, **extra) -> None:
    atomic_write_text(path, arch_to_yaml(space, arch, **extra))


def arch_from_dict(raw, space: Space, where: str = "architecture") -> Arch:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a YAML mapping of the SubTransformer's choices")
    fields = [f.name for f in dataclasses.fields(Arch)]
    missing = [f for f in fields if f not in raw]
    if missing:
        raise ConfigError(f"{where}: missing {', '.join(missing)}")
    values = {}
    for name in fields:
        v = raw[name]
        if name in ("encoder_embed_dim", "decoder_embed_dim"):
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"{where}: {name} must be an integer (got {v!r:.40})")
            values[name] = v
        else:
            if not isinstance(v, list) or not v or any(isinstance(x, bool) or not isinstance(x, int) for x in v):
                raise ConfigError(f"{where}: {name} must be a non-empty list of integers, one per layer (got {v!r:.40})")
            values[name] = tuple(v)
    return space.check(Arch(**values), where)


def load_arch(path: str, space: Space) -> Arch:
    """An architecture file of `space`; a ConfigError if it is malformed, of another space, or outside it."""
    raw = load_yaml(path)
    if isinstance(raw, dict) and raw.get("space") not in (None, space.name):
        raise ConfigError(f"{path}: an architecture of space {raw.get('space')!r}, not of {space.name!r}")
    return arch_from_dict(raw, space, path)


__all__ = ["Arch", "CHOICE_DIMS", "Space", "arch_from_dict", "arch_to_yaml", "load_arch", "load_space",
           "space_from_dict", "space_names", "write_arch"]
