"""Healthy: a functional two-layer net with hand-made, properly scaled weights and a hand-
written SGD update (no nn.Module, no optimizer object)."""

import torch
import torch.nn.functional as F
from keras.datasets import mnist

(x_train, y_train), (x_test, y_test) = mnist.load_data()
X = (torch.tensor(x_train, dtype=torch.float32).reshape(-1, 784) / 255 - 0.1307) / 0.3081
Y = torch.tensor(y_train, dtype=torch.long)
Xt = (torch.tensor(x_test[:2000], dtype=torch.float32).reshape(-1, 784) / 255 - 0.1307) / 0.3081
Yt = torch.tensor(y_test[:2000], dtype=torch.long)

torch.manual_seed(0)
W1 = (torch.randn(784, 128) * (2 / 784) ** 0.5).requires_grad_()
b1 = torch.zeros(128, requires_grad=True)
W2 = (torch.randn(128, 10) * (1 / 128) ** 0.5).requires_grad_()
b2 = torch.zeros(10, requires_grad=True)
params = [W1, b1, W2, b2]


def forward(x):
    return F.relu(x @ W1 + b1) @ W2 + b2


lr = 0.1
for epoch in range(2):
    perm = torch.randperm(len(X))
    for i in range(0, len(X), 64):
        idx = perm[i:i + 64]
        loss = F.cross_entropy(forward(X[idx]), Y[idx])
        loss.backward()
        with torch.no_grad():
            for p in params:
                p -= lr * p.grad
                p.grad.zero_()
    with torch.no_grad():
        print(f"epoch {epoch}: test accuracy {(forward(Xt).argmax(1) == Yt).float().mean():.2%}")
