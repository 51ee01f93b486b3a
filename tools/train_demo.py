#!/usr/bin/env python3
"""Train a demo model (a ResNet, or a small ViT) on Fashion-MNIST and export
it in gati's staged format.

Uses train images 0-49,999 only (DESIGN.md's data discipline); reports
accuracy on the test split at the end (never used for any decision).

  python3 tools/train_demo.py --depth 56 --epochs 12 --out models/resnet56.pt
  python3 tools/train_demo.py --arch vit --depth 6 --epochs 10 --out models/vit6.pt
"""

import argparse
import gzip
import os
import sys
import time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import demo_models  # noqa: E402
import gati_export  # noqa: E402

DATA_DIR = "/usr/share/datasets/fashion-mnist"
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
TRAIN_END = 50000


def read_idx(path, magic, header_ints):
    with gzip.open(path, "rb") as f:
        data = f.read()
    header = np.frombuffer(data[:4 * header_ints], dtype=">i4")
    if header[0] != magic:
        raise ValueError(f"{path}: bad magic {header[0]}")
    return np.frombuffer(data[4 * header_ints:], dtype=np.uint8), header


def load(prefix):
    images, header = read_idx(f"{DATA_DIR}/{prefix}-images-idx3-ubyte.gz",
                              2051, 4)
    labels, _ = read_idx(f"{DATA_DIR}/{prefix}-labels-idx1-ubyte.gz", 2049, 2)
    images = images.reshape(int(header[1]), 1, 28, 28)
    return torch.from_numpy(images.copy()), torch.from_numpy(
        labels.astype(np.int64))


def augment(batch, generator):
    """Random shifts by up to 2 pixels (zero padding) and horizontal flips."""
    n = batch.shape[0]
    padded = nn.functional.pad(batch, (2, 2, 2, 2))
    dx = torch.randint(0, 5, (n,), generator=generator)
    dy = torch.randint(0, 5, (n,), generator=generator)
    out = torch.empty_like(batch)
    for i in range(n):
        out[i] = padded[i, :, dy[i]:dy[i] + 28, dx[i]:dx[i] + 28]
    flip = torch.rand(n, generator=generator) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def evaluate(model, images, labels, mean, std, batch=500):
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(images), batch):
            x = (images[start:start + batch].float() / 255 - mean) / std
            correct += (model(x).argmax(1) == labels[start:start + batch]
                        ).sum().item()
    return correct / len(images)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", choices=["resnet", "vit"], default="resnet")
    parser.add_argument("--depth", type=int, required=True,
                        help="ResNet depth (6n+2), or ViT encoder blocks")
    parser.add_argument("--width", type=int, default=64, help="ViT width")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.2)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(args.seed)

    train_images, train_labels = load("train")
    train_images, train_labels = train_images[:TRAIN_END], \
        train_labels[:TRAIN_END]
    test_images, test_labels = load("t10k")
    pixels = train_images.float() / 255
    mean, std = pixels.mean().item(), pixels.std().item()
    del pixels

    if args.arch == "vit":
        stages = demo_models.vit_stages(depth=args.depth, dim=args.width,
                                        mlp=2 * args.width)
        model = nn.Sequential(*[m for _, m in stages])
        # Transformers want Adam-style steps: AdamW with decoupled decay.
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr,
                                      weight_decay=args.weight_decay)
    else:
        stages = demo_models.cifar_resnet_stages(args.depth)
        model = nn.Sequential(*[m for _, m in stages])
        optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9,
                                    nesterov=True, weight_decay=args.weight_decay)
    steps_per_epoch = (TRAIN_END + args.batch - 1) // args.batch
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, epochs=args.epochs,
        steps_per_epoch=steps_per_epoch, pct_start=0.25)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(args.epochs):
        model.train()
        start = time.time()
        order = torch.randperm(TRAIN_END, generator=generator)
        total_loss = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * args.batch:(step + 1) * args.batch]
            x = augment(train_images[idx].float() / 255, generator)
            x = (x - mean) / std
            loss = loss_fn(model(x), train_labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.item()
        print(f"epoch {epoch + 1}/{args.epochs} loss "
              f"{total_loss / steps_per_epoch:.4f} time "
              f"{time.time() - start:.0f}s", flush=True)
    accuracy = evaluate(model, test_images, test_labels, mean, std)
    print(f"test accuracy {accuracy:.4f}", flush=True)
    gati_export.export_staged(
        stages, model, (1, 28, 28), args.out,
        name=os.path.splitext(os.path.basename(args.out))[0],
        mean=[mean], std=[std], class_names=CLASS_NAMES)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
