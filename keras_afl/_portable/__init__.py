"""The formulas of keras_afl written once, for every backend.

Each function is a forward/backward pair over the active backend's operations
(`keras_afl._backend.ops()`), turned into a function with that derivative by
`keras_afl._backend.custom_derivative` (`jax.custom_vjp`, a `torch.autograd.Function`, or
`tf.custom_gradient`). The JAX and PyTorch backends run these; the TensorFlow backend runs its
own modules, which call TensorFlow's fused kernels for the same formulas, and the tests check
that the two agree.
"""
