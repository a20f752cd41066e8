"""Reading the YAML file of `keras-afl train`: one message for every way it can go wrong.

`read(path)` returns the parsed config (not yet validated: `keras_afl.cli.config`
does that) or raises a `ConfigError` naming the file: a folder given instead
of a file (with the config files in it), a missing, unreadable, empty or
invalid file, and a key given twice in one mapping -- YAML loaders keep the
last value silently (`epochs: 5 ... epochs: 50` would train 50 epochs).
"""

from __future__ import annotations

import os

from keras_afl.cli.common import ConfigError, require


def read(path):
    """The parsed YAML document at `path` (a dict for a well-formed config)."""
    yaml = require("yaml", "train")
    if os.path.isdir(path):
        found = sorted(f for f in os.listdir(path) if f.endswith((".yaml", ".yml")))
        more = ", ..." if len(found) > 8 else ""
        which = (f"one of its config files: {', '.join(found[:8])}{more} (e.g. keras-afl train "
                 f"{os.path.join(path, found[0])})" if found
                 else "a config file (it holds no .yaml files; configs/ has examples)")
        raise ConfigError(path, "", f"is a folder, not a config file; pass {which}")
    if not os.path.isfile(path):
        raise ConfigError(path, "", "no such file")
    try:
        with open(path, encoding="utf-8") as f:
            loader = yaml.SafeLoader(f)
            try:
                node = loader.get_single_node()
                if node is not None:
                    _refuse_duplicate_keys(yaml, node, "", path)
                raw = None if node is None else loader.construct_document(node)
            finally:
                loader.dispose()
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" (line {where.line + 1}, column {where.column + 1})" if where else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(path, "", f"not valid YAML{at}: {problem}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(path, "", f"cannot read the file: {e}") from None
    if raw is None:
        raise ConfigError(path, "", "the file is empty")
    return raw


def _refuse_duplicate_keys(yaml, node, key, file, _seen=None):
    """A key given twice in one mapping of the node tree is a ConfigError naming the key
    (its config path) and both lines; checked before any value is constructed."""
    seen = set() if _seen is None else _seen
    if id(node) in seen:  # an alias of a node already checked
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first = {}
        for k, v in node.value:
            child = key
            if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                child = f"{key}.{k.value}" if key else k.value
                line = k.start_mark.line + 1
                if k.value in first:
                    was_line, was = first[k.value]
                    raise ConfigError(file, child, f"given twice: line {was_line} ({was}) and "
                                                   f"line {line} ({_node_text(yaml, v)}); YAML "
                                                   "would silently keep the last one. Delete one")
                first[k.value] = (line, _node_text(yaml, v))
            _refuse_duplicate_keys(yaml, v, child, file, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _refuse_duplicate_keys(yaml, v, f"{key}[{i}]", file, seen)


def _node_text(yaml, node):
    """A short description of a YAML node's value for a message."""
    if isinstance(node, yaml.ScalarNode):
        text = node.value if len(node.value) <= 40 else node.value[:37] + "..."
        return f"value {text}" if text else "no value"
    return "a mapping" if isinstance(node, yaml.MappingNode) else "a list"
