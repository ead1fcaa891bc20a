"""Config dataclasses (YAML), presets in tfmobile/resources/presets/, and the Functional Transformer builder.

`build_transformer` is imported lazily: reading a config or a preset must not import TensorFlow.
"""

from tfmobile.models.config import ExperimentConfig, ModelConfig, load_config

__all__ = ["ExperimentConfig", "ModelConfig", "build_transformer", "load_config"]


def __getattr__(name):
    if name == "build_transformer":
        from tfmobile.models.transformer import build_transformer

        return build_transformer
    raise AttributeError(name)
