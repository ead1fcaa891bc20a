"""Parameter and Mult-Adds counts: the papers' figures, and the formulas on a tiny config."""

from __future__ import annotations

import dataclasses

import pytest

from tfmobile.errors import ConfigError
from tfmobile.models.config import load_config, model_config_from_dict
from tfmobile.models.presets import preset_names
from tfmobile.profiling import count_mult_adds, count_params, profile

# (preset, tokens per side, params without embeddings, tolerance, Mult-Adds, tolerance, source)
# Tolerances: 2% params / 3% Mult-Adds, 5% where the paper gives two significant digits.
PAPER_FIGURES = [
    ("transformer-iwslt", 30, None, None, 959e6, 0.03, "Lite Transformer / HAT IWSLT baseline"),
    ("transformer-wmt", 30, None, None, 1.3e9, 0.05, "Lite Transformer, Transformer base"),
    ("transformer-flat-wmt", 30, None, None, 1.5e9, 0.05, "Lite Transformer, flattened Transformer"),
    ("transformer-mobile-87m", 30, 2.8e6, 0.05, 87e6, 0.05, "Lite Transformer mobile baseline"),
    ("transformer-mobile-338m", 30, 11.1e6, 0.02, 338e6, 0.03, "Lite Transformer mobile baseline"),
    ("transformer-mobile-527m", 30, 17.3e6, 0.02, 527e6, 0.03, "Lite Transformer mobile baseline"),
    ("hat-wmt-xeon-137ms", 30, 30.47e6, 0.02, 1.87e9 / 2, 0.03, "HAT WMT'14 En-De Xeon@137.9ms: 1.87 GFLOPs"),
    ("hat-iwslt-titanxp-45ms", 23, 16.82e6, 0.02, 0.78e9 / 2, 0.05, "HAT IWSLT'14 De-En TITAN Xp@45.6ms: 0.78 GFLOPs"),
]


def _gap(ours: float, paper: float) -> float:
    return abs(ours / paper - 1.0)


@pytest.mark.parametrize("preset,tokens,params,params_tol,mult_adds,ma_tol,source", PAPER_FIGURES,
                         ids=[row[0] for row in PAPER_FIGURES])
def test_preset_matches_paper_figures(preset, tokens, params, params_tol, mult_adds, ma_tol, source):
    cfg = load_config(preset)
    if params is not None:
        ours = count_params(cfg.model)
        assert _gap(ours, params) <= params_tol, f"{source}: {ours:,} params vs {params:,.0f}"
    ours = count_mult_adds(cfg.model, src_len=tokens, tgt_len=tokens)
    assert _gap(ours, mult_adds) <= ma_tol, f"{source}: {ours:,} Mult-Adds vs {mult_adds:,.0f}"


def test_hat_params_are_exact():
    # HAT's get_sampled_params_numel (linear weights + biases + LayerNorms) gives these integers
    assert count_params(load_config("hat-wmt-xeon-137ms").model) == 30_465_536
    assert count_params(load_config("hat-iwslt-titanxp-45ms").model) == 16_820_736


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_loads_and_profiles(name):
    cfg = load_config(name)
    p = profile(cfg)
    assert p["params"] > 0 and p["mult_adds"] > 0
    assert p["params_with_embeddings"] > p["params"]


@pytest.mark.parametrize("name", preset_names())
def test_flops_are_twice_mult_adds(name):
    p = profile(load_config(name), src_len=17, tgt_len=23)
    assert p["flops"] == 2 * p["mult_adds"]
    assert p["mult_adds"] == count_mult_adds(load_config(name), src_len=17, tgt_len=23)


# ---------------------------------------------------------------------------------------------
# A tiny heterogeneous config against the formulas written out by hand

D_ENC, D_DEC, VOCAB = 16, 12, 50
ENC = [dict(ffn_dim=32, num_heads=2, qk_dim=8, v_dim=12), dict(ffn_dim=48, num_heads=4, qk_dim=16, v_dim=8),
       dict(ffn_dim=20, num_heads=1, qk_dim=4, v_dim=4)]
DEC = dict(ffn_dim=24, num_heads=2, qk_dim=16, v_dim=8, cross_num_heads=2, cross_qk_dim=8, cross_v_dim=16)


def tiny(k: int = 1, **overrides):
    raw = {
        "encoder_embed_dim": D_ENC, "decoder_embed_dim": D_DEC, "vocab_size": VOCAB,
        "share_embeddings": False, "tie_output": True, "normalize_before": False,
        "encoder": {"layers": [dict(l) for l in ENC]},
        "decoder": {"layers": [dict(DEC, encoder_layers_attended=k)]},
    }
    raw.update(overrides)
    return model_config_from_dict(raw)


def mm(m: int, k: int, n: int) -> int:
    """Mult-Adds of an [m, k] @ [k, n] product."""
    return m * k * n


def reference_mult_adds(S: int, T: int, k: int = 1) -> int:
    total = 0
    for l in ENC:  # projections, QK^T, AV, output, FFN
        total += mm(S, D_ENC, l["qk_dim"]) * 2 + mm(S, D_ENC, l["v_dim"])
        total += mm(S, l["qk_dim"], S) + mm(S, S, l["v_dim"]) + mm(S, l["v_dim"], D_ENC)
        total += mm(S, D_ENC, l["ffn_dim"]) + mm(S, l["ffn_dim"], D_ENC)
    M = k * S  # memory: the last k encoder outputs concatenated along time
    total += mm(T, D_DEC, DEC["qk_dim"]) * 2 + mm(T, D_DEC, DEC["v_dim"])
    total += mm(T, DEC["qk_dim"], T) + mm(T, T, DEC["v_dim"]) + mm(T, DEC["v_dim"], D_DEC)
    total += mm(T, D_DEC, DEC["cross_qk_dim"]) + mm(M, D_ENC, DEC["cross_qk_dim"]) + mm(M, D_ENC, DEC["cross_v_dim"])
    total += mm(T, DEC["cross_qk_dim"], M) + mm(T, M, DEC["cross_v_dim"]) + mm(T, DEC["cross_v_dim"], D_DEC)
    total += mm(T, D_DEC, DEC["ffn_dim"]) + mm(T, DEC["ffn_dim"], D_DEC)
    return total


