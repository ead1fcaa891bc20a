"""Parameters and Mult-Adds of Lite Transformer's LSRA layers ('lsra' kind): the formula by hand, the
Keras layer's weights, and the paper's WMT figures."""

from __future__ import annotations

import pytest

from tfmobile.errors import ConfigError
from tfmobile.kinds import get_kind
from tfmobile.kinds.lsra import LSRAConfig
from tfmobile.models.config import DecoderLayerConfig, EncoderLayerConfig, ModelConfig
from tfmobile.profiling import count_mult_adds, count_params, profile
from tfmobile.profiling import counts


def lite_transformer(d: int, kernel_sizes=(3, 7, 15, 31, 31, 31), heads: int = 4, conv_type: str = "dynamic",
                     glu: bool = True) -> ModelConfig:
    """Lite Transformer's WMT model (lite-transformer configs/wmt14.en-fr and wmt16.en-de,
    multibranch_v2/embed{200,408,496}.yml): d = FFN, branches attn:d/2:4 heads + dynamic:d/2:4 heads,
    GLU, kernel sizes 3, 7, 15, 31, 31, 31, post-norm, cross attention full width."""
    def lsra(k):
        return LSRAConfig(attention_dim=d // 2, conv_type=conv_type, conv_heads=heads, glu=glu, kernel_size=k)

    enc = [EncoderLayerConfig(ffn_dim=d, num_heads=heads, qk_dim=d, v_dim=d, kind="lsra", kind_config=lsra(k))
           for k in kernel_sizes]
    dec = [DecoderLayerConfig(ffn_dim=d, num_heads=heads, qk_dim=d, v_dim=d, cross_num_heads=8, cross_qk_dim=d,
                              cross_v_dim=d, kind="lsra", kind_config=lsra(k)) for k in kernel_sizes]
    return ModelConfig(encoder_embed_dim=d, decoder_embed_dim=d, encoder_layers=enc, decoder_layers=dec,
                       normalize_before=False)


def mm(m: int, k: int, n: int) -> int:
    return m * k * n


def hand_lsra(d, n, d_a, conv_type, K, H, glu):
    """(params, Mult-Adds) of one LSRA written out: attention on d_a channels, conv branch on d - d_a."""
    d_c = d - d_a
    params = 4 * (d_a * d_a + d_a)  # W_Q, W_K, W_V, W_O with biases
    ma = 4 * mm(n, d_a, d_a) + mm(n, d_a, n) + mm(n, n, d_a)  # projections, QK^T, AV
    width_in = 2 * d_c if glu else d_c
    params += d_c * width_in + width_in + d_c * d_c + d_c  # Linear_1, Linear_2
    ma += mm(n, d_c, width_in) + mm(n, d_c, d_c)
    ma += n * K * d_c  # the weighted sum over each window
    if conv_type == "dynamic":
        params += d_c * H * K  # kernel projection, no bias
        ma += mm(n, d_c, H * K)
    else:
        params += H * K
    return params, ma


@pytest.mark.parametrize("conv_type,glu,attention_dim", [("lightweight", False, None), ("lightweight", True, 4),
                                                         ("dynamic", True, None), ("dynamic", False, 10)])
def test_lsra_encoder_layer_matches_hand_formula(conv_type, glu, attention_dim):
    d, n, K, H, ffn_dim = 16, 9, 5, 2, 24
    layer = EncoderLayerConfig(kind="lsra", ffn_dim=ffn_dim, num_heads=2, qk_dim=d, v_dim=d, kind_config=LSRAConfig(
        attention_dim=attention_dim, conv_type=conv_type, kernel_size=K, conv_heads=H, glu=glu))
    ctx = counts.LayerContext(d, d, n, 3)
    costs = counts.encoder_layer(layer, ctx)
    params, ma = hand_lsra(d, n, attention_dim or d // 2, conv_type, K, H, glu)
    assert costs["attention_branch"].params + costs["conv_branch"].params == params
    assert costs["attention_branch"].mult_adds + costs["conv_branch"].mult_adds == ma
    assert costs["ffn"] == counts.ffn(d, ffn_dim, n) and costs["layer_norm"].params == 4 * d


def test_lsra_decoder_layer_keeps_full_width_cross_attention():
    d_enc, d, S, T = 12, 16, 7, 5
    layer = DecoderLayerConfig(kind="lsra", ffn_dim=20, num_heads=2, qk_dim=d, v_dim=d, cross_num_heads=4,
                               cross_qk_dim=8, cross_v_dim=12, encoder_layers_attended=2, kind_config=LSRAConfig(
                                   attention_dim=6, conv_type="dynamic", kernel_size=3, conv_heads=5, glu=True))
    costs = counts.decoder_layer(layer, counts.LayerContext(d_enc, d, S, T))
    assert list(costs) == ["attention_branch", "conv_branch", "cross_attention", "ffn", "layer_norm"]
    params, ma = hand_lsra(d, T, 6, "dynamic", 3, 5, True)
    assert costs["attention_branch"].mult_adds + costs["conv_branch"].mult_adds == ma
    assert costs["attention_branch"].params + costs["conv_branch"].params == params
    assert costs["cross_attention"] == counts.attention(d, d_enc, d, 8, 12, T, 2 * S)
    assert costs["layer_norm"].params == 3 * 2 * d


def test_unknown_conv_type_is_a_config_error():
    cfg = lite_transformer(16, kernel_sizes=(3,), heads=2)
    cfg.encoder_layers[0].kind_config.conv_type = "depthwise"
    with pytest.raises(ConfigError, match="encoder layer 0.*conv_type"):
        count_mult_adds(cfg)


@pytest.mark.parametrize("conv_type,glu,causal", [("lightweight", False, False), ("dynamic", True, True),
                                                  ("dynamic", False, False)])
def test_lsra_params_equal_the_keras_layer(conv_type, glu, causal):
    import tensorflow as tf

    from tfmobile.layers.lsra import LongShortRangeAttention

    d = 20
    keras_layer = LongShortRangeAttention(num_heads=2, attention_dim=8, conv_type=conv_type, kernel_size=7,
                                          conv_heads=3, glu=glu, causal=causal)
    keras_layer([tf.zeros([1, 4, d]), tf.ones([1, 4])])
    cfg = EncoderLayerConfig(kind="lsra", ffn_dim=8, num_heads=2, qk_dim=d, v_dim=d, kind_config=LSRAConfig(
        attention_dim=8, conv_type=conv_type, kernel_size=7, conv_heads=3, glu=glu))
    branches = get_kind("lsra").count(cfg, d, 30)
    assert sum(c.params for c in branches.values()) == keras_layer.count_params()


# Lite Transformer, Table 2 (WMT'14 En-De, 30 + 30 tokens): params without embeddings, Mult-Adds
PAPER = [(200, 2.9e6, 90e6), (408, 11.7e6, 360e6), (496, 17.3e6, 527e6)]


@pytest.mark.parametrize("d,params,mult_adds", PAPER, ids=[f"d{d}" for d, *_ in PAPER])
def test_lite_transformer_wmt_matches_paper_figures(d, params, mult_adds):
    cfg = lite_transformer(d)
    assert abs(count_mult_adds(cfg) / mult_adds - 1) <= 0.01, f"{count_mult_adds(cfg):,} vs {mult_adds:,.0f}"
    assert abs(count_params(cfg) / params - 1) <= 0.01, f"{count_params(cfg):,} vs {params:,.0f}"


def test_lite_transformer_496_exact_count_and_breakdown():
    p = profile(lite_transformer(496))
    assert p["mult_adds"] == 528_745_920 and p["params"] == 17_283_616
    assert set(p["breakdown"]["encoder"]) == {"attention_branch", "conv_branch", "ffn", "layer_norm", "total"}
    assert set(p["breakdown"]["decoder"]) == {"attention_branch", "conv_branch", "cross_attention", "ffn",
                                              "layer_norm", "total"}
    assert all(layer["kind"] == "lsra" for layer in p["layers"] if layer["index"] is not None)


def test_larger_kernels_cost_more_only_in_the_conv_branch():
    small, large = profile(lite_transformer(200, (3,) * 6)), profile(lite_transformer(200, (31,) * 6))
    # per layer and side: (31 - 3) x (weighted sum d_c + kernel projection d_c x 4 heads) x 30 positions
    assert large["mult_adds"] - small["mult_adds"] == 2 * 6 * 28 * 100 * 5 * 30
    for side in ("encoder", "decoder"):
        for part in ("attention_branch", "ffn"):
            assert large["breakdown"][side][part] == small["breakdown"][side][part]


@pytest.mark.parametrize("preset,paper_mult_adds,paper_params", [
    ("lite-wmt-200", 90e6, 2.9e6), ("lite-wmt-408", 360e6, 11.7e6), ("lite-wmt-496", 527e6, 17.3e6)])
def test_lite_transformer_wmt_presets_match_the_paper(preset, paper_mult_adds, paper_params):
    """Wu et al. 2020, Table 2 (WMT'14 En-De, 30+30 tokens)."""
    from tfmobile.models.config import load_config
    from tfmobile.profiling import count_mult_adds, count_params

    cfg = load_config(preset).model
    assert abs(count_mult_adds(cfg, 30, 30) - paper_mult_adds) / paper_mult_adds < 0.03
    assert abs(count_params(cfg) - paper_params) / paper_params < 0.02
