"""Per-module mutation score from mutmut's results (the .meta files under mutants/).

    python benchmarks/mutation_score.py build/mutation/mutants [--equivalent benchmarks/mutation_equivalent.txt]
    python benchmarks/mutation_score.py build/mutation/mutants --sample 20    # names of a seeded sample per module

Score = killed / (mutants - equivalent), where killed counts mutants a test failed on (or that timed
out: `timeouts` says how many of them timed out, since a mutant can also time out because the machine
was busy) and equivalent lists mutant names (one a line, '#' comments) that no test can tell from the
original because they compute the same thing (the README lists each with its reason).
"""
from __future__ import annotations

import argparse
import json
import math
import random
from collections import Counter
from pathlib import Path

KILLED = {1, 3, 36, 24, -24, 152, 255, 37}   # test failure, pytest error, timeouts, type check
TIMEOUT = {24, -24, 152}
STATUS = {0: "survived", 33: "no tests", 5: "no tests", None: "not checked"}


def read_equivalent(path) -> set[str]:
    if not path or not Path(path).is_file():
        return set()
    lines = (line.split("#", 1)[0].strip() for line in Path(path).read_text().splitlines())
    return {line for line in lines if line}


def results(mutants_dir: Path) -> dict[str, dict[str, int | None]]:
    """{module: {mutant name: exit code}}."""
    out = {}
    for meta in sorted(mutants_dir.rglob("*.py.meta")):
        module = str(meta.relative_to(mutants_dir))[:-len(".py.meta")].replace("/", ".")
        out[module] = json.loads(meta.read_text())["exit_code_by_key"]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mutants", type=Path)
    parser.add_argument("--equivalent", default=Path(__file__).with_name("mutation_equivalent.txt"))
    parser.add_argument("--sample", type=int, help="print names of a seeded random sample of untried mutants, to make "
                                                    "up this many tried ones a module")
    parser.add_argument("--survivors", action="store_true", help="print the names of mutants that survived")
    args = parser.parse_args(argv)
    if args.survivors:
        for codes in results(args.mutants).values():
            for name, code in codes.items():
                if code is not None and code not in KILLED:
                    print(name)
        return
    if args.sample:
        for codes in results(args.mutants).values():
            untried = sorted(name for name, code in codes.items() if code is None)
            wanted = max(0, min(args.sample - (len(codes) - len(untried)), len(untried)))
            for name in random.Random(0).sample(untried, wanted):
                print(name)
        return
    equivalent = read_equivalent(args.equivalent)
    total = Counter()
    print(f"{'module':44} {'mutants':>7} {'tried':>5} {'killed':>6} {'timeouts':>8} {'equiv':>5} {'surv':>5}  "
          "score (95% interval)")
    for module, codes in results(args.mutants).items():
        if not codes:
            continue
        count = Counter(all=len(codes))
        for name, code in codes.items():
            if code is None:     # not run (a sampled run tries some of a module's mutants)
                continue
            count["tried"] += 1
            key = "equivalent" if name in equivalent else "killed" if code in KILLED else STATUS.get(code, "other")
            count[key] += 1
            count["timeout"] += key == "killed" and code in TIMEOUT
        total.update(count)
        print(_row(module, count))
    print(_row("TOTAL", total))
    survivors = [name for codes in results(args.mutants).values() for name, code in codes.items()
                 if code is not None and code not in KILLED and name not in equivalent]
    print(f"\nnot killed and not listed as equivalent ({len(survivors)}):")
    for name in survivors:
        print(" ", name)


def _row(module, count) -> str:
    scored = count["tried"] - count["equivalent"]
    score = f"{100 * count['killed'] / scored:5.1f}% {wilson(count['killed'], scored)}" if scored else "-"
    not_killed = scored - count["killed"]
    return (f"{module:44} {count['all']:7} {count['tried']:5} {count['killed']:6} {count['timeout']:8} "
            f"{count['equivalent']:5} "
            f"{not_killed:5}  {score}")


def wilson(killed: int, n: int, z: float = 1.96) -> str:
    """95% Wilson interval of the kill rate, for a score measured on a sample of a module's mutants."""
    p = killed / n
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return f"[{100 * (centre - half):.0f}-{100 * (centre + half):.0f}%]"


if __name__ == "__main__":
    main()
