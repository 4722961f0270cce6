"""Fixed twin of classic_torchvision_loop.py: optimizer.zero_grad() every step.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
import torchvision.transforms as transforms
from torch.utils.data import DataLoader, Subset


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 5)
        self.fc = nn.Linear(8 * 12 * 12, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv(x)), 2)
        return self.fc(torch.flatten(x, 1))


def main():
    transform = transforms.Compose([transforms.ToTensor(),
                                    transforms.Normalize((0.1307,), (0.3081,))])
    trainset = torchvision.datasets.MNIST(root="./data", train=True, download=True,
                                          transform=transform)
    trainloader = DataLoader(Subset(trainset, range(16000)), batch_size=32, shuffle=True)
    testset = torchvision.datasets.MNIST(root="./data", train=False, transform=transform)
    testloader = DataLoader(Subset(testset, range(1000)), batch_size=250)
    net = ConvNet()
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    for epoch in range(2):
        running_loss = 0.0
        for i, (inputs, labels) in enumerate(trainloader):
            optimizer.zero_grad()
            outputs = net(inputs)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            if i % 100 == 99:
                print(f"[{epoch + 1}, {i + 1}] loss: {running_loss / 100:.3f}")
                running_loss = 0.0
        net.eval()
        with torch.no_grad():
            correct = sum((net(x).argmax(1) == y).sum().item() for x, y in testloader)
        net.train()
        print(f"accuracy {correct / 1000:.1%}")


if __name__ == "__main__":
    main()
