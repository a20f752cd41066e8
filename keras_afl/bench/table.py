"""Plain-text tables with aligned columns, for the terminal.

Shared by the harness (`keras_afl.bench.backends`' table of JAX and PyTorch)
and the app (every `keras-afl` command's table, through
`keras_afl.cli.common.format_table`); here, in the harness, because the app
may import the harness and the harness never imports the app.
"""

from __future__ import annotations


def format_table(header, rows, *, floatfmt="{:.4f}"):
    """Plain-text table with aligned columns (numbers formatted with `floatfmt`)."""

    def cell(v):
        if isinstance(v, float):
            return "nan" if v != v else floatfmt.format(v)
        return "-" if v is None else str(v)

    body = [[cell(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in body)) if body else len(str(h))
              for i, h in enumerate(header)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(header, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    for r in body:
        out.append("  ".join(
            c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(line.rstrip() for line in out)


def _numeric(text):
    try:
        float(text)
        return True
    except ValueError:
        return False
