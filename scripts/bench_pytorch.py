#!/usr/bin/env python3
"""PyTorch eager twin of worker/examples/bench_engine.rs, on torchvision's own models.

The same model (torchvision's resnet18 / mobilenet_v2 / densenet121 with a `classes`-way linear
classifier; the engine runs ours with `head: linear`; `small_cnn` is written out below), batch,
resolution, optimizer and thread count, and the same loop: u8 images on the device, batches cut
by index, scaled to [0, 1] and normalized with ImageNet's mean and standard deviation (our models
do that inside), cross-entropy summed then divided by the global batch, and per-step metrics (loss
sum, correct count, global gradient norm) accumulated on the device and read once an epoch.

With `--ranks N` (CPU), N processes train with DistributedDataParallel over gloo on loopback, each
with `threads / N` intra-op threads (as torchrun gives each process a share of the cores) and a
1/N shard of every global batch; the engine runs N rank threads in one process.

Prints training and evaluation images per second, each the best epoch after a warm-up epoch (the
figure least disturbed by other processes on a shared machine). Optimizers are PyTorch's (SGD
without momentum, Adam), not Keras' (ours): the same kernels' worth of work per step.
"""
import argparse
import os
import time

import torch
import torch.distributed as dist
from torch import nn


class SmallCnn(nn.Module):
    """Layer for layer as worker/src/models/small_cnn.rs, with the paper head."""

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


def build(architecture: str, classes: int) -> nn.Module:
    if architecture == "small_cnn":
        return SmallCnn(classes)
    import torchvision

    return getattr(torchvision.models, architecture)(num_classes=classes)


def run(rank: int, args, seconds_out):
    ranks = args.ranks
    if ranks > 1:
        torch.set_num_threads(max(1, args.threads // ranks))
        dist.init_process_group("gloo", init_method=f"file://{args.rendezvous}", rank=rank, world_size=ranks)
    else:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu" if args.gpu is None else f"cuda:{args.gpu}")
    if args.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    autocast = args.precision == "bf16"
    torch.manual_seed(1)
    classes = 10
    side = args.resolution
    images = torch.randint(0, 256, (args.train_size, 3, side, side), dtype=torch.uint8, device=device)
    labels = torch.randint(0, classes, (args.train_size,), device=device)
    val_images = torch.randint(0, 256, (args.val_size, 3, side, side), dtype=torch.uint8, device=device)
    val_labels = torch.randint(0, classes, (args.val_size,), device=device)
    scaling = args.architecture != "small_cnn"
    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1)

    def prepare(u8):
        x = u8.float() / 255.0
        if scaling:
            x = (x - mean) / std
        return x.contiguous(memory_format=memory_format)

    model = build(args.architecture, classes).to(device).to(memory_format=memory_format)
    module = model
    if ranks > 1:
        model = nn.parallel.DistributedDataParallel(model)
    params = [p for p in model.parameters() if p.requires_grad]
    if args.optimizer == "adam":
        optimizer = torch.optim.Adam(params, lr=0.001, eps=1e-7)
    else:
        optimizer = torch.optim.SGD(params, lr=0.01)
    batch = args.batch
    steps = args.train_size // batch
    shard = batch // ranks
    train_seconds, eval_seconds = [], []
    for _ in range(args.epochs):
        if ranks > 1:
            dist.barrier()
        started = time.perf_counter()
        model.train()
        order = torch.randperm(args.train_size, device=device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        norm_sum = torch.zeros((), dtype=torch.float64, device=device)
        for step in range(steps):
            index = order[step * batch + rank * shard:step * batch + (rank + 1) * shard]
            x = prepare(images.index_select(0, index))
            y = labels.index_select(0, index)
            optimizer.zero_grad(set_to_none=False)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                logits = model(x)
                loss = nn.functional.cross_entropy(logits, y, reduction="sum")
            (loss / batch).backward()
            with torch.no_grad():
                # PyTorch's own fastest total norm (foreach kernels), as clip_grad_norm_ uses.
                norm_sum += torch.nn.utils.get_total_norm([p.grad for p in params]).double()
            optimizer.step()
            with torch.no_grad():
                loss_sum += loss.detach()
                correct += (logits.argmax(-1) == y).sum()
        totals = torch.stack([loss_sum, correct.double(), norm_sum])
        if ranks > 1:
            dist.all_reduce(totals)
        totals.tolist()
        train_seconds.append(time.perf_counter() - started)

        # Evaluation: this rank's contiguous shard of the validation split, inference mode.
        if ranks > 1:
            dist.barrier()
        started = time.perf_counter()
        module.eval()
        with torch.no_grad():
            count = args.val_size // ranks
            begin = rank * count
            val_loss = torch.zeros((), dtype=torch.float64, device=device)
            val_correct = torch.zeros((), dtype=torch.int64, device=device)
            for start in range(begin, begin + count, batch):
                end = min(start + batch, begin + count)
                x = prepare(val_images[start:end])
                y = val_labels[start:end]
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    logits = module(x).float()
                val_loss += nn.functional.cross_entropy(logits, y, reduction="sum").double()
                val_correct += (logits.argmax(-1) == y).sum()
            totals = torch.stack([val_loss, val_correct.double()])
            if ranks > 1:
                dist.all_reduce(totals)
            totals.tolist()
        eval_seconds.append(time.perf_counter() - started)
    if rank == 0:
        seconds_out.extend([min(train_seconds[1:]), min(eval_seconds[1:]), steps * batch])
    if ranks > 1:
        # Every rank past its last collective before gloo's threads are torn down (without it,
        # a rank that tears down early has aborted its peer here now and then).
        dist.barrier()
        dist.destroy_process_group()


def worker(rank, args, queue):
    out = []
    run(rank, args, out)
    if rank == 0:
        queue.put(out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--architecture", default="small_cnn")
    parser.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--train-size", type=int, default=4096)
    parser.add_argument("--val-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--ranks", type=int, default=1)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--gpu", type=int, default=None)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--cudnn-benchmark", action="store_true")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first is a warm-up)")
    if args.ranks > 1:
        import tempfile

        import torch.multiprocessing as mp

        with tempfile.TemporaryDirectory() as folder:
            args.rendezvous = os.path.join(folder, "rendezvous")
            context = mp.get_context("spawn")
            queue = context.SimpleQueue()
            mp.start_processes(worker, args=(args, queue), nprocs=args.ranks, start_method="spawn")
            out = queue.get()
    else:
        out = []
        run(0, args, out)
    train, evaluation, images = out
    print(
        f"pytorch architecture={args.architecture} optimizer={args.optimizer} resolution={args.resolution} "
        f"batch={args.batch} ranks={args.ranks} threads={args.threads} "
        f"train_images_per_s={images / train:.1f} eval_images_per_s={args.val_size // args.ranks * args.ranks / evaluation:.1f}"
    )


if __name__ == "__main__":
    main()
