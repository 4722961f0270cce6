"""Pitfall: the model ends in nn.Softmax(dim=1) and the loss is nn.CrossEntropyLoss, which
applies log-softmax again: the loss cannot go below 1.46 and learning crawls.
(Fixed: fixed_softmax_before_cross_entropy.py)"""

import torch
from keras.datasets import mnist
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

(x_train, y_train), _ = mnist.load_data()
x = (torch.tensor(x_train[:20000]).float().unsqueeze(1) / 255 - 0.1307) / 0.3081
y = torch.tensor(y_train[:20000]).long()
loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)

model = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10),
                      nn.Softmax(dim=1))
criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
for epoch in range(2):
    for xb, yb in loader:
        optimizer.zero_grad()
        loss = criterion(model(xb), yb)
        loss.backward()
        optimizer.step()
    print(f"epoch {epoch}: loss {loss.item():.4f}")
