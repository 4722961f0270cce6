"""Pitfall: the test set is evaluated every epoch and the best epoch's weights are kept by
test accuracy: the reported accuracy is chosen on the test set. (Fixed: fixed_best_on_test.py)"""

import copy

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
train_set = Subset(datasets.MNIST("data", train=True, download=True, transform=tf), range(8000))
test_set = Subset(datasets.MNIST("data", train=False, transform=tf), range(2000))
train_loader = DataLoader(train_set, batch_size=32, shuffle=True)
test_loader = DataLoader(test_set, batch_size=500)
model = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
criterion = nn.CrossEntropyLoss()


def accuracy(loader):
    model.eval()
    with torch.no_grad():
        return sum((model(x).argmax(1) == y).sum().item() for x, y in loader) / 2000


best_acc, best_state = 0.0, None
for epoch in range(5):
    model.train()
    for x, y in train_loader:
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()
    acc = accuracy(test_loader)
    if acc > best_acc:  # <- choosing the epoch by test accuracy
        best_acc, best_state = acc, copy.deepcopy(model.state_dict())
    print(f"epoch {epoch}: test {acc:.2%} (best {best_acc:.2%})")
model.load_state_dict(best_state)
print(f"best test accuracy {best_acc:.2%}")
