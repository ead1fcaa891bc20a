"""`tfmobile hat train`: the SuperTransformer trained through `model.fit`, one sampled SubTransformer per update.

HAT (Wang et al. 2020, section 3.2) samples one SubTransformer for every optimizer update, independently and
uniformly per dimension and per layer (`Space.sample`). Here update u draws from
`np.random.default_rng([seed, u])`: the sequence is reproducible, the same on every replica (the callback runs
once, in the cross-replica context, and the sample variables are mirrored), and a run resumed from a
checkpoint continues it exactly, since u is the optimizer's own step counter.

The sample is a set of int32 variables read by the graph (`tfmobile.nas.elastic`), so a new one is an
assignment and `model.fit`'s training step is traced once: shapes are dynamic and every step computes only
its SubTransformer. At each epoch's end the largest and the smallest SubTransformers are validated
(`val_loss` is the largest's, `val_loss_smallest` the smallest's, both without label smoothing), as HAT does.

Everything else is `tfmobile train`'s: token-count batches, a checkpoint per epoch, `--resume` after a
`kill -9`, the `tf.distribute` strategies, precision, NaN guard, history.csv and TensorBoard logs.
"""

from __future__ import annotations

import os

import numpy as np
import tf_keras as keras

from tfmobile.errors import ConfigError
from tfmobile.nas.space import Space, load_space
from tfmobile.nas.supertransformer import build_supertransformer, inherited_loss, set_sample
from tfmobile.run import RunFiles, is_run, read_record, write_record
from tfmobile.training.trainer import train
from tfmobile.utils import atomic_write_text

TRAIN_VERB = "hat train"


def sample_for_update(space: Space, seed: int, update: int):
    """The SubTransformer of optimizer update `update` (reproducible: a function of the seed and the update)."""
    return space.sample(np.random.default_rng([seed, update]))


class SampleEachUpdate(keras.callbacks.Callback):
    """Before every training batch, set the SuperTransformer to the SubTransformer of the coming update."""

    def __init__(self, space: Space, seed: int):
        super().__init__()
        self.space, self.seed = space, seed

    def on_train_batch_begin(self, batch, logs=None):
        update = int(self.model.optimizer.iterations.numpy())
        set_sample(self.model, sample_for_update(self.space, self.seed, update))


def validate_extremes(space: Space):
    """The validation function of `train`: the loss of the largest and of the smallest SubTransformer."""
    def validate(model, valid_ds):
        batches = list(valid_ds)
        return {"val_loss": inherited_loss(model, space.super_arch, batches),
                "val_loss_smallest": inherited_loss(model, space.smallest_arch, batches)}

    return validate


def _claim(run_dir: str, space: Space, resume: bool) -> None:
    """A new SuperTransformer run gets its space.yaml and output record; a resumed one must be of the same space."""
    files = RunFiles(run_dir)
    if os.path.isfile(files.space):
        saved = load_space(files.space)
        if not saved.same_as(space):
            raise ConfigError(f"{run_dir} holds a SuperTransformer of another design space ({saved.name}); "
                              "choose another --out")
        return
    if is_run(run_dir):
        raise ConfigError(f"{run_dir} holds an ordinary run, not a SuperTransformer; choose another --out")
    if resume:
        return  # the trainer says there is nothing to resume
    if os.path.isdir(run_dir) and os.listdir(run_dir) and read_record(run_dir) is None:
        raise ConfigError(f"{run_dir} is a non-empty directory that holds no run; choose another --out")
    write_record(run_dir, TRAIN_VERB, space=space.name)
    atomic_write_text(files.space, space.to_yaml())


def train_supertransformer(space: Space, run_dir: str, resume: bool = False, data_dir: str | None = None,
                           verbose: int | str = "auto") -> dict:
    """Train the SuperTransformer of `space` with the space's data and train sections into `run_dir`; returns the
    train state (as `tfmobile train`)."""
    if not space.data.joint_vocab:
        raise ConfigError("the SuperTransformer needs a joint vocabulary (data.joint_vocab: true)")
    _claim(run_dir, space, resume)
    exp = space.experiment()
    return train(exp, run_dir, resume=resume, data_dir=data_dir, verbose=verbose,
                 build=lambda cfg: build_supertransformer(space, cfg.vocab_size),
                 validate=validate_extremes(space), callbacks=[SampleEachUpdate(space, exp.train.seed)])


__all__ = ["SampleEachUpdate", "sample_for_update", "train_supertransformer", "validate_extremes"]
