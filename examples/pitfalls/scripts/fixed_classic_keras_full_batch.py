"""Fixed twin of classic_keras_full_batch.py: logits out (CrossEntropyLoss applies the
softmax over the classes itself), mini-batches of 64, shuffled every epoch."""

import numpy as np
import torch
import torch.nn as nn
from keras.datasets import mnist
from keras.utils import to_categorical

(X_train, Y_train), (X_test, Y_test) = mnist.load_data()
X_train = torch.from_numpy(X_train.reshape(60000, 784).astype(np.float32) / 255)
X_test = torch.from_numpy(X_test.reshape(10000, 784).astype(np.float32) / 255)
Y_train = torch.from_numpy(to_categorical(Y_train, 10))
Y_test = torch.from_numpy(Y_test.astype(np.int64))


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(784, 100)
        self.out = nn.Linear(100, 10)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(x)))


clf = Classifier()
loss_fn = nn.CrossEntropyLoss()
sgd = torch.optim.SGD(clf.parameters(), lr=0.1, momentum=0.9)
for epoch in range(2):
    perm = torch.randperm(60000)
    for i in range(0, 60000, 64):
        idx = perm[i:i + 64]
        sgd.zero_grad()
        cost = loss_fn(clf(X_train[idx]), Y_train[idx])
        cost.backward()
        sgd.step()
    print("epoch", epoch, "cost", float(cost))
with torch.no_grad():
    print("test accuracy", (clf(X_test).argmax(1) == Y_test).float().mean().item())
