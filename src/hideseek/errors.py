"""Errors a user can act on: bad config, split files or images. Messages say what to fix."""

from __future__ import annotations

from dataclasses import dataclass


class InputError(Exception):
    """Bad user input (config, split files, images). The message says what to fix."""


MAX_LISTED_PROBLEMS = 200


@dataclass(frozen=True)
class Problem:
    """One bad line of a split file."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


def format_problems(problems: list, header: str, hint: str = "") -> str:
    """A message listing every problem (capped for very long lists), with a hint at the end."""
    shown = [f"  {p}" for p in problems[:MAX_LISTED_PROBLEMS]]
    if len(problems) > MAX_LISTED_PROBLEMS:
        shown.append(f"  ... and {len(problems) - MAX_LISTED_PROBLEMS} more")
    text = f"{header} ({len(problems)} problem{'s' if len(problems) != 1 else ''}):\n" + "\n".join(shown)
    return text + (f"\n{hint}" if hint else "")
