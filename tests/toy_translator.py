"""A synthetic translator that honours the export contract, as a LiteRT file: what `tfmobile bench` needs.

A tiny `tf.Module` (2 decoder layers, d=16) with the three signatures of an exported translator: `encode`,
`decode_step` with cache tensors fed back under the same names, and an in-graph greedy `translate`. Its caches
are checkable: `cache_i_0` row p holds the embedding of the token fed at position p, `cache_i_1` counts the
steps. Converted with TFLite builtins only, like the real export. Used by test_bench.py and test_packaging.py.
"""

import json

import numpy as np
import tensorflow as tf

S, T, V, D, LAYERS = 8, 6, 11, 16, 2
BOS, EOS = 2, 3
_rng = np.random.default_rng(0)
TABLE = _rng.normal(size=(V, D)).astype(np.float32)
W_OUT = _rng.normal(size=(D, V)).astype(np.float32)


def spec(shape, dtype, name):
    return tf.TensorSpec(shape, dtype, name=name)


CROSS = [spec([1, S, D], tf.float32, f"cross_{kv}_{i}") for i in range(LAYERS) for kv in "kv"]
CACHES = [spec([1, T, D] if j == 0 else [1, 1], tf.float32, f"cache_{i}_{j}") for i in range(LAYERS) for j in range(2)]


class ToyTranslator(tf.Module):
    """A decoder-shaped toy: cross-attention over encode's outputs, a growing self cache, greedy logits."""

    def __init__(self):
        super().__init__()
        self.table, self.w_out = tf.constant(TABLE), tf.constant(W_OUT)

    @tf.function(input_signature=[spec([1, S], tf.int32, "source_ids")])
    def encode(self, source_ids):
        emb = tf.gather(self.table, source_ids)
        out = {"source_mask": tf.cast(tf.not_equal(source_ids, 0), tf.float32)}
        for i in range(LAYERS):
            out[f"cross_k_{i}"], out[f"cross_v_{i}"] = emb * float(i + 1), emb + float(i)
        return out

    def _step(self, token, position, source_mask, cross, caches):
        q = tf.gather(self.table, token)  # [1, D]
        h, new = q, {}
        for i in range(LAYERS):
            k, v = cross[2 * i], cross[2 * i + 1]
            scores = tf.reduce_sum(k * q[:, None, :], -1) + (source_mask - 1.0) * 1e9
            h = h + tf.reduce_sum(tf.nn.softmax(scores)[:, :, None] * v, 1)
            new[f"cache_{i}_0"] = caches[2 * i] + tf.one_hot(position, T)[:, :, None] * q[:, None, :]
            new[f"cache_{i}_1"] = caches[2 * i + 1] + 1.0
            h = h + tf.reduce_mean(new[f"cache_{i}_0"], 1)
        return tf.matmul(h, self.w_out), new

    @tf.function(input_signature=[spec([1], tf.int32, "token"), spec([1], tf.int32, "position"),
                                  spec([1, S], tf.float32, "source_mask")] + CROSS + CACHES)
    def decode_step(self, token, position, source_mask, *tensors):
        logits, new = self._step(token, position, source_mask, tensors[:2 * LAYERS], tensors[2 * LAYERS:])
        return {"logits": logits, **new}

    @tf.function(input_signature=[spec([1, S], tf.int32, "source_ids")])
    def translate(self, source_ids):
        enc = self.encode(source_ids)
        cross = [enc[c.name] for c in CROSS]
        caches = [tf.zeros(c.shape) for c in CACHES]
        token, done, length, out = tf.constant([BOS]), tf.constant([False]), tf.constant([0]), []
        for t in range(T):
            logits, new = self._step(token, tf.constant([t]), enc["source_mask"], cross, caches)
            caches = [new[c.name] for c in CACHES]
            token = tf.where(done, 0, tf.cast(tf.argmax(logits, -1), tf.int32))
            length += tf.cast(tf.logical_not(done), tf.int32)
            done = tf.logical_or(done, tf.equal(token, EOS))
            out.append(token)
        return {"target_ids": tf.stack(out, 1), "target_length": length}


def write_toy_exports(root) -> dict:
    """root/{full,no_translate,encode_only}/model.tflite: all three signatures, one without translate, one with
    encode only; `full` has its model_meta.json. Returns the model paths by name."""
    module = ToyTranslator()
    saved = str(root / "saved")
    tf.saved_model.save(module, saved, signatures={
        "encode": module.encode, "decode_step": module.decode_step, "translate": module.translate})
    paths = {}
    for name, keys in (("full", ["encode", "decode_step", "translate"]), ("no_translate", ["encode", "decode_step"]),
                       ("encode_only", ["encode"])):
        converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=keys)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        (root / name).mkdir()
        paths[name] = root / name / "model.tflite"
        paths[name].write_bytes(converter.convert())
    (root / "full" / "model_meta.json").write_text(json.dumps({
        "max_source_len": S, "max_target_len": T, "special_ids": {"pad": 0, "unk": 1, "bos": BOS, "eos": EOS},
        "quantization": "float32"}))
    return paths
