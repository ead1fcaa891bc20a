"""Group regularizers that drive whole rows or columns of a weight matrix to zero.

A *line* is one row or one column of a matrix W. With line norms n_g = ||W_g||_2 (g over the lines):

    SSL, group lasso (Wen et al. 2016):              R(W) = lambda * sum_g n_g
    Structured Hoyer Square (Yang et al. 2020):      R(W) = lambda * (sum_g n_g)^2 / sum_g n_g^2

Group lasso shrinks every line towards zero at the same rate; Hoyer square is scale-invariant (it
measures how concentrated the norms are, between 1 and the number of lines), so it zeroes the weak
lines without shrinking the strong ones. TPrune (Mao et al. 2021, section 4) trains with either before
pruning lines.

Block SSL (TPrune's BSSL analysis) cuts W into blocks of `block_shape` and penalizes every row and
every column *inside* each block: it does not presuppose whole lines, so the picture of which entries
die shows whether sparsity forms lines (it does, which is what justifies line-wise pruning).

Each is a Keras regularizer (`kernel_regularizer=GroupLasso(1e-4, lines="columns")`); TPrune applies
them to `line_matrix` stacks so that the lines of several matrices share one norm (see tprune.py).
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

LINES = ("rows", "columns")
EPS = 1e-12  # keeps the gradient of sqrt finite at an all-zero line


def line_norms(w, lines: str = "columns"):
    """||W_g||_2 for each column (reduce over axis 0) or row (reduce over axis 1) of a 2-D matrix."""
    if lines not in LINES:
        raise ValueError(f"lines must be one of {LINES} (got {lines!r})")
    return tf.sqrt(tf.reduce_sum(tf.square(w), axis=0 if lines == "columns" else 1) + EPS)


def hoyer_square(norms):
    """(sum n)^2 / sum n^2 of a vector of norms: 1 when one line carries everything, len(n) when all equal."""
    return tf.square(tf.reduce_sum(norms)) / tf.reduce_sum(tf.square(norms))


class _LineRegularizer(keras.regularizers.Regularizer):
    def __init__(self, strength: float = 1e-4, lines: str = "columns"):
        if lines not in LINES:
            raise ValueError(f"lines must be one of {LINES} (got {lines!r})")
        if strength < 0:
            raise ValueError(f"strength must be >= 0 (got {strength})")
        self.strength = float(strength)
        self.lines = lines

    def get_config(self):
        return {"strength": self.strength, "lines": self.lines}


@keras.utils.register_keras_serializable(package="tfmobile")
class GroupLasso(_LineRegularizer):
    """SSL: lambda * sum of the L2 norms of the rows or columns."""

    def __call__(self, w):
        return self.strength * tf.reduce_sum(line_norms(w, self.lines))


@keras.utils.register_keras_serializable(package="tfmobile")
class StructuredHoyerSquare(_LineRegularizer):
    """lambda * (sum of line norms)^2 / (sum of squared line norms)."""

    def __call__(self, w):
        return self.strength * hoyer_square(line_norms(w, self.lines))


@keras.utils.register_keras_serializable(package="tfmobile")
class BlockGroupLasso(keras.regularizers.Regularizer):
    """BSSL: group lasso over every row and every column inside each block of `block_shape` (r, c).

    W [R, C] with R % r == 0 and C % c == 0 -> blocks [R/r, r, C/c, c]; the groups are the r-long
    columns and the c-long rows of each block.
    """

    def __init__(self, strength: float = 1e-4, block_shape=(2, 2)):
        self.strength = float(strength)
        self.block_shape = tuple(int(b) for b in block_shape)

    def __call__(self, w):
        return self.strength * block_penalty(w, self.block_shape)

    def get_config(self):
        return {"strength": self.strength, "block_shape": list(self.block_shape)}


def block_penalty(w, block_shape):
    """Sum of the L2 norms of every in-block row and in-block column (BSSL, unscaled)."""
    r, c = block_shape
    rows, cols = w.shape
    if rows % r or cols % c:
        raise ValueError(f"block shape {block_shape} does not tile a {rows}x{cols} matrix")
    blocks = tf.reshape(w, [rows // r, r, cols // c, c])
    in_block_rows = tf.sqrt(tf.reduce_sum(tf.square(blocks), axis=3) + EPS)  # [R/r, r, C/c]
    in_block_cols = tf.sqrt(tf.reduce_sum(tf.square(blocks), axis=1) + EPS)  # [R/r, C/c, c]
    return tf.reduce_sum(in_block_rows) + tf.reduce_sum(in_block_cols)


REGULARIZERS = {"ssl": GroupLasso, "shs": StructuredHoyerSquare}
# Strengths that make the penalty's gradient about a third of the task loss's (mean |dL/dw| on W_ffn1 of
# runs/small: 6e-5 for the label-smoothed loss, 0.037 per unit of SSL, 0.0023 per unit of Hoyer square).
# Hoyer square is scale-free and its gradient vanishes when all lines are equal, so it needs a larger lambda.
DEFAULT_STRENGTH = {"ssl": 5e-4, "shs": 1e-2}

__all__ = ["BlockGroupLasso", "DEFAULT_STRENGTH", "GroupLasso", "REGULARIZERS", "StructuredHoyerSquare", "block_penalty", "hoyer_square",
           "line_norms"]
