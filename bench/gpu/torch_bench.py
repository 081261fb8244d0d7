#!/usr/bin/env python3
"""PyTorch (eager) counterpart of `jem bench`, for a GPU (or, with --device cpu, a CPU).

The model is the pre-activation Wide-ResNet of JEM / JEM++ / SADA-JEM as
../shared/bench/torch_baseline.py defines it (BN -> LeakyReLU(0.2) -> conv, stride on the
second conv of a stage's first block, 1x1 shortcut with bias, biases on every conv, global
average pool, linear head), written again here for a device and a precision. BatchNorm uses
momentum 0.9 (PyTorch's convention), as the reference and `jem`.

The three measures are those of `jem bench` (crates/jem-train/src/bench), so that the
numbers are comparable one for one:

  clf_step      train-mode forward of the labelled batch, cross-entropy, backward with
                respect to the parameters (no optimizer step);
  sgld_step     one step of SADA-JEM's training sampler on the p(x) batch: train-mode
                forward (BatchNorm running statistics updated, as the reference samples),
                gradient of sum(logsumexp(logits)) with respect to the input only,
                x <- clamp(x + clamp(g, -1, 1), -1, 1);
  sadajem_iter  one full iteration of Algorithm 1 in the reference's order: a positive batch
                (batch_px), chains drawn from a 10,000-image uniform replay buffer (5 %
                restarts), K SGLD steps, the negatives, the labelled batch (batch_lab), loss
                = CE + mean LSE(x-) - mean LSE(x+); SAM (rho) with a second pass on the same
                three batches with frozen running statistics; SGD (lr 0.1, momentum 0.9,
                weight decay 5e-4) at the restored weights; the chains written back.
                The rate counts labelled images.

This differs from torch_baseline.py's sadajem_iter, which has no separate positive batch,
samples in eval mode and uses one batch size for everything.

Precisions: fp32 (TF32 off for matmuls and cuDNN convolutions: PyTorch lets cuDNN use TF32
by default), tf32 (both on), bf16 (autocast to bfloat16 around the forward passes, weights
and optimizer in fp32).

Timing: --warmup untimed iterations, then the median of --iters timed ones, each ended by
torch.cuda.synchronize(). Peak memory: torch.cuda.max_memory_allocated / reserved.
Needs only torch (numpy is not used).
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    """Pre-activation block: BN -> act -> conv3x3 -> BN -> act -> conv3x3(stride) + shortcut."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, momentum=0.9)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=1, padding=1, bias=True)
        self.bn2 = nn.BatchNorm2d(cout, momentum=0.9)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=stride, padding=1, bias=True)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=True)

    def forward(self, x):
        h = self.conv1(F.leaky_relu(self.bn1(x), 0.2))
        h = self.conv2(F.leaky_relu(self.bn2(h), 0.2))
        return h + (x if self.shortcut is None else self.shortcut(x))


