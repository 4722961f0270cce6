"""Healthy: Keras-loaded NumPy arrays trained with PyTorch in shuffled mini-batches of 128,
Adam at 1e-3, evaluated once at the end in eval mode."""

import numpy as np
import torch
from keras.datasets import mnist
from torch import nn

(x_train, y_train), (x_test, y_test) = mnist.load_data()
x_train = torch.from_numpy(x_train.astype(np.float32) / 255.0).unsqueeze(1)
x_test = torch.from_numpy(x_test.astype(np.float32) / 255.0).unsqueeze(1)
y_train = torch.from_numpy(y_train.astype(np.int64))
y_test = torch.from_numpy(y_test.astype(np.int64))

model = nn.Sequential(
    nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(16 * 13 * 13, 64), nn.ReLU(), nn.Linear(64, 10))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
loss_fn = nn.CrossEntropyLoss()
EPOCHS, BATCH = 2, 128
for epoch in range(EPOCHS):
    model.train()
    perm = torch.randperm(len(x_train))
    epoch_loss = 0.0
    for start in range(0, len(x_train), BATCH):
        idx = perm[start:start + BATCH]
        optimizer.zero_grad()
        loss = loss_fn(model(x_train[idx]), y_train[idx])
        loss.backward()
        optimizer.step()
        epoch_loss += loss.item() * len(idx)
    print(f"epoch {epoch + 1}: mean loss {epoch_loss / len(x_train):.4f}")
model.eval()
with torch.no_grad():
    accuracy = (model(x_test[:2000]).argmax(1) == y_test[:2000]).float().mean().item()
print(f"test accuracy {accuracy:.2%}")
