"""Fixed twin of loss_kept_as_tensor.py: the running total is a Python float.
"""

import torch
from keras.datasets import mnist
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

(x_train, y_train), _ = mnist.load_data()
data = TensorDataset((torch.tensor(x_train[:20000]).float() / 255 - 0.13) / 0.31,
                     torch.tensor(y_train[:20000]).long())
loader = DataLoader(data, batch_size=64, shuffle=True)
model = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
criterion = nn.CrossEntropyLoss()
for epoch in range(2):
    total_loss = 0
    for xb, yb in loader:
        optimizer.zero_grad()
        loss = criterion(model(xb), yb)
        loss.backward()
        optimizer.step()
        total_loss += loss.item()
    print(f"epoch {epoch}: mean loss {total_loss / len(loader):.4f}")
