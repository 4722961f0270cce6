"""Pitfall: pixels fed as 0..255 floats, never scaled: huge first-layer outputs, a saturated
softmax, a learning rate wrong by orders of magnitude. (Fixed: fixed_raw_pixels.py)"""

import numpy as np
import torch
from keras.datasets import mnist
from torch import nn

(x_train, y_train), (x_test, y_test) = mnist.load_data()
x_train = torch.from_numpy(x_train[:20000].reshape(-1, 784).astype(np.float32))  # 0..255
y_train = torch.from_numpy(y_train[:20000].astype(np.int64))
model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
loss_fn = nn.CrossEntropyLoss()
for epoch in range(2):
    perm = torch.randperm(len(x_train))
    for i in range(0, len(x_train), 64):
        idx = perm[i:i + 64]
        optimizer.zero_grad()
        loss = loss_fn(model(x_train[idx]), y_train[idx])
        loss.backward()
        optimizer.step()
    print(epoch, loss.item())
