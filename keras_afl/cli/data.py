"""Data for `keras-afl train` and `keras-afl demo`: bundled loaders, splits, metrics.

Every data set here ships inside an installed package (scikit-learn's bundled
breast-cancer, digits, iris, wine and diabetes sets) or is generated, so no
command downloads anything. Metrics are scikit-learn's.
"""

from __future__ import annotations

import csv
import dataclasses
import os

import numpy as np

from keras_afl.cli.common import ConfigError, did_you_mean, require

SMOKE_SAMPLES = 300  # at most this many rows in a --smoke run


@dataclasses.dataclass
class Data:
    """A prepared data set: float32 features, labels (int) or targets (float), splits."""

    task: str                       # "binary", "multiclass" or "regression"
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list = dataclasses.field(default_factory=list)
    description: str = ""
    target_center: float = 0.0      # regression: y_model = (y - center) / scale
    target_scale: float = 1.0

    @property
    def n_features(self):
        return self.x_train.shape[1]

    @property
    def n_classes(self):
        return len(self.class_names)

    def summary(self):
        out = {"task": self.task, "description": self.description,
               "n_features": int(self.n_features), "n_train": int(len(self.x_train)),
               "n_val": 0 if self.x_val is None else int(len(self.x_val)),
               "n_test": int(len(self.x_test))}
        if self.task != "regression":
            out["classes"] = [str(c) for c in self.class_names]
            out["train_class_counts"] = np.bincount(self.y_train, minlength=self.n_classes).tolist()
            out["test_class_counts"] = np.bincount(self.y_test, minlength=self.n_classes).tolist()
        if self.task == "binary":
            out["train_positive_fraction"] = float(np.mean(self.y_train == 1))
        return out


# --------------------------------------------------------------------------- sources

def load_bundled(name):
    """(x, y, task, class_names, description) of one of scikit-learn's bundled data sets."""
    datasets = require("sklearn.datasets", "train")
    loader = {"breast_cancer": datasets.load_breast_cancer, "digits": datasets.load_digits,
              "iris": datasets.load_iris, "wine": datasets.load_wine,
              "diabetes": datasets.load_diabetes}[name]
    b = loader()
    x = np.asarray(b.data, np.float64)
    if name == "diabetes":
        return x, np.asarray(b.target, np.float64), "regression", [], "scikit-learn diabetes"
    names = [str(n) for n in b.target_names]
    return x, np.asarray(b.target, np.int64), ("binary" if len(names) == 2 else "multiclass"), \
        names, f"scikit-learn {name}"


