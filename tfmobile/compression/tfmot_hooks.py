"""TF Model Optimization hooks: magnitude pruning and quantization-aware training of whole tfmobile models.

Pruning (Zhu & Gupta 2017, "To prune, or not to prune", TF-MOT's `prune_low_magnitude`): during training the
smallest-magnitude weights of each prunable kernel are masked to zero, following a sparsity schedule
(constant, or polynomial decay s_t = s_f + (s_i - s_f)(1 - (t - t_0)/(t_1 - t_0))^3), element-wise, in
blocks, or m-by-n (2:4: two zeros in every four consecutive input channels of each output, the layout
sparse tensor cores and TFLite read). Every tfmobile layer names its kernels with `get_prunable_weights`
(TF-MOT's `PrunableLayer`); biases, LayerNorm and the sinusoidal tables stay dense.

Quantization-aware training (Jacob et al. 2018; TF-MOT's `quantize_annotate_*` + `quantize_apply`): the Dense
kernels nested in every tfmobile layer are fake-quantized to the 8-bit symmetric per-tensor grid in the
forward pass (straight-through gradients), so the weights learn to survive `tfmobile export --quantize
int8`, which runs the fully connected layers in int8 and the rest in float. Which Dense kernels of a
self-attention sublayer is its layer kind's data (`tfmobile.kinds`, `LayerKind.quantized_kernels`); the
QuantizeConfig is built from it here. Softmax, the additive attention
masks, the embedding gather and the 0/1 padding masks stay float; outputs are fake-quantized (moving-average
ranges) only where the int8 export feeds them to a fully connected layer: the final LayerNorms, and the
outputs of post-norm layers, which are LayerNorm outputs. Never the logits.

Both wrap a Functional model built by `build_transformer`; `strip` / `strip_quantization` give back a model
with exactly `build_transformer`'s structure, which is what runs save (the exporters fetch layers by name).
`prune_run` / `qat_run` are the `tfmobile prune` / `tfmobile qat` verbs: fine-tune a trained run into a new one.
"""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras as keras
from tensorflow_model_optimization.python.core.quantization.keras import quantize_annotate as _annotate_mod
from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry as _prune_registry
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper as _pruning_wrapper

from tfmobile.errors import ConfigError
from tfmobile.kinds import get_kind
from tfmobile.kinds.attention import PROJECTIONS
from tfmobile.kinds.ffn import get_ffn_kind
from tfmobile.layers import FeedForward, PaddingMask, TokenEmbedding, TransformerDecoderLayer, TransformerEncoderLayer
from tfmobile.run import load_run
from tfmobile.training.finetune import check_output, finetune, finetune_experiment
from tfmobile.utils import atomic_write_text

sparsity = tfmot.sparsity.keras
quantization = tfmot.quantization.keras

# Every Keras layer registered under package "tfmobile" (each kind's sublayer too) is TF-MOT's PrunableLayer,
# as a virtual subclass (abc): `isinstance(layer, PrunableLayer)` holds, and tfmobile.layers need not import tfmot.
TFMOBILE_LAYERS = tuple(cls for name, cls in keras.utils.get_custom_objects().items()
                        if name.startswith("tfmobile>") and isinstance(cls, type) and issubclass(cls, keras.layers.Layer))
for _cls in TFMOBILE_LAYERS:
    sparsity.PrunableLayer.register(_cls)

SCHEDULES = ("constant", "polynomial")
PruneLowMagnitude = _pruning_wrapper.PruneLowMagnitude
_WRAPPERS = (PruneLowMagnitude, quantization.QuantizeWrapper, _annotate_mod.QuantizeAnnotate)


def unwrap(layer):
    """The layer inside TF-MOT's pruning / quantization wrappers (the layer itself when unwrapped)."""
    while isinstance(layer, _WRAPPERS):
        layer = layer.layer
    return layer


def prunable_weights(layer) -> list:
    """The weights TF-MOT would prune in `layer`: `get_prunable_weights()` of tfmobile layers, the registry's
    weights of Keras layers (a Dense kernel), nothing for the rest."""
    layer = unwrap(layer)
    if hasattr(layer, "get_prunable_weights"):
        return list(layer.get_prunable_weights())
    if _prune_registry.PruneRegistry.supports(layer):
        return [getattr(layer, name) for name in _prune_registry.PruneRegistry._weight_names(layer)]
    return []


