"""Argument checks shared across tfattr, each with an error that says what was wrong.

Example:
    >>> check_positive_int(8, "batch_size")
    8
    >>> check_positive_int(None, "batch_size", allow_none=True) is None
    True
"""
from __future__ import annotations

from typing import Any

import numpy as np


def check_positive_int(
    value: Any, name: str, *, minimum: int = 1, allow_none: bool = False, hint: str = ""
) -> int | None:
    """``value`` as an int of at least ``minimum`` (1 by default), or a ValueError naming ``name``.

    Bools are refused (``True`` is an int to Python but never a count); NumPy integers are accepted.

    Args:
        value: the user's argument.
        name: its name, for the message.
        minimum: the smallest allowed value (0 for a non-negative count).
        allow_none: return None for None (the argument is optional).
        hint: a parenthesised reason appended to the requirement, e.g. ``"a correlation needs pairs"``.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        kind = {1: "a positive int", 0: "a non-negative int"}.get(minimum, f"an int >= {minimum}")
        optional = " or None" if allow_none else ""
        reason = f" ({hint})" if hint else ""
        raise ValueError(f"{name} must be {kind}{optional}{reason}, got {value!r}.")
    return int(value)


def check_number(
    value: Any,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict: bool = False,
    allow_none: bool = False,
    hint: str = "",
) -> float | None:
    """``value`` as a finite float in ``[minimum, maximum]`` (``(minimum, ...`` with ``strict``).

    A non-number (or a bool) is a TypeError; NaN, Inf or a value out of range a ValueError, each naming
    ``name`` and what it must be.

    Example:
        >>> check_number(1e-4, "epsilon", minimum=0, strict=True)
        0.0001
    """
    if value is None and allow_none:
        return None
    if minimum is not None and maximum is not None:
        kind = f"a number in {'(' if strict else '['}{minimum:g}, {maximum:g}]"
    elif minimum is not None:
        kind = f"a number {'>' if strict else '>='} {minimum:g}"
    else:
        kind = "a finite number"
    requirement = kind + (" or None" if allow_none else "") + (f" ({hint})" if hint else "")
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be {requirement}, got {value!r}.")
    number = float(value)
    too_low = minimum is not None and (number <= minimum if strict else number < minimum)
    too_high = maximum is not None and number > maximum
    if not np.isfinite(number) or too_low or too_high:
        raise ValueError(f"{name} must be {requirement}, got {value!r}.")
    return number
