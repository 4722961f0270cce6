"""Pitfall: the optimizer is built, then the model is re-created (to "reset" it): the
optimizer holds the old model's parameters, the trained model's never change.
(Fixed: fixed_optimizer_on_old_model.py)"""

import torch
from keras.datasets import mnist
from torch import nn


def make_model():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))


(x_train, y_train), _ = mnist.load_data()
x = (torch.tensor(x_train[:20000]).float() / 255 - 0.13) / 0.31
y = torch.tensor(y_train[:20000]).long()
model = make_model()
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
model = make_model()  # <- a fresh model; the optimizer still holds the first one
criterion = nn.CrossEntropyLoss()
for epoch in range(2):
    perm = torch.randperm(len(x))
    for i in range(0, len(x), 64):
        batch = perm[i:i + 64]
        optimizer.zero_grad()
        loss = criterion(model(x[batch]), y[batch])
        loss.backward()
        optimizer.step()
    print(epoch, loss.item())
