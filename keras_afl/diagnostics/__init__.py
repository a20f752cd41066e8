"""`lint(model)`: checks a Keras model against the advice behind keras_afl.

The article this project grew from is practical advice: softmax goes with
categorical cross-entropy and sigmoid with binary cross-entropy, linear outputs
with MSE / Huber / hinge; ReLU units can die and sigmoid/tanh saturate; SELU
needs LeCun-normal weights, AlphaDropout and no batch normalisation. `lint`
turns that advice into checks on a real model: it walks the layers in order
(Sequential or functional, nested models included), finds each activation --
keras_afl's layers, Keras's `ReLU`, `LeakyReLU`, `PReLU`, `ELU`, `Softmax`,
`Activation` layers and the `activation=` of Dense/Conv layers, given as
functions or strings -- finds the layer(s) feeding the loss, and reports
what it finds as `Finding`s.

Rules (`RULES` holds the same table; severity "error" means the model trains
the wrong thing or cannot learn, "warning" that it trains worse than it could,
"info" that a check was skipped or a setting is unusual but harmless):

    rule                                   severity  what
    softmax-binary-loss                    error     softmax output on >1 class with a binary loss of probabilities
                                                     (binary cross-entropy / focal, Dice, Tversky)
    sigmoid-categorical-loss               error     sigmoid output with a categorical or sparse loss of
                                                     probabilities ((sparse) categorical cross-entropy / focal, KLD)
    softmax-single-unit                    error     softmax over one unit: always 1, nothing to learn
    linear-output-probability-loss         error     linear output, a loss that reads probabilities
                                                     (cross-entropy/focal with from_logits=False, KLD, Dice)
    probability-output-from-logits         warning   sigmoid/softmax output, a loss that reads logits
                                                     (cross-entropy/focal with from_logits=True, CTC);
                                                     error for Keras's focal losses and CTC, and for Keras's
                                                     cross-entropies on a float16/bfloat16 output
    hinge-bounded-output                   warning   hinge loss (scores) on a sigmoid/softmax output
    regression-loss-classification-output  warning   regression loss (MSE, MAE, Huber, Poisson, ...) on a
                                                     sigmoid/softmax output
    selu-initializer                       warning   SELU fed by weights that are not LeCun-normal
    selu-batchnorm                         warning   BatchNormalization in a SELU network
    selu-dropout                           warning   plain Dropout in a SELU network (AlphaDropout expected)
    deep-saturating-stack                  warning   4 or more consecutive sigmoid/tanh hidden layers
    leaky-slope                            warning   Leaky ReLU / PReLU slope outside (0, 1) (info when exactly 0)
    focal-alpha-and-class-weight           warning   a focal loss applying alpha, and lint(class_weight=...) (the
                                                     fit() class_weight or per-class sample weights): balanced twice
    no-loss                                info      no loss given and the model is not compiled
    loss-not-recognised                    info      a custom loss: pairing checks skipped

The loss is `lint(model, loss=...)` if given, else the compiled `model.loss`:
a string (Keras's "binary_crossentropy", "mse", "hinge", ... or keras_afl's
"afl_bce", "focal", ...), a `keras.losses.Loss` object (Keras's or
keras_afl's), a loss class or function, or a list / dict of those for a
model with several outputs. What each loss is for (its family, the `y_pred` it
reads, its labels) comes from `keras_afl.registry.describe_loss`, the registry's
one table for keras_afl's and Keras's losses.
"""

from keras_afl.diagnostics._findings import RULES, SEVERITIES, Finding, Findings
from keras_afl.diagnostics._graph import _producer, activation_of  # noqa: F401 (_producer: tests)
from keras_afl.diagnostics._rules import DEEP_STACK, lint  # noqa: F401 (DEEP_STACK: not in __all__)

__all__ = ["lint", "Finding", "Findings", "RULES", "SEVERITIES", "activation_of"]
