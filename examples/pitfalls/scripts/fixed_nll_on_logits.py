"""Fixed twin of nll_on_logits.py: forward() returns log_softmax for nll_loss.
"""

import torch
import torch.nn.functional as F
from keras.datasets import mnist
from torch import nn

(x_train, y_train), _ = mnist.load_data()
x = torch.tensor(x_train[:20000]).float().reshape(-1, 784) / 255
y = torch.tensor(y_train[:20000]).long()


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(784, 100), nn.Linear(100, 10)

    def forward(self, x):
        return F.log_softmax(self.fc2(F.relu(self.fc1(x))), dim=1)


model = Net()
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
for epoch in range(2):
    perm = torch.randperm(len(x))
    for i in range(0, len(x), 50):
        idx = perm[i:i + 50]
        loss = F.nll_loss(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(epoch, loss.item())
