"""Argument checks shared by the typed configs and the pipeline: an error names the parameter, the value and what
is allowed, before any work starts."""

from __future__ import annotations

from typing import Any


def one_of(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def integer_in(name: str, value: Any, low: int, high: int | None = None) -> None:
    """`value` is an int (not a bool) with low ≤ value (≤ high)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if value < low or (high is not None and value > high):
        allowed = f"at least {low}" if high is None else f"between {low} and {high}"
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