# ---------------------------------------------------------------------------------------------------------
# Pruning


def make_schedule(kind: str = "constant", target: float = 0.5, initial: float = 0.0, begin_step: int = 1,
                  end_step: int | None = None, frequency: int = 100) -> sparsity.PruningSchedule:
    """A TF-MOT pruning schedule. Steps count training steps from 1 (the first step the wrappers see).

    constant: `target` sparsity from `begin_step` on, masks recomputed every `frequency` steps.
    polynomial: from `initial` at `begin_step` to `target` at `end_step` (cubic decay), every `frequency` steps.
    """
    if kind not in SCHEDULES:
        raise ConfigError(f"unknown pruning schedule {kind!r} (known: {', '.join(SCHEDULES)})")
    for name, value in (("sparsity", target), ("initial sparsity", initial)):
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{name} must be a fraction of zeros in [0, 1) (got {value})")
    if begin_step < 0 or frequency < 1:
        raise ConfigError(f"pruning begin step must be >= 0 and frequency >= 1 (got {begin_step} and {frequency})")
    if kind == "constant":
        return sparsity.ConstantSparsity(target, begin_step, end_step=-1 if end_step is None else end_step,
                                         frequency=frequency)
    if end_step is None or end_step <= begin_step:
        raise ConfigError(f"a polynomial schedule needs an end step after its begin step "
                          f"({begin_step}; got {end_step})")
    if initial > target:
        raise ConfigError(f"initial sparsity {initial} is above the target {target}")
    return sparsity.PolynomialDecay(initial, target, begin_step, end_step, power=3, frequency=frequency)


class _PrunablePolicy(sparsity.PruningPolicy):
    """Wrap only the layers that have prunable weights (and the embeddings only when asked): PaddingMask,
    Dropout, Concatenate and LayerNormalization stay as they are."""

    def __init__(self, prune_embeddings: bool = False):
        self.prune_embeddings = prune_embeddings

    def allow_pruning(self, layer):
        if isinstance(layer, TokenEmbedding) and not self.prune_embeddings:
            return False
        return bool(prunable_weights(layer))

    def ensure_model_supports_pruning(self, model):
        return None


def prunable_layer_names(model: keras.Model, prune_embeddings: bool = False) -> list[str]:
    """Names of the layers `prune_model` wraps."""
    policy = _PrunablePolicy(prune_embeddings)
    return [unwrap(l).name for l in model.layers if policy.allow_pruning(unwrap(l))]


def _check_pattern(model, names, block_size, m_by_n):
    block_size = tuple(block_size)
    if len(block_size) != 2 or min(block_size) < 1:
        raise ConfigError(f"block size must be two positive integers (rows x columns), not {block_size}")
    if m_by_n is not None:
        m, n = m_by_n
        if not 0 < m < n:
            raise ConfigError(f"m-by-n sparsity needs 0 < m < n (got {m}:{n})")
        if block_size != (1, 1):
            raise ConfigError("choose block sparsity or m-by-n sparsity, not both")
    if block_size == (1, 1) and m_by_n is None:
        return
    for name in names:
        for w in prunable_weights(model.get_layer(name)):
            shape = tuple(w.shape)
            if len(shape) != 2:
                raise ConfigError(f"{name}: {w.name} has shape {shape}; block and m-by-n sparsity need 2-D kernels")
            if m_by_n is not None and shape[0] % m_by_n[1]:
                raise ConfigError(f"{name}: {w.name} has {shape[0]} input channels, not a multiple of {m_by_n[1]}: "
                                  f"{m_by_n[0]}:{m_by_n[1]} sparsity cannot apply (choose other widths or another "
                                  "pattern)")
            if shape[0] % block_size[0] or shape[1] % block_size[1]:  # TF-MOT pads: edge blocks would be partial
                raise ConfigError(f"{name}: {w.name} is {shape[0]}x{shape[1]}, not a whole number of "
                                  f"{block_size[0]}x{block_size[1]} blocks: choose a --block that divides every "
                                  "pruned kernel")


