"""Binary losses (one output per label): hinge, binary cross-entropy and binary focal loss.

`_hinge` holds hinge; `_crossentropy` BCE and the focal loss, with what they share in `_common`
(the label rule, ignored entries and positives for `ignore_class` / `normalize`, the clip, the
pieces of the logits). Each module keeps a loss's function, its derivative and its Loss class
together.
"""

from keras_afl.losses.binary._crossentropy import (
    BinaryCrossentropy, FocalLoss, binary_crossentropy, focal,
)
from keras_afl.losses.binary._hinge import Hinge, hinge

__all__ = ["hinge", "binary_crossentropy", "focal", "Hinge", "BinaryCrossentropy", "FocalLoss"]
