"""CIFAR-style ResNets for 1x28x28 inputs (gati's demo base models).

3x3 stem with 16 channels, three groups of n BasicBlocks with 16/32/64
channels (stride 2 at the start of groups 2 and 3: 28 -> 14 -> 7), global
average pool, linear. depth = 6n + 2: ResNet-20 (n=3), ResNet-56 (n=9).
Returned as a list of (stage name, module): one stage per residual block.
"""

from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1,
                               bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def cifar_resnet_stages(depth, num_classes=10, in_channels=1):
    if (depth - 2) % 6 != 0:
        raise ValueError(f"depth must be 6n+2, got {depth}")
    blocks_per_group = (depth - 2) // 6
    stages = [("stem", nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16),
        nn.ReLU(inplace=True)))]
    channels = 16
    for group, (width, stride) in enumerate([(16, 1), (32, 2), (64, 2)]):
        for block in range(blocks_per_group):
            stages.append((f"group{group + 1}.block{block}",
                           BasicBlock(channels, width,
                                      stride if block == 0 else 1)))
            channels = width
    stages.append(("head", nn.Sequential(nn.AdaptiveAvgPool2d(1),
                                         nn.Flatten(1),
                                         nn.Linear(channels, num_classes))))
    for module in nn.ModuleList(m for _, m in stages).modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out",
                                    nonlinearity="relu")
    return stages