def prune_model(model: keras.Model, schedule: sparsity.PruningSchedule | None = None, block_size=(1, 1),
                m_by_n: tuple[int, int] | None = None, prune_embeddings: bool = False,
                block_pooling: str = "AVG") -> keras.Model:
    """`prune_low_magnitude` over a whole `build_transformer` model: every layer with prunable kernels is
    wrapped (the rest are left as they are); weights are shared with `model`.

    block_size: (rows, columns) of the zero blocks in each 2-D kernel [in, out]; (1, 1) is element-wise.
    m_by_n: e.g. (2, 4): m zeros in every n consecutive input channels of each output (fixed at the first
        step; the schedule's sparsity is then not used). Needs every pruned kernel's input width divisible by n.
    Training needs the callback `UpdatePruningStep()`; `strip` removes the wrappers.
    """
    policy = keras.mixed_precision.global_policy()
    if policy.compute_dtype != policy.variable_dtype:
        # TF-MOT multiplies weight and mask as read in the layer's compute dtype and assigns the product back:
        # under bfloat16 that rounds the float32 weights at every step (and a float32 layer fails outright)
        raise ConfigError(f"pruning needs a float32 Keras policy, not {policy.name}")
    schedule = schedule or make_schedule()
    names = prunable_layer_names(model, prune_embeddings)
    if not names:
        raise ConfigError(f"model {model.name} has no prunable layers")
    _check_pattern(model, names, block_size, m_by_n)
    try:
        return sparsity.prune_low_magnitude(model, pruning_schedule=schedule, block_size=tuple(block_size),
                                            block_pooling_type=block_pooling, sparsity_m_by_n=m_by_n,
                                            pruning_policy=_PrunablePolicy(prune_embeddings))
    except ValueError as e:  # what TF-MOT still refuses, as one line
        raise ConfigError(f"cannot prune {model.name}: {str(e).splitlines()[0]}") from None


def strip(model: keras.Model) -> keras.Model:
    """`strip_pruning`: the model without pruning wrappers (its kernels keep their zeros)."""
    return sparsity.strip_pruning(model)


def weight_paths(layer, prefix: str | None = None) -> dict:
    """id(variable) -> 'layer/sublayer/.../weight' for every weight in `layer` (variable names do not say:
    sublayers built inside a parent's `build` get the parent's scope, e.g. every kernel is `encoder_layer_0/kernel`)."""
    prefix = prefix or layer.name
    paths = {id(w): f"{prefix}/{w.name.split(':')[0].split('/')[-1]}"
             for w in [*layer._trainable_weights, *layer._non_trainable_weights]}
    for sub in layer._flatten_layers(include_self=False, recursive=False):
        paths.update(weight_paths(sub, f"{prefix}/{sub.name}"))
    return paths


def sparsity_report(model: keras.Model, layer_names=None) -> dict:
    """Fraction of zeros of each prunable weight (of the layers named, default all) and overall."""
    weights, zeros, total = [], 0, 0
    for layer in model.layers:
        inner = unwrap(layer)
        if layer_names is not None and inner.name not in layer_names:
            continue
        paths = weight_paths(inner)
        for w in prunable_weights(inner):
            value = np.asarray(keras.backend.get_value(w))
            n_zero = int(np.count_nonzero(value == 0))
            weights.append({"layer": inner.name, "name": paths.get(id(w), w.name), "shape": list(value.shape),
                            "sparsity": n_zero / value.size})
            zeros += n_zero
            total += value.size
    return {"overall": zeros / total if total else 0.0, "zeros": zeros, "total": total, "weights": weights}


class PruningLog(sparsity.PruningSummaries):
    """TF-MOT's PruningSummaries (mask sparsity and threshold per weight, in TensorBoard), also written every
    `every` steps and at the end: a fine-tune is one epoch, and the stock callback writes at epoch starts only."""

    def __init__(self, log_dir: str, every: int = 50, **kwargs):
        super().__init__(log_dir=log_dir, **kwargs)
        self.every = max(1, int(every))

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        if (batch + 1) % self.every == 0:
            self.on_epoch_begin(0, None)  # with logs=None it writes the pruning summaries only

    def on_train_end(self, logs=None):
        self.on_epoch_begin(0, None)
        super().on_train_end(logs)


# ---------------------------------------------------------------------------------------------------------
# Quantization-aware training


