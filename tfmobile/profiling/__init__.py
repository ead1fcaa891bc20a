"""Parameters and Mult-Adds, counted the way Lite Transformer and HAT report them; each layer kind's
self-attention is counted by the kind (`tfmobile.kinds`)."""

from tfmobile.profiling.counts import Cost, count_mult_adds, count_params, format_profile, profile

__all__ = ["Cost", "count_mult_adds", "count_params", "format_profile", "profile"]
