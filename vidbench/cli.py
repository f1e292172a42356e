"""`vidbench <command>`: the one command line that people and Snakemake rules both use.

Each command lives in its own module, which defines `add_arguments(parser)` and `run(args)`;
modules are imported only when their command runs, so `vidbench --help` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from vidbench import __version__
from vidbench.errors import HarnessError

COMMANDS = {
    "synth": ("vidbench.data.synth", "generate a synthetic dataset in its real counterpart's layout"),
    "prepare": ("vidbench.data.prepare", "turn an official dataset layout into the uniform index"),
    "extract": ("vidbench.data.extract", "decode a prepared video dataset into JPEG frame folders (sharded)"),
    "pretrain": ("vidbench.pretrain", "pretrain a backbone on synthetic frames (the synthetic suite's ImageNet)"),
    "train": ("vidbench.train", "train one run (dataset x method x point x backbone x seed)"),
    "evaluate": ("vidbench.evaluate", "evaluate a trained run and write metrics.json"),
    "measure": ("vidbench.measure", "time evaluated runs, masked and realized, into latency.json"),
    "methods": ("vidbench.plugins_cli", "list the discovered methods and their operating points"),
    "aggregate": ("analysis.aggregate", "collect every metrics.json into summary.csv"),
    "tables": ("analysis.tables", "regenerate the paper's tables beside the published numbers"),
    "plots": ("analysis.plots", "draw accuracy-vs-GFLOPs (or measured latency) Pareto plots"),
    "claims": ("analysis.claims", "check the papers' claims on the runs (claims.md, .csv, .tex)"),
    "realized": ("analysis.realized", "the realized-efficiency table: FLOP and latency ratios to TSN"),
    "policy-plots": ("analysis.policy_plots", "draw AdaFuse's policy distributions (paper Figures 3 and 4)"),
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help that shows each option's default, where there is one to show."""

    def _get_help_string(self, action):
        default = action.default
        if default is None or default is False or default == [] or default == argparse.SUPPRESS or not action.option_strings:
            return action.help
        return super()._get_help_string(action)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vidbench", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text, formatter_class=HelpFormatter)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(sub)
            sub.set_defaults(handler=module.run)
    args = parser.parse_args(argv)
    try:
        status = args.handler(args)
        return status if isinstance(status, int) else 0
    except (HarnessError, KeyboardInterrupt, OSError) as err:
        if args.debug:
            raise
        if isinstance(err, BrokenPipeError):  # output piped into `head`: nothing more to say
            return 1
        print(f"vidbench {args.command}: {describe(err)}", file=sys.stderr)
        return err.exit_code if isinstance(err, HarnessError) else 130 if isinstance(err, KeyboardInterrupt) else 1


def describe(err: BaseException) -> str:
    """One line for an error that ends a command: what went wrong and, for a file system error, the path."""
    if isinstance(err, KeyboardInterrupt):
        return "interrupted"
    if isinstance(err, OSError) and err.filename is not None:
        return f"error: {err.filename}: {err.strerror}"
    return f"error: {err}"


if __name__ == "__main__":
    sys.exit(main())
