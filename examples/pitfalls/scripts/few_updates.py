"""Pitfall: batches of 10,000 images for 3 epochs: 18 optimizer steps in all, however many
images each one averages. (Fixed: fixed_few_updates.py)"""

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

data = datasets.MNIST("data", train=True, download=True, transform=transforms.ToTensor())
tensors_x = data.data.float().div(255).sub(0.1307).div(0.3081).unsqueeze(1)
dataset = torch.utils.data.TensorDataset(tensors_x, data.targets)
BATCH, EPOCHS = 10000, 3
loader = DataLoader(dataset, batch_size=BATCH, shuffle=True)
model = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
for epoch in range(EPOCHS):
    for xb, yb in loader:
        optimizer.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        optimizer.step()
    print(f"epoch {epoch}: {loss.item():.3f}")
