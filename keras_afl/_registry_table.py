"""The registry's table: every keras_afl activation and loss with its names, purpose and notes,
and what Keras's own losses are for.

Data only; `keras_afl.registry` turns each `_row` into an `Entry` and reads
`KERAS_LOSSES` into `keras_afl.registry.KERAS_LOSSES`. The words a row may use
for `family`, `y_pred` and `labels` are `keras_afl.registry.LOSS_FAMILIES`,
`ACTIVATION_FAMILIES`, `Y_PRED_KINDS` and `LABEL_FORMATS` (each with its
meaning); the registry refuses any other at import.
"""

from keras_afl import activations, losses


def _row(*args, **kwargs):
    """The arguments of one `keras_afl.registry.Entry`."""
    return args, kwargs


ACTIVATIONS = (
    _row(
        "afl_relu", "activation", activations.relu, keras_names=("relu",),
        family="elementwise", y_pred="non_negative",
        formula="max(x, 0)", derivative="1 if x > 0 else 0  (0 at x = 0)",
        output_range="[0, inf)",
        properties=("non-saturating for x > 0", "sparse activation (about half the units are zero)",
                    "cheap to compute", "mitigates vanishing gradients", "units can die (x <= 0 forever)"),
        uses=("default hidden-layer activation", "convolutional networks", "deep architectures"),
        pairings=("hidden layers with any loss",),
    ),
    _row(
        "afl_leaky_relu", "activation", activations.leaky_relu, keras_names=("leaky_relu",),
        family="elementwise", y_pred="values",
        formula="x if x > 0 else a*x", derivative="1 if x > 0 else a  (a at x = 0)",
        output_range="(-inf, inf)",
        properties=("prevents dead units", "keeps a gradient for negative inputs",
                    "slope a can be learned (PReLU)"),
        uses=("alternative to ReLU when dead units are a concern", "GAN discriminators"),
        pairings=("hidden layers with any loss",),
    ),
    _row(
        "afl_sigmoid", "activation", activations.sigmoid, keras_names=("sigmoid",),
        family="elementwise", y_pred="probabilities",
        formula="1 / (1 + exp(-x))", derivative="y (1 - y)",
        output_range="(0, 1)",
        properties=("smooth", "probabilistic output", "saturates: vanishing gradient for large |x|",
                    "not zero-centred"),
        uses=("binary and multi-label output layers", "LSTM/GRU gates"),
        pairings=("afl_bce / focal (binary cross-entropy family)",),
    ),
    _row(
        "afl_tanh", "activation", activations.tanh, keras_names=("tanh",),
        family="elementwise", y_pred="values",
        formula="(e^x - e^-x) / (e^x + e^-x)", derivative="1 - y^2",
        output_range="(-1, 1)",
        properties=("zero-centred", "stronger gradient than sigmoid", "saturates for large |x|"),
        uses=("recurrent cells", "shallow networks", "outputs normalised to (-1, 1)"),
        pairings=("hidden layers; as output, MSE on targets in (-1, 1)",),
    ),
    _row(
        "afl_softmax", "activation", activations.softmax, keras_names=("softmax",),
        family="axis", y_pred="probabilities",
        formula="exp(x_i - max x) / sum_j exp(x_j - max x)",
        derivative="s_i (delta_ij - s_j); VJP s * (g - <g, s>)",
        output_range="(0, 1), sums to 1 along axis",
        properties=("outputs a probability distribution", "preserves ordering",
                    "emphasises the largest value"),
        uses=("multi-class output layers", "attention weights", "policy networks"),
        pairings=("afl_cce / categorical_focal (categorical cross-entropy family)",),
    ),
    _row(
        "afl_elu", "activation", activations.elu, keras_names=("elu",),
        family="elementwise", y_pred="values",
        formula="x if x > 0 else alpha (exp(x) - 1)", derivative="1 if x > 0 else y + alpha  (1 at x = 0)",
        output_range="(-alpha, inf)",
        properties=("smooth for negative inputs", "mean activation nearer zero (less bias shift)",
                    "no dead units", "costlier than ReLU"),
        uses=("deep networks needing smooth gradients", "alternative to batch normalisation"),
        pairings=("hidden layers with any loss",),
    ),
    _row(
        "afl_selu", "activation", activations.selu, keras_names=("selu",),
        family="elementwise", y_pred="values",
        formula="lambda (x if x > 0 else alpha (exp(x) - 1)), lambda=1.0507, alpha=1.6733",
        derivative="lambda if x > 0 else y + lambda alpha  (lambda at x = 0)",
        output_range="(-lambda alpha, inf)",
        properties=("self-normalising: activations keep mean 0, variance 1",
                    "needs LeCun-normal initialisation", "use AlphaDropout, not Dropout or BatchNorm"),
        uses=("deep fully connected networks without batch normalisation",),
        pairings=("hidden layers with any loss",),
    ),
)

