"""A plain PyTorch training loop through keras_afl's layers and loss.

On PyTorch a Keras model is a `torch.nn.Module`: `model.parameters()` goes to a
`torch.optim` optimizer, the loss is a torch tensor, and `loss.backward()` runs
keras_afl's analytic derivatives (a `torch.autograd.Function`), the same ones
`fit()` uses. A `DataLoader` feeds the batches.

    KERAS_BACKEND=torch python examples/custom_loop_torch.py
"""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402

if keras.backend.backend() != "torch":
    raise SystemExit(f"this example runs on PyTorch; Keras runs on {keras.backend.backend()!r}. "
                     "Fix: KERAS_BACKEND=torch python examples/custom_loop_torch.py")

import torch  # noqa: E402

import keras_afl  # noqa: E402

EPOCHS = 12
BATCH = 128


def main():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2048, 8)).astype("float32")
    y = (x[:, 0] * x[:, 1] + np.sin(x[:, 2]) > 0).astype("float32")[:, None]

    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(32, activation="afl_elu"),   # keras_afl's elu, by its string name
        keras.layers.Dense(32),
        keras_afl.layers.PReLU(),                        # a learned slope, analytic gradient
        keras.layers.Dense(1),                           # logits
    ])
    loss_fn = keras_afl.losses.FocalLoss(gamma=2.0, alpha=0.5, from_logits=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    device = next(model.parameters()).device  # Keras puts the weights on the GPU if there is one
    data = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    loader = torch.utils.data.DataLoader(data, batch_size=BATCH, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))

    model.train()
    epoch_losses = []
    for epoch in range(EPOCHS):
        losses = []
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            optimizer.zero_grad()
            loss = loss_fn(yb, model(xb, training=True))
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        epoch_losses.append(np.mean(losses))

    model.eval()
    with torch.no_grad():
        probabilities = keras_afl.activations.sigmoid(model(torch.from_numpy(x).to(device)))
    acc = float(np.mean((probabilities.cpu().numpy() > 0.5) == y))
    first, last = epoch_losses[0], epoch_losses[-1]
    print(f"PyTorch, loss.backward() + torch.optim.Adam: focal loss {first:.4f} -> {last:.4f} "
          f"over {EPOCHS} epochs; training accuracy {acc:.3f}")
    if not (last < 0.7 * first and acc > 0.75):
        raise SystemExit("expected the loss to fall by 30 % and accuracy above 0.75")


if __name__ == "__main__":
    main()
