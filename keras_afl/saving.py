"""`load_model(path)`: a `.keras` file saved on any of TensorFlow, JAX and PyTorch, loaded on any.

A compiled model saved on PyTorch stores its optimizer as Keras's PyTorch subclass: `"adam"` is
written as class `Adam` of module `keras.src.backend.torch.optimizers.torch_adam` (so are SGD,
RMSprop, AdamW, Adadelta, Adagrad, Adamax, Nadam and Lion). `keras.saving.load_model` imports
that module, so on a machine without PyTorch the file does not load ("Could not deserialize class
'Adam' because its parent module keras.src.backend.torch.optimizers.torch_adam cannot be
imported"), and on one with PyTorch, JAX and TensorFlow build the PyTorch optimizer, whose first
`fit()` fails ("expected Tensor as element 0 in argument 0"). Files saved on TensorFlow and JAX
store the public class (`keras.optimizers.Adam`) and load everywhere.

`load_model` reads the file's configuration and loads each optimizer saved as a backend's own
subclass as the public class of the same name (`keras.optimizers.Adam`), which every backend
builds as its own: same settings, same state (step count and moments: the variables are the
same on every backend), training resumes where it stopped. Everything else goes through
`keras.saving.load_model` unchanged; only public Keras API is used.
"""

from __future__ import annotations

import json
import os
import zipfile

import keras

__all__ = ["load_model"]

# Where Keras keeps a backend's own subclasses of its public classes.
_BACKEND_MODULES = "keras.src.backend."


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """`keras.saving.load_model` that also loads files saved on another backend.

    Takes the arguments of `keras.saving.load_model`. A compiled model saved on PyTorch gets
    the public Keras optimizer of the same class and settings (and state) instead of the
    PyTorch subclass that the file names; an entry of `custom_objects` for the same name wins.

    Example:
    >>> import keras, keras_afl, keras_afl.saving
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="afl_elu")])
    >>> model.compile(optimizer="adam", loss="focal")
    >>> model.optimizer.build(model.trainable_variables)  # as fit() would
    >>> path = os.path.join(getfixture("tmp_path"), "model.keras")
    >>> model.save(path)
    >>> type(keras_afl.saving.load_model(path).optimizer).__name__
    'Adam'
    """
    objects = _public_optimizers(filepath)
    objects.update(custom_objects or {})
    return keras.saving.load_model(filepath, custom_objects=objects, compile=compile,
                                   safe_mode=safe_mode)


def _public_optimizers(filepath):
    """{registered name: public keras.optimizers class} for each optimizer that the file's
    configuration stores as a backend's own subclass; {} for anything but a `.keras` zip."""
    if not isinstance(filepath, (str, os.PathLike)) or not zipfile.is_zipfile(filepath):
        return {}  # .h5, a SavedModel folder, a remote path: Keras's own loader decides
    with zipfile.ZipFile(filepath) as archive:
        if "config.json" not in archive.namelist():
            return {}
        config = json.loads(archive.read("config.json"))
    found = {}
    for entry in _objects(config):
        module, name = entry.get("module"), entry.get("class_name")
        if not (isinstance(module, str) and module.startswith(_BACKEND_MODULES)):
            continue
        public = getattr(keras.optimizers, name, None) if isinstance(name, str) else None
        if isinstance(public, type) and issubclass(public, keras.optimizers.Optimizer):
            found[entry.get("registered_name") or name] = public
    return found


def _objects(config):
    """Every serialized object (a dict with "class_name") in a Keras configuration."""
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "class_name" in item:
                yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
