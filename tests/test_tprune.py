"""TPrune: group regularizers against NumPy formulas, shared masks, head-balanced selection, and shrink
preserving the masked model's outputs exactly."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tfmobile.compression.regularizers import (BlockGroupLasso, GroupLasso, StructuredHoyerSquare, block_penalty,
                                               hoyer_square)
from tfmobile.compression.tprune import (apply_mask, head_importance, layer_kernel_weights, line_groups,
                                         plan_sparsity, regularization_loss, select_heads, select_lines, shrink)
from tfmobile.errors import ConfigError
from tfmobile.models.config import model_config_from_dict
from tfmobile.models.transformer import build_transformer
from tfmobile.training.losses import LabelSmoothedCrossEntropy

RNG = np.random.default_rng(0)


def tiny_config(kind="attention", **overrides):
    layer = {"num_layers": 2, "ffn_dim": 48, "num_heads": 4, "qk_dim": 32, "v_dim": 32}
    if kind == "lsra":
        layer.update(kind="lsra", lsra={"conv_type": "dynamic", "kernel_size": 3}, num_heads=2, ffn_dim=32)
    return model_config_from_dict({"embed_dim": 32, "vocab_size": 40, "encoder": dict(layer), "decoder": dict(layer),
                                   "max_source_len": 16, "max_target_len": 16, "dropout": 0.0, **overrides})


def random_model(cfg):
    model = build_transformer(cfg)
    for v in model.weights:  # biases too: shrink must carry every kept entry over
        v.assign(RNG.normal(0, 0.3, v.shape).astype(np.float32))
    return model


def inputs():
    src = np.array([[5, 6, 7, 8, 9, 3], [11, 12, 3, 0, 0, 0]], np.int32)
    tgt = np.array([[2, 20, 21, 22, 23], [2, 30, 31, 0, 0]], np.int32)
    return [src, tgt]


def assert_shrink_exact(model, cfg, plan):
    """Mask the plan's lines, shrink, and check the smaller model computes what the masked one did.
    Returns (shrunk config, shrunk model)."""
    apply_mask(model, plan)
    masked = model(inputs()).numpy()
    new_cfg, weights = shrink(model, cfg, plan)
    small = build_transformer(new_cfg)
    small.set_weights(weights)
    np.testing.assert_allclose(small(inputs()).numpy(), masked, atol=1e-4, rtol=1e-4)
    return new_cfg, small


# -- regularizers ----------------------------------------------------------------------------------------

def test_group_lasso_matches_numpy():
    w = RNG.normal(size=(7, 5)).astype(np.float32)
    np.testing.assert_allclose(GroupLasso(0.3, "columns")(w), 0.3 * np.linalg.norm(w, axis=0).sum(), rtol=1e-5)
    np.testing.assert_allclose(GroupLasso(0.3, "rows")(w), 0.3 * np.linalg.norm(w, axis=1).sum(), rtol=1e-5)


def test_structured_hoyer_square_matches_numpy_and_is_scale_invariant():
    w = RNG.normal(size=(6, 9)).astype(np.float32)
    n = np.linalg.norm(w, axis=0)
    np.testing.assert_allclose(StructuredHoyerSquare(2.0, "columns")(w), 2.0 * n.sum() ** 2 / (n**2).sum(), rtol=1e-5)
    np.testing.assert_allclose(StructuredHoyerSquare(1.0)(w), StructuredHoyerSquare(1.0)(10 * w), rtol=1e-5)
    # bounds: 1 when one line carries everything, the number of lines when all are equal
    np.testing.assert_allclose(hoyer_square(tf.constant([3.0, 0.0, 0.0])), 1.0, rtol=1e-5)
    np.testing.assert_allclose(hoyer_square(tf.constant([2.0, 2.0, 2.0, 2.0])), 4.0, rtol=1e-5)


def test_block_group_lasso_matches_numpy_loop():
    w = RNG.normal(size=(4, 8)).astype(np.float32)
    expected = 0.0
    for bi in range(2):
        for bj in range(4):
            block = w[2 * bi:2 * bi + 2, 2 * bj:2 * bj + 2]
            expected += np.linalg.norm(block, axis=1).sum() + np.linalg.norm(block, axis=0).sum()
    np.testing.assert_allclose(block_penalty(tf.constant(w), (2, 2)), expected, rtol=1e-5)
    np.testing.assert_allclose(BlockGroupLasso(0.5, (2, 2))(w), 0.5 * expected, rtol=1e-5)
    with pytest.raises(ValueError, match="does not tile"):
        block_penalty(tf.constant(w), (3, 2))


@pytest.mark.parametrize("reg", [GroupLasso(0.1, "rows"), StructuredHoyerSquare(0.2), BlockGroupLasso(0.3, (2, 8))])
def test_regularizers_round_trip(reg):
    again = keras.regularizers.deserialize(keras.regularizers.serialize(reg))
    assert type(again) is type(reg) and again.get_config() == reg.get_config()
    layer = keras.layers.Dense(8, kernel_regularizer=reg)
    layer(tf.ones([1, 16]))
    assert len(layer.losses) == 1


def test_regularization_loss_sums_the_groups():
    cfg = tiny_config()
    model = random_model(cfg)
    groups = line_groups(model, cfg)
    expected = 0.0
    for g in groups:
        n = np.linalg.norm(g.matrix().numpy(), axis=0)
        expected += n.sum() ** 2 / (n**2).sum()
    np.testing.assert_allclose(regularization_loss(groups, "shs", 1e-3)(), 1e-3 * expected, rtol=1e-4)
    with pytest.raises(ConfigError, match="unknown regularizer"):
        regularization_loss(groups, "l0")


# -- groups and masks ------------------------------------------------------------------------------------

def test_tprune_strategy_groups():
    cfg = tiny_config()
    model = random_model(cfg)
    parts = {(g.layer, g.part) for g in line_groups(model, cfg, "tprune")}
    for i in range(2):
        assert {(f"encoder_layer_{i}", p) for p in ("self_attention.qk", "self_attention.vo", "ffn")} <= parts
        dec = {p for l, p in parts if l == f"decoder_layer_{i}"}
        assert dec == {"self_attention.qk", "cross_attention.qk"}  # decoder: only W_Q and W_K
    assert len(line_groups(model, cfg, "all")) == 2 * 3 + 2 * 5
    with pytest.raises(ConfigError, match="unknown TPrune strategy"):
        line_groups(model, cfg, "rows-only")


def test_lsra_layers_keep_their_attention_branch():
    cfg = tiny_config("lsra")
    model = random_model(cfg)
    parts = {(g.layer, g.part) for g in line_groups(model, cfg, "all")}
    assert ("encoder_layer_0", "ffn") in parts and ("decoder_layer_0", "cross_attention.qk") in parts
    assert not any(p.startswith("self_attention") for _, p in parts)


def _zero_columns(w):
    return set(np.flatnonzero(np.all(w == 0, axis=0)))


def _zero_rows(w):
    return set(np.flatnonzero(np.all(w == 0, axis=1)))


def test_masks_are_shared_and_head_balanced():
    cfg = tiny_config()
    model = random_model(cfg)
    groups = line_groups(model, cfg)
    plan = select_lines(groups, 0.3, layer_kernel_weights(model))
    apply_mask(model, plan)
    enc = model.get_layer("encoder_layer_0")
    att, ffn = enc.self_attention, enc.ffn
    q, k = att.query_dense.kernel.numpy(), att.key_dense.kernel.numpy()
    assert _zero_columns(q) == _zero_columns(k) == set(range(32)) - set(plan[("encoder_layer_0", "self_attention.qk")])
    assert np.all(att.query_dense.bias.numpy()[sorted(_zero_columns(q))] == 0)
    assert _zero_columns(att.value_dense.kernel.numpy()) == _zero_rows(att.output_dense.kernel.numpy())
    assert _zero_columns(ffn.fc1.kernel.numpy()) == _zero_rows(ffn.fc2.kernel.numpy())
    for key, keep in plan.items():
        if key[1].endswith((".qk", ".vo")):
            per_head = np.bincount(np.asarray(keep) // 8, minlength=4)
            assert len(set(per_head)) == 1 and per_head[0] >= 1, (key, per_head)
    # decoder value/FFN are not pruned under TPrune's strategy
    dec = model.get_layer("decoder_layer_0")
    assert not _zero_columns(dec.self_attention.value_dense.kernel.numpy())
    assert not _zero_columns(dec.ffn.fc1.kernel.numpy())


def test_selection_takes_the_zeroed_lines_first():
    cfg = tiny_config()
    model = random_model(cfg)
    fc1, fc2 = model.get_layer("encoder_layer_1").ffn.fc1, model.get_layer("encoder_layer_1").ffn.fc2
    dead = [3, 10, 17, 40]
    fc1.kernel.assign(fc1.kernel * _line_mask(48, dead)[None])
    fc1.bias.assign(fc1.bias * _line_mask(48, dead))
    fc2.kernel.assign(fc2.kernel * _line_mask(48, dead)[:, None])
    groups = line_groups(model, cfg)
    total = layer_kernel_weights(model)
    plan = select_lines(groups, 4 * 64 / total, total)  # exactly four FFN lines' worth (32 + 32 weights each)
    assert set(range(48)) - set(plan[("encoder_layer_1", "ffn")]) == set(dead)
    others = [g for g in groups if g.key != ("encoder_layer_1", "ffn")]
    assert all(len(plan[g.key]) == g.num_lines for g in others)


def _line_mask(n, dead):
    m = np.ones(n, np.float32)
    m[dead] = 0
    return m


# -- shrink ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["attention", "lsra"])
@pytest.mark.parametrize("strategy", ["tprune", "all"])
def test_shrink_preserves_outputs_of_the_masked_model(kind, strategy):
    cfg = tiny_config(kind)
    model = random_model(cfg)
    groups = line_groups(model, cfg, strategy)
    total = layer_kernel_weights(model)
    plan = select_lines(groups, 0.25, total)
    new_cfg, small = assert_shrink_exact(model, cfg, plan)
    removed = 1 - layer_kernel_weights(small) / total
    assert removed == pytest.approx(plan_sparsity(model, plan))
    assert 0.25 <= removed < 0.25 + 0.05  # overshoot: at most one removal unit
    assert sum(l.ffn_dim for l in new_cfg.encoder_layers) < sum(l.ffn_dim for l in cfg.encoder_layers) or kind == "lsra"


def test_shrink_changes_head_width_but_keeps_heads():
    cfg = tiny_config()
    model = random_model(cfg)
    plan = select_lines(line_groups(model, cfg), 0.3, layer_kernel_weights(model))
    new_cfg, _ = shrink(model, cfg, plan)
    for lc in new_cfg.encoder_layers + new_cfg.decoder_layers:
        assert lc.num_heads == 4 and lc.qk_dim % 4 == 0 and lc.qk_dim <= 32


def test_sparsity_out_of_range_is_a_config_error():
    cfg = tiny_config()
    model = random_model(cfg)
    with pytest.raises(ConfigError, match="sparsity"):
        select_lines(line_groups(model, cfg), 1.0, layer_kernel_weights(model))


# -- head-wise baseline ----------------------------------------------------------------------------------

def _batches():
    src, tgt = inputs()
    labels = np.concatenate([tgt[:, 1:], np.array([[3], [0]], np.int32)], axis=1)
    yield [src, tgt], labels


def test_head_importance_and_headwise_shrink():
    cfg = tiny_config()
    model = random_model(cfg)
    enc = model.get_layer("encoder_layer_0").self_attention
    w = enc.output_dense.kernel.numpy()
    w[8:16] = 0.0  # head 1 of encoder layer 0 contributes nothing: importance 0
    enc.output_dense.kernel.assign(w)
    importance = head_importance(model, cfg, _batches(), LabelSmoothedCrossEntropy(0.0))
    assert importance[("encoder_layer_0", "self_attention")][1] == 0.0
    assert len(importance) == 2 + 2 * 2
    for scores in importance.values():
        assert scores.shape == (4,) and np.linalg.norm(scores) == pytest.approx(1.0, abs=1e-5) or not scores.any()
    total = layer_kernel_weights(model)
    plan = select_heads(model, importance, 0.05, total)
    # the dead head goes first: its q/k and value lines are removed together
    assert set(range(32)) - set(plan[("encoder_layer_0", "self_attention.qk")]) == set(range(8, 16))
    assert set(range(32)) - set(plan[("encoder_layer_0", "self_attention.vo")]) == set(range(8, 16))
    apply_mask(model, plan)
    masked = model(inputs()).numpy()
    new_cfg, weights = shrink(model, cfg, plan)
    assert new_cfg.encoder_layers[0].num_heads == 3 and new_cfg.encoder_layers[0].qk_dim == 24
    small = build_transformer(new_cfg)
    small.set_weights(weights)
    np.testing.assert_allclose(small(inputs()).numpy(), masked, atol=1e-4, rtol=1e-4)
    # every attention keeps a head, however high the target
    plan = select_heads(model, importance, 0.9, total)
    assert all(len(k) >= 8 for k in plan.values())


def test_align_rounds_kept_widths_and_shrink_stays_exact():
    cfg = tiny_config()
    model = random_model(cfg)
    total = layer_kernel_weights(model)
    plan = select_lines(line_groups(model, cfg), 0.3, total, align=8)
    assert all(len(keep) % 8 == 0 and len(keep) >= 8 for keep in plan.values())
    assert abs(plan_sparsity(model, plan) - 0.3) < 0.1
    for key, keep in plan.items():  # still head-balanced
        if key[1].endswith(".qk"):
            assert len(set(np.bincount(np.asarray(keep) // 8, minlength=4))) == 1
    new_cfg, small = assert_shrink_exact(model, cfg, plan)
    with pytest.raises(ConfigError, match="align"):
        select_lines(line_groups(model, cfg), 0.3, total, align=0)
