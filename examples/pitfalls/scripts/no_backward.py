"""Pitfall: `loss.backward` without the parentheses: no gradient is ever computed, and every
optimizer.step() leaves the weights as they were. (Fixed: fixed_no_backward.py)"""

import torch
from keras.datasets import mnist
from torch import nn

(x_train, y_train), _ = mnist.load_data()
x = (torch.tensor(x_train[:20000]).float() / 255 - 0.13) / 0.31
y = torch.tensor(y_train[:20000]).long()
net = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
for epoch in range(2):
    perm = torch.randperm(len(x))
    for i in range(0, len(x), 64):
        batch = perm[i:i + 64]
        optimizer.zero_grad()
        loss = criterion(net(x[batch]), y[batch])
        loss.backward  # noqa: B018  <- a method reference, never called
        optimizer.step()
    print(epoch, loss.item())
