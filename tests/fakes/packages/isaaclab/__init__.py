"""Fake ``isaaclab`` (tests only). ``CALLS`` records, in order, what the fakes were called with."""

from __future__ import annotations

from typing import Any

CALLS: list[tuple[str, dict[str, Any]]] = []


def record(name: str, **details: Any) -> None:
    CALLS.append((name, details))
