"""Parameters and Mult-Adds, counted the way Lite Transformer and HAT report them."""

from tfmobile.profiling.counts import (
    Cost,
    count_mult_adds,
    count_params,
    format_profile,
    profile,
    register_layer_kind,
)

__all__ = ["Cost", "count_mult_adds", "count_params", "format_profile", "profile", "register_layer_kind"]
