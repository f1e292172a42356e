"""The workflow configuration: loading, schema validation, defaults, and resolving one run's spec.

One schema (workflow/schema/config.schema.yaml) is the single source of the allowed keys, the
allowed backbone and dataset-format names and the defaults. The Snakefile and the command line
(`vidbench train --config ...`) both go through `validate_config` here, so a bad config stops
with the same message (file, line, key, what was expected) before any job runs.

    config = load_config("workflow/config/default.yaml")
    for dataset, method, point, backbone, seed in runs(config):
        spec = resolve_run(config, dataset, method, point, backbone, seed)
"""
from __future__ import annotations

import copy
import os
from functools import lru_cache
from pathlib import Path

import yaml

from vidbench.errors import InputError
from vidbench.backbones import per_backbone
from vidbench.plugins import Method, discover, methods_dir

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = ROOT / "workflow" / "schema" / "config.schema.yaml"
DEFAULT_CONFIG = ROOT / "workflow" / "config" / "default.yaml"
# sections a dataset may override; filled with defaults only at the top level
SECTIONS = ("data", "model", "train", "eval", "resources")


class Config(dict):
    """A validated config (a plain dict for everything else) that remembers the file it came from."""

    source: str = "config"


@lru_cache(maxsize=1)
def schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def backbones() -> list[str]:
    """The allowed backbone names (kept once, as an enum in the schema)."""
    return list(schema()["$defs"]["backbone"]["enum"])


def formats() -> list[str]:
    return list(schema()["$defs"]["format"]["enum"])


# --------------------------------------------------------------------------- loading and validation

def load_config(path) -> Config:
    """Read a YAML config, validate it against the schema, fill defaults and check names."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise InputError(path, f"cannot read config: {err.strerror}") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise InputError(path, f"invalid YAML: {getattr(err, 'problem', err)}",
                         line=mark.line + 1 if mark else None) from err
    if not isinstance(data, dict):
        raise InputError(path, "config is not a mapping", expected="keys such as datasets, methods, backbones")
    return validate_config(data, source=str(path), text=text)


def validate_config(config: dict, source: str = "config", text: str | None = None,
                    methods: dict[str, Method] | None = None) -> Config:
    """Validate `config` in place (schema, then names), fill defaults, and return it as a Config.

    `text` (the YAML source) only serves to report line numbers. The Snakefile calls this on its
    `config` dict; `load_config` calls it for the command line.
    """
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        raise _schema_error(errors[0], source, text)
    fill_defaults(config)
    result = config if isinstance(config, Config) else Config(config)
    result.source = source
    check_names(result, methods)
    return result


def fill_defaults(config: dict) -> dict:
    """Fill keys the user left out with the schema's defaults (top-level sections and synthetic blocks)."""
    top = schema()
    for key, sub in top["properties"].items():
        if key not in config and "default" in sub:
            config[key] = copy.deepcopy(sub["default"])
        if key in SECTIONS:
            for inner, inner_schema in _deref(sub)["properties"].items():
                if inner not in config[key] and "default" in inner_schema:
                    config[key][inner] = copy.deepcopy(inner_schema["default"])
    dataset_props = top["$defs"]["dataset"]["properties"]
    for entry in config["datasets"].values():
        for block in ("synthetic", "extract"):
            if block in entry:
                entry[block] = entry[block] or {}
                for inner, inner_schema in dataset_props[block]["properties"].items():
                    entry[block].setdefault(inner, inner_schema["default"])
    return config


def _deref(sub: dict) -> dict:
    ref = sub.get("$ref")
    if ref:
        node = schema()
        for part in ref.lstrip("#/").split("/"):
            node = node[part]
        return node
    return sub


