"""Checks of the arguments that cross into the C++ core, each error naming the
argument and the value."""

from __future__ import annotations

import operator


def whole_number(value, name: str, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``low..high`` (no upper bound when ``high`` is None):
    TypeError unless it is a whole number (an int or a numpy integer, not a float or
    a string), ValueError outside."""
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected a whole number, got {value!r}") from None
    if high is None and number < low:
        raise ValueError(f"{name}: must be at least {low}, got {number}")
    if high is not None and not low <= number <= high:
        raise ValueError(f"{name}: must be in {low}..{high}, got {number}")
    return number