LOSSES = (
    _row(
        "afl_mse", "loss", losses.MeanSquaredError, aliases=("afl_mean_squared_error",),
        family="regression", y_pred="values", labels="real",
        keras_names=("mse", "mean_squared_error", "MSE", "MeanSquaredError"),
        formula="mean((y_pred - y_true)^2)", derivative="2 (y_pred - y_true) / N",
        output_range="[0, inf)",
        properties=("heavily penalises large errors", "differentiable everywhere", "non-negative",
                    "convex", "sensitive to outliers"),
        uses=("regression", "when outliers are rare or meaningful",
              "when large errors should be heavily penalised", "signal processing"),
        pairings=("linear output layer",),
    ),
    _row(
        "afl_bce", "loss", losses.BinaryCrossentropy, aliases=("afl_binary_crossentropy",),
        family="binary", y_pred="probabilities", labels="binary",
        keras_names=("binary_crossentropy", "bce", "BCE", "BinaryCrossentropy"),
        formula="mean(-[w y log p + (1 - y) log(1 - p)]),  p = sigmoid(z)",
        derivative="logits: ((1 + (w - 1) y) sigmoid(z) - w y) / N  (w = pos_weight)",
        output_range="[0, inf)",
        properties=("bounded below by 0, unbounded above",
                    "stronger gradients than MSE for probabilities",
                    "works well with probabilistic predictions", "natural pairing with sigmoid",
                    "ignore_class: entries with that label (-1, 255) add nothing",
                    "normalize='positives' / 'positives_per_image': summed loss over the number "
                    "of positive entries, counted over every replica (RetinaNet)"),
        uses=("binary classification", "GANs", "anomaly detection",
              "multi-label classification (per label)"),
        pairings=("afl_sigmoid output (fused gradient sigmoid(z) - y)",),
    ),
    _row(
        "afl_cce", "loss", losses.CategoricalCrossentropy, aliases=("afl_categorical_crossentropy",),
        family="categorical", y_pred="probabilities", labels="one_hot",
        keras_names=("categorical_crossentropy", "CategoricalCrossentropy"),
        formula="-sum(y log softmax(z))", derivative="logits: (sum y) softmax(z) - y",
        output_range="[0, inf)",
        properties=("measures the divergence between label and predicted distributions",
                    "natural pairing with softmax"),
        uses=("single-label multi-class classification",),
        pairings=("afl_softmax output (fused gradient softmax(z) - y)",),
    ),
    _row(
        "afl_sparse_categorical_crossentropy", "loss", losses.SparseCategoricalCrossentropy,
        family="sparse", y_pred="probabilities", labels="class_ids",
        keras_names=("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy"),
        formula="logsumexp(z) - z_t  (t = integer class id)",
        derivative="logits: softmax(z) - onehot(t)",
        output_range="[0, inf)",
        properties=("categorical cross-entropy without one-hot labels", "can ignore a void class",
                    "normalize with background_class: summed loss over the non-background "
                    "samples, counted over every replica"),
        uses=("multi-class classification with integer labels", "semantic segmentation"),
        pairings=("afl_softmax output (fused gradient softmax(z) - onehot(t))",),
    ),
    _row(
        "focal", "loss", losses.FocalLoss, aliases=("binary_focal", "afl_focal"),
        family="binary", y_pred="probabilities", labels="binary",
        keras_names=("binary_focal_crossentropy", "BinaryFocalCrossentropy"),
        formula="mean(alpha_t (1 - p_t)^gamma CE)",
        derivative="logits: alpha_t (1 - p_t)^gamma [(p - y) - gamma (2y - 1) (p q / (1 - p_t)) CE] / N",
        output_range="[0, inf)",
        properties=("reduces the impact of easy examples", "handles class imbalance",
                    "tunable focus on hard examples via gamma",
                    "generalises cross-entropy (gamma = 0, alpha = None)",
                    "ignore_class: entries with that label (-1 for ignored anchors, 255 for void "
                    "pixels) add nothing to loss or gradient",
                    "normalize='positives' (RetinaNet) / 'positives_per_image': summed loss over "
                    "the number of positive entries, counted over every replica"),
        uses=("object detection", "highly imbalanced data sets", "dense prediction",
              "medical image segmentation"),
        pairings=("afl_sigmoid output (multi-label)",),
    ),
    _row(
        "categorical_focal", "loss", losses.CategoricalFocalLoss, aliases=("afl_categorical_focal",),
        family="categorical", y_pred="probabilities", labels="one_hot",
        keras_names=("categorical_focal_crossentropy", "CategoricalFocalCrossentropy"),
        formula="-sum(alpha y (1 - p)^gamma log p),  p = softmax(z)",
        derivative="logits: p sum(w) - w,  w = alpha y (1 - p)^gamma (1 - gamma p log p / (1 - p))",
        output_range="[0, inf)",
        properties=("reduces the impact of easy examples", "handles class imbalance",
                    "generalises categorical cross-entropy (gamma = 0, alpha = None)",
                    "normalize with background_class: summed loss over the non-background rows, "
                    "counted over every replica"),
        uses=("imbalanced multi-class classification", "dense prediction"),
        pairings=("afl_softmax output",),
    ),
    _row(
        "sparse_categorical_focal", "loss", losses.SparseCategoricalFocalLoss,
        family="sparse", y_pred="probabilities", labels="class_ids",
        aliases=("afl_sparse_categorical_focal",),
        formula="-alpha_t (1 - p_t)^gamma log p_t  (t = integer class id)",
        derivative=("logits: alpha_t (1 - p_t)^gamma (1 - gamma p_t log p_t / (1 - p_t)) "
                    "(softmax(z) - onehot(t))"),
        output_range="[0, inf)",
        properties=("categorical focal loss without one-hot labels", "can ignore a void class",
                    "per-class alpha (hundreds of classes), no one-hot in memory",
                    "normalize with background_class: summed loss over the non-background "
                    "samples (pixels, anchors), counted over every replica"),
        uses=("imbalanced multi-class classification with integer labels", "semantic segmentation"),
        pairings=("afl_softmax output",),
    ),
    _row(
        "afl_huber", "loss", losses.Huber, keras_names=("huber", "Huber"),
        family="regression", y_pred="values", labels="real",
        formula="mean(0.5 e^2 if |e| <= delta else delta (|e| - 0.5 delta)),  e = y_pred - y_true",
        derivative="clip(e, -delta, delta) / N",
        output_range="[0, inf)",
        properties=("combines MSE and MAE", "robust to outliers", "differentiable everywhere",
                    "sensitivity adjustable via delta"),
        uses=("regression with outliers", "robust optimisation", "reinforcement learning",
              "time series prediction"),
        pairings=("linear output layer",),
    ),
    _row(
        "afl_hinge", "loss", losses.Hinge, keras_names=("hinge", "Hinge"),
        family="binary", y_pred="scores", labels="signed",
        formula="mean(max(0, 1 - t y_pred)),  t in {-1, 1}",
        derivative="-t / N if t y_pred <= 1 else 0  (-t / N at the hinge point)",
        output_range="[0, inf)",
        properties=("maximum-margin classification", "non-differentiable at the hinge point",
                    "sparse gradients", "focuses on margin violations"),
        uses=("support vector machines", "maximum-margin classifiers", "structured prediction",
              "online learning"),
        pairings=("linear output layer (raw scores, labels -1/1 or 0/1)",),
    ),
)

