"""Inverse square-root learning-rate schedule with linear warm-up (Vaswani et al. 2017, eq. 3 form).

lr(step) = peak * min(step / warmup, sqrt(warmup / step)): linear to `peak` over `warmup` steps,
then decaying as 1/sqrt(step) (fairseq's `inverse_sqrt`).
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras


@keras.utils.register_keras_serializable(package="tfmobile")
class InverseSqrtSchedule(keras.optimizers.schedules.LearningRateSchedule):
    def __init__(self, peak_learning_rate: float, warmup_steps: int = 4000):
        self.peak_learning_rate = float(peak_learning_rate)
        self.warmup_steps = int(max(warmup_steps, 1))

    def __call__(self, step):
        step = tf.cast(step, tf.float32) + 1.0
        warmup = float(self.warmup_steps)
        return self.peak_learning_rate * tf.minimum(step / warmup, tf.sqrt(warmup / step))

    def get_config(self):
        return {"peak_learning_rate": self.peak_learning_rate, "warmup_steps": self.warmup_steps}
