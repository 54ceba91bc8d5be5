"""Experiences: the buffer they are collected into, its cursors, and batches."""

from .batch import (
    DecodedBatch,
    ExperienceBatch,
    RawBatch,
    SampledBatch,
    SampledRawBatch,
    format_game_id,
    parse_game_id,
)
from .buffer import BufferFileError, BufferFullError, Cursor, ExperienceBuffer
from .compact import CompactBatch

__all__ = [
    "BufferFileError",
    "BufferFullError",
    "CompactBatch",
    "Cursor",
    "DecodedBatch",
    "ExperienceBatch",
    "ExperienceBuffer",
    "RawBatch",
    "SampledBatch",
    "SampledRawBatch",
    "format_game_id",
    "parse_game_id",
]
