"""The demo base models for 1x28x28 inputs: CIFAR-style ResNets and a small ViT.

3x3 stem with 16 channels, three groups of n BasicBlocks with 16/32/64
channels (stride 2 at the start of groups 2 and 3: 28 -> 14 -> 7), global
average pool, linear. depth = 6n + 2: ResNet-20 (n=3), ResNet-56 (n=9).
Returned as a list of (stage name, module): one stage per residual block.
"""

import torch
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


class PatchEmbed(nn.Module):
    """[N, C, H, W] -> tokens [N, 1 + (H/p)(W/p), D]: patches, a class
    token in front, learned position embeddings."""

    def __init__(self, in_channels, image_size, patch, dim):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, patch, patch)
        tokens = (image_size // patch) ** 2
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)

    def forward(self, x):
        x = self.proj(x).flatten(2).transpose(1, 2)
        cls = self.cls.expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1) + self.pos


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: attention, then an MLP, each residual."""

    def __init__(self, dim, heads, mlp):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x):
        y = self.ln1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class TokenHead(nn.Module):
    """Final norm, the class token, a linear classifier."""

    def __init__(self, dim, num_classes):
        super().__init__()
        self.ln = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x):
        return self.fc(self.ln(x)[:, 0])


def vit_stages(depth=6, dim=64, heads=4, mlp=128, patch=4, image_size=28,
               num_classes=10, in_channels=1):
    """A small Vision Transformer for 1x28x28 inputs: 4x4 patches (49
    tokens and a class token), `depth` pre-norm blocks of width `dim`; one
    stage for the embedding, one per block, one for the head. Its taps carry
    token activations [N, 50, dim]."""
    stages = [("embed", PatchEmbed(in_channels, image_size, patch, dim))]
    for block in range(depth):
        stages.append((f"block{block}", EncoderBlock(dim, heads, mlp)))
    stages.append(("head", TokenHead(dim, num_classes)))
    return stages
