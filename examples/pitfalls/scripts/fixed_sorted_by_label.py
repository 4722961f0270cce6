"""Fixed twin of sorted_by_label.py: the DataLoader shuffles.
"""

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchvision import datasets

mnist = datasets.MNIST("data", train=True, download=True)
order = torch.argsort(mnist.targets[:20000], stable=True)  # grouped by class, e.g. by a join
images = (mnist.data[:20000][order].float() / 255 - 0.1307) / 0.3081
labels = mnist.targets[:20000][order]
loader = DataLoader(TensorDataset(images, labels), batch_size=100, shuffle=True)
model = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
for epoch in range(2):
    for xb, yb in loader:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        optimizer.step()
    print(epoch, loss.item())
