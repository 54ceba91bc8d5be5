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

__all__ = [
    "BufferFileError",
    "BufferFullError",
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