class WideResNet(nn.Module):
    def __init__(self, depth, width, classes=10):
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise SystemExit(f"--depth {depth}: expected 6n + 4 (10, 16, 22, 28, ...)")
        n = (depth - 4) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(3, widths[0], 3, padding=1, bias=True)
        blocks, cin = [], widths[0]
        for cout, stride in zip(widths[1:], (1, 2, 2)):
            for i in range(n):
                blocks.append(Block(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(cin, momentum=0.9)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        h = F.leaky_relu(self.bn(self.blocks(self.conv1(x))), 0.2)
        return self.fc(h.mean(dim=(2, 3)))


def set_bn_momentum(model, m):
    """momentum 0 freezes the running statistics in train mode (SAM's second pass)."""
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.momentum = m


class Runner:
    def __init__(self, args, device):
        self.a = args
        self.dev = device
        self.model = WideResNet(args.depth, args.width, args.classes).to(device).train()
        self.params = [p for p in self.model.parameters()]
        self.opt = torch.optim.SGD(self.params, lr=0.1, momentum=0.9, weight_decay=5e-4)
        self.autocast = args.precision == "bf16"

    def logits(self, x):
        with torch.autocast(self.dev.type, dtype=torch.bfloat16, enabled=self.autocast):
            return self.model(x).float()

    def rand(self, n):
        return torch.rand(n, 3, 32, 32, device=self.dev) * 2 - 1

    def sgld(self, x, steps):
        for _ in range(steps):
            x = x.detach().requires_grad_(True)
            lse = torch.logsumexp(self.logits(x), 1).sum()
            (g,) = torch.autograd.grad(lse, [x])
            x = (x.detach() + g.clamp(-1, 1)).clamp(-1, 1)
        return x.detach()

    def loss(self, x_pos, x_neg, x_lab, y_lab):
        fp = torch.logsumexp(self.logits(x_pos), 1).mean()
        fq = torch.logsumexp(self.logits(x_neg), 1).mean()
        return fq - fp + F.cross_entropy(self.logits(x_lab), y_lab)

    def iteration(self, buf, x_pos, x_lab, y_lab):
        a = self.a
        idx = torch.randint(0, buf.shape[0], (a.batch_px,), device=self.dev)
        fresh = torch.rand(a.batch_px, device=self.dev) < 0.05
        start = torch.where(fresh[:, None, None, None], self.rand(a.batch_px), buf[idx])
        # first pass, reference order: x+, the chains, x-, the labelled batch
        fp = torch.logsumexp(self.logits(x_pos), 1).mean()
        x_neg = self.sgld(start, a.sgld_steps)
        fq = torch.logsumexp(self.logits(x_neg), 1).mean()
        loss = fq - fp + F.cross_entropy(self.logits(x_lab), y_lab)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            grads = [p.grad for p in self.params]
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
            eps = [g * (a.rho / (norm + 1e-12)) for g in grads]
            torch._foreach_add_(self.params, eps)
        # second pass at the perturbed weights, running statistics frozen
        set_bn_momentum(self.model, 0.0)
        self.opt.zero_grad(set_to_none=True)
        self.loss(x_pos, x_neg, x_lab, y_lab).backward()
        set_bn_momentum(self.model, 0.9)
        with torch.no_grad():
            torch._foreach_sub_(self.params, eps)
        self.opt.step()
        buf[idx] = x_neg


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def run_measure(args, measure, dev):
    torch.manual_seed(args.seed)
    r = Runner(args, dev)
    if measure == "clf_step":
        x, y = r.rand(args.batch_lab), torch.arange(args.batch_lab, device=dev) % args.classes

        def fn():
            r.opt.zero_grad(set_to_none=True)
            F.cross_entropy(r.logits(x), y).backward()
        images = args.batch_lab
    elif measure == "sgld_step":
        state = {"x": r.rand(args.batch_px)}

        def fn():
            state["x"] = r.sgld(state["x"], 1)
        images = args.batch_px
    else:
        buf = r.rand(args.buffer_size)
        x_pos, x_lab = r.rand(args.batch_px), r.rand(args.batch_lab)
        y_lab = torch.arange(args.batch_lab, device=dev) % args.classes

        def fn():
            r.iteration(buf, x_pos, x_lab, y_lab)
        images = args.batch_lab
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    for _ in range(args.warmup):
        fn()
        sync(dev)
    times = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        fn()
        sync(dev)
        times.append((time.perf_counter() - t0) * 1e3)
    med = statistics.median(times)
    out = {"measure": measure, "images_per_iter": images, "images_per_s": images / (med / 1e3),
           "median_ms": med, "min_ms": min(times), "max_ms": max(times), "times_ms": times}
    if dev.type == "cuda":
        out["peak_allocated_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
        out["peak_reserved_mib"] = torch.cuda.max_memory_reserved(dev) / 2**20
    del r
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    p.add_argument("--measure", default="all", choices=["all", "clf_step", "sgld_step", "sadajem_iter"])
    p.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"])
    p.add_argument("--depth", type=int, default=28)
    p.add_argument("--width", type=int, default=10)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--batch-px", type=int, default=64)
    p.add_argument("--batch-lab", type=int, default=128)
    p.add_argument("--sgld-steps", type=int, default=5)
    p.add_argument("--rho", type=float, default=0.2)
    p.add_argument("--buffer-size", type=int, default=10000)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--json", help="also write the results as JSON to this file")
    a = p.parse_args()
    dev = torch.device(a.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit(f"--device {a.device}: torch sees no CUDA device")
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    tf32 = a.precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    measures = ["clf_step", "sgld_step", "sadajem_iter"] if a.measure == "all" else [a.measure]
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor()
    results = []
    for m in measures:
        r = run_measure(a, m, dev)
        mem = f" peak_allocated_mib={r['peak_allocated_mib']:.0f}" if "peak_allocated_mib" in r else ""
        print(f"torch wrn{a.depth}-{a.width} {m} device={a.device} precision={a.precision} "
              f"batch={r['images_per_iter']} images_per_s={r['images_per_s']:.2f} "
              f"median_ms={r['median_ms']:.1f} min_ms={r['min_ms']:.1f} max_ms={r['max_ms']:.1f} "
              f"iters={a.iters} warmup={a.warmup}{mem}", flush=True)
        results.append(r)
    if a.json:
        cfg = {k: getattr(a, k) for k in ("depth", "width", "classes", "batch_px", "batch_lab",
                                          "sgld_steps", "rho", "buffer_size", "iters", "warmup", "seed")}
        doc = {"tool": "torch", "version": torch.__version__, "device": a.device, "device_name": name,
               "precision": a.precision, "threads": torch.get_num_threads(), "config": cfg,
               "results": results}
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=2)


if __name__ == "__main__":
    main()