def reference_params() -> int:
    def dense(i, o):
        return i * o + o

    n = 0
    for l in ENC:
        n += dense(D_ENC, l["qk_dim"]) * 2 + dense(D_ENC, l["v_dim"]) + dense(l["v_dim"], D_ENC)
        n += dense(D_ENC, l["ffn_dim"]) + dense(l["ffn_dim"], D_ENC) + 2 * 2 * D_ENC
    n += dense(D_DEC, DEC["qk_dim"]) * 2 + dense(D_DEC, DEC["v_dim"]) + dense(DEC["v_dim"], D_DEC)
    n += dense(D_DEC, DEC["cross_qk_dim"]) + dense(D_ENC, DEC["cross_qk_dim"]) + dense(D_ENC, DEC["cross_v_dim"])
    n += dense(DEC["cross_v_dim"], D_DEC)
    n += dense(D_DEC, DEC["ffn_dim"]) + dense(DEC["ffn_dim"], D_DEC) + 3 * 2 * D_DEC
    return n


@pytest.mark.parametrize("S,T", [(1, 1), (5, 7), (30, 30), (64, 9)])
def test_tiny_mult_adds_match_hand_formula(S, T):
    assert count_mult_adds(tiny(), S, T) == reference_mult_adds(S, T)


def test_mult_adds_grow_quadratically_with_source_length_only_through_encoder_self_attention():
    cfg, T = tiny(), 11
    f = [count_mult_adds(cfg, S, T) for S in (10, 11, 12)]
    # second difference = 2 x the S^2 coefficient = 2 x sum over encoder layers of (qk_dim + v_dim)
    assert f[2] - 2 * f[1] + f[0] == 2 * sum(l["qk_dim"] + l["v_dim"] for l in ENC)


def test_tiny_params_match_hand_formula():
    assert count_params(tiny()) == reference_params()


def test_pre_norm_adds_one_final_layer_norm_per_side():
    assert count_params(tiny(normalize_before=True)) == reference_params() + 2 * D_ENC + 2 * D_DEC


@pytest.mark.parametrize("share,tie,extra", [
    (True, True, VOCAB * D_DEC),                        # one table, reused as the output projection
    (True, False, VOCAB * D_DEC + D_DEC * VOCAB),       # plus a bias-free output Dense
    (False, True, VOCAB * D_ENC + VOCAB * D_DEC),       # source and target tables
    (False, False, VOCAB * D_ENC + 2 * VOCAB * D_DEC),
])
def test_params_with_embeddings(share, tie, extra):
    d_enc = D_DEC if share else D_ENC  # sharing needs equal widths
    cfg = tiny(share_embeddings=share, tie_output=tie, encoder_embed_dim=d_enc)
    base = count_params(cfg)
    assert count_params(cfg, include_embeddings=True) == base + extra
    assert profile(cfg)["params_with_embeddings"] == base + extra


@pytest.mark.parametrize("k", [2, 3])
def test_arbitrary_encoder_decoder_attention_cost(k):
    S, T = 13, 9
    one, many = profile(tiny(k=1), S, T), profile(tiny(k=k), S, T)
    qk, v = DEC["cross_qk_dim"], DEC["cross_v_dim"]
    # W_K, W_V over (k-1) x S more memory positions, and both attention products over them
    expected = (k - 1) * S * (D_ENC * (qk + v) + T * (qk + v))
    cross = lambda p: p["breakdown"]["decoder"]["cross_attention"]["mult_adds"]  # noqa: E731
    assert cross(many) - cross(one) == expected
    assert many["mult_adds"] - one["mult_adds"] == expected
    assert many["params"] == one["params"]  # attending to more layers adds no weights
    assert many["mult_adds"] == reference_mult_adds(S, T, k)


def test_breakdown_sums_to_totals():
    p = profile(tiny(normalize_before=True), 8, 6)
    comps = [c for side in p["breakdown"].values() for name, c in side.items() if name != "total"]
    assert sum(c["params"] for c in comps) == p["params"]
    assert sum(c["mult_adds"] for c in comps) == p["mult_adds"]
    assert sum(l["mult_adds"] for l in p["layers"]) == p["mult_adds"]
    assert p["excluded"]["output_projection"]["mult_adds"] == 6 * D_DEC * VOCAB
    assert set(p["breakdown"]["decoder"]) == {"self_attention", "cross_attention", "ffn", "layer_norm", "total"}


def test_accepts_experiment_config_and_preset_name():
    exp = load_config("small")
    assert count_params(exp) == count_params(exp.model) == count_params("small")


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_lengths_are_rejected(bad):
    with pytest.raises(ConfigError, match="src_len"):
        count_mult_adds(tiny(), src_len=bad)


def test_unknown_layer_kind_names_the_layer():
    cfg = tiny()
    cfg.encoder_layers[1] = dataclasses.replace(cfg.encoder_layers[1], kind="mystery")
    with pytest.raises(ConfigError, match="encoder layer 1.*'mystery'"):
        count_params(cfg)
