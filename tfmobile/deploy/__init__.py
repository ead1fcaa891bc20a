"""LiteRT (TFLite) export with builtin ops only, running and benchmarking exported models with ai_edge_litert.

- `export`: a trained run -> model.tflite (encode / decode_step / translate), tokenizer, model_meta.json
- `runtime`: `TranslatorRunner` (signatures by name) and `LiteTranslator` (text in, text out)
- `bench`: HAT's latency measure on the host; `adb`: the same measure on a phone, by the Android app over adb;
  `delegates`: the per-phone TFLiteSettings files
- `encoder_export`: the encoder alone (Lite Transformer vs Transformer latency)
- `ctranslate2`: the same weights as a CTranslate2 model, the CPU peer we measure against
"""

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
