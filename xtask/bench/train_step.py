"""PyTorch column of `cargo xtask bench train-step`: the reference UNet of issue 3.

Prints one JSON line: {"step_ms": median ms/step, "parameters": count, ...}.
Needs `pip install torch`. The network mirrors xtask/src/bench/train_step.rs exactly.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def cbr(i, o):
    return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU())


def cgr(i, o, s):
    return nn.Sequential(nn.Conv2d(i, o, 3, stride=s, padding=1), nn.GroupNorm(8, o), nn.ReLU())


class Reference(nn.Module):
    def __init__(self):
        super().__init__()
        self.e1 = nn.Sequential(cbr(3, 32), cbr(32, 32))
        self.e2 = nn.Sequential(cbr(32, 64), cbr(64, 64))
        self.b = nn.Sequential(cgr(64, 128, 2), cgr(128, 128, 1))
        self.up = nn.ConvTranspose2d(128, 64, 2, stride=2)
        self.d1 = cbr(128, 64)
        self.d2a = cbr(64, 32)
        self.d2b = cbr(64, 32)
        self.head = nn.Conv2d(32, 3, 1)

    def forward(self, x):
        e1 = self.e1(x)
        e2 = self.e2(F.max_pool2d(e1, 2))
        b = self.b(e2)
        d1 = self.d1(torch.cat([self.up(b), e2], 1))
        d2 = self.d2a(F.interpolate(d1, size=(64, 64), mode="nearest"))
        d2 = self.d2b(torch.cat([d2, e1], 1))
        return self.head(d2)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(16, 3, 64, 64) * 2 - 1
    y = torch.rand(16, 3, 64, 64) * 2 - 1
    net = Reference()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    params = sum(p.numel() for p in net.parameters())
    times = []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        out = net(x)
        loss = F.l1_loss(out, y) + F.l1_loss(F.avg_pool2d(out, 2), F.avg_pool2d(y, 2))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step >= args.warmup:
            times.append((time.perf_counter() - start) * 1e3)
    print(json.dumps({
        "step_ms": statistics.median(times),
        "parameters": params,
        "threads": args.threads,
        "torch": torch.__version__,
        "final_loss": loss.item(),
    }))


if __name__ == "__main__":
    main()