def _where(path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "the top level"


def _line(text: str | None, path, key: str | None = None) -> int | None:
    """Line (1-based) of the node at `path` (or of mapping key `key` under it) in the YAML text."""
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
                break
            if part == key:
                return match[0].start_mark.line + 1
            node = match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
    return node.start_mark.line + 1 if node is not None else None


def _schema_error(err, source: str, text: str | None) -> InputError:
    path = list(err.absolute_path)
    where = _where(path)
    sub = err.schema if isinstance(err.schema, dict) else {}
    if err.validator == "additionalProperties":
        allowed = sorted(sub.get("properties", {}))
        unknown = sorted(set(err.instance) - set(allowed))
        key = unknown[0] if unknown else None
        return InputError(source, f"unknown key {key!r} in {where}", line=_line(text, path, key),
                          expected=f"one of {allowed}" if allowed else "no other keys")
    if err.validator == "enum":
        return InputError(source, f"{err.instance!r} is not allowed at {where}", line=_line(text, path),
                          expected=f"one of {err.validator_value}")
    if err.validator == "required":
        return InputError(source, f"{where}: {err.message}", line=_line(text, path))
    if err.validator in ("oneOf", "anyOf"):
        expected = sub.get("description")
        # a closed sub-schema (e.g. backbone enum inside a mapping) gives the clearer message
        inner = [e for e in (err.context or []) if e.validator in ("enum", "additionalProperties", "propertyNames")]
        if inner:
            return _schema_error(inner[0], source, text)
        return InputError(source, f"invalid value {err.instance!r} at {where}", line=_line(text, path),
                          expected=expected or err.message)
    if err.validator == "propertyNames":
        return InputError(source, f"invalid name {err.instance!r} in {where}: {err.message}", line=_line(text, path))
    return InputError(source, f"invalid value at {where}: {err.message}", line=_line(text, path),
                      expected=sub.get("description"))


# --------------------------------------------------------------------------- names and run lists

def _methods(methods: dict[str, Method] | None) -> dict[str, Method]:
    return discover() if methods is None else methods


def _source(config) -> str:
    return getattr(config, "source", "config")


def check_names(config: dict, methods: dict[str, Method] | None = None) -> None:
    """Check what the schema cannot: method and point names, dataset roots, `requires` of methods."""
    found = _methods(methods)
    src = _source(config)
    listed = [] if config["methods"] == "all" else list(config["methods"])
    for key, names in (("methods", listed), ("exclude_methods", config["exclude_methods"]),
                       ("points", list(config["points"]))):
        for name in names:
            if name not in found:
                raise InputError(src, f"unknown method {name!r} in {key}",
                                 expected=f"one of {sorted(found)} (directories of {methods_dir()})")
    for name, points in config["points"].items():
        for point in points:
            if point not in found[name].operating_points:
                raise InputError(src, f"unknown operating point {point!r} of method {name!r} in points",
                                 expected=f"one of {list(found[name].operating_points)}")
    if not selected_methods(config, found):
        raise InputError(src, "no method selected", expected=f"methods among {sorted(found)} "
                         f"(found in {methods_dir()}), not all excluded")
    for i, rule in enumerate(config.get("exclude_runs") or []):
        for name in rule.get("methods", []):
            if name not in found:
                raise InputError(src, f"unknown method {name!r} in exclude_runs[{i}]", expected=f"one of {sorted(found)}")
        for name in rule.get("datasets", []):
            if name not in config["datasets"]:
                raise InputError(src, f"unknown dataset {name!r} in exclude_runs[{i}]",
                                 expected=f"one of {list(config['datasets'])}")
        owners = [found[m] for m in rule.get("methods", found)]
        for point in rule.get("points", []):
            if not any(point in m.operating_points for m in owners):
                raise InputError(src, f"unknown operating point {point!r} in exclude_runs[{i}]",
                                 expected=f"a point of {sorted(m.name for m in owners)}")
    for name, settings in (config.get("per_method") or {}).items():
        if name not in found:
            raise InputError(src, f"unknown method {name!r} in per_method", expected=f"one of {sorted(found)}")
        for point in (settings or {}).get("points") or {}:
            if point not in found[name].operating_points:
                raise InputError(src, f"unknown operating point {point!r} in per_method.{name}.points",
                                 expected=f"one of {list(found[name].operating_points)}")
    for dataset, entry in config["datasets"].items():
        _dataset_root(config, dataset)
        _check_data_options(config, dataset)
        for name, overrides in (entry.get("methods") or {}).items():
            if name not in found:
                raise InputError(src, f"unknown method {name!r} in datasets.{dataset}.methods",
                                 expected=f"one of {sorted(found)}")
            allowed = _model_keys(found[name])
            for key in overrides:
                if key not in allowed:
                    raise InputError(src, f"unknown key {key!r} in datasets.{dataset}.methods.{name}",
                                     expected=f"one of {sorted(allowed)} (keys of {found[name].path / 'method.yaml'} "
                                     "defaults or operating points, or of the model section)")
    for method in found.values():
        _requirement_order(method.name, found)
    check_pretrained_files(config, found)


VIDEO_FORMATS = ("sthv2", "kinetics", "minikinetics")  # formats that ship videos, not frame folders


def _check_data_options(config: dict, dataset: str) -> None:
    """`subset` only for minikinetics (its files must exist), `extract` only for formats that ship videos."""
    entry, src = config["datasets"][dataset], _source(config)
    if "subset" in entry:
        if entry["format"] != "minikinetics" or "synthetic" in entry:
            raise InputError(src, f"datasets.{dataset}.subset is only for real minikinetics datasets",
                             expected="format: minikinetics with a root")
        for key, path in entry["subset"].items():
            if not Path(path).is_file():
                raise InputError(src, f"datasets.{dataset}.subset.{key}: file {path!r} does not exist",
                                 expected="the Mini-Kinetics " + ("class list" if key == "classes" else f"{key} id list"))
    if "extract" in entry and entry["format"] not in VIDEO_FORMATS:
        raise InputError(src, f"datasets.{dataset}.extract: format {entry['format']} already ships frame folders",
                         expected=f"extract only for the video formats {list(VIDEO_FORMATS)}")


def pretrained_paths(config: dict, methods: dict[str, Method] | None = None) -> dict[tuple[str, str], list[str]]:
    """{(backbone, path): [where it is set]} for every pretrained file a configured run would load."""
    found = _methods(methods)
    wanted: dict[tuple[str, str], list[str]] = {}
    for dataset, method, point, backbone, seed in all_runs(config, found):
        entry = config["datasets"][dataset]
        value, where = found[method].point_config(point).get("pretrained"), f"methods/{method}/method.yaml"
        for layer, name in ((config["model"], "model"), (entry.get("model") or {}, f"datasets.{dataset}.model"),
                            ((entry.get("methods") or {}).get(method) or {}, f"datasets.{dataset}.methods.{method}")):
            if "pretrained" in layer:
                value, where = layer["pretrained"], name
        path = per_backbone(value, backbone)
        if path:
            places = wanted.setdefault((backbone, str(path)), [])
            if where not in places:
                places.append(where)
    return wanted


def check_pretrained_files(config: dict, methods: dict[str, Method] | None = None) -> None:
    """Every pretrained file a run would load exists and holds weights of its backbone (names and shapes)."""
    from vidbench.backbones import check_pretrained

    for (backbone, path), where in pretrained_paths(config, methods).items():
        try:
            check_pretrained(backbone, path)
        except InputError as err:
            raise InputError(_source(config), f"pretrained weights for {backbone} ({', '.join(where)}): {err}") from None


def _model_keys(method: Method) -> set[str]:
    keys = set(method.defaults) | set(_deref(schema()["properties"]["model"])["properties"])
    for overrides in method.operating_points.values():
        keys |= set(overrides or {})
    return keys


def _requirement_order(name: str, found: dict[str, Method], chain: tuple = ()) -> list[str]:
    """Methods `name` depends on (transitively), dependencies first; stops on unknown names and cycles."""
    if name in chain:
        raise InputError(found[name].path / "method.yaml", f"circular `requires`: {' -> '.join(chain + (name,))}")
    order = []
    for req in found[name].requires:
        if req not in found:
            raise InputError(found[name].path / "method.yaml", f"requires unknown method {req!r}",
                             expected=f"one of {sorted(found)}")
        for item in _requirement_order(req, found, chain + (name,)) + [req]:
            if item not in order:
                order.append(item)
    return order


def _dataset_root(config: dict, dataset: str) -> str:
    entry = config["datasets"][dataset]
    src = _source(config)
    if "synthetic" in entry:
        if "root" in entry:
            raise InputError(src, f"datasets.{dataset} has both `root` and `synthetic`",
                             expected="`synthetic` (generated under data_dir/raw) or `root` (real data), not both")
        return f"{config['data_dir']}/raw/{dataset}"
    if "root" not in entry:
        raise InputError(src, f"datasets.{dataset} has neither `root` nor `synthetic`",
                         expected="root: <directory of the official dataset layout>, or synthetic: {}")
    if not Path(entry["root"]).is_dir():
        raise InputError(src, f"dataset root {entry['root']!r} of datasets.{dataset} does not exist",
                         expected="a directory holding the official layout of format " + repr(entry["format"]))
    return entry["root"]


def selected_methods(config: dict, methods: dict[str, Method] | None = None) -> list[str]:
    found = _methods(methods)
    names = sorted(found) if config["methods"] == "all" else list(config["methods"])
    return [n for n in names if n not in set(config.get("exclude_methods") or ())]


def selected_points(config: dict, method: Method) -> list[str]:
    return list((config.get("points") or {}).get(method.name) or method.default_points)


def runs(config: dict, methods: dict[str, Method] | None = None) -> list[tuple]:
    """The configured runs: (dataset, method, point, backbone, seed) for every combination."""
    found = _methods(methods)
    return [(dataset, name, point, backbone, seed)
            for dataset in config["datasets"]
            for name in selected_methods(config, found)
            for point in selected_points(config, found[name])
            for backbone in config["backbones"]
            if not excluded(config, dataset, name, point, backbone)
            for seed in config["seeds"]]


def excluded(config: dict, dataset: str, method: str, point: str, backbone: str) -> bool:
    """Whether a filter of `exclude_runs` matches the run on every key it names."""
    run = {"datasets": dataset, "methods": method, "points": point, "backbones": backbone}
    return any(all(run[key] in names for key, names in rule.items()) for rule in config.get("exclude_runs") or [])


def required_point(required: Method, point: str) -> str:
    """Which run of a required method a run at `point` reads: the same-named point if the required
    method has one, else its 'default' point, else its first."""
    points = list(required.operating_points)
    return point if point in points else ("default" if "default" in points else points[0])


def requirements(config: dict, dataset: str, method: str, point: str, backbone: str, seed: int,
                 methods: dict[str, Method] | None = None) -> dict[str, tuple]:
    """{required method: its run tuple} for the direct `requires` of a run."""
    found = _methods(methods)
    return {req: (dataset, req, required_point(found[req], point), backbone, seed)
            for req in found[method].requires}


def all_runs(config: dict, methods: dict[str, Method] | None = None) -> list[tuple]:
    """The configured runs plus every run they require (transitively), without duplicates."""
    found = _methods(methods)
    todo, seen, ordered = list(runs(config, found)), set(), []
    while todo:
        run = todo.pop(0)
        if run in seen:
            continue
        seen.add(run)
        ordered.append(run)
        todo.extend(requirements(config, *run, methods=found).values())
    return ordered


def prepared_dir(config: dict, dataset: str) -> str:
    """The index training reads: `vidbench prepare`'s, or with `extract` the index of the extracted frames."""
    base = f"{config['data_dir']}/prepared/{dataset}"
    return f"{base}/frames" if "extract" in config["datasets"][dataset] else base


def frames_dir(config: dict, dataset: str) -> str:
    """Where `extract` writes a dataset's frame folders."""
    return f"{config['data_dir']}/frames/{dataset}"


def run_dir(config: dict, dataset: str, method: str, point: str, backbone: str, seed: int) -> str:
    return f"{config['results']}/runs/{dataset}/{method}/{point}/{backbone}/seed{seed}"


def resolve_run(config: dict, dataset: str, method: str, point: str, backbone: str, seed: int,
                methods: dict[str, Method] | None = None) -> dict:
    """The fully resolved, JSON-serialisable spec of one run.

    model = method.yaml defaults < operating point < config `model` < dataset `model`
            < dataset `methods.<method>`, values written per backbone picked for this backbone;
    data/eval = config section < dataset section;
    train = config < dataset < `per_method.<method>` < `per_method.<method>.points.<point>`.
    `requires` ({method: its metrics.json}) is given at the top level and, when not empty, in `model` too (where the method's build() reads it).
    """
    found = _methods(methods)
    src = _source(config)
    if dataset not in config["datasets"]:
        raise InputError(src, f"unknown dataset {dataset!r}", expected=f"one of {list(config['datasets'])}")
    if method not in found:
        raise InputError(methods_dir(), f"unknown method {method!r}", expected=f"one of {sorted(found)}")
    if backbone not in backbones():
        raise InputError(src, f"unknown backbone {backbone!r}", expected=f"one of {backbones()}")
    entry = config["datasets"][dataset]
    plugin = found[method]
    model = dict(plugin.point_config(point))
    for layer in (config["model"], entry.get("model") or {}, (entry.get("methods") or {}).get(method) or {}):
        model.update(copy.deepcopy(layer))
    model = {key: per_backbone(value, backbone) for key, value in model.items()}
    data = {**copy.deepcopy(config["data"]), **copy.deepcopy(entry.get("data") or {}),
            "format": entry["format"], "root": _dataset_root(config, dataset),
            "synthetic": "synthetic" in entry, "prepared": prepared_dir(config, dataset)}
    requires = {req: run_dir(config, *run) + "/metrics.json"
                for req, run in requirements(config, dataset, method, point, backbone, seed, found).items()}
    if requires:
        model["requires"] = dict(requires)  # also where build(cfg) sees it
    return {
        "dataset": dataset, "method": method, "point": point, "backbone": backbone, "seed": int(seed),
        "title": plugin.title, "paper_label": plugin.paper_label,
        "data": data,
        "model": model,
        "train": _train_section(config, entry, method, point),
        "eval": {**copy.deepcopy(config["eval"]), **copy.deepcopy(entry.get("eval") or {})},
        "requires": requires,
        "results_dir": config["results"],
        "run_dir": run_dir(config, dataset, method, point, backbone, seed),
    }


def _train_section(config: dict, entry: dict, method: str, point: str) -> dict:
    per_method = (config.get("per_method") or {}).get(method) or {}
    per_point = (per_method.get("points") or {}).get(point) or {}
    train = {}
    for layer in (config["train"], entry.get("train"), per_method.get("train"), per_point.get("train")):
        train.update(copy.deepcopy(layer or {}))
    return train


def configfile_text(paths) -> str | None:
    """The YAML text of a single config file (for line numbers), else None."""
    paths = [p for p in paths if p]
    if len(paths) == 1 and os.path.isfile(paths[0]):
        return Path(paths[0]).read_text()
    return None