def _kernel_at(layer, path: str) -> tuple:
    """(owner, attribute) of the kernel at `path` inside `layer`: a nested Dense layer's kernel
    ("self_attention/attention/query") or a 2-D weight a sublayer holds itself ("ffn/w1": SparseFeedForward's
    unit rows, "self_attention/qkv/multiplicative/kernel")."""
    found, names = layer, path.split("/")
    for i, name in enumerate(names):
        inner = [l for l in found._flatten_layers(include_self=False, recursive=False) if l.name == name]
        if inner:
            found = inner[0]
        elif i == len(names) - 1 and isinstance(getattr(found, name, None), (tf.Variable, tf.Tensor)):
            return found, name  # a weight of its own (a tensor once QAT has put the quantized one in its place)
        else:
            raise ValueError(f"{layer.name} has no sublayer or weight {path!r} to quantize")
    if not isinstance(found, keras.layers.Dense):
        raise ValueError(f"{layer.name}/{path} is a {type(found).__name__}, not a Dense layer or a weight")
    return found, "kernel"


def _nested_dense(layer, prefix: str = ""):
    """(path, Dense) for every Dense in `layer` (itself included), in a fixed order."""
    if isinstance(layer, keras.layers.Dense):
        yield prefix + layer.name, layer
        return
    for sub in layer._flatten_layers(include_self=False, recursive=False):
        yield from _nested_dense(sub, prefix if isinstance(sub, keras.layers.Dense) else f"{prefix}{sub.name}_")


@keras.utils.register_keras_serializable(package="tfmobile")
class KernelQuantizer(quantization.quantizers.LastValueQuantizer):
    """8-bit symmetric per-tensor weight quantizer (TF-MOT's default for Dense kernels: range = max|w|,
    w_q = clip(round(w / s), -127, 127) s with s = max|w| / 127), whose range variables carry a name unique
    within the wrapper (TF-MOT names them after the variable, and every nested kernel is called `kernel`)."""

    def __init__(self, num_bits: int = 8, per_axis: bool = False, symmetric: bool = True, narrow_range: bool = True,
                 name: str | None = None):
        super().__init__(num_bits=num_bits, per_axis=per_axis, symmetric=symmetric, narrow_range=narrow_range)
        self.name = name

    def build(self, tensor_shape, name, layer):
        return super().build(tensor_shape, self.name or name, layer)

    def __call__(self, inputs, training, weights, **kwargs):
        # The range is always the weights' current one, as the export's weight quantization sees it; TF-MOT
        # would use the last training batch's range at inference, which is [-6, 6] before the first step.
        return super().__call__(inputs, True, weights, **kwargs)

    def get_config(self):
        return {**super().get_config(), "name": self.name}

    def __eq__(self, other):
        return super().__eq__(other) and getattr(other, "name", None) == self.name

    def __ne__(self, other):
        return not self.__eq__(other)


def output_quantizer():
    """8-bit asymmetric per-tensor activation quantizer with moving-average ranges (TF-MOT's default)."""
    return quantization.quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False,
                                                          narrow_range=False)


def _set_untracked(layer, name: str, value):
    # Keras' __setattr__ would drop the variable from the layer's weights when a tensor replaces it, and
    # checkpoints and `get_weights` must still see it: set the attribute without Keras' tracking.
    object.__setattr__(layer, name, value)


@keras.utils.register_keras_serializable(package="tfmobile")
class DenseKernelsQuantizeConfig(quantization.QuantizeConfig):
    """Fake-quantize Dense kernels inside a layer (8-bit symmetric per tensor); biases stay float.

    kernels: paths of the nested Dense layers, e.g. "self_attention/query", or of a 2-D weight a nested layer
        holds itself, e.g. "ffn/w1" (None: every nested Dense).
    quantize_output: also fake-quantize the layer's output (8-bit, moving-average range).
    """

    def __init__(self, kernels: list[str] | None = None, quantize_output: bool = False):
        self.kernels = None if kernels is None else list(kernels)
        self.quantize_output = bool(quantize_output)

    def _kernels(self, layer) -> list:
        """(quantizer name, owner, attribute) of the quantized kernels, in order: a Dense layer's path + "_kernel",
        a weight's own path."""
        if self.kernels is None:
            return [(f"{path}_kernel", dense, "kernel") for path, dense in _nested_dense(layer)]
        found = [(path, *_kernel_at(layer, path)) for path in self.kernels]
        return [(path.replace("/", "_") + ("_kernel" if isinstance(owner, keras.layers.Dense) and
                                           not path.endswith("/kernel") else ""), owner, attr)
                for path, owner, attr in found]

    def get_weights_and_quantizers(self, layer):
        return [(getattr(owner, attr), KernelQuantizer(name=name)) for name, owner, attr in self._kernels(layer)]

    def set_quantize_weights(self, layer, quantize_weights):
        kernels = self._kernels(layer)
        if len(kernels) != len(quantize_weights):
            raise ValueError(f"{layer.name}: {len(quantize_weights)} quantized kernels for {len(kernels)} kernels")
        for (_, owner, attr), q in zip(kernels, quantize_weights):
            _set_untracked(owner, attr, q)

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_activations(self, layer, quantize_activations):
        return None

    def get_output_quantizers(self, layer):
        return [output_quantizer()] if self.quantize_output else []

    def get_config(self):
        return {"kernels": self.kernels, "quantize_output": self.quantize_output}

    def __eq__(self, other):
        return type(other) is type(self) and other.get_config() == self.get_config()


