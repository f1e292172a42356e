"""Method plugin discovery: every directory under methods/ holding a method.yaml is a method.

A method's id is its directory name. `method.yaml` holds its title, citation, model defaults and
optional operating points; `model.py` holds `build(cfg, *, backbone, num_classes, num_segments)`.
Directories whose name starts with "_" or "." (templates) are skipped.

A method directory is imported as the package `vidbench_methods.<id>`, so `model.py` may import
helper modules beside it, relatively (`from .gate import ChannelGate`) or by that stable name.
"""
from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from vidbench import io as vio
from vidbench.backbone_values import per_backbone
from vidbench.errors import InputError, close_match

MANIFEST_KEYS = {"title", "citation", "paper_label", "defaults", "operating_points", "default_points", "sweep",
                 "requires", "description", "options", "train_differs"}
log = logging.getLogger(__name__)
# output fields that may differ between training and evaluation mode beyond dropout and BatchNorm statistics
OUTPUT_FIELDS = ("logits", "flops", "stats")


def methods_dir() -> Path:
    """`$VIDBENCH_METHODS`, else the `methods/` directory of the project checkout."""
    return Path(os.environ.get("VIDBENCH_METHODS", Path(__file__).resolve().parent.parent / "methods"))


@dataclass(frozen=True)
class Method:
    name: str
    path: Path
    title: str
    citation: str
    paper_label: str
    defaults: dict = field(default_factory=dict)
    operating_points: dict = field(default_factory=lambda: {"default": {}})
    requires: tuple = ()
    default_points: tuple = ("default",)  # the points a run takes unless its config lists others
    sweep: tuple = ()                      # points that form one accuracy-vs-FLOPs curve in the plots
    options: dict = field(default_factory=dict)  # option -> JSON schema of its allowed values
    train_differs: tuple = ()              # OUTPUT_FIELDS that training mode computes differently (on purpose)

    def build(self, cfg: dict, *, backbone: str, **kwargs):
        """The method's model; options written per backbone ({resnet50: v, default: v}) are resolved first."""
        cfg = {key: per_backbone(value, backbone) for key, value in cfg.items()}
        return self.module().build(cfg, backbone=backbone, **kwargs)

    def module(self):
        """The method's `model.py`, imported as `vidbench_methods.<name>.model`."""
        return _load_module(self)

    def check_options(self, cfg: dict, backbone: str, locate) -> None:
        """Check a run's model options against the manifest's `options` schemas, before any job.
        `locate(key)` -> (file, line) of where the run's value of `key` was set."""
        import jsonschema

        for key, rule in self.options.items():
            if key not in cfg:
                continue
            value = per_backbone(cfg[key], backbone)
            error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(rule).iter_errors(value))
            if error is not None:
                source, line = locate(key)
                raise InputError(source, f"option {key!r} of method {self.name!r} is {value!r} for {backbone}: "
                                 f"{error.message}", line=line, suggestion=close_match(value, rule.get("enum")),
                                 expected=rule.get("description") or _describe(rule))

    def point_config(self, point: str) -> dict:
        if point not in self.operating_points:
            raise InputError(self.path / "method.yaml", f"unknown operating point {point!r} of method {self.name!r}",
                             expected=f"one of {sorted(self.operating_points)}")
        return {**self.defaults, **(self.operating_points[point] or {})}


PACKAGE = "vidbench_methods"


def methods_package(root: Path | None = None) -> types.ModuleType:
    """The namespace package `vidbench_methods` over the methods directory; pointing it at another
    directory forgets the method modules imported from the old one."""
    path = str(Path(root) if root else methods_dir())
    package = sys.modules.get(PACKAGE)
    if package is None or list(package.__path__) != [path]:
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]
        package = types.ModuleType(PACKAGE, "Method plugins: one subpackage per directory of the methods folder.")
        package.__path__ = [path]
        sys.modules[PACKAGE] = package
        importlib.invalidate_caches()
    return package


def _describe(rule: dict) -> str:
    if "enum" in rule:
        return f"one of {rule['enum']}"
    return ", ".join(f"{key} {value}" for key, value in rule.items() if key != "description")


def _load_module(method: Method):
    file = method.path / "model.py"
    methods_package(method.path.parent)
    try:
        module = importlib.import_module(f"{PACKAGE}.{method.name}.model")
    except SyntaxError as err:
        raise InputError(err.filename or file, f"syntax error in method {method.name!r}: {err.msg}",
                         line=err.lineno) from None
    except Exception as err:  # noqa: BLE001 - any failure to import a plugin is the plugin's, named by file and line
        frame = next((f for f in reversed(traceback.extract_tb(err.__traceback__))
                      if Path(f.filename).is_relative_to(method.path)), None)
        raise InputError(frame.filename if frame else file, f"method {method.name!r} fails to import: "
                         f"{type(err).__name__}: {err}", line=frame.lineno if frame else None) from None
    if not callable(getattr(module, "build", None)):
        raise InputError(file, "method module has no build() function", expected="def build(cfg, *, backbone, num_classes, num_segments)")
    return module


