"""tf.data pipelines: tokenize inside the graph, batch by token count with length bucketing.

A training example is ((source, target_in), target_out):
    source     = pieces(src) + [EOS]
    target_in  = [BOS] + pieces(tgt)
    target_out = pieces(tgt) + [EOS]
Batches group sentences of similar length (buckets) and hold about `max_tokens` tokens per side.
Each bucket is padded to its boundary, so the training step only ever sees a handful of shapes:
that is what lets XLA compile each shape once and reuse it.
"""

from __future__ import annotations

import tensorflow as tf

from tfmobile.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer

BUCKET_SIZES = (8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)


def bucket_sizes(max_len: int) -> list[int]:
    sizes = [b for b in BUCKET_SIZES if b < max_len]
    return sizes + [max_len]


def tokenized_pairs(tsv_path: str, src_tokenizer: Tokenizer, tgt_tokenizer: Tokenizer, max_len: int | None = None):
    """Dataset of (source, target_in, target_out) int32 vectors from a `src<TAB>tgt` file.

    Pairs whose source + EOS or target + BOS exceed `max_len` are dropped (training only).
    """
    lines = tf.data.TextLineDataset(tsv_path)

    def split(line):
        parts = tf.strings.split(line, "\t", maxsplit=1)
        return parts[0], parts[-1]

    src_sp, tgt_sp = src_tokenizer.tf_tokenizer, tgt_tokenizer.tf_tokenizer

    def encode(src, tgt):
        s = tf.cast(src_sp.tokenize(src), tf.int32)
        t = tf.cast(tgt_sp.tokenize(tgt), tf.int32)
        eos, bos = tf.constant([EOS_ID], tf.int32), tf.constant([BOS_ID], tf.int32)
        return tf.concat([s, eos], 0), tf.concat([bos, t], 0), tf.concat([t, eos], 0)

    ds = lines.map(split, num_parallel_calls=tf.data.AUTOTUNE).map(encode, num_parallel_calls=tf.data.AUTOTUNE)
    if max_len is not None:
        ds = ds.filter(lambda s, ti, to: tf.maximum(tf.size(s), tf.size(ti)) <= max_len)
    return ds


def _length(s, ti, to):
    return tf.maximum(tf.size(s), tf.size(ti))


def token_batches(examples: tf.data.Dataset, max_tokens: int, max_len: int, shuffle: bool = False,
                  seed: int = 1, repeat: bool = False, drop_remainder: bool = False,
                  shuffle_buffer: int = 50_000) -> tf.data.Dataset:
    """Bucket by length and batch so that batch_size * padded_length <= max_tokens (per side)."""
    sizes = bucket_sizes(max_len)
    batch_sizes = [max(1, max_tokens // b) for b in sizes]
    ds = examples.cache()
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.bucket_by_sequence_length(
        _length,
        bucket_boundaries=[b + 1 for b in sizes],
        bucket_batch_sizes=batch_sizes + [batch_sizes[-1]],
        padding_values=(PAD_ID, PAD_ID, PAD_ID),
        pad_to_bucket_boundary=True,
        drop_remainder=drop_remainder,
    )
    ds = ds.map(lambda s, ti, to: ((s, ti), to))
    return ds.prefetch(tf.data.AUTOTUNE)
