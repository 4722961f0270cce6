"""Classic thread 1: "my MLP's accuracy is stuck at ~10%, the loss barely moves".
The last layer goes through a ReLU before CrossEntropyLoss. (Fixed: fixed_classic_relu_output.py)"""

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
train_data = datasets.MNIST("./data", train=True, download=True, transform=transform)
test_data = datasets.MNIST("./data", train=False, transform=transform)
train_loader = DataLoader(torch.utils.data.Subset(train_data, range(20000)), batch_size=64,
                          shuffle=True)
test_loader = DataLoader(torch.utils.data.Subset(test_data, range(2000)), batch_size=500)

net = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10),
                    nn.ReLU())  # <- the bug: logits cannot go negative
criterion = nn.CrossEntropyLoss()
opt = torch.optim.SGD(net.parameters(), lr=0.1)

for epoch in range(2):
    net.train()
    for images, labels in train_loader:
        opt.zero_grad()
        loss = criterion(net(images), labels)
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        correct = sum((net(x).argmax(1) == y).sum().item() for x, y in test_loader)
    print(f"epoch {epoch}: loss {loss.item():.3f} accuracy {correct / 2000:.1%}")
