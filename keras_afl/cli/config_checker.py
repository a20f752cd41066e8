"""The checks of one config file's values: `Checker` (mappings, keys, strings, booleans,
numbers in a range), each failure a `ConfigError` that names the file and the key.

Shared by the validation of `model.layers` configs (`keras_afl.cli.config`), of the names and
losses they use (`config_names`, `config_training`) and of example-script configs
(`keras_afl.cli.example_task`).
"""

from __future__ import annotations

import re

from keras_afl.cli.common import ConfigError, did_you_mean

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


class Checker:
    """Validation helpers bound to one file; every failure raises ConfigError(file, key, ...)."""

    def __init__(self, file):
        self.file = file

    def fail(self, key, message):
        raise ConfigError(self.file, key, message)

    def mapping(self, value, key):
        if not isinstance(value, dict):
            self.fail(key, f"expected a mapping (key: value lines), got {describe(value)}")
        for k in value:
            if not isinstance(k, str):
                self.fail(key, f"keys must be strings, got {describe(k)}")
        return value

    def keys(self, value, key, allowed, *, note=""):
        for k in value:
            if k not in allowed:
                self.fail(join_key(key, k), f"unknown key{did_you_mean(k, allowed)} "
                                         f"(valid keys here: {', '.join(allowed)}){note}")

    def required(self, value, key, name):
        if name not in value:
            self.fail(join_key(key, name), "required key is missing")
        return value[name]

    def string(self, value, key, *, choices=None):
        if not isinstance(value, str) or not value:
            self.fail(key, f"expected a non-empty string, got {describe(value)}")
        if choices is not None and value not in choices:
            self.fail(key, f"unknown value {value!r}{did_you_mean(value, choices)} "
                           f"(expected one of: {', '.join(choices)})")
        return value

    def boolean(self, value, key):
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {describe(value)}")
        return value

    def integer(self, value, key, *, low=None, high=None):
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"expected an integer, got {describe(value)}")
        self._range(value, key, low, high, True, True)
        return value

    def number(self, value, key, *, low=None, high=None, low_open=False, high_open=False):
        # PyYAML reads `1e-3` (no dot) as a string (YAML 1.1); accept numeric strings.
        if isinstance(value, str) and _NUMBER.match(value.strip()):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(key, f"expected a number, got {describe(value)}")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            self.fail(key, f"expected a finite number, got {value}")
        self._range(value, key, low, high, not low_open, not high_open)
        return value

    def _range(self, value, key, low, high, low_closed, high_closed):
        below = low is not None and (value < low if low_closed else value <= low)
        above = high is not None and (value > high if high_closed else value >= high)
        if below or above:
            lo = "-inf" if low is None else f"{low:g}"
            hi = "inf" if high is None else f"{high:g}"
            interval = f"{'[' if low_closed else '('}{lo}, {hi}{']' if high_closed else ')'}"
            self.fail(key, f"value {value:g} is out of range; expected a value in {interval}")


def join_key(key, name):
    return f"{key}.{name}" if key else str(name)


def describe(value):
    if value is None:
        return "nothing (null)"
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "the string",
            list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)
    if isinstance(value, (str, int, float, bool)):
        return f"{kind} {value!r}"
    return kind
