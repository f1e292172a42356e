"""One error type for every bad input: it names the file, the line and what was expected."""
from __future__ import annotations


class InputError(Exception):
    """Bad user input (config, annotation, dataset root, names). Raised before any training starts."""

    def __init__(self, path, message: str, line: int | None = None, expected: str | None = None):
        self.path, self.line, self.expected = str(path), line, expected
        where = f"{path}:{line}" if line is not None else f"{path}"
        text = f"{where}: {message}"
        if expected:
            text += f" (expected {expected})"
        super().__init__(text)
