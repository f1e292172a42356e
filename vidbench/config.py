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

from vidbench import io as vio
from vidbench.backbone_values import per_backbone
from vidbench.errors import InputError, close_match
from vidbench.plugins import Method, broken_methods, discover, methods_dir
from vidbench.sources import ConfigSources, type_overrides

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = ROOT / "workflow" / "schema" / "config.schema.yaml"
DEFAULT_CONFIG = ROOT / "workflow" / "config" / "default.yaml"
# sections a dataset may override; filled with defaults only at the top level (like `tables`)
SECTIONS = ("data", "model", "train", "eval", "resources")


class Config(dict):
    """A validated config (a plain dict for everything else) that remembers where its values came from."""

    source: ConfigSources = ConfigSources()


@lru_cache(maxsize=1)
def schema() -> dict:
    return vio.load_yaml(SCHEMA_PATH.read_text())


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
        data = vio.load_yaml(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise InputError(path, f"invalid YAML: {getattr(err, 'problem', err)}",
                         line=mark.line + 1 if mark else None) from err
    if not isinstance(data, dict):
        raise InputError(path, "config is not a mapping", expected="keys such as datasets, methods, backbones")
    return validate_config(data, ConfigSources([(str(path), text)]))


def _validator():
    import jsonschema

    return jsonschema.Draft202012Validator(schema())


def _errors_at(config: dict, key: str) -> int:
    return sum(1 for err in _validator().iter_errors(config) if list(err.absolute_path)[:1] == [key])


def validate_config(config: dict, sources: ConfigSources | None = None,
                    methods: dict[str, Method] | None = None) -> Config:
    """Validate `config` in place (schema, then names), fill defaults, and return it as a Config.

    `sources` (the config files' texts and the --config overrides) give the --config values their
    schema types and let errors name the file and line that set a value. The Snakefile calls this on
    its merged `config` dict; `load_config` calls it for the command line.
    """
    sources = sources or ConfigSources()
    type_overrides(config, sources.overrides, _errors_at)
    # unknown keys and bad values first: a misspelt key often explains a missing one
    errors = sorted(_validator().iter_errors(config),
                    key=lambda e: (e.validator == "required", len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        raise _schema_error(errors[0], sources)
    fill_defaults(config)
    result = config if isinstance(config, Config) else Config(config)
    result.source = sources
    check_names(result, methods)
    return result


def fill_defaults(config: dict) -> dict:
    """Fill keys the user left out with the schema's defaults (top-level sections and synthetic blocks)."""
    top = schema()
    for key, sub in top["properties"].items():
        if key not in config and "default" in sub:
            config[key] = copy.deepcopy(sub["default"])
        if key in (*SECTIONS, "tables", "pretrain"):
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


def _schema_error(err, sources: ConfigSources) -> InputError:
    path = list(err.absolute_path)
    where = _where(path)
    sub = err.schema if isinstance(err.schema, dict) else {}

    def error(message, key=None, **kwargs):
        source, line = sources.locate(path, key)
        return InputError(source, message, line=line, **kwargs)

    if err.validator == "additionalProperties":
        allowed = sorted(sub.get("properties", {}))
        unknown = sorted(set(err.instance) - set(allowed))
        key = unknown[0] if unknown else None
        return error(f"unknown key {key!r} in {where}", key, suggestion=close_match(key, allowed),
                     expected=f"one of {allowed}" if allowed else "no other keys")
    if err.validator == "enum":
        return error(f"{err.instance!r} is not allowed at {where}", suggestion=close_match(err.instance, err.validator_value),
                     expected=f"one of {err.validator_value}")
    if err.validator == "required":
        return error(f"{where}: {err.message}")
    if err.validator in ("oneOf", "anyOf"):
        expected = sub.get("description")
        # a closed sub-schema (e.g. backbone enum inside a mapping) gives the clearer message
        inner = [e for e in (err.context or []) if e.validator in ("enum", "additionalProperties", "propertyNames")]
        if inner:
            return _schema_error(inner[0], sources)
        return error(f"invalid value {err.instance!r} at {where}", expected=expected or err.message)
    if err.validator == "propertyNames":
        return error(f"invalid name {err.instance!r} in {where}: {err.message}")
    return error(f"invalid value at {where}: {err.message}", expected=sub.get("description"))


# --------------------------------------------------------------------------- names and run lists

def _methods(methods: dict[str, Method] | None) -> dict[str, Method]:
    return discover() if methods is None else methods


def _sources(config) -> ConfigSources:
    return getattr(config, "source", None) or ConfigSources()


def _error(config, path, message, key=None, name=None, choices=None, expected=None) -> InputError:
    """An InputError at the file and line (or --config option) that set the value at `path` of `config`,
    suggesting the close match of a misspelt `name` among `choices`."""
    source, line = _sources(config).locate(path, key)
    return InputError(source, message, line=line, expected=expected, suggestion=close_match(name, choices))


def check_names(config: dict, methods: dict[str, Method] | None = None) -> None:
    """Check what the schema cannot: method and point names, dataset roots, `requires` of methods, that
    every selected method imports and that its runs' options are allowed values."""
    found = _methods(methods)
    _check_broken(config, found)
    listed = [] if config["methods"] == "all" else list(config["methods"])
    for key, names in (("methods", listed), ("exclude_methods", config["exclude_methods"]),
                       ("points", list(config["points"]))):
        for i, name in enumerate(names):
            if name not in found:
                path = [key] if key == "points" else [key, i]
                raise _error(config, path, f"unknown method {name!r} in {key}", key=name if key == "points" else None,
                             name=name, choices=found, expected=f"one of {sorted(found)} (directories of {methods_dir()})")
    for name, points in config["points"].items():
        for i, point in enumerate(points):
            _check_point(config, found[name], point, ["points", name, i], "points")
    if not selected_methods(config, found):
        raise _error(config, ["methods"], "no method selected", expected=f"methods among {sorted(found)} "
                     f"(found in {methods_dir()}), not all excluded")
    for i, rule in enumerate(config.get("exclude_runs") or []):
        where = f"exclude_runs[{i}]"
        for j, name in enumerate(rule.get("methods", [])):
            if name not in found:
                raise _error(config, ["exclude_runs", i, "methods", j], f"unknown method {name!r} in {where}",
                             name=name, choices=found, expected=f"one of {sorted(found)}")
        for j, name in enumerate(rule.get("datasets", [])):
            if name not in config["datasets"]:
                raise _error(config, ["exclude_runs", i, "datasets", j], f"unknown dataset {name!r} in {where}",
                             name=name, choices=config["datasets"], expected=f"one of {list(config['datasets'])}")
        owners = [found[m] for m in rule.get("methods", found)]
        for j, point in enumerate(rule.get("points", [])):
            if not any(point in m.operating_points for m in owners):
                raise _error(config, ["exclude_runs", i, "points", j], f"unknown operating point {point!r} in {where}",
                             name=point, choices={p for m in owners for p in m.operating_points},
                             expected=f"a point of {sorted(m.name for m in owners)}")
    for name, settings in (config.get("per_method") or {}).items():
        if name not in found:
            raise _error(config, ["per_method"], f"unknown method {name!r} in per_method", key=name, name=name,
                         choices=found, expected=f"one of {sorted(found)}")
        for point in (settings or {}).get("points") or {}:
            _check_point(config, found[name], point, ["per_method", name, "points"], f"per_method.{name}.points",
                         key=point)
    for dataset, entry in config["datasets"].items():
        _dataset_root(config, dataset)
        _check_data_options(config, dataset)
        for name, overrides in (entry.get("methods") or {}).items():
            path = ["datasets", dataset, "methods"]
            if name not in found:
                raise _error(config, path, f"unknown method {name!r} in datasets.{dataset}.methods", key=name,
                             name=name, choices=found, expected=f"one of {sorted(found)}")
            allowed = _model_keys(found[name])
            for key in overrides:
                if key not in allowed:
                    raise _error(config, path + [name], f"unknown key {key!r} in datasets.{dataset}.methods.{name}",
                                 key=key, name=key, choices=allowed,
                                 expected=f"one of {sorted(allowed)} (keys of {found[name].path / 'method.yaml'} "
                                 "defaults or operating points, or of the model section)")
    for method in found.values():
        _requirement_order(method.name, found)
    _check_processes(config)
    _check_plugins(config, found)
    check_pretrained_files(config, found)


def _check_processes(config: dict) -> None:
    """train.batch_size is the global batch of a multi-process job: it must split over train.gpus."""
    train = config["train"]
    if train["batch_size"] % train["gpus"]:
        raise _error(config, ["train", "batch_size"], f"train.batch_size {train['batch_size']} does not split over "
                     f"train.gpus {train['gpus']} processes", expected=f"a multiple of {train['gpus']}")


def _check_point(config, method: Method, point: str, path: list, where: str, key: str | None = None) -> None:
    if point not in method.operating_points:
        raise _error(config, path, f"unknown operating point {point!r} of method {method.name!r} in {where}", key=key,
                     name=point, choices=method.operating_points, expected=f"one of {list(method.operating_points)}")


def _check_broken(config: dict, found: dict[str, Method]) -> None:
    """A method whose manifest is broken stops the config only when the config selects it."""
    broken = broken_methods(next(iter(found.values())).path.parent if found else None)
    wanted = set(broken) if config["methods"] == "all" else set(config["methods"]) & set(broken)
    for name in sorted(wanted - set(config.get("exclude_methods") or ())):
        raise broken[name]


def _check_plugins(config: dict, found: dict[str, Method]) -> None:
    """Import every method a run uses (a syntax error stops here, with its file and line, not in a job)
    and check each run's model options against the method's `options` schemas."""
    runs = all_runs(config, found)
    for name in sorted({run[1] for run in runs}):
        found[name].module()
    for dataset, name, point, backbone, seed in runs:
        if found[name].options:
            model = resolve_run(config, dataset, name, point, backbone, seed, found)["model"]
            found[name].check_options(model, backbone, lambda key: _option_source(config, found[name], dataset, point, key))


def _option_source(config: dict, method: Method, dataset: str, point: str, key: str) -> tuple[str, int | None]:
    """(file, line) that set a run's model option `key`: the config's layers first (latest wins), else method.yaml."""
    from vidbench.sources import yaml_line

    entry = config["datasets"][dataset]
    for path, layer in ((["datasets", dataset, "methods", method.name], (entry.get("methods") or {}).get(method.name)),
                        (["datasets", dataset, "model"], entry.get("model")), (["model"], config["model"])):
        if key in (layer or {}):
            return _sources(config).locate(path, key)
    manifest = method.path / "method.yaml"
    in_point = key in (method.operating_points.get(point) or {})
    path = ["operating_points", point] if in_point else ["defaults"]
    return str(manifest), yaml_line(manifest.read_text(), path, key)


VIDEO_FORMATS = ("sthv2", "kinetics", "minikinetics")  # formats that ship videos, not frame folders


def _check_data_options(config: dict, dataset: str) -> None:
    """`subset` only for minikinetics (its files must exist), `extract` only for formats that ship videos."""
    entry, path = config["datasets"][dataset], ["datasets", dataset]
    if "subset" in entry:
        if entry["format"] != "minikinetics" or "synthetic" in entry:
            raise _error(config, path + ["subset"], f"datasets.{dataset}.subset is only for real minikinetics datasets",
                         expected="format: minikinetics with a root")
        for key, file in entry["subset"].items():
            if not Path(file).is_file():
                raise _error(config, path + ["subset", key], f"datasets.{dataset}.subset.{key}: file {file!r} does not "
                             "exist", expected="the Mini-Kinetics " + ("class list" if key == "classes" else f"{key} id list"))
    if "extract" in entry and entry["format"] not in VIDEO_FORMATS:
        raise _error(config, path + ["extract"], f"datasets.{dataset}.extract: format {entry['format']} already ships "
                     "frame folders", expected=f"extract only for the video formats {list(VIDEO_FORMATS)}")


SYNTHETIC_PRETRAINED = "synthetic"  # model.pretrained: the backbone `vidbench pretrain` trains in the workflow


def synthetic_pretrained(config: dict, backbone: str) -> str:
    """Where the workflow's pretrain rule writes the synthetically pretrained `backbone`."""
    return f"{config['data_dir']}/pretrained/{backbone}-synthetic.pth"


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
        if path and path != SYNTHETIC_PRETRAINED:  # that one the workflow makes
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
            raise InputError(_sources(config), f"pretrained weights for {backbone} ({', '.join(where)}): {err}") from None


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
    entry, path = config["datasets"][dataset], ["datasets", dataset]
    if "synthetic" in entry:
        if "root" in entry:
            raise _error(config, path, f"datasets.{dataset} has both `root` and `synthetic`",
                         expected="`synthetic` (generated under data_dir/raw) or `root` (real data), not both")
        return f"{config['data_dir']}/raw/{dataset}"
    if "root" not in entry:
        raise _error(config, path, f"datasets.{dataset} has neither `root` nor `synthetic`",
                     expected="root: <directory of the official dataset layout>, or synthetic: {}")
    if not Path(entry["root"]).is_dir():
        raise _error(config, path + ["root"], f"dataset root {entry['root']!r} of datasets.{dataset} does not exist",
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
            for seed in run_seeds(config, name, point)]


def run_seeds(config: dict, method: str, point: str) -> list[int]:
    """The seeds of a method's point: per_method.<method>.points.<point>.seeds, else
    per_method.<method>.seeds, else the top-level seeds."""
    per_method = (config.get("per_method") or {}).get(method) or {}
    per_point = (per_method.get("points") or {}).get(point) or {}
    return list(per_point.get("seeds") or per_method.get("seeds") or config["seeds"])


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
    if dataset not in config["datasets"]:
        raise InputError(_sources(config), f"unknown dataset {dataset!r}", suggestion=close_match(dataset, config["datasets"]),
                         expected=f"one of {list(config['datasets'])}")
    if method not in found:
        raise InputError(methods_dir(), f"unknown method {method!r}", suggestion=close_match(method, found),
                         expected=f"one of {sorted(found)}")
    if backbone not in backbones():
        raise InputError(_sources(config), f"unknown backbone {backbone!r}", suggestion=close_match(backbone, backbones()),
                         expected=f"one of {backbones()}")
    entry = config["datasets"][dataset]
    plugin = found[method]
    model = dict(plugin.point_config(point))
    for layer in (config["model"], entry.get("model") or {}, (entry.get("methods") or {}).get(method) or {}):
        model.update(copy.deepcopy(layer))
    model = {key: per_backbone(value, backbone) for key, value in model.items()}
    synthetic = model.get("pretrained") == SYNTHETIC_PRETRAINED
    if synthetic:
        model["pretrained"] = synthetic_pretrained(config, backbone)
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
        **({"pretrain": copy.deepcopy(config["pretrain"])} if synthetic else {}),  # what made its initial weights
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
