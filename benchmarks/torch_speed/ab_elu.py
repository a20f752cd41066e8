# Same-process A/B of the ELU/SELU derivative kernels on PyTorch: the where(x == 0) form
# ("old") against the nudged input ("new"), with ATen's elu_backward alone for scale;
# interleaved, 60 rounds, one thread. Run: python benchmarks/torch_speed/ab_elu.py
import time, statistics, torch
torch.set_num_threads(1)
def old(g, x, alpha, scale):
    d = torch.ops.aten.elu_backward(g, alpha, scale, 1.0, False, x)
    return torch.where(x == 0, g * scale, d)
def new(g, x, alpha, scale):
    if alpha != 1.0:
        x = x + 1.401298464324817e-45
    return torch.ops.aten.elu_backward(g, alpha, scale, 1.0, False, x)
def F(g, x, alpha, scale):
    return torch.ops.aten.elu_backward(g, alpha, scale, 1.0, False, x)
for n in (16, 20):
    x = torch.randn(2**n); g = torch.randn(2**n)
    for name, a, s in (("elu", 1.0, 1.0), ("selu", 1.6732632423543772, 1.0507009873554805)):
        fs = {"old": old, "new": new, "F(native)": F}
        T = {k: [] for k in fs}
        for r in range(60):
            for k in (list(fs) if r % 2 else list(fs)[::-1]):
                t = time.perf_counter(); fs[k](g, x, a, s); T[k].append(time.perf_counter() - t)
        m = {k: statistics.median(v) * 1e3 for k, v in T.items()}
        print(f"2^{n} {name}: old {m['old']:.4f} new {m['new']:.4f} native-backward {m['F(native)']:.4f} ms; new/old {m['new']/m['old']:.2f}")
