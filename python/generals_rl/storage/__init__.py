"""Durable experience storage: TFRecord, NPZ and Parquet shards in a local
directory or on S3, written crash-safely from an ExperienceBuffer by a background
sink, and read back as the batches cursors return.

    from generals_rl.storage import BufferSink, open_dataset, open_writer

    writer = open_writer("parquet", "runs/exp1")        # or "s3://bucket/prefix"
    sink = BufferSink(buffer, writer).start()
    ...                                                  # step the VecEnv
    sink.stop()                                          # drains, flushes, closes
    for batch in open_dataset("runs/exp1", player_ids=[0]):
        ...

Heavy dependencies (pyarrow, boto3) are imported only by the formats and
destinations that use them: ``pip install 'generals-rl[storage]'``.
"""

from __future__ import annotations

import os

# Each format registers itself on import; this order is FORMATS' order.
from .parquet import ParquetWriter  # isort: skip
from .tfrecord import TFRecordWriter  # isort: skip
from .npz import NpzWriter  # isort: skip
from ._options import format_and_writer_options
from .dataset import Dataset, open_dataset
from .errors import StorageError
from .formats import format_for, format_names
from .local import LocalStore
from .multi import MultiWriter
from .s3 import S3Writer
from .shard_writer import ShardWriter
from .sink import BufferSink, continue_numbering
from .writer import RetryPolicy, Rotation, Writer

FORMATS = format_names()


def open_writer(format: str, destination: str | os.PathLike, **options) -> ShardWriter:
    """A writer of ``format`` ("parquet", "tfrecord" or "npz") shards to
    ``destination``: a local directory, or ``s3://bucket/prefix`` (S3 options such
    as ``endpoint_url`` then apply). ``options`` are the format's (e.g.
    ``states``, ``compression``) and the writer's (``max_experiences``,
    ``max_bytes``, ``max_age``, ``chunk_size``, ``resume``, retries)."""
    format_class = format_for(format)
    text = os.fspath(destination)
    if text.startswith("s3://"):
        return S3Writer(text, format=format, **options)
    if "://" in text:
        raise ValueError(
            f"destination: only local paths and s3:// URLs are supported, got {text!r}"
        )
    # Options are checked before a directory is made.
    shard_format, writer_options = format_and_writer_options(format_class, options)
    return ShardWriter(LocalStore(text), shard_format, **writer_options)


__all__ = [
    "FORMATS",
    "BufferSink",
    "Dataset",
    "MultiWriter",
    "NpzWriter",
    "ParquetWriter",
    "RetryPolicy",
    "Rotation",
    "S3Writer",
    "ShardWriter",
    "StorageError",
    "TFRecordWriter",
    "Writer",
    "continue_numbering",
    "open_dataset",
    "open_writer",
]
