"""One error type for every bad input: it names the file, the line and what was expected."""
from __future__ import annotations

import difflib


def close_match(name, choices) -> str | None:
    """The choice that `name` most likely misspells, if one is close enough."""
    if not isinstance(name, str) or not choices:
        return None
    found = difflib.get_close_matches(name, [str(c) for c in choices], n=1, cutoff=0.6)
    return found[0] if found else None


class InputError(Exception):
    """Bad user input (config, annotation, dataset root, names). Raised before any training starts.

    `suggestion`: the close match of a misspelt name (see `close_match`), shown as "did you mean ...?"."""

    def __init__(self, path, message: str, line: int | None = None, expected: str | None = None,
                 suggestion: str | None = None):
        self.path, self.line, self.expected = str(path), line, expected
        where = f"{path}:{line}" if line is not None else f"{path}"
        text = f"{where}: {message}"
        if suggestion:
            text += f"; did you mean {suggestion!r}?"
        if expected:
            text += f" (expected {expected})"
        super().__init__(text)
