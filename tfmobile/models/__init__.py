"""Config dataclasses (YAML), presets in tfmobile/resources/presets/, and the Functional builders: the
encoder-decoder Transformer (`build_transformer`) and the decoder-only language model (`build_lm`).

The builders are imported lazily: reading a config or a preset must not import TensorFlow.
"""

from tfmobile.models.config import ExperimentConfig, LMConfig, ModelConfig, load_config

__all__ = ["ExperimentConfig", "LMConfig", "ModelConfig", "build_lm", "build_transformer", "load_config"]


def __getattr__(name):
    if name == "build_transformer":
        from tfmobile.models.transformer import build_transformer

        return build_transformer
    if name == "build_lm":
        from tfmobile.models.lm import build_lm

        return build_lm
    raise AttributeError(name)
