"""`vidbench methods`: list discovered methods, their operating points and citations."""
from __future__ import annotations

from vidbench.plugins import discover


def add_arguments(parser):
    parser.add_argument("--methods-dir", default=None, help="directory of method plugins (default: methods/)")


def run(args):
    for name, method in discover(args.methods_dir).items():
        print(f"{name:16s} {method.title}  [{', '.join(method.operating_points)}]  {method.citation}")
