"""Reads compact-view TFRecords with TensorFlow's own reader and
``generals_rl.tensorflow.parse_compact_examples``, saving what it parsed to an
``.npz``. Run in its own process by tests/test_storage_tfrecord_compact.py:
TensorFlow's ``example.proto`` and the ``tfrecord`` package's (which other tests
import) cannot share one protobuf descriptor pool.

    python tests/tensorflow_reader.py OUT.npz FILE... [--scaling log --scale 50
        --obstacles --gzip --single]
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("files", nargs="+")
    parser.add_argument("--scaling", default="linear")
    parser.add_argument("--scale", type=float, default=1000.0)
    parser.add_argument("--obstacles", action="store_true")
    parser.add_argument("--gzip", action="store_true")
    parser.add_argument("--single", action="store_true", help="parse the first record alone")
    args = parser.parse_args()

    import tensorflow as tf
    from generals_rl.tensorflow import parse_compact_examples

    def parse(records):
        return parse_compact_examples(
            records,
            20,
            20,
            army_scaling=args.scaling,
            army_scale=args.scale,
            obstacles=args.obstacles,
        )

    data = tf.data.TFRecordDataset(args.files, compression_type="GZIP" if args.gzip else "")
    if args.single:
        parts = [{k: v.numpy()[np.newaxis] for k, v in parse(next(iter(data))).items()}]
    else:
        parts = list(data.batch(300).map(parse).as_numpy_iterator())
    np.savez(args.out, **{name: np.concatenate([p[name] for p in parts]) for name in parts[0]})


if __name__ == "__main__":
    main()