def make_outliers(n_samples, n_features, noise, seed):
    """Synthetic regression: y = x.w + 0.5 sin(2 x0) + noise (outliers are added later)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_samples, n_features))
    w = rng.normal(size=n_features)
    y = x @ w + 0.5 * np.sin(2 * x[:, 0]) + noise * rng.normal(size=n_samples)
    return x, y


def add_outliers(y, fraction, scale, seed):
    """Returns a copy of `y` with `fraction` of it shifted by +-scale * std(y)."""
    rng = np.random.default_rng(seed + 1)
    y = y.copy()
    k = int(round(fraction * len(y)))
    if k:
        idx = rng.choice(len(y), size=k, replace=False)
        y[idx] += rng.choice([-1.0, 1.0], size=k) * scale * np.std(y) * rng.uniform(0.5, 1.5, k)
    return y


def load_csv(path, target, task, file):
    """(x, y, task, class_names, description) from a CSV with a header row."""
    where = os.path.join(os.path.dirname(os.path.abspath(file)), path)
    if not os.path.isfile(where):
        raise ConfigError(file, "data.path", f"no such file {where!r}")
    try:
        with open(where, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(file, "data.path", f"cannot read {where!r} as CSV: {e}") from None
    rows = [r for r in rows if r]
    if len(rows) < 3:
        raise ConfigError(file, "data.path", f"{where!r} needs a header row and at least two rows")
    header = [h.strip() for h in rows[0]]
    if target not in header:
        raise ConfigError(file, "data.target", f"no column {target!r} in {where!r}"
                                               f"{did_you_mean(target, header)} (columns: "
                                               f"{', '.join(header)})")
    t = header.index(target)
    feats = [i for i in range(len(header)) if i != t]
    if not feats:
        raise ConfigError(file, "data.path", f"{where!r} has no feature columns besides the target")
    x = np.empty((len(rows) - 1, len(feats)))
    raw_y = []
    for r, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ConfigError(file, "data.path", f"{where!r} line {r}: {len(row)} fields, "
                                                 f"the header has {len(header)}")
        for j, i in enumerate(feats):
            try:
                x[r - 2, j] = float(row[i])
            except ValueError:
                raise ConfigError(file, "data.path", f"{where!r} line {r}, column "
                                                     f"{header[i]!r}: {row[i]!r} is not a number "
                                                     "(feature columns must be numeric)") from None
        raw_y.append(row[t].strip())
    numeric = all(_is_number(v) for v in raw_y)
    distinct = sorted(set(raw_y), key=(float if numeric else str))
    if task is None:
        if numeric and (len(distinct) > 20 or any(float(v) != int(float(v)) for v in distinct)):
            task = "regression"
        else:
            task = "binary" if len(distinct) == 2 else "multiclass"
    desc = f"CSV {path}, target {target!r}"
    if task == "regression":
        if not numeric:
            raise ConfigError(file, "data.task", f"regression needs a numeric target; column "
                                                 f"{target!r} holds e.g. {raw_y[0]!r}")
        return x, np.array([float(v) for v in raw_y]), task, [], desc
    if len(distinct) < 2:
        raise ConfigError(file, "data.target", f"column {target!r} has a single value")
    if task == "binary" and len(distinct) != 2:
        raise ConfigError(file, "data.task", f"binary needs two classes; column {target!r} has "
                                             f"{len(distinct)} (set positive_class for one vs rest)")
    index = {v: i for i, v in enumerate(distinct)}
    return x, np.array([index[v] for v in raw_y]), task, distinct, desc


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def to_binary(y, class_names, positive, file, key="data.positive_class"):
    """Labels 1 for class `positive` (name or index), 0 for the rest."""
    names = [str(n) for n in class_names]
    if isinstance(positive, str) and positive in names:
        k = names.index(positive)
    elif isinstance(positive, int) and str(positive) in names:
        k = names.index(str(positive))
    elif isinstance(positive, int) and 0 <= positive < len(names):
        k = positive
    else:
        raise ConfigError(file, key, f"unknown class {positive!r}{did_you_mean(positive, names)} "
                                     f"(classes: {', '.join(names)}, or their index)")
    return (y == k).astype(np.int64), [f"not {names[k]}", names[k]]


def subsample_positives(x, y, fraction, seed):
    """Keeps every negative and just enough positives that they make up `fraction`."""
    rng = np.random.default_rng(seed + 2)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    want = int(round(fraction * len(neg) / (1 - fraction)))
    want = max(2, min(len(pos), want))
    keep = np.sort(np.concatenate([neg, rng.choice(pos, size=want, replace=False)]))
    return x[keep], y[keep]


def split(x, y, fraction, seed, stratify, *, file=None, key=None):
    """Stratified (if possible) split; returns x_a, x_b, y_a, y_b with len(b) ~ fraction.

    Too few samples for the split (scikit-learn's ValueError) is a ConfigError
    naming `file` and the config `key` of `fraction`.
    """
    ms = require("sklearn.model_selection", "train")
    strat = y if stratify and np.min(np.bincount(y)) >= 2 else None
    try:
        return ms.train_test_split(x, y, test_size=fraction, random_state=seed, stratify=strat)
    except ValueError as e:
        if file is None:
            raise
        n, k = len(x), len(np.unique(y))
        classes = f" in {k} class{'es' * (k != 1)}" if stratify else ""
        why = str(e).split(". ")[0].rstrip(".")
        raise ConfigError(file, key, f"cannot hold out {fraction:g} of {n} sample{'s' * (n != 1)}"
                                     f"{classes} (scikit-learn: {why}); use a larger data set or "
                                     f"change {key}"
                                     + (" (0: no validation split)"
                                        if key == "training.validation_split" else "")) from None


def prepare(cfg, file, *, smoke=False, validation_split=0.2):
    """Loads, converts, subsamples, splits and standardises the data of a validated config."""
    d, seed = cfg["data"], cfg["seed"]
    source = d["source"]
    if source == "csv":
        x, y, task, class_names, desc = load_csv(d["path"], d["target"], d["task"], file)
    elif source == "outliers":
        x, y = make_outliers(d["n_samples"], d["n_features"], d["noise"], seed)
        task, class_names = "regression", []
        desc = (f"synthetic regression, {d['n_samples']} samples, {d['n_features']} features, "
                f"{d['outlier_fraction']:.0%} outliers in train/validation targets")
    else:
        x, y, task, class_names, desc = load_bundled(source)
    if d["positive_class"] is not None:
        if task == "regression":
            raise ConfigError(file, "data.positive_class", "only for classification data")
        y, class_names = to_binary(y, class_names, d["positive_class"], file)
        task = "binary"
    elif source == "breast_cancer":  # the minority class, malignant, is the positive one
        y, class_names = to_binary(y, class_names, "malignant", file)
    if d["positive_fraction"] is not None:
        if task != "binary":
            raise ConfigError(file, "data.positive_fraction", f"only for binary tasks; this data "
                                                              f"is {task}")
        x, y = subsample_positives(x, y, d["positive_fraction"], seed)
        desc += f", positives subsampled to {d['positive_fraction']:.0%}"
    classify = task != "regression"
    if smoke and len(x) > SMOKE_SAMPLES:
        x, _, y, _ = split(x, y, 1 - SMOKE_SAMPLES / len(x), seed, classify)
    x_train, x_test, y_train, y_test = split(x, y, d["test_split"], seed, classify, file=file,
                                             key="data.test_split")
    x_val = y_val = None
    if validation_split > 0:
        x_train, x_val, y_train, y_val = split(x_train, y_train, validation_split, seed + 3,
                                               classify, file=file,
                                               key="training.validation_split")
    if source == "outliers":
        y_train = add_outliers(y_train, d["outlier_fraction"], d["outlier_scale"], seed)
        if y_val is not None:
            y_val = add_outliers(y_val, d["outlier_fraction"], d["outlier_scale"], seed + 4)
    center, scale = 0.0, 1.0
    if d["standardize"]:
        mu, sd = x_train.mean(0), x_train.std(0)
        sd = np.where(sd > 0, sd, 1.0)
        x_train, x_test = (x_train - mu) / sd, (x_test - mu) / sd
        x_val = None if x_val is None else (x_val - mu) / sd
        if task == "regression":  # robust: median and IQR / 1.349 (outliers barely move them)
            q1, center, q3 = np.percentile(y_train, [25, 50, 75])
            scale = float((q3 - q1) / 1.349) or 1.0
            center = float(center)
    f32 = (lambda a: None if a is None else np.asarray(a, np.float32))
    return Data(task, f32(x_train), y_train, f32(x_val), y_val, f32(x_test), y_test,
                class_names=list(class_names), description=desc, target_center=center,
                target_scale=scale)


def encode(data, y, family):
    """Targets as the loss wants them: (n, 1) floats, one-hot rows or integer labels."""
    if y is None:
        return None
    if family == "onehot":
        return np.eye(data.n_classes, dtype=np.float32)[y]
    if family == "sparse":
        return y.astype(np.int32)
    if data.task == "regression":
        return ((y - data.target_center) / data.target_scale).astype(np.float32)[:, None]
    return y.astype(np.float32)[:, None]


def output_units(data, family):
    return data.n_classes if family in ("onehot", "sparse") else 1


# --------------------------------------------------------------------------- metrics

def binary_metrics(y_true, score, threshold):
    """PR-AUC, ROC-AUC, F1, minority-class recall and accuracy (scikit-learn)."""
    m = require("sklearn.metrics", "train")
    score = np.asarray(score, np.float64).reshape(-1)
    pred = (score > threshold).astype(np.int64)
    counts = np.bincount(y_true, minlength=2)
    minority = int(np.argmin(counts))
    both = counts.min() > 0
    nan = float("nan")
    return {
        "pr_auc": float(m.average_precision_score(y_true, score)) if both else nan,
        "roc_auc": float(m.roc_auc_score(y_true, score)) if both else nan,
        "f1": float(m.f1_score(y_true, pred, zero_division=0)),
        "minority_recall": float(m.recall_score(y_true, pred, pos_label=minority,
                                                zero_division=0)),
        "accuracy": float(m.accuracy_score(y_true, pred)),
    }


def multiclass_metrics(y_true, score, n_classes):
    m = require("sklearn.metrics", "train")
    pred = np.argmax(np.asarray(score), axis=-1)
    recalls = m.recall_score(y_true, pred, labels=np.arange(n_classes), average=None,
                             zero_division=0)
    present = np.bincount(y_true, minlength=n_classes) > 0
    return {
        "accuracy": float(m.accuracy_score(y_true, pred)),
        "macro_f1": float(m.f1_score(y_true, pred, average="macro", zero_division=0)),
        "balanced_accuracy": float(np.mean(recalls[present])),
        "min_class_recall": float(np.min(recalls[present])),
    }


def regression_metrics(y_true, pred):
    m = require("sklearn.metrics", "train")
    pred = np.asarray(pred, np.float64).reshape(-1)
    return {
        "mae": float(m.mean_absolute_error(y_true, pred)),
        "rmse": float(np.sqrt(m.mean_squared_error(y_true, pred))),
        "r2": float(m.r2_score(y_true, pred)),
    }


def evaluate(data, raw_prediction, spec):
    """Test-set metrics of a model's raw predictions, for the loss `spec` it was trained with."""
    if data.task == "regression":
        pred = np.asarray(raw_prediction, np.float64).reshape(-1)
        return regression_metrics(data.y_test, pred * data.target_scale + data.target_center)
    if data.task == "binary":
        threshold = 0.0 if spec["outputs"] == "scores" else 0.5
        return binary_metrics(data.y_test, raw_prediction, threshold)
    return multiclass_metrics(data.y_test, raw_prediction, data.n_classes)
