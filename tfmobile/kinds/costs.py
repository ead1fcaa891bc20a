"""The cost primitives every layer kind's Mult-Adds counter is built from (conventions:
`tfmobile.profiling.counts`). Plain arithmetic on widths and lengths: no TensorFlow."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cost:
    """Parameters and Mult-Adds of one piece of the model."""

    params: int = 0
    mult_adds: int = 0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.params + other.params, self.mult_adds + other.mult_adds)

    def as_dict(self) -> dict[str, int]:
        return {"params": self.params, "mult_adds": self.mult_adds}


def linear(d_in: int, d_out: int, positions: int, bias: bool = True) -> Cost:
    """A Dense layer applied at `positions` positions (biases are parameters, not Mult-Adds)."""
    return Cost(d_in * d_out + (d_out if bias else 0), positions * d_in * d_out)


def layer_norm(dim: int) -> Cost:
    """LayerNorm: gain and offset; its arithmetic is not counted."""
    return Cost(2 * dim, 0)


def attention_products(qk_dim: int, v_dim: int, q_len: int, kv_len: int) -> int:
    """Mult-Adds of softmax(QK^T) V summed over heads: scores plus weighted sum."""
    return q_len * kv_len * (qk_dim + v_dim)


def attention(d_query_in: int, d_kv_in: int, d_out: int, qk_dim: int, v_dim: int, q_len: int, kv_len: int) -> Cost:
    """Multi-head attention (Vaswani et al. 2017, eq. 1 and section 3.2.2).

    W_Q over the q_len queries, W_K and W_V over the kv_len keys/values, W_O over the q_len outputs,
    plus QK^T (q_len x kv_len x qk_dim) and the weighted sum of V (q_len x kv_len x v_dim), all heads.
    """
    projections = (linear(d_query_in, qk_dim, q_len) + linear(d_kv_in, qk_dim, kv_len)
                   + linear(d_kv_in, v_dim, kv_len) + linear(v_dim, d_out, q_len))
    return projections + Cost(0, attention_products(qk_dim, v_dim, q_len, kv_len))


def ffn(dim: int, ffn_dim: int, positions: int) -> Cost:
    """Position-wise feed-forward network: Dense(dim -> ffn_dim), activation, Dense(ffn_dim -> dim)."""
    return linear(dim, ffn_dim, positions) + linear(ffn_dim, dim, positions)


__all__ = ["Cost", "attention", "attention_products", "ffn", "layer_norm", "linear"]
