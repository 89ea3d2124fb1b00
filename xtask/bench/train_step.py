"""PyTorch column of `cargo xtask bench train-step`: the reference UNet of issue 3.

Prints one JSON line: {"step_ms": median ms/step, "parameters": count, ...}.
Needs `pip install torch`. The network mirrors xtask/src/bench/train_step.rs exactly.

`--device cuda[:N]` runs on that GPU (a CUDA build of PyTorch), with each step bracketed by
`torch.cuda.synchronize()` so the clock measures the GPU's work, not the queueing of kernels, and
with TF32 off: candle's f32 convolutions and matmuls compute in full f32, and so must this column.
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
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    if on_gpu:
        if not torch.cuda.is_available():
            raise SystemExit(f"--device {args.device}: this PyTorch {torch.__version__} cannot see a CUDA GPU")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    def sync():
        if on_gpu:
            torch.cuda.synchronize(device)

    torch.manual_seed(0)
    x = (torch.rand(16, 3, 64, 64) * 2 - 1).to(device)
    y = (torch.rand(16, 3, 64, 64) * 2 - 1).to(device)
    net = Reference().to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    params = sum(p.numel() for p in net.parameters())
    times = []
    for step in range(args.warmup + args.steps):
        sync()
        start = time.perf_counter()
        out = net(x)
        loss = F.l1_loss(out, y) + F.l1_loss(F.avg_pool2d(out, 2), F.avg_pool2d(y, 2))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()
        if step >= args.warmup:
            times.append((time.perf_counter() - start) * 1e3)
    print(json.dumps({
        "step_ms": statistics.median(times),
        "parameters": params,
        "threads": args.threads,
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if on_gpu else None,
        "torch": torch.__version__,
        "final_loss": loss.item(),
    }))


if __name__ == "__main__":
    main()
