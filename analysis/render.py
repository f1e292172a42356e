"""One table, three files: <name>.csv (every number, for programs), <name>.md and <name>.tex (the
display cells, for readers; LaTeX with booktabs rules), the note above the markdown table and below
the LaTeX one. All written atomically."""
from __future__ import annotations

import re
from pathlib import Path

from vidbench.io import write_text

LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                 "±": r"$\pm$", "≥": r"$\geq$", "≤": r"$\leq$", "−": "-", "Δ": r"$\Delta$", "τ": r"$\tau$"}


def markdown(title: str, note: str, display) -> str:
    lines = [f"# {title}", "", *[f"> {line}" for line in note.splitlines()], ""]
    header = [str(c) for c in display.columns]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    for _, row in display.iterrows():
        lines.append("| " + " | ".join(str(row[c]).replace("|", "\\|") for c in display.columns) + " |")
    return "\n".join(lines) + "\n"


def latex_escape(text) -> str:
    return re.sub("|".join(re.escape(k) for k in LATEX_SPECIAL), lambda m: LATEX_SPECIAL[m.group(0)], str(text))


def latex(title: str, note: str, display, text_columns=()) -> str:
    """A booktabs table (needs \\usepackage{booktabs}): text columns left-aligned, the rest right-aligned."""
    align = "".join("l" if c in text_columns else "r" for c in display.columns)
    rows = [" & ".join(latex_escape(c) for c in display.columns) + r" \\"]
    body = [" & ".join(latex_escape(v) for v in row) + r" \\" for row in display.astype(str).itertuples(index=False)]
    notes = " ".join(latex_escape(line) for line in note.splitlines())
    return "\n".join([
        r"\begin{table}[ht]", r"\centering", r"\scriptsize", rf"\caption{{{latex_escape(title)}}}",
        rf"\begin{{tabular}}{{{align}}}", r"\toprule", *rows, r"\midrule", *body, r"\bottomrule",
        r"\end{tabular}", r"\par\smallskip", rf"\parbox{{\linewidth}}{{\footnotesize {notes}}}",
        r"\end{table}", ""])


def write_table(out, name: str, title: str, note: str, data, display, text_columns=()) -> list[Path]:
    """<out>/<name>.csv from `data` (numbers), .md and .tex from `display` (strings)."""
    out = Path(out)
    files = [out / f"{name}.csv", out / f"{name}.md", out / f"{name}.tex"]
    write_text(files[0], data.to_csv(index=False, float_format="%.6g"))
    write_text(files[1], markdown(title, note, display))
    write_text(files[2], latex(title, note, display, text_columns))
    return files
