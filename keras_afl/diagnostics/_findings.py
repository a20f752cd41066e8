"""The report `lint` returns: severities, the rule table, `Finding` and `Findings`."""

from __future__ import annotations

import dataclasses
import textwrap

SEVERITIES = ("error", "warning", "info")

RULES = {
    "softmax-binary-loss": ("error", "softmax output on more than one class with a binary loss"),
    "sigmoid-categorical-loss": ("error", "sigmoid output with a categorical loss"),
    "softmax-single-unit": ("error", "softmax over a single unit (always 1)"),
    "linear-output-probability-loss": ("error", "linear output, a loss of probabilities "
                                                "(from_logits=False)"),
    "probability-output-from-logits": ("warning", "sigmoid/softmax output, a loss of logits "
                                                  "(error where the loss reads probabilities as logits)"),
    "hinge-bounded-output": ("warning", "hinge (scores) loss on a sigmoid/softmax output"),
    "regression-loss-classification-output": ("warning", "regression loss (MSE, Huber, ...) on a "
                                                      "sigmoid/softmax output"),
    "selu-initializer": ("warning", "SELU without LeCun-normal initialisation"),
    "selu-batchnorm": ("warning", "BatchNormalization in a SELU network"),
    "selu-dropout": ("warning", "plain Dropout in a SELU network (AlphaDropout expected)"),
    "deep-saturating-stack": ("warning", "4+ consecutive sigmoid/tanh hidden layers"),
    "leaky-slope": ("warning", "Leaky ReLU / PReLU slope outside (0, 1)"),
    "focal-alpha-and-class-weight": ("warning", "a focal loss's alpha and class_weight both "
                                                "balance the classes (applied twice)"),
    "no-loss": ("info", "no loss: pairing checks skipped"),
    "loss-not-recognised": ("info", "unrecognised loss: pairing checks skipped"),
}


@dataclasses.dataclass(frozen=True)
class Finding:
    """One problem `lint` found.

    Attributes:
        severity: "error", "warning" or "info".
        rule: The rule id (a key of `RULES`).
        where: The layer(s) or the output + loss concerned.
        message: What is wrong and why.
        fix: How to fix it.
    """

    severity: str
    rule: str
    where: str
    message: str
    fix: str

    def __str__(self):
        body = textwrap.fill(self.message, width=100, initial_indent="  ",
                             subsequent_indent="  ")
        fix = textwrap.fill(self.fix, width=100, initial_indent="  fix: ",
                            subsequent_indent="       ")
        return f"{self.severity}: {self.where} [{self.rule}]\n{body}\n{fix}"

    def to_dict(self):
        """A JSON-ready dict (what `keras-afl lint --json` prints)."""
        return dataclasses.asdict(self)


class Findings(list):
    """The list of `Finding`s that `lint` returns, errors first; `print()` it for a report.

    Example:
    >>> print(Findings())
    no findings
    """

    @property
    def errors(self):
        return [f for f in self if f.severity == "error"]

    @property
    def warnings(self):
        return [f for f in self if f.severity == "warning"]

    def counts(self):
        """{severity: number of findings} for every severity."""
        return {s: sum(f.severity == s for f in self) for s in SEVERITIES}

    def summary(self):
        """One line: `"2 findings: 1 error, 1 warning, 0 info"` or `"no findings"`."""
        if not self:
            return "no findings"
        c = self.counts()
        return (f"{len(self)} finding{'s' if len(self) != 1 else ''}: {c['error']} error"
                f"{'s' if c['error'] != 1 else ''}, {c['warning']} warning"
                f"{'s' if c['warning'] != 1 else ''}, {c['info']} info")

    def __str__(self):
        if not self:
            return "no findings"
        return "\n".join([*(str(f) for f in self), self.summary()])

    def to_dicts(self):
        return [f.to_dict() for f in self]


def _finding(rule, where, message, fix, severity=None):
    return Finding(severity or RULES[rule][0], rule, where, message, fix)


_SEVERITY_ORDER = {s: i for i, s in enumerate(SEVERITIES)}
