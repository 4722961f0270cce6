"""Healthy: gradient accumulation on purpose: micro-batches of 16, four per optimizer step
(an effective batch of 64), the loss scaled by 1/4, zero_grad after every step."""

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

ACCUMULATE = 4
tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
train = Subset(datasets.MNIST("data", train=True, download=True, transform=tf), range(30000))
loader = DataLoader(train, batch_size=16, shuffle=True)
model = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
criterion = nn.CrossEntropyLoss()

optimizer.zero_grad()
for epoch in range(2):
    model.train()
    for step, (x, y) in enumerate(loader):
        loss = criterion(model(x), y) / ACCUMULATE
        loss.backward()
        if (step + 1) % ACCUMULATE == 0:
            optimizer.step()
            optimizer.zero_grad()
    print(f"epoch {epoch}: last loss {loss.item() * ACCUMULATE:.3f}")
