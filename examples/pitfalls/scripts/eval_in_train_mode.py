"""Pitfall: a net with BatchNorm and Dropout evaluated without model.eval(): the test
accuracy is measured with dropout on and batch statistics. (Fixed: fixed_eval_in_train_mode.py)"""

import torch
from keras.datasets import mnist
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

(x_train, y_train), (x_test, y_test) = mnist.load_data()


def tensors(images, labels, n):
    return TensorDataset((torch.tensor(images[:n]).float().unsqueeze(1) / 255 - 0.13) / 0.31,
                         torch.tensor(labels[:n]).long())


train_loader = DataLoader(tensors(x_train, y_train, 20000), batch_size=64, shuffle=True)
test_loader = DataLoader(tensors(x_test, y_test, 2000), batch_size=200)
model = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.BatchNorm1d(256), nn.ReLU(),
                      nn.Dropout(0.5), nn.Linear(256, 10))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
criterion = nn.CrossEntropyLoss()


def test():
    correct = 0
    with torch.no_grad():  # <- no model.eval() before, so Dropout and BatchNorm still train
        for xb, yb in test_loader:
            correct += (model(xb).argmax(1) == yb).sum().item()
    return correct / len(test_loader.dataset)


for epoch in range(3):
    model.train()
    for xb, yb in train_loader:
        optimizer.zero_grad()
        loss = criterion(model(xb), yb)
        loss.backward()
        optimizer.step()
    print(f"epoch {epoch}: test accuracy {test():.2%}")
