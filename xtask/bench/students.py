"""PyTorch column of `cargo xtask bench students`: one row of the reproduction's students.

Prints one JSON line: {"step_ms": median ms/step, "phases_ms": {...}, "peak_rss_mb": ..., ...}.
Each row runs in its own process, so its peak resident memory is its own (it includes about
0.4 GB of PyTorch's libraries). Needs `pip install torch`.

The networks mirror crosskd's exactly (crates/crosskd-models/src/students/{unet,small_resnet}.rs,
crates/crosskd-heads, crates/crosskd-losses/src/methods/fitnets.rs): a U-Net with bias-free 3x3
convolutions, batch norm and ReLU, 2x2 max pooling down and nearest 2x up-sampling followed by a
conv-norm-ReLU, skip concatenations, a segmentation head (3x3 conv, ReLU, 1x1 conv) and pixel
cross-entropy; the small ResNet (3x3 stem, basic blocks with 1x1 projection shortcuts, global
average pooling), a linear head and cross-entropy. With `--teacher`, a frozen random network
(batch norm in eval mode, no gradients) gives the distilled feature, run only as far as that tap
(the U-Net teacher's encoder, as crosskd's features-only pass stops), and the inverted projector
(a bias-free 1x1 convolution, or linear map on pooled features) maps it to the student's width;
the loss adds the mean squared error between the student's feature and the projected teacher's.

The data phase gathers the batch from tensors held in memory (a TensorDataset's indexing); the
crosskd side renders or decodes its samples, which its own data phase counts.
"""
import argparse
import json
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

SCENE_CLASSES = 6
FASHION_CLASSES = 10


def cbr(i, o):
    return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU())


