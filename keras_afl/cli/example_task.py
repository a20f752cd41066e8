"""`keras-afl train` configs that run an example script: `example: ../examples/detect_shapes.py`.

A detector (an anchor grid, two heads) or a U-Net does not fit the
`model.layers` schema. Their code is an example script that a person reads and
runs (`python examples/detect_shapes.py`); a config names the script and sets
what the script lets it set, and `keras-afl train` validates it like any other
config, runs the script's `run` and writes the usual summary and curves.

A script usable here defines:
  * `DATA` and `MODEL`: {setting: (default, low, high)}, what a config's
    `data:` and `model:` sections may set (an int default takes integers);
  * `check_losses([(label, loss)])`: ValueError for a loss it cannot train;
  * `run(losses, *, data, model, epochs, batch_size, optimizer, seed, out_dir,
    smoke, verbose)` -> {"data": {...}, "runs": [{"loss", "metrics", "history",
    "model", "timings_s"}], "outputs": {...}}.
"""

from __future__ import annotations

import importlib.util
import os

from keras_afl.cli.common import ConfigError
from keras_afl.cli.config_training import check_training

_KEYS = ("name", "description", "seed", "example", "data", "model", "training")
_NEEDS = ("DATA", "MODEL", "check_losses", "run")


def script_path(value, file):
    """The example script's absolute path (`value` is relative to the config file)."""
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(file)), value))


def load_script(path, file, key="example"):
    """Imports the example script at `path`; ConfigError if it is missing or not one."""
    if not os.path.isfile(path) or not path.endswith(".py"):
        raise ConfigError(file, key, f"no example script {path!r} (a .py file, relative to the "
                                     "config file, e.g. ../examples/detect_shapes.py)")
    name = "_keras_afl_example_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - any failure of the script is the config's problem
        raise ConfigError(file, key, f"importing {path!r} failed: {type(e).__name__}: {e}") from None
    missing = [n for n in _NEEDS if not hasattr(module, n)]
    if missing:
        raise ConfigError(file, key, f"{path!r} is not a `keras-afl train` example: it does not "
                                     f"define {', '.join(missing)} (see keras_afl.cli.example_task)")
    return module


def validate(ck, raw, base, file):
    """The normalised config of an `example:` config (`base`: name, description, seed, ...);
    `keras_afl.cli.config.validate` hands it here (`ck`: its `Checker` of the file)."""
    ck.keys(raw, "", _KEYS, note="; `lint` and `activation_stats` apply to model.layers configs")
    path = script_path(ck.string(raw["example"], "example"), file)
    script = load_script(path, file)
    cfg = {k: base[k] for k in ("name", "description", "seed")}
    cfg["example"] = path
    for section, table in (("data", script.DATA), ("model", script.MODEL)):
        given = ck.mapping(raw.get(section) or {}, section)
        ck.keys(given, section, tuple(table), note=f" of {os.path.basename(path)}")
        cfg[section] = {}
        for k, (default, low, high) in table.items():
            key = f"{section}.{k}"
            if isinstance(default, int):
                cfg[section][k] = ck.integer(given.get(k, default), key, low=low, high=high)
            else:
                cfg[section][k] = ck.number(given.get(k, default), key, low=low, high=high)
    training = ck.mapping(ck.required(raw, "", "training"), "training")
    if "validation_split" in training:
        ck.fail("training.validation_split", "an example script holds out its own test split "
                                             "and has no validation split; remove this key")
    cfg["training"] = check_training(ck, training)
    del cfg["training"]["validation_split"]
    return cfg
