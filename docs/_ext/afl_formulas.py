"""Each activation's and loss's formula and derivative as LaTeX, rendered by MathJax.

One table, read twice: the API reference shows a function's formulas as math beside the
plain-text `Formula:` / `Gradient:` blocks of its docstring (which `help()` shows), and the
guide pages render them with the directive

    ```{afl-formulas} relu leaky_relu sigmoid
    ```

The docstrings stay the definition (conventions, the stable forms actually computed); these
are the same formulas in mathematical notation. ``tests/test_docs_site.py`` checks that
MathJax renders them.
"""

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

# name -> (what it computes, its derivative). N is the size of the reduced (last) axis.
TEX = {
    # activations
    "relu": (r"\operatorname{relu}(x) = \max(x, 0)",
             r"\operatorname{relu}'(x) = \mathbb{1}[x > 0] \quad (0 \text{ at } x = 0)"),
    "leaky_relu": (r"f(x) = \begin{cases} x & x > 0 \\ a x & x \le 0 \end{cases}",
                   r"f'(x) = \begin{cases} 1 & x > 0 \\ a & x \le 0 \end{cases}"),
    "prelu": (r"f(x) = \begin{cases} x & x > 0 \\ \alpha x & x \le 0 \end{cases}"
              r"\quad (\alpha \text{ learned})",
              r"\frac{\partial f}{\partial x} = \begin{cases} 1 & x > 0 \\ \alpha & x \le 0"
              r"\end{cases}, \qquad \frac{\partial L}{\partial \alpha} = \sum g \min(x, 0)"),
    "sigmoid": (r"\sigma(x) = \frac{1}{1 + e^{-x}}", r"\sigma'(x) = y (1 - y), \quad y = \sigma(x)"),
    "tanh": (r"y = \tanh x", r"\tanh'(x) = 1 - y^2"),
    "softmax": (r"s_i = \frac{e^{x_i - \max x}}{\sum_j e^{x_j - \max x}}",
                r"\text{VJP: } s \odot \left(g - \langle g, s \rangle\right)"),
    "elu": (r"\operatorname{elu}(x) = \begin{cases} x & x > 0 \\ \alpha (e^x - 1) & x \le 0"
            r"\end{cases}",
            r"\operatorname{elu}'(x) = \begin{cases} 1 & x \ge 0 \\ y + \alpha & x < 0"
            r"\end{cases}"),
    "selu": (r"\operatorname{selu}(x) = \lambda \operatorname{elu}_\alpha(x), \quad"
             r"\lambda \approx 1.0507,\ \alpha \approx 1.6733",
             r"\operatorname{selu}'(x) = \begin{cases} \lambda & x \ge 0 \\ y + \lambda\alpha"
             r"& x < 0 \end{cases}"),
    # losses, per sample
    "mean_squared_error": (r"L = \frac{1}{N} \sum_i (\hat y_i - y_i)^2",
                           r"\frac{\partial L}{\partial \hat y_i} = \frac{2 (\hat y_i - y_i)}{N}"),
    "huber": (r"L = \frac{1}{N} \sum_i \begin{cases} \tfrac12 e_i^2 & |e_i| \le \delta \\"
              r"\delta (|e_i| - \tfrac12 \delta) & |e_i| > \delta \end{cases},"
              r"\quad e = \hat y - y",
              r"\frac{\partial L}{\partial \hat y_i} = \frac{\operatorname{clip}(e_i, -\delta,"
              r"\delta)}{N}"),
    "hinge": (r"L = \frac{1}{N} \sum_i \max(0, 1 - t_i \hat y_i), \quad t_i \in \{-1, 1\}",
              r"\frac{\partial L}{\partial \hat y_i} = \begin{cases} -t_i / N & t_i \hat y_i"
              r"\le 1 \\ 0 & \text{otherwise} \end{cases}"),
    "binary_crossentropy": (
        r"L = -\frac{1}{N} \sum_i \left[w y_i \log p_i + (1 - y_i) \log(1 - p_i)\right],"
        r"\quad p = \sigma(z)",
        r"\frac{\partial L}{\partial z_i} = \frac{(1 - y_i)\,\sigma(z_i) - w y_i\,\sigma(-z_i)}{N}"),
    "focal": (
        r"L = \frac{1}{N} \sum_i \alpha_t (1 - p_t)^\gamma\, \mathrm{CE}_i, \quad"
        r"\mathrm{CE}_i = -\left[y_i \log p_i + (1 - y_i) \log(1 - p_i)\right]",
        r"\frac{\partial L}{\partial z_i} = \frac{\alpha_t m^\gamma}{N} \left[(1 - y_i) p_i"
        r"- y_i q_i + \gamma (1 - 2 y_i) \frac{p_i q_i}{m} \mathrm{CE}_i\right],"
        r"\quad q = 1 - p,\ m = 1 - p_t"),
    "categorical_crossentropy": (
        r"L = -\sum_k y_k \log \operatorname{softmax}(z)_k",
        r"\frac{\partial L}{\partial z} = \Big(\sum_k y_k\Big) \operatorname{softmax}(z) - y"),
    "categorical_focal": (
        r"L = -\sum_k \alpha_k y_k (1 - p_k)^\gamma \log p_k, \quad p = \operatorname{softmax}(z)",
        r"\frac{\partial L}{\partial z} = p \sum_k w_k - w, \quad "
        r"w = \alpha y (1 - p)^\gamma \left(1 - \gamma \frac{p \log p}{1 - p}\right)"),
    "sparse_categorical_crossentropy": (
        r"L = \log \sum_k e^{z_k} - z_t",
        r"\frac{\partial L}{\partial z} = \operatorname{softmax}(z) - \operatorname{onehot}(t)"),
    "sparse_categorical_focal": (
        r"L = -\alpha_t (1 - p_t)^\gamma \log p_t",
        r"\frac{\partial L}{\partial z} = \alpha_t (1 - p_t)^\gamma \left(1 - \gamma"
        r"\frac{p_t \log p_t}{1 - p_t}\right) \left(\operatorname{softmax}(z)"
        r"- \operatorname{onehot}(t)\right)"),
}