# What Keras's own losses are for, decided from each one's docstring and source
# (keras/src/losses/losses.py, Keras 3.15): (function name, class name, family,
# y_pred it reads with from_logits=False, label format). Each function's
# aliases ("mse", "kld", "MAPE", ...) resolve to it through keras.losses.get.
KERAS_LOSSES = (
    ("mean_squared_error", "MeanSquaredError", "regression", "values", "real"),
    ("mean_absolute_error", "MeanAbsoluteError", "regression", "values", "real"),
    ("mean_absolute_percentage_error", "MeanAbsolutePercentageError", "regression", "values",
     "real"),
    # log(max(y, eps) + 1) on both sides: "y_pred and y_true cannot be less or equal to 0".
    ("mean_squared_logarithmic_error", "MeanSquaredLogarithmicError", "regression",
     "non_negative", "non_negative"),
    ("huber", "Huber", "regression", "values", "real"),
    ("log_cosh", "LogCosh", "regression", "values", "real"),
    # -sum(l2_normalize(y_true) * l2_normalize(y_pred)): direction of real vectors.
    ("cosine_similarity", "CosineSimilarity", "regression", "values", "real"),
    # y_pred - y_true log(y_pred + eps): y_pred a rate (> 0), y_true a count.
    ("poisson", "Poisson", "regression", "non_negative", "non_negative"),
    ("binary_crossentropy", "BinaryCrossentropy", "binary", "probabilities", "binary"),
    ("binary_focal_crossentropy", "BinaryFocalCrossentropy", "binary", "probabilities",
     "binary"),
    # Overlap of y_true and y_pred masks, element by element (no class axis).
    ("dice", "Dice", "binary", "probabilities", "binary"),
    ("tversky", "Tversky", "binary", "probabilities", "binary"),
    # -1/+1 labels; 0/1 labels are converted (convert_binary_labels_to_hinge).
    ("hinge", "Hinge", "binary", "scores", "signed"),
    ("squared_hinge", "SquaredHinge", "binary", "scores", "signed"),
    ("categorical_crossentropy", "CategoricalCrossentropy", "categorical", "probabilities",
     "one_hot"),
    ("categorical_focal_crossentropy", "CategoricalFocalCrossentropy", "categorical",
     "probabilities", "one_hot"),
    # y_true * log(y_true / y_pred) summed over the last axis, both clipped to [eps, 1]:
    # "y_true and y_pred are expected to be probability distributions".
    ("kl_divergence", "KLDivergence", "categorical", "probabilities", "one_hot"),
    # max(neg - pos + 1, 0) over the last axis; one-hot (0/1 or -1/+1) labels, raw scores.
    ("categorical_hinge", "CategoricalHinge", "categorical", "scores", "one_hot"),
    ("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy", "sparse",
     "probabilities", "class_ids"),
    # "Ground truth labels ... integer class indices"; y_pred "class probabilities".
    ("categorical_generalized_cross_entropy", "CategoricalGeneralizedCrossEntropy", "sparse",
     "probabilities", "class_ids"),
    # Integer label sequences (0 = blank); y_pred "logits ... should *not* be normalized via
    # softmax" (no from_logits setting: always logits).
    ("ctc", "CTC", "sparse", "logits", "class_ids"),
    # Integer labels; y_pred L2-normalised embeddings (no class axis).
    ("circle", "Circle", "sparse", "values", "class_ids"),
)
