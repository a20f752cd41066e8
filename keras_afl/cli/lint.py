"""`keras-afl lint MODEL.keras [--loss NAME] [--strict] [--json]`: `keras_afl.lint` on a saved model.

Loads the model after `import keras_afl` (so its custom objects resolve) with
`keras_afl.saving.load_model` (a file saved on any backend), runs
`keras_afl.lint` against the compiled loss or `--loss`, and prints the
findings (or JSON). Exit codes: 0 no error finding, 1 an error finding (or a
warning, with `--strict`), 2 a missing or unloadable file or an unknown loss.
"""

from __future__ import annotations

import json
import os
import warnings

from keras_afl.cli.common import CLIError


def run(path, *, loss=None, strict=False, as_json=False):
    """`keras-afl lint`; returns the exit code (1 on an error finding, or a warning if `strict`)."""
    if not os.path.isfile(path):
        raise CLIError(f"{path}: " + ("not a file" if os.path.exists(path) else "no such file"))
    import keras_afl
    from keras_afl.saving import load_model

    try:
        with warnings.catch_warnings():  # e.g. "Skipping variable loading for optimizer"
            warnings.simplefilter("ignore")
            model = load_model(path)  # saved on any backend (keras_afl.saving)
    except Exception as e:  # a corrupt or foreign file: one message, exit 2, no traceback
        why = (str(e).strip().splitlines() or [""])[0][:300]
        raise CLIError(f"{path}: cannot load the model ({type(e).__name__}: {why})") from None
    try:
        findings = keras_afl.lint(model, loss=loss)
    except (TypeError, ValueError) as e:
        raise CLIError(str(e)) from None
    if as_json:
        print(json.dumps({"model": path, "counts": findings.counts(),
                          "findings": findings.to_dicts()}, indent=2))
    else:
        shown = loss or getattr(model, "loss", None)
        if shown is not None and not isinstance(shown, (str, list, dict)):
            shown = getattr(shown, "name", None) or getattr(shown, "__name__", type(shown).__name__)
        print(f"{path}: model '{model.name}', loss {shown!r}")
        print(findings)
    return 1 if findings.errors or (strict and findings.warnings) else 0