def math_lines(name, indent=""):
    """reST lines: `name`'s formula and derivative as one aligned math block."""
    formula, derivative = TEX[name]
    return [f"{indent}.. math::", "", f"{indent}   {formula}", "",
            f"{indent}   {derivative}", ""]


class AflFormulas(SphinxDirective):
    """```{afl-formulas} NAME...```: each name's formula and derivative, as math."""

    required_arguments = 1
    final_argument_whitespace = True
    has_content = False

    def run(self):
        names = self.arguments[0].split()
        unknown = [n for n in names if n not in TEX]
        if unknown:
            raise self.error(f"afl-formulas: no formula for {unknown}; known: {sorted(TEX)}")
        container = nodes.container(classes=["afl-formulas"])
        for name in names:  # nodes, not reST text: a MyST page would parse text as Markdown
            container += nodes.rubric("", "", nodes.literal(name, name))
            for latex in TEX[name]:
                container += nodes.math_block(latex, latex, docname=self.env.docname,
                                              number=None, label=None, nowrap=False)
        return [container]


def _add_math(app, what, name, obj, options, lines):
    """In a keras_afl function's docstring: the formulas as math, before `Args:`."""
    short = name.rsplit(".", 1)[-1]
    if what != "function" or short not in TEX or not name.startswith("keras_afl."):
        return
    at = next((i for i, line in enumerate(lines) if line.strip() == "Args:"), len(lines))
    lines[at:at] = ["In mathematical notation:", ""] + math_lines(short)


def setup(app):
    app.add_directive("afl-formulas", AflFormulas)
    # After afl_docstrings (400), before napoleon (500).
    app.connect("autodoc-process-docstring", _add_math, priority=450)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
