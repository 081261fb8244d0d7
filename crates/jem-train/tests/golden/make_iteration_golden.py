"""Golden values of whole SADA-JEM training iterations, computed with PyTorch (CPU, float32).

Run:  python make_iteration_golden.py   (needs torch and safetensors; CI never runs it)
Writes iteration_golden.safetensors beside this script.

It reuses the network, the formula weights and the formula batches of
crates/jem-models/tests/golden/make_golden.py (WRN-10-1, batches of 4: labelled, x+, chain
starts) and runs two iterations of Algorithm 1 in the reference's order
(SADAJEM/train_sadajem.py: 200-262), written here from its description:

  BN momentum 0.9 (train mode): fp = mean LSE f(x+); K = 2 steps of the reference sampler
  x <- clamp(x + 1.0 * clamp(d sum LSE f(x) / dx, -1, 1), -1, 1) from the chain starts
  (train-mode BN, running statistics updated at every step); fq = mean LSE f(x-);
  loss = px * [-(fp - fq) + l2 (fp^2 + fq^2)] + CE(f(x_lab), y) with px = 1, l2 = 0.1;
  SAM first step (rho 0.2); BN momentum 0; the same loss on the same x+, x-, labelled batch;
  restore; SGD (lr 0.1, momentum 0.9, weight decay 5e-4).

The second iteration starts its chains from the first iteration's negatives (a persistent
chain). Stored: the model after each iteration, the negatives, and (E(x+), E(x-), CE, loss)
of each first pass.
"""
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../../../jem-models/tests/golden"))
import make_golden as g  # noqa: E402

K = 2
L2 = 0.1
RHO = 0.2
# inputs of the leaky ReLUs must stay away from the kink (see make_golden.py)
KINK_MARGIN = 5e-7
LR = 0.1


def mean_lse(model, x):
    return model(x).logsumexp(1).mean()


def iteration(model, bufs, x_start):
    g.set_bn_momentum(model, 0.9)
    model.train()
    fp = mean_lse(model, g.X_POS)
    x = x_start.clone()
    for _ in range(K):
        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(x).logsumexp(1).sum(), [x])
        x = (x + 1.0 * grad.clamp(-1, 1)).clamp(-1, 1)
    x_neg = x.detach()
    fq = mean_lse(model, x_neg)
    ce = F.cross_entropy(model(g.X_LAB), g.Y_LAB)
    loss = -(fp - fq) + L2 * (fp ** 2 + fq ** 2) + ce
    stats = torch.tensor([-fp.item(), -fq.item(), ce.item(), loss.item()], dtype=torch.float64)
    model.zero_grad()
    loss.backward()
    ps = g.params(model)
    with torch.no_grad():
        norm = torch.norm(torch.stack([p.grad.norm(p=2) for p in ps]), p=2)
        scale = RHO / (norm + 1e-12)
        old = [p.data.clone() for p in ps]
        for p in ps:
            p.add_(p.grad * scale)
    g.set_bn_momentum(model, 0.0)
    model.zero_grad()
    fp2 = mean_lse(model, g.X_POS)
    fq2 = mean_lse(model, x_neg)
    ce2 = F.cross_entropy(model(g.X_LAB), g.Y_LAB)
    (-(fp2 - fq2) + L2 * (fp2 ** 2 + fq2 ** 2) + ce2).backward()
    with torch.no_grad():
        for p, o in zip(ps, old):
            p.data = o
    g.sgd_step(model, bufs, LR)
    g.set_bn_momentum(model, 0.9)
    return x_neg, stats


def compute():
    out = {}
    m = g.fresh(10, 1)
    bufs = {}
    x_start = g.X_NEG
    for it in (1, 2):
        x_neg, stats = iteration(m, bufs, x_start)
        out[f"it{it}/x_neg"] = x_neg
        out[f"it{it}/stats"] = stats
        g.snapshot(m, f"it{it}", out)
        x_start = x_neg
    return out


def main():
    phase = 0.31
    while True:
        g.set_phase(phase)
        g.MIN_ABS[0] = float("inf")
        out = compute()
        closest = g.MIN_ABS[0]
        print(f"phase {phase:.2f}: closest leaky-ReLU input to 0 is {closest:.2e}")
        if closest >= KINK_MARGIN:
            break
        phase = round(phase + 0.01, 2)
    out["meta/phase"] = torch.tensor([phase], dtype=torch.float64)
    save_file({k: v.contiguous() for k, v in out.items()},
              os.path.join(HERE, "iteration_golden.safetensors"))
    print("wrote", len(out), "tensors")


if __name__ == "__main__":
    main()
