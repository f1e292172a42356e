"""The workflow to Snakemake's own standards: lint-clean, an environment for every rule, config errors as one
line that names where a value came from, and method plugins that fail early and alone."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from vidbench import config as cfg
from vidbench.errors import InputError
from vidbench.plugins import discover

ROOT = Path(__file__).resolve().parent.parent
TEST_CONFIG = ROOT / "workflow" / "config" / "test.yaml"


def snakemake(*args, methods: Path | None = None, path_dirs=()) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "VIDBENCH_METHODS"}
    if methods is not None:
        env["VIDBENCH_METHODS"] = str(methods)
    env["PATH"] = os.pathsep.join([*map(str, path_dirs), str(Path(sys.executable).parent), env["PATH"]])
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def planned(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Job counts per rule of `snakemake -n --quiet rules`."""
    assert result.returncode == 0, result.stderr[-3000:]
    return {parts[0]: int(parts[1]) for parts in map(str.split, result.stdout.splitlines())
            if len(parts) == 2 and parts[1].isdigit()}


def config_file(tmp_path, name="extra.yaml", **data) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_lint_reports_nothing_for_the_default_config():
    result = snakemake("--lint")
    assert result.returncode == 0 and "Lints for" not in result.stdout + result.stderr, result.stdout[-3000:]


def test_conda_plan_attaches_the_environment_to_the_jobs(tmp_path):
    # Snakemake asks conda for its version and settings before planning; no conda is installed here, so a
    # stub answers those queries (nothing is created in a dry run)
    stub = tmp_path / "bin" / "conda"
    stub.parent.mkdir()
    stub.write_text('#!/bin/sh\ncase "$*" in\n'
                    f'  "info --json") echo \'{{"conda_prefix": "{tmp_path}", "platform": "linux-64"}}\';;\n'
                    '  "--version") echo "conda 24.7.1";;\n'
                    '  "config --get channel_priority --json") echo \'{"get": {"channel_priority": "strict"}}\';;\n'
                    '  *) exit 1;;\nesac\n')
    stub.chmod(0o755)
    result = snakemake("--sdm", "conda", "-n", "--configfile", str(TEST_CONFIG), path_dirs=[stub.parent])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Conda environment workflow/envs/vidbench.yaml will be created" in result.stdout + result.stderr