@keras.utils.register_keras_serializable(package="tfmobile")
class FeedForwardQuantizeConfig(DenseKernelsQuantizeConfig):
    """W_1 and W_2 in 8 bits."""


@keras.utils.register_keras_serializable(package="tfmobile")
class OutputProjectionQuantizeConfig(DenseKernelsQuantizeConfig):
    """An untied output projection (Dense): its kernel in 8 bits, never its logits."""

    def __init__(self, kernels: list[str] | None = None, quantize_output: bool = False):
        if quantize_output:
            raise ValueError("logits stay float: the output projection takes no output quantizer")
        super().__init__(kernels, False)


@keras.utils.register_keras_serializable(package="tfmobile")
class TokenEmbeddingQuantizeConfig(quantization.QuantizeConfig):
    """The embedding matrix in 8 bits when it is also the tied output projection (`quantize_embeddings`),
    since the int8 export runs that product as a fully connected layer; the gather and the logits stay float."""

    def __init__(self, quantize_embeddings: bool = True):
        self.quantize_embeddings = bool(quantize_embeddings)

    def get_weights_and_quantizers(self, layer):
        return [(layer.embeddings, KernelQuantizer(name="embeddings"))] if self.quantize_embeddings else []

    def set_quantize_weights(self, layer, quantize_weights):
        if self.quantize_embeddings:
            _set_untracked(layer, "embeddings", quantize_weights[0])

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_activations(self, layer, quantize_activations):
        return None

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {"quantize_embeddings": self.quantize_embeddings}

    def __eq__(self, other):
        return type(other) is type(self) and other.get_config() == self.get_config()


@keras.utils.register_keras_serializable(package="tfmobile")
class PaddingMaskQuantizeConfig(quantization.QuantizeConfig):
    """Nothing: the 0/1 padding mask must stay exact."""

    def get_weights_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        return None

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_activations(self, layer, quantize_activations):
        return None

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {}

    def __eq__(self, other):
        return type(other) is type(self)


@keras.utils.register_keras_serializable(package="tfmobile")
class LayerNormalizationQuantizeConfig(PaddingMaskQuantizeConfig):
    """A top-level LayerNorm (final encoder / decoder norm): float inside, its output in 8 bits, since the int8
    export quantizes it as the input of the fully connected layers it feeds (cross-attention K/V, logits)."""

    def get_output_quantizers(self, layer):
        return [output_quantizer()]


QUANTIZE_CONFIGS = {
    FeedForward: FeedForwardQuantizeConfig,
    TokenEmbedding: TokenEmbeddingQuantizeConfig,
    PaddingMask: PaddingMaskQuantizeConfig,
    keras.layers.LayerNormalization: LayerNormalizationQuantizeConfig,
    keras.layers.Dense: OutputProjectionQuantizeConfig,
}


def _tied(layer) -> bool:
    return any((node.call_kwargs or {}).get("reverse") for node in layer._inbound_nodes)


