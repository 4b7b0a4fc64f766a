#!/usr/bin/env python3
"""PyTorch eager twin of worker/examples/bench_engine.rs: the same model, batch, resolution,
input pipeline (u8 images on the device, batches cut by index and scaled to [0, 1]), per-step
metrics (loss sum, correct count and global gradient norm, accumulated on the device and read once
an epoch) and thread count; prints training images per second (fastest epoch after a warm-up epoch, the figure least
disturbed by other processes on a shared machine).

torchvision is not part of the project's environment, so the model is written in plain torch,
layer for layer as worker/src/models/small_cnn.rs builds it (3x conv-bn-relu, max-pool between,
global average pool, the paper head: Linear 512, ReLU, Dropout 0.5, Linear 128, ReLU, Linear).
"""
import argparse
import time

import torch
from torch import nn


class SmallCnn(nn.Module):
    def __init__(self, classes: int):
        super().__init__()
        widths = [(3, 16), (16, 32), (32, 64)]
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())
            for cin, cout in widths
        )
        self.head = nn.Sequential(
            nn.Linear(64, 512), nn.ReLU(), nn.Dropout(0.5), nn.Linear(512, 128), nn.ReLU(), nn.Linear(128, classes)
        )

    def forward(self, x):
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i + 1 < len(self.blocks):
                x = nn.functional.max_pool2d(x, 2)
        return self.head(x.mean(dim=(2, 3)))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--train-size", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--gpu", type=int, default=None)
    args = parser.parse_args()
    device = torch.device("cpu" if args.gpu is None else f"cuda:{args.gpu}")
    torch.manual_seed(1)
    classes = 10
    images = torch.randint(0, 256, (args.train_size, 3, args.resolution, args.resolution), dtype=torch.uint8, device=device)
    labels = torch.randint(0, classes, (args.train_size,), device=device)
    model = SmallCnn(classes).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.01)
    steps = args.train_size // args.batch
    seconds = []
    for _ in range(args.epochs):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(args.train_size, device=device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        norm_sum = torch.zeros((), dtype=torch.float64, device=device)
        for step in range(steps):
            index = order[step * args.batch:(step + 1) * args.batch]
            x = images.index_select(0, index).float() / 255.0
            y = labels.index_select(0, index)
            optimizer.zero_grad(set_to_none=False)
            logits = model(x)
            loss = nn.functional.cross_entropy(logits, y, reduction="sum")
            (loss / args.batch).backward()
            optimizer.step()
            with torch.no_grad():
                # PyTorch's own fastest total norm (foreach kernels), as clip_grad_norm_ uses.
                norm_sum += torch.nn.utils.get_total_norm([p.grad for p in params]).double()
                loss_sum += loss.detach()
                correct += (logits.argmax(-1) == y).sum()
        loss_sum.item(), correct.item(), norm_sum.item()
        seconds.append(time.perf_counter() - started)
    epoch = min(seconds[1:])
    print(f"pytorch resolution={args.resolution} batch={args.batch} threads={torch.get_num_threads()} "
          f"images_per_s={steps * args.batch / epoch:.1f} epoch_s={epoch:.3f}")


if __name__ == "__main__":
    main()
