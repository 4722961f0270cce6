"""Fixed twin of classic_randn_init.py: weights scaled by the fan-in.
"""

import torch
import torch.nn.functional as F
from keras.datasets import mnist

(x_train, y_train), (x_test, y_test) = mnist.load_data()
x_train = torch.tensor(x_train[:16000], dtype=torch.float32).reshape(-1, 784) / 255.0
y_train = torch.tensor(y_train[:16000], dtype=torch.long)
x_test = torch.tensor(x_test[:2000], dtype=torch.float32).reshape(-1, 784) / 255.0
y_test = torch.tensor(y_test[:2000], dtype=torch.long)


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.W1 = torch.nn.Parameter(torch.randn(784, 256) * (2 / 784) ** 0.5)  # He init
        self.b1 = torch.nn.Parameter(torch.zeros(256))
        self.W2 = torch.nn.Parameter(torch.randn(256, 10) * (1 / 256) ** 0.5)
        self.b2 = torch.nn.Parameter(torch.zeros(10))

    def forward(self, x):
        return F.relu(x @ self.W1 + self.b1) @ self.W2 + self.b2


model = Net()
optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
for epoch in range(3):
    perm = torch.randperm(len(x_train))
    for i in range(0, len(x_train), 64):
        idx = perm[i:i + 64]
        loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        acc = (model(x_test).argmax(1) == y_test).float().mean().item()
    print(f"epoch {epoch}: loss {loss.item():.2f}, test accuracy {acc:.2%}")
