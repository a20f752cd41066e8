"""`keras-afl list [NAME...] [--kind KIND] [--json]`: the registry, for people and for scripts.

Prints every registered activation and loss (or the NAMEs given, by string
name or alias): string names, parameters with their defaults, formula,
derivative, output range, what it is for (family, y_pred, labels), properties,
typical uses and pairings -- a table
and notes, or JSON (`entry_record`). Reads the registry through
`keras_afl.entries()` / `keras_afl.entry()`; needs nothing of the `cli` extra.
"""

from __future__ import annotations

import json
import sys
import textwrap

from keras_afl.cli.common import CLIError, format_table


def run(names, *, kind=None, as_json=False):
    """`keras-afl list`: prints the entries named (all of `kind`, or all, if none); returns 0."""
    import keras_afl

    selected = _select_entries(keras_afl, names, kind)
    if as_json:
        data = {"activations": [], "losses": []}
        for e in selected:
            data["activations" if e.kind == "activation" else "losses"].append(entry_record(e))
        print(json.dumps(data, indent=2, default=repr))
        return 0
    print(_human_list(selected))
    return 0


def _select_entries(keras_afl, names, kind):
    if not names:
        return keras_afl.entries(kind)
    out = []
    for n in names:
        try:
            e = keras_afl.entry(n, kind)
        except ValueError as err:
            raise CLIError(str(err)) from None
        if e not in out:
            out.append(e)
    return out


def entry_record(e):
    """A JSON-ready dict of one registry entry (what `keras-afl list --json` prints)."""
    return {
        "name": e.name,
        "kind": e.kind,
        "aliases": list(e.aliases),
        "object": _public_path(e.obj),
        "parameters": {k: _jsonable(v) for k, v in e.parameters().items()},
        "formula": e.formula,
        "derivative": e.derivative,
        "output_range": e.output_range,
        "family": e.family,
        "y_pred": e.y_pred,
        "y_pred_from_logits": e.expects(from_logits=True) if e.has_from_logits else None,
        "labels": e.labels,
        "properties": list(e.properties),
        "uses": list(e.uses),
        "pairings": list(e.pairings),
    }


def _public_path(obj):
    """`module.name` of obj through the package that exports it: `keras_afl.losses.FocalLoss`,
    not `keras_afl.losses.classes.FocalLoss` (a family module of a package keeps its name)."""
    parts = obj.__module__.split(".")
    for i in range(2, len(parts)):
        package = sys.modules.get(".".join(parts[:i]))
        if getattr(package, obj.__qualname__, None) is obj:
            return f"{package.__name__}.{obj.__qualname__}"
    return f"{obj.__module__}.{obj.__qualname__}"


def _purpose(e):
    """The registry's family / y_pred / labels of an entry, in words."""
    from keras_afl import registry

    if e.kind == "activation":
        return f"{registry.ACTIVATION_FAMILIES[e.family]}; outputs {e.y_pred}"
    logits = " (logits with from_logits=True)" if e.has_from_logits else ""
    return (f"{e.family} loss; y_pred: {e.y_pred}{logits}; labels: {e.labels}, "
            f"{registry.LABEL_FORMATS[e.labels]}")


def _jsonable(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return repr(v)


def _format_params(params):
    if not params:
        return "-"
    return ", ".join(f"{k}={v!r}" for k, v in params.items())


def _human_list(entries):
    width = 100
    out = []
    for kind, title in (("activation", "Activations"), ("loss", "Losses")):
        group = [e for e in entries if e.kind == kind]
        if not group:
            continue
        out.append(f"{title} ({len(group)})  -- use the string names in "
                   + ("`activation=`" if kind == "activation" else "`compile(loss=...)`"))
        rows = [(e.name, ", ".join(e.aliases) or "-", _format_params(e.parameters()))
                for e in group]
        out.append(format_table(("name", "aliases", "parameters (defaults)"), rows))
        out.append("")
        for e in group:
            out.append(f"{e.name}  ({_public_path(e.obj)})")
            for label, value in (
                ("formula", e.formula), ("derivative", e.derivative),
                ("range", e.output_range), ("for", _purpose(e)),
                ("properties", "; ".join(e.properties)), ("uses", "; ".join(e.uses)),
                ("pairings", "; ".join(e.pairings)),
            ):
                if not value:
                    continue
                out.append(textwrap.fill(value, width=width, initial_indent=f"  {label:<11} ",
                                         subsequent_indent=" " * 14))
            out.append("")
    if not out:
        return "(nothing registered)"
    return "\n".join(out).rstrip()