class DoubleConv(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.a = cbr(i, o)
        self.b = cbr(o, o)

    def forward(self, x):
        return self.b(self.a(x))


class Unet(nn.Module):
    """crosskd's Unet: `depth` down stages, widths w*2^(i-1), output `out_channels` at `dec1`."""

    def __init__(self, base, depth, out_channels, in_channels=3):
        super().__init__()
        width = [base << i for i in range(depth + 1)]
        self.enc = nn.ModuleList(
            DoubleConv(in_channels if i == 0 else width[i - 1], width[i]) for i in range(depth)
        )
        self.bottleneck = DoubleConv(width[depth - 1], width[depth])
        self.up = nn.ModuleList(cbr(width[i + 1], width[i]) for i in range(depth))
        self.dec = nn.ModuleList(
            DoubleConv(2 * width[i], out_channels if i == 0 else width[i]) for i in range(depth)
        )

    def encode(self, x):
        """The bottleneck feature and the skips: the encoder's pass alone."""
        skips = []
        h = x
        for i, enc in enumerate(self.enc):
            if i > 0:
                h = F.max_pool2d(h, 2)
            h = enc(h)
            skips.append(h)
        return self.bottleneck(F.max_pool2d(h, 2)), skips

    def forward(self, x):
        h, skips = self.encode(x)
        bottleneck = h
        for i in reversed(range(len(self.dec))):
            up = self.up[i](F.interpolate(h, scale_factor=2, mode="nearest"))
            h = self.dec[i](torch.cat([skips[i], up], 1))
        return h, bottleneck


class BasicBlock(nn.Module):
    def __init__(self, i, o, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(i, o, 3, stride=stride, padding=1, bias=False)
        self.norm1 = nn.BatchNorm2d(o)
        self.conv2 = nn.Conv2d(o, o, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(o)
        self.shortcut = None
        if stride != 1 or i != o:
            self.shortcut = nn.Sequential(
                nn.Conv2d(i, o, 1, stride=stride, bias=False), nn.BatchNorm2d(o)
            )

    def forward(self, x):
        h = F.relu(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(h + identity)


class SmallResnet(nn.Module):
    """crosskd's SmallResnet with one block per stage; returns the pooled feature twice."""

    def __init__(self, widths, in_channels=1):
        super().__init__()
        self.stem = cbr(in_channels, widths[0])
        blocks = []
        c = widths[0]
        for s, w in enumerate(widths):
            blocks.append(BasicBlock(c, w, 1 if s == 0 else 2))
            c = w
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x):
        pooled = self.blocks(self.stem(x)).mean((2, 3))
        return pooled, pooled


def row_networks(args):
    """Student, head, loss function, the teacher's distilled feature as a function of the batch
    (or None) and projector (or None) of the row."""
    if args.arch == "unet":
        student = Unet(args.width, args.depth, args.width)
        head = nn.Sequential(
            nn.Conv2d(args.width, max(args.width, 8), 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(max(args.width, 8), SCENE_CLASSES, 1),
        )
        teacher = Unet(2 * args.width, args.depth, 2 * args.width) if args.teacher else None
        s_c, t_c = args.width << args.depth, (2 * args.width) << args.depth
        projector = nn.Conv2d(t_c, s_c, 1, bias=False) if args.teacher else None

        def task_loss(pred, target):
            return F.cross_entropy(pred, target, ignore_index=255)
    else:
        widths = [8, 16, 32]
        student = SmallResnet(widths)
        head = nn.Linear(widths[-1], FASHION_CLASSES)
        teacher = SmallResnet(widths) if args.teacher else None
        projector = nn.Linear(widths[-1], widths[-1], bias=False) if args.teacher else None

        def task_loss(pred, target):
            return F.cross_entropy(pred, target)
    teach = None
    if teacher is not None:
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        # Only as far as the distilled tap, as crosskd's teacher runs: the U-Net's encoder.
        if args.arch == "unet":
            teach = lambda x: teacher.encode(x)[0]  # noqa: E731
        else:
            teach = lambda x: teacher(x)[1]  # noqa: E731
    return student, head, task_loss, teach, projector


def dataset(args, count):
    """Images and targets of `count` samples held in memory."""
    g = torch.Generator().manual_seed(0)
    if args.arch == "unet":
        images = torch.rand(count, 3, args.size, args.size, generator=g) * 2 - 1
        targets = torch.randint(0, SCENE_CLASSES, (count, args.size, args.size), generator=g)
    else:
        images = torch.rand(count, 1, args.size, args.size, generator=g) * 2 - 1
        targets = torch.randint(0, FASHION_CLASSES, (count,), generator=g)
    return images, targets


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", choices=["unet", "small-resnet"], required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--teacher", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    student, head, task_loss, teacher, projector = row_networks(args)
    params = list(student.parameters()) + list(head.parameters())
    if projector is not None:
        params += list(projector.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    images, targets = dataset(args, 8 * args.batch)
    phases = {k: [] for k in ("data", "forward", "teacher", "backward", "optimiser")}
    steps = []
    order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(1))
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        start = (step * args.batch) % images.shape[0]
        idx = order[start:start + args.batch]
        x, y = images[idx], targets[idx]
        t1 = time.perf_counter()
        out, feature = student(x)
        loss = task_loss(head(out), y)
        t2 = time.perf_counter()
        if teacher is not None:
            with torch.no_grad():
                z_t = teacher(x)
            t3 = time.perf_counter()
            loss = loss + F.mse_loss(feature, projector(z_t))
        else:
            t3 = t2
        t4 = time.perf_counter()
        loss.item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t5 = time.perf_counter()
        opt.step()
        t6 = time.perf_counter()
        if step >= args.warmup:
            phases["data"].append(t1 - t0)
            phases["forward"].append((t2 - t1) + (t4 - t3))
            phases["teacher"].append(t3 - t2)
            phases["backward"].append(t5 - t4)
            phases["optimiser"].append(t6 - t5)
            steps.append(t6 - t0)
    print(json.dumps({
        "step_ms": statistics.median(steps) * 1e3,
        "phases_ms": {k: statistics.median(v) * 1e3 for k, v in phases.items()},
        "samples_per_s": args.batch / statistics.median(steps),
        "parameters": sum(p.numel() for p in params),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "torch": torch.__version__,
        "final_loss": loss.item(),
    }))


if __name__ == "__main__":
    main()
