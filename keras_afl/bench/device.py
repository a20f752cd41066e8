"""The device Keras computes on, in words, the same on every backend.

Shared by the harness (the benchmark reports of JAX and PyTorch,
`keras_afl.bench.backends`) and the app (the first line of `keras-afl check`,
through `keras_afl.cli._autodiff`); here, in the harness, because the app may
import the harness and the harness never imports the app. Nothing here imports
a backend other than the active one.
"""

from __future__ import annotations


def device():
    """Where Keras computes by default on this backend, in words, the same on every backend:
    the device, then the backend and how many accelerators it sees -- "CPU (JAX; no GPU
    visible)", "GPU:0 NVIDIA H100 80GB HBM3 (PyTorch; 1 GPU visible)". For the first line of
    `check` and the benchmark reports of JAX and PyTorch."""
    import keras

    name = keras.backend.backend()
    if name == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        model = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "") \
            if gpus else ""
        return _device_words("GPU", model, len(gpus), "TensorFlow")
    if name == "jax":
        import jax

        first = jax.devices()[0]  # JAX's default device, where Keras puts its arrays
        kind = first.platform.upper()  # CPU, GPU, TPU
        count = 0 if kind == "CPU" else jax.device_count()
        return _device_words(kind, first.device_kind, count, "JAX")
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0  # Keras uses cuda if any
    return _device_words("GPU", torch.cuda.get_device_name(0) if count else "", count, "PyTorch")


def _device_words(kind, model, count, library):
    """"CPU (JAX; no GPU visible)" when `count` is 0, else "GPU:0 <model> (JAX; 2 GPUs visible)"."""
    if not count:
        return f"CPU ({library}; no GPU visible)"
    plural = "" if count == 1 else "s"
    where = f"{kind}:0 {model}" if model else f"{kind}:0"
    return f"{where} ({library}; {count} {kind}{plural} visible)"
