"""Compact-view TFRecords (``TFRecordWriter(states="compact_views")``) in TensorFlow:
:func:`parse_compact_examples` turns serialized ``tf.train.Example``s into the float
observations and bool masks of the float observation format, bit for bit, inside a
``tf.data`` pipeline (tensor operations only, on the device TensorFlow places them)::

    import tensorflow as tf
    from generals_rl.tensorflow import parse_compact_examples

    data = (
        tf.data.TFRecordDataset(files)
        .batch(256)
        .map(lambda records: parse_compact_examples(records, 20, 20, army_scaling="log"))
    )

Army values come from a table of every army 0..``NARROW_ARMY_MAX`` computed by the
C++ scaling (as ``generals_rl.torch`` does), so they equal the C++ expansion; armies
above it expand to 1.0 up to ``army_scale`` ``NARROW_ARMY_SCALE_MAX``, the largest
scale this parser takes.

Needs TensorFlow (``pip install tensorflow-cpu``).
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

from generals_rl import _core
from generals_rl.observations import (
    ARMY_CHANNELS,
    CHANNEL_CODES,
    NARROW_ARMY_MAX,
    NARROW_ARMY_SCALE_MAX,
    packed_mask_bytes,
)
from generals_rl.storage.tfrecord import VIEW_ARMY_SHIFT

# The per-experience features besides the views and the mask: name -> dtype.
ROW_FEATURES = {
    "sequence": tf.int64,
    "game_id": tf.int64,  # the uint64 id's bit pattern
    "player_id": tf.int64,
    "tick": tf.int64,
    "action": tf.int64,
    "legal": tf.int64,
    "terminated": tf.int64,
    "truncated": tf.int64,
    "reward": tf.float32,
}


def parse_compact_examples(
    serialized,
    height: int,
    width: int,
    *,
    army_scaling: str = "linear",
    army_scale: float = 1000.0,
    obstacles: bool = False,
) -> dict:
    """The features of compact-view Examples: a vector of serialized records (after
    ``.batch``) or one record. Returns the row features (``ROW_FEATURES``; ``legal``,
    ``terminated`` and ``truncated`` as bool), ``state`` and ``next_state`` float32
    ``(..., channels, height, width)`` (10 channels with ``obstacles``) and
    ``action_mask`` bool ``(..., height * width * 4)``, equal to what the float
    observation format gives. ValueError for an ``army_scale`` above
    ``NARROW_ARMY_SCALE_MAX`` or an unknown ``army_scaling``."""
    if army_scale > NARROW_ARMY_SCALE_MAX:
        raise ValueError(
            f"army_scale: the TensorFlow parser takes at most {NARROW_ARMY_SCALE_MAX}, "
            f"got {army_scale}"
        )
    tiles = height * width
    spec = {name: tf.io.FixedLenFeature([], dtype) for name, dtype in ROW_FEATURES.items()}
    spec["state_view"] = tf.io.FixedLenFeature([tiles], tf.int64)
    spec["next_state_view"] = tf.io.FixedLenFeature([tiles], tf.int64)
    spec["action_mask"] = tf.io.FixedLenFeature([], tf.string)
    serialized = tf.convert_to_tensor(serialized)
    if serialized.shape.rank == 0:
        features = tf.io.parse_single_example(serialized, spec)
    else:
        features = tf.io.parse_example(serialized, spec)
    # Constants made per call: a cached tensor may belong to another graph.
    armies = tf.constant(_army_table(army_scaling, float(army_scale)))
    channels = tf.constant(_channel_table(obstacles))
    out = {name: features[name] for name in ROW_FEATURES}
    for flag in ("legal", "terminated", "truncated"):
        out[flag] = out[flag] != 0
    for name in ("state", "next_state"):
        out[name] = _expand(features[f"{name}_view"], height, width, armies, channels)
    out["action_mask"] = _unpack_mask(features["action_mask"], height, width)
    return out


def _expand(values, height: int, width: int, armies, channels):
    """Float observations (..., C, H, W) of view values (..., H*W)."""
    codes = tf.bitwise.bitwise_and(values, (1 << VIEW_ARMY_SHIFT) - 1)
    army = tf.minimum(tf.bitwise.right_shift(values, VIEW_ARMY_SHIFT), NARROW_ARMY_MAX)
    planes = tf.gather(channels, codes)  # (..., H*W, C)
    scale = tf.gather(armies, army)[..., tf.newaxis]
    count = channels.shape[1]
    lanes = tf.concat([planes[..., :ARMY_CHANNELS] * scale, planes[..., ARMY_CHANNELS:]], axis=-1)
    rank = len(lanes.shape)
    lanes = tf.transpose(lanes, [*range(rank - 2), rank - 1, rank - 2])  # (..., C, H*W)
    return tf.reshape(lanes, tf.concat([tf.shape(lanes)[:-2], [count, height, width]], 0))


def _unpack_mask(packed, height: int, width: int):
    """Bool masks (..., H*W*4) of the packed mask bytes (entry i at bit i % 8 of byte i // 8)."""
    raw = tf.io.decode_raw(packed, tf.uint8)  # (..., packed_mask_bytes)
    raw = tf.ensure_shape(raw, [*raw.shape[:-1], packed_mask_bytes(height, width)])
    shifts = tf.constant(np.arange(8, dtype=np.uint8))
    bits = tf.bitwise.bitwise_and(tf.bitwise.right_shift(raw[..., tf.newaxis], shifts), 1)
    flat = tf.reshape(bits, tf.concat([tf.shape(raw)[:-1], [-1]], 0))
    return tf.cast(flat[..., : height * width * 4], tf.bool)


@functools.lru_cache(maxsize=16)
def _army_table(army_scaling: str, army_scale: float) -> np.ndarray:
    """The scaled value of every army 0..NARROW_ARMY_MAX, by the C++ scaling."""
    return _core.army_values(np.arange(NARROW_ARMY_MAX + 1), army_scaling, army_scale)


@functools.lru_cache(maxsize=4)
def _channel_table(obstacles: bool) -> np.ndarray:
    """(32 codes, channels) float32: 1 where a tile of that code has a 1 in the channel."""
    count = len(CHANNEL_CODES) if obstacles else len(CHANNEL_CODES) - 1
    table = [
        [float(CHANNEL_CODES[c] >> code & 1) for c in range(count)]
        for code in range(1 << VIEW_ARMY_SHIFT)
    ]
    return np.array(table, dtype=np.float32)