def load_manifest(path: Path) -> Method:
    file = path / "method.yaml"
    try:
        data = vio.load_yaml(file.read_text()) or {}
    except yaml.YAMLError as err:
        line = err.problem_mark.line + 1 if getattr(err, "problem_mark", None) else None
        raise InputError(file, f"invalid YAML: {err}", line=line) from err
    if not isinstance(data, dict):
        raise InputError(file, "manifest is not a mapping", expected="keys " + ", ".join(sorted(MANIFEST_KEYS)))
    unknown = sorted(set(data) - MANIFEST_KEYS)
    if unknown:
        raise InputError(file, f"unknown manifest key {unknown[0]!r}", line=_key_line(file, unknown[0]),
                         suggestion=close_match(unknown[0], MANIFEST_KEYS), expected=f"keys among {sorted(MANIFEST_KEYS)}")
    if not path.name.isidentifier():
        raise InputError(path, f"method directory name {path.name!r} is not a Python identifier",
                         expected="letters, digits and underscores (it is imported as vidbench_methods.<name>)")
    for key in ("title", "citation"):
        if not isinstance(data.get(key), str):
            raise InputError(file, f"missing or non-text {key!r}", line=_key_line(file, key), expected=f"{key}: <text>")
    if not (path / "model.py").is_file():
        raise InputError(path / "model.py", "method directory has no model.py", expected="a module with build(...)")
    points = data.get("operating_points") or {"default": {}}
    default_points = tuple(data.get("default_points") or points)
    sweep = tuple(data.get("sweep") or ())
    for key, names in (("default_points", default_points), ("sweep", sweep)):
        if set(names) - set(points):
            raise InputError(file, f"{key} names unknown operating points {sorted(set(names) - set(points))}",
                             line=_key_line(file, key), expected=f"names among {sorted(points)}")
    options = data.get("options") or {}
    if not isinstance(options, dict) or not all(isinstance(rule, dict) for rule in options.values()):
        raise InputError(file, "options must map option names to JSON schemas", line=_key_line(file, "options"),
                         expected="options: {<option>: {enum: [...]} or {type: number, minimum: 0}, ...}")
    train_differs = tuple(data.get("train_differs") or ())
    if set(train_differs) - set(OUTPUT_FIELDS):
        raise InputError(file, f"train_differs names unknown fields {sorted(set(train_differs) - set(OUTPUT_FIELDS))}",
                         line=_key_line(file, "train_differs"), expected=f"fields among {list(OUTPUT_FIELDS)}")
    return Method(name=path.name, path=path, title=data["title"], citation=data["citation"],
                  paper_label=data.get("paper_label", data["title"]), defaults=data.get("defaults") or {},
                  operating_points=points, default_points=default_points, sweep=sweep,
                  requires=tuple(data.get("requires") or ()), options=options,
                  train_differs=train_differs)


def _key_line(file: Path, key: str) -> int | None:
    from vidbench.sources import yaml_line

    return yaml_line(file.read_text(), [], key, exact=True)


def _manifests(root: Path):
    for path in sorted(root.iterdir()):
        if path.is_dir() and not path.name.startswith(("_", ".")) and (path / "method.yaml").is_file():
            yield path


_warned: set[str] = set()


def discover(root: Path | None = None, warn: bool = True) -> dict[str, Method]:
    """The methods whose manifest is valid; a broken one is left out, with a warning (once per process)
    when `warn`: only a run that selects it stops (`broken_methods`)."""
    root = Path(root) if root else methods_dir()
    found = {}
    for path in _manifests(root):
        try:
            found[path.name] = load_manifest(path)
        except InputError as err:
            if warn and str(err) not in _warned:
                _warned.add(str(err))
                log.warning("vidbench: method %r left out: %s", path.name, err)
    return found


def broken_methods(root: Path | None = None) -> dict[str, InputError]:
    """{method directory name: the error of its manifest} for every method that `discover` leaves out."""
    root = Path(root) if root else methods_dir()
    broken = {}
    for path in _manifests(root):
        try:
            load_manifest(path)
        except InputError as err:
            broken[path.name] = err
    return broken


def get_method(name: str, root: Path | None = None) -> Method:
    methods = discover(root)
    if name not in methods:
        broken = broken_methods(root)
        if name in broken:
            raise broken[name]
        raise InputError(root or methods_dir(), f"unknown method {name!r}", suggestion=close_match(name, methods),
                         expected=f"one of {sorted(methods)}")
    return methods[name]
