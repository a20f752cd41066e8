"""Binary losses (one output per label): hinge, binary cross-entropy and binary focal loss.

`_hinge` holds hinge; `_crossentropy` BCE and the focal loss, with what they share in `_common`
(the label rule, ignored entries and positives for `ignore_class` / `normalize`, the clip, the
pieces of the logits). Each module keeps a loss's function, its derivative and its Loss class
together.
"""

from keras_afl.losses.binary import _crossentropy, _hinge
from keras_afl.losses.binary._crossentropy import *  # noqa: F401,F403
from keras_afl.losses.binary._hinge import *  # noqa: F401,F403

__all__ = [*_hinge.__all__, *_crossentropy.__all__]
