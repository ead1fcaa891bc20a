"""tfmobile: efficient Transformers for phones as a Keras (tf_keras) kit.

Subpackages: layers, models, data, training, decoding, profiling, deploy. The command line is
`tfmobile <verb>` (see `tfmobile --help`).
"""

__version__ = "0.1.0"
