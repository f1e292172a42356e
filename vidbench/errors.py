"""The errors a user sees as one line (the command line prints them without a traceback): `InputError`
names the file, the line and what was expected."""
from __future__ import annotations

import difflib


def close_match(name, choices) -> str | None:
    """The choice that `name` most likely misspells, if one is close enough."""
    if not isinstance(name, str) or not choices:
        return None
    found = difflib.get_close_matches(name, [str(c) for c in choices], n=1, cutoff=0.6)
    return found[0] if found else None


class HarnessError(Exception):
    """An error the command line reports as one line and exits with `exit_code`."""

    exit_code = 1


class InputError(HarnessError):
    """Bad user input (config, annotation, dataset root, names, files read back). Exit code 2.

    `suggestion`: the close match of a misspelt name (see `close_match`), shown as "did you mean ...?"."""

    exit_code = 2

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


class OutputError(InputError):
    """A result file that cannot be written (disk full, read-only directory): names the file and the cause."""

    exit_code = 1