def test_rule_environment_pins_what_the_project_installs():
    env = yaml.safe_load((ROOT / "workflow" / "envs" / "vidbench.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [line for line in (ROOT / "constraints.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert set(pip) == set(project)
    for pin in pins:
        assert pin in pip


def test_license_file_matches_the_declared_license():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]["text"]
    assert (ROOT / "LICENSE").read_text().startswith(f"{declared} License")


def test_misspelt_key_gets_one_line_with_a_suggestion_and_no_traceback(tmp_path):
    extra = config_file(tmp_path, train={"epoch": 3})
    result = snakemake("-n", "--configfile", str(TEST_CONFIG), str(extra))
    assert result.returncode != 0
    assert f"{extra}:2: unknown key 'epoch' in train; did you mean 'epochs'?" in result.stderr
    assert "Traceback" not in result.stderr and 'File "' not in result.stderr


def test_config_option_values_take_the_schema_types():
    one = planned(snakemake("-n", "--quiet", "rules", "--configfile", str(TEST_CONFIG)))
    three = planned(snakemake("-n", "--quiet", "rules", "--configfile", str(TEST_CONFIG), "--config", "seeds=[0,1,2]"))
    assert three["train"] == 3 * one["train"]


def test_bad_value_from_the_config_option_is_blamed_on_it():
    result = snakemake("-n", "--configfile", str(TEST_CONFIG), "--config", "seeds=[0,x]")
    assert result.returncode != 0
    assert "--config seeds: invalid value at seeds[1]: 'x' is not of type 'integer'" in result.stderr


def test_bad_value_in_the_second_config_file_names_that_file_and_line(tmp_path):
    second = tmp_path / "second.yaml"
    second.write_text("# my settings\nresults: /tmp/elsewhere\ntrain:\n  optimizer: adamm\n")
    with pytest.raises(InputError, match=re.escape(f"{second}:4: 'adamm' is not allowed at train.optimizer; "
                                                   "did you mean 'adam'?")):
        merged = yaml.safe_load(TEST_CONFIG.read_text())
        merged["train"].update(yaml.safe_load(second.read_text())["train"])
        cfg.validate_config(merged, cfg.ConfigSources.from_files([TEST_CONFIG, second]))
    result = snakemake("-n", "--configfile", str(TEST_CONFIG), str(second))   # the same through the workflow
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert (f"vidbench: config error: {second}:4: 'adamm' is not allowed at train.optimizer; did you mean 'adam'?"
            in result.stderr)


@pytest.fixture
def methods_copy(tmp_path):
    return Path(shutil.copytree(ROOT / "methods", tmp_path / "methods"))


def test_syntax_error_in_a_method_stops_the_plan_with_file_and_line(methods_copy, tmp_path):
    model = methods_copy / "cgnet" / "model.py"
    lines = model.read_text().splitlines()
    lines[5] = "def broken(:"
    model.write_text("\n".join(lines) + "\n")
    selects = config_file(tmp_path, methods=["tsn", "cgnet"])
    result = snakemake("-n", "--configfile", str(TEST_CONFIG), str(selects), methods=methods_copy)
    assert result.returncode != 0 and f"{model}:6: syntax error in method 'cgnet'" in result.stderr
    assert "Traceback" not in result.stderr
    others = config_file(tmp_path, "others.yaml", methods=["tsn", "tsm"])
    assert planned(snakemake("-n", "--quiet", "rules", "--configfile", str(TEST_CONFIG), str(others),
                             methods=methods_copy))["train"] > 0


def test_broken_manifest_stops_only_the_runs_that_select_it(methods_copy, caplog):
    manifest = methods_copy / "cgnet" / "method.yaml"
    manifest.write_text(manifest.read_text().replace("title: CGNet\n", ""))
    found = discover(methods_copy)
    assert "cgnet" not in found and "tsn" in found
    assert "cgnet" in caplog.text and "missing or non-text 'title'" in caplog.text
    config = yaml.safe_load(TEST_CONFIG.read_text())
    cfg.validate_config({**config, "methods": ["tsn"]}, methods=found)
    with pytest.raises(InputError, match=re.escape(str(manifest)) + ".*missing or non-text 'title'"):
        cfg.validate_config({**config, "methods": ["tsn", "cgnet"]}, methods=found)


def test_misspelt_manifest_key_is_one_message_with_a_suggestion_and_only_stops_its_runs(methods_copy, tmp_path):
    manifest = methods_copy / "cgnet" / "method.yaml"
    text = manifest.read_text()
    manifest.write_text(text.replace("title: CGNet\n", "titel: CGNet\n"))
    line = text.splitlines().index("title: CGNet") + 1
    selects = config_file(tmp_path, methods=["tsn", "cgnet"])
    result = snakemake("-n", "--configfile", str(TEST_CONFIG), str(selects), methods=methods_copy)
    mentions = [text for text in result.stderr.splitlines() if "method.yaml" in text]
    assert result.returncode != 0 and len(mentions) == 1 and "Traceback" not in result.stderr
    assert f"{manifest}:{line}: unknown manifest key 'titel'" in mentions[0] and "did you mean 'title'" in mentions[0]
    others = config_file(tmp_path, "others.yaml", methods=["tsn", "tsm"])
    result = snakemake("-n", "--quiet", "rules", "--configfile", str(TEST_CONFIG), str(others), methods=methods_copy)
    assert planned(result)["train"] > 0
    assert [text for text in result.stderr.splitlines() if "method.yaml" in text] == [
        "vidbench: method 'cgnet' left out: " + mentions[0].split("config error: ", 1)[1]]


def test_bad_option_value_stops_with_the_file_and_line_that_set_it(tmp_path):
    config = yaml.safe_load(TEST_CONFIG.read_text())
    config["datasets"]["synth-sthv1"]["methods"] = {"adafuse": {"eval_sampling": "argmx"}}
    path = config_file(tmp_path, **config)
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "eval_sampling" in text)
    with pytest.raises(InputError, match=re.escape(f"{path}:{line}: option 'eval_sampling' of method 'adafuse' "
                                                   "is 'argmx'") + ".*did you mean 'argmax'"):
        cfg.load_config(path)
