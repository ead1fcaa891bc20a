"""Label-smoothed cross entropy over non-padding tokens, and masked token accuracy.

Szegedy et al. 2016; as used by Vaswani et al. 2017 (eps = 0.1) and fairseq's
`label_smoothed_cross_entropy`: with q the smoothed target distribution
    q(k) = (1 - eps) [k = y] + eps / V,
    loss = -sum_k q(k) log p(k) = (1 - eps) * nll + eps * mean_k(-log p(k)).
Padding positions (label 0) contribute nothing; the loss is averaged over real tokens.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from tfmobile.data.tokenizer import PAD_ID


def label_smoothed_nll(labels, logits, epsilon: float, pad_id: int = PAD_ID):
    """Per-token smoothed loss [B, T] and the float mask of real tokens [B, T]."""
    log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
    nll = -tf.gather(log_probs, labels, batch_dims=2)
    smooth = -tf.reduce_mean(log_probs, axis=-1)
    mask = tf.cast(tf.not_equal(labels, pad_id), tf.float32)
    return ((1.0 - epsilon) * nll + epsilon * smooth) * mask, mask


@keras.utils.register_keras_serializable(package="tfmobile")
class LabelSmoothedCrossEntropy(keras.losses.Loss):
    """Mean label-smoothed cross entropy per real (non-padding) target token."""

    def __init__(self, epsilon: float = 0.1, pad_id: int = PAD_ID, name="label_smoothed_cross_entropy", **kwargs):
        kwargs.setdefault("reduction", keras.losses.Reduction.SUM)
        super().__init__(name=name, **kwargs)
        self.epsilon = epsilon
        self.pad_id = pad_id

    def call(self, y_true, y_pred):
        loss, mask = label_smoothed_nll(tf.cast(y_true, tf.int32), y_pred, self.epsilon, self.pad_id)
        return tf.reduce_sum(loss) / tf.maximum(tf.reduce_sum(mask), 1.0)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon, "pad_id": self.pad_id}


@keras.utils.register_keras_serializable(package="tfmobile")
class MaskedAccuracy(keras.metrics.Mean):
    """Fraction of real target tokens whose argmax prediction is right."""

    def __init__(self, pad_id: int = PAD_ID, name="token_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.pad_id = pad_id

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = tf.cast(y_true, tf.int32)
        mask = tf.cast(tf.not_equal(y_true, self.pad_id), tf.float32)
        hit = tf.cast(tf.equal(tf.argmax(y_pred, axis=-1, output_type=tf.int32), y_true), tf.float32)
        return super().update_state(hit, sample_weight=mask)

    def get_config(self):
        return {**super().get_config(), "pad_id": self.pad_id}
