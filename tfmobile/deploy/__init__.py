"""LiteRT (TFLite) export with builtin ops only, and running exported models with ai_edge_litert."""

from tfmobile.deploy.encoder_export import (
    DEFAULT_SEQ_LEN,
    EncoderModule,
    EncoderRunner,
    ExportError,
    UnsupportedOpsError,
    convert_builtins,
    encoder_module,
    export_encoder,
    interpreter,
    non_builtin_ops,
    tflite_ops,
)

__all__ = ["DEFAULT_SEQ_LEN", "EncoderModule", "EncoderRunner", "ExportError", "UnsupportedOpsError",
           "convert_builtins", "encoder_module", "export_encoder", "interpreter", "non_builtin_ops", "tflite_ops"]
