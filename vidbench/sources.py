"""Where each value of a merged workflow config came from: a config file (and its line) or `--config`.

Snakemake merges several `--configfile`s key by key, left to right, then applies `--config KEY=VALUE`
overrides, whose values it reads as strings ('[0,1,2]' becomes ['0', '1', '2']). `ConfigSources`
remembers the files' YAML texts and the overrides, so an error can name the place that set the value,
and `typed_overrides` gives the overrides the types the schema expects.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass
class ConfigSources:
    files: list[tuple[str, str | None]] = field(default_factory=list)   # (path, YAML text), merge order
    overrides: dict = field(default_factory=dict)                        # --config KEY=VALUE, as Snakemake parsed them

    @classmethod
    def from_files(cls, paths, overrides: dict | None = None) -> "ConfigSources":
        files = []
        for path in paths:
            try:
                text = Path(path).read_text()
            except OSError:
                text = None
            files.append((str(path), text))
        return cls(files, dict(overrides or {}))

    def __str__(self) -> str:
        return ", ".join(name for name, _ in self.files) or "config"

    def locate(self, path, key: str | None = None) -> tuple[str, int | None]:
        """(source, line) of the value at `path` (or of mapping key `key` under it): `--config` when an
        override set it, else the last file that holds it (later files win), else all the files."""
        full = [*path, key] if key is not None else list(path)
        if full and full[0] in self.overrides and _holds(self.overrides, full):
            return f"--config {full[0]}", None
        for name, text in reversed(self.files):
            line = yaml_line(text, path, key, exact=True)
            if line is not None:
                return name, line
        if len(self.files) == 1:
            return self.files[0][0], yaml_line(self.files[0][1], path, key)
        return str(self), None


def _holds(data, path) -> bool:
    for part in path:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return False
    return True


def yaml_line(text: str | None, path, key: str | None = None, exact: bool = False) -> int | None:
    """Line (1-based) of the node at `path` (or of mapping key `key` under it) in a YAML text. Where the
    path leaves the text: the line of the deepest node on it, or None when `exact`."""
    if not text:
        return None
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    for part in list(path) + ([key] if key is not None else []):
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                return None if exact else node.start_mark.line + 1
            if key is not None and part is key:
                return match[0].start_mark.line + 1
            node = match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            return None if exact else (node.start_mark.line + 1 if node is not None else None)
    return node.start_mark.line + 1 if node is not None else None


def _typed(value):
    """A --config value read as YAML (Snakemake keeps '0' and 'true' inside lists and mappings as strings)."""
    if isinstance(value, str):
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    return value


def type_overrides(config: dict, overrides: dict, errors_at) -> None:
    """Give the --config overrides in `config` the types the schema expects: where a value as Snakemake
    parsed it fails validation, its YAML reading replaces it if that fails less.

    `errors_at(config, key)` counts the schema errors under top-level `key`."""
    for key, value in overrides.items():
        reading = _typed(value)
        if reading == value or key not in config or not errors_at(config, key):
            continue
        before, failures = config[key], errors_at(config, key)
        config[key] = _merge(before, value, reading)
        if errors_at(config, key) >= failures:
            config[key] = before


def _merge(current, raw, reading):
    """`current` (the merged value) with the parts that came from `raw` replaced by their YAML `reading`."""
    if isinstance(raw, dict) and isinstance(current, dict) and isinstance(reading, dict):
        return {k: _merge(current[k], raw[k], reading[k]) if k in raw else v for k, v in current.items()}
    return reading
