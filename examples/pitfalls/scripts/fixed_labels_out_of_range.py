"""Fixed twin of labels_out_of_range.py: labels 0..9.
"""

import torch
from keras.datasets import mnist
from torch import nn

(x_train, y_train), _ = mnist.load_data()
x = (torch.tensor(x_train[:20000]).float() / 255 - 0.13) / 0.31
y = torch.tensor(y_train[:20000]).long()
model = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
criterion = nn.CrossEntropyLoss()
for epoch in range(2):
    perm = torch.randperm(len(x))
    for i in range(0, len(x), 64):
        batch = perm[i:i + 64]
        optimizer.zero_grad()
        loss = criterion(model(x[batch]), y[batch])
        loss.backward()
        optimizer.step()
    print(epoch, loss.item())