def layer_kernels(layer) -> list[str]:
    """Paths of the kernels QAT fake-quantizes in an encoder/decoder layer: those its kind names
    (`LayerKind.quantized_kernels`), the encoder-decoder attention's W_Q, W_K, W_V, W_O, and those its FFN kind
    names (`FFNKind.quantized_kernels`; a layer without an FFN kind has the dense FeedForward)."""
    if layer.kind is None:
        raise ConfigError(f"{layer.name} records no layer kind (build it with build_transformer, or pass kind=)")
    if layer.ffn_kind is None and layer.ffn_config is not None:
        raise ConfigError(f"{layer.name} records no FFN kind (build it with build_transformer, or pass ffn_kind=)")
    own = get_kind(layer.kind).quantized_kernels(layer.self_attention.get_config())
    paths = [f"self_attention/{p}" for p in own]
    if isinstance(layer, TransformerDecoderLayer):
        paths += [f"cross_attention/{p}" for p in PROJECTIONS]
    ffn = get_ffn_kind(layer.ffn_kind or "dense").quantized_kernels(layer.ffn.get_config())
    return paths + [f"ffn/{p}" for p in ffn]


def quantize_config_for(layer) -> quantization.QuantizeConfig | None:
    """The QuantizeConfig of a top-level layer of a tfmobile model; None for layers left float and unwrapped
    (Dropout, Concatenate). Encoder and decoder layers: the kernels of `layer_kernels`, and the output of a
    post-norm layer (a LayerNorm output, which the int8 export feeds to fully connected layers)."""
    if isinstance(layer, (TransformerEncoderLayer, TransformerDecoderLayer)):
        return DenseKernelsQuantizeConfig(layer_kernels(layer), quantize_output=not layer.normalize_before)
    cls = QUANTIZE_CONFIGS.get(type(layer))
    if cls is None:
        return None
    if cls is TokenEmbeddingQuantizeConfig:
        return cls(quantize_embeddings=_tied(layer))
    return cls()


def custom_objects() -> dict:
    """Layers, configs and quantizers that (de)serializing tfmobile's QAT models needs."""
    objects = {cls.__name__: cls for cls in TFMOBILE_LAYERS}
    objects.update({cls.__name__: cls for cls in set(QUANTIZE_CONFIGS.values())})
    objects.update({"DenseKernelsQuantizeConfig": DenseKernelsQuantizeConfig, "KernelQuantizer": KernelQuantizer})
    return objects


class _KeepLayout(quantization.QuantizeLayoutTransform):
    """No graph rewrites (they pattern-match Keras' Conv/BN/ReLU, which tfmobile has none of) and no
    quantization of the model inputs: they are int32 token ids."""

    def apply(self, model, layer_quantize_map):
        inputs = {l.name for l in model._input_layers}
        return model, {k: v for k, v in layer_quantize_map.items() if k not in inputs}


class TfmobileQuantizeScheme(quantization.default_8bit.Default8BitQuantizeScheme):
    """TF-MOT's default 8-bit scheme without its layout transforms (see `_KeepLayout`)."""

    def get_layout_transformer(self):
        return _KeepLayout()


def annotate_model(model: keras.Model) -> keras.Model:
    """`model` with each layer that has a QuantizeConfig wrapped in `QuantizeAnnotate` (sharing weights):
    ready for `quantize_apply`."""
    def annotate(layer):
        config = quantize_config_for(layer)
        return layer if config is None else quantization.quantize_annotate_layer(layer, config)

    with quantization.quantize_scope(custom_objects()):
        return keras.models.clone_model(model, input_tensors=None, clone_function=annotate)


def quantize_model(model: keras.Model) -> keras.Model:
    """Annotate + `quantize_apply`: a copy of `model` (its current weights) with fake-quantized kernels."""
    with quantization.quantize_scope(custom_objects()):
        return quantization.quantize_apply(annotate_model(model), scheme=TfmobileQuantizeScheme())


def copy_into_plain(model: keras.Model, cfg) -> keras.Model:
    """A fresh `build_transformer(cfg)` holding the float weights of `model`'s layers (wrapped or not),
    matched by layer name."""
    from tfmobile.models.transformer import build_transformer

    plain = build_transformer(cfg)
    source = {unwrap(l).name: unwrap(l) for l in model.layers}
    for layer in plain.layers:
        if not layer.weights:
            continue
        src = source.get(layer.name)
        if src is None:
            raise ValueError(f"{model.name} has no layer {layer.name!r} to take weights from")
        layer.set_weights(src.get_weights())
    return plain


def strip_quantization(qat_model: keras.Model, cfg) -> keras.Model:
    """`build_transformer(cfg)` with the QAT model's trained float weights (for checkpoints and export)."""
    return copy_into_plain(qat_model, cfg)


