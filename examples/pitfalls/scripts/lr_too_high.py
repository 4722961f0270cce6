"""Pitfall: Adam at lr 1.0 (an SGD-sized rate): the loss jumps and goes NaN or sticks.
(Fixed: fixed_lr_too_high.py)"""

import torch
import torch.nn.functional as F
from keras.datasets import mnist
from torch import nn

(x_train, y_train), _ = mnist.load_data()
x = (torch.tensor(x_train[:20000]).float() / 255 - 0.13) / 0.31
y = torch.tensor(y_train[:20000]).long()
model = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
optimizer = torch.optim.Adam(model.parameters(), lr=1.0)  # <- Adam's usual rate is 1e-3
for epoch in range(2):
    perm = torch.randperm(len(x))
    for i in range(0, len(x), 64):
        batch = perm[i:i + 64]
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x[batch]), y[batch])
        loss.backward()
        optimizer.step()
    print(epoch, loss.item())
