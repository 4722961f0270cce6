"""Healthy: the training images as one uint8 tensor, standardised by hand, an MLP trained
with plain SGD (no momentum) on shuffled index batches; a held-out validation slice."""

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import datasets

raw = datasets.MNIST("data", train=True, download=True)
images = raw.data.float().div(255)
images = (images - images.mean()) / images.std()
labels = raw.targets
x_train, y_train = images[:50000], labels[:50000]
x_val, y_val = images[50000:52000], labels[50000:52000]


class MLP(nn.Module):
    def __init__(self, hidden=256):
        super().__init__()
        self.fc1 = nn.Linear(28 * 28, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, 10)

    def forward(self, x):
        x = x.view(x.size(0), -1)
        return self.out(F.relu(self.fc2(F.relu(self.fc1(x)))))


net = MLP()
opt = torch.optim.SGD(net.parameters(), lr=0.1)
for epoch in range(2):
    order = torch.randperm(len(x_train))
    for k in range(0, len(order), 100):
        b = order[k:k + 100]
        logits = net(x_train[b])
        loss = F.cross_entropy(logits, y_train[b])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        val_acc = (net(x_val).argmax(dim=1) == y_val).float().mean()
    print(f"epoch {epoch}: loss {loss.item():.3f} val acc {val_acc:.3f}")