# ---------------------------------------------------------------------------------------------------------
# The verbs: fine-tune a trained run into a new run directory


def parse_block(text: str | None) -> tuple[int, int]:
    """'1x4' -> (1, 4): zero blocks of 1 row (input channel) by 4 columns (output channels)."""
    if not text:
        return (1, 1)
    try:
        rows, cols = (int(p) for p in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--block must look like 1x4 (rows x columns), not {text!r}") from None
    if rows < 1 or cols < 1:
        raise ConfigError(f"--block sizes must be positive (got {text!r})")
    return rows, cols


def parse_m_by_n(text: str | None) -> tuple[int, int] | None:
    """'2:4' -> (2, 4): 2 zeros in every 4 consecutive input channels."""
    if not text:
        return None
    try:
        m, n = (int(p) for p in text.split(":"))
    except ValueError:
        raise ConfigError(f"--m-by-n must look like 2:4 (m zeros in every n weights), not {text!r}") from None
    if not 0 < m < n:
        raise ConfigError(f"--m-by-n needs 0 < m < n (got {text!r})")
    return m, n


def _finish(out_dir: str, record: dict) -> None:
    atomic_write_text(os.path.join(out_dir, "compression.json"), json.dumps(record, indent=2) + "\n")


def prune_run(run_dir: str, out_dir: str, sparsity_target: float | None = None, schedule: str = "constant",
              initial_sparsity: float = 0.0, block_size=(1, 1), m_by_n: tuple[int, int] | None = None,
              steps: int = 200, learning_rate: float | None = None, begin_step: int = 1, end_step: int | None = None,
              frequency: int | None = None, prune_embeddings: bool = False, resume: bool = False,
              data_dir: str | None = None, verbose: int | str = 0) -> dict:
    """`tfmobile prune`: fine-tune the trained `run_dir` with magnitude pruning into the new run `out_dir`
    (saved stripped: `tfmobile export/evaluate OUT` work on it). Returns the train state, the run directory
    and the sparsity summary; `OUT/compression.json` records the settings and the per-weight report.

    Defaults: masks recomputed every steps/20 steps from step 1; a polynomial schedule reaches the target
    at 3/4 of the steps and fine-tunes the rest; the learning rate is where the run's schedule ended.
    Trains in float32 whatever the run's precision (see `prune_model`).
    """
    if m_by_n is not None:
        implied = m_by_n[0] / m_by_n[1]
        if sparsity_target is not None and abs(sparsity_target - implied) > 1e-9:
            raise ConfigError(f"{m_by_n[0]}:{m_by_n[1]} sparsity is {implied:g} of zeros; leave out --sparsity")
        sparsity_target = implied
    if sparsity_target is None:
        raise ConfigError("give --sparsity (the fraction of zeros, e.g. 0.5) or --m-by-n (e.g. 2:4)")
    frequency = frequency or max(1, steps // 20)
    if schedule == "polynomial" and end_step is None:
        end_step = begin_step + max(1, (int(0.75 * steps) - begin_step) // frequency) * frequency
    if end_step is not None and schedule == "polynomial" and end_step > steps:
        raise ConfigError(f"the schedule ends at step {end_step}, after the last step (--steps {steps})")
    sched = make_schedule(schedule, sparsity_target, initial_sparsity, begin_step, end_step, frequency)
    block_size = tuple(block_size)
    pattern = f"{m_by_n[0]}:{m_by_n[1]}" if m_by_n else (f"{block_size[0]}x{block_size[1]} blocks"
                                                         if block_size != (1, 1) else "element-wise")
    exp = finetune_experiment(run_dir, steps, learning_rate, suffix="pruned",
                              note=f"pruned to {sparsity_target:g} sparsity ({schedule}, {pattern})")
    exp.train.precision = "float32"  # see prune_model
    check_output("prune", out_dir, [run_dir], resume)  # before PruningLog creates its log folder there
    _, source, _ = load_run(run_dir)
    names = prunable_layer_names(source, prune_embeddings)
    _check_pattern(source, names, block_size, m_by_n)

    def transform(model):
        return prune_model(model, sched, block_size, m_by_n, prune_embeddings)

    state = finetune("prune", run_dir, out_dir, exp, resume=resume, data_dir=data_dir, verbose=verbose,
                     settings={"sparsity": sparsity_target, "schedule": schedule, "pattern": pattern},
                     init_weights=source.get_weights(), transform=transform,
                     finalize=lambda model: copy_into_plain(strip(model), exp.model),
                  callbacks=[sparsity.UpdatePruningStep(),
                             PruningLog(os.path.join(out_dir, "logs", "pruning"), every=frequency)])
    report = sparsity_report(load_run(out_dir)[1], names)
    _finish(out_dir, {"method": "prune", "source_run": os.path.abspath(run_dir), "schedule": sched.get_config(),
                      "block_size": list(block_size), "m_by_n": list(m_by_n) if m_by_n else None,
                      "prune_embeddings": prune_embeddings, "steps": steps,
                      "learning_rate": exp.train.learning_rate, "sparsity": report})
    per_weight = [w["sparsity"] for w in report["weights"]]
    summary = {"overall": report["overall"], "min": min(per_weight), "max": max(per_weight),
               "weights": len(per_weight), "layers": len(names)}
    return {"run_dir": out_dir, "source_run": run_dir, "method": "prune", "sparsity": summary, **state}


class KeepZeros(keras.callbacks.Callback):
    """Sparsity-preserving fine-tuning: every weight matrix that starts with zeros (a pruned run) gets them
    written back after each step, so QAT after `tfmobile prune` keeps the pruned weights at zero."""

    def __init__(self, min_fraction: float = 0.01):
        super().__init__()
        self.min_fraction = min_fraction
        self.masks = []

    def on_train_begin(self, logs=None):
        self.masks = []
        for v in self.model.trainable_weights:
            if len(v.shape) >= 2:
                nonzero = tf.cast(tf.not_equal(v, 0), v.dtype)
                if 1.0 - float(tf.reduce_mean(nonzero)) >= self.min_fraction:
                    self.masks.append((v, nonzero))

    def on_train_batch_end(self, batch, logs=None):
        for v, mask in self.masks:
            v.assign(v * mask)


def qat_run(run_dir: str, out_dir: str, steps: int = 200, learning_rate: float | None = None, resume: bool = False,
            data_dir: str | None = None, verbose: int | str = 0, keep_zeros: bool = False) -> dict:
    """`tfmobile qat`: fine-tune the trained `run_dir` with fake-quantized 8-bit kernels into the new run
    `out_dir` (saved with float weights in `build_transformer`'s structure); then
    `tfmobile export OUT --quantize int8`. Trains in float32 (fake quantization has no bfloat16 kernels).
    keep_zeros: keep the zeros of a pruned run (`KeepZeros`)."""
    exp = finetune_experiment(run_dir, steps, learning_rate, suffix="qat",
                              note="quantization-aware trained, 8-bit kernels")
    exp.train.precision = "float32"
    _, source, _ = load_run(run_dir)
    state = finetune("qat", run_dir, out_dir, exp, resume=resume, data_dir=data_dir, verbose=verbose,
                     settings={"keep_zeros": keep_zeros}, init_weights=source.get_weights(), transform=quantize_model,
                     finalize=lambda model: strip_quantization(model, exp.model),
                     callbacks=[KeepZeros()] if keep_zeros else [])
    next_step = f"tfmobile export {out_dir} --quantize int8"
    _finish(out_dir, {"method": "qat", "source_run": os.path.abspath(run_dir), "weights": "8-bit symmetric per-tensor",
                      "steps": steps, "learning_rate": exp.train.learning_rate, "keep_zeros": keep_zeros,
                      "next": next_step})
    return {"run_dir": out_dir, "source_run": run_dir, "method": "qat", "next": next_step, **state}


__all__ = [
    "DenseKernelsQuantizeConfig", "KeepZeros", "KernelQuantizer", "LayerNormalizationQuantizeConfig",
    "PaddingMaskQuantizeConfig", "PruneLowMagnitude", "PruningLog", "QUANTIZE_CONFIGS", "SCHEDULES",
    "TfmobileQuantizeScheme", "TokenEmbeddingQuantizeConfig",
    "annotate_model", "copy_into_plain", "custom_objects", "layer_kernels", "make_schedule", "parse_block", "parse_m_by_n",
    "prunable_layer_names", "prunable_weights", "prune_model", "prune_run", "qat_run", "quantize_config_for",
    "quantize_model", "sparsity_report", "strip", "strip_quantization", "unwrap", "weight_paths",
]
