"""Golden values of whole SADA-JEM training iterations, computed with PyTorch (CPU) in float64
and stored in float32 (the statistics in float64).

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
of each first pass; meta/phase, the input phase of the formula batches.

Precision. The weights and batches are the float32 values of the formulas; the iterations run
on them in float64 (the most exact target for a float32 implementation) and the results are
rounded to float32. One thread (torch.set_num_threads(1)), so that the float32 run of the
phase check below does not depend on the machine.

Choice of the phase: the leaky ReLU's slope jumps from 0.2 to 1 at 0, so an input within
rounding distance of 0 can take the other branch in another implementation and change the
gradients (hence the SGLD negatives and the updates) by far more than rounding; in the second
iteration one such input changes an update by 5e-3. Each phase 0.31, 0.32, ... is run in
float64 and in float32, recording the input of every leaky ReLU call (all forward passes of
both iterations, sampler steps and both SAM passes included), and the first phase is taken for
which
  - both runs make the same calls with the same shapes,
  - no input has a different sign in float32 than in float64 (no kink crossing), and
  - every input is, in float64, at least KINK_SIGMAS times the root-mean-square
    float32-vs-float64 difference of its call away from 0, and at least KINK_ABS (about four
    float32 ulps of 1) away.
The second condition makes the float32 reference agree with the golden branch for branch; the
third keeps a margin, measured in the rounding error a float32 implementation accumulates at
that point of the computation, for implementations (the Rust side) whose rounding differs
from PyTorch's. A fixed margin such as 1e-4 is out of reach: the ~7e6 inputs have a density of
about 0.25 near 0, so hundreds of them lie within 1e-4 of the kink at any phase; the largest
margin over the phases 0.30-0.99 is about 2 such root-mean-square differences.
"""
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../../../jem-models/tests/golden"))
import make_golden as g  # noqa: E402

torch.set_num_threads(1)  # after make_golden, which sets 2

K = 2
L2 = 0.1
RHO = 0.2
LR = 0.1
# margin of the leaky ReLUs' inputs from the kink (see the docstring)
KINK_SIGMAS = 1.5
KINK_ABS = 5e-7

LRELU_INPUTS = []


def recording_lrelu(x):
    LRELU_INPUTS.append(x.detach().to(torch.float64).clone())
    return F.leaky_relu(x, 0.2)


# make_golden's network looks lrelu up at call time
g.lrelu = recording_lrelu


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


def compute(phase, dtype):
    """Both iterations in `dtype` from the float32 formula values; returns the results and
    the inputs of every leaky ReLU call (float64 copies, in call order)."""
    g.set_phase(phase)
    g.X_LAB, g.X_POS, g.X_NEG = (x.to(dtype) for x in (g.X_LAB, g.X_POS, g.X_NEG))
    LRELU_INPUTS.clear()
    out = {}
    m = g.fresh(10, 1).to(dtype)
    bufs = {}
    x_start = g.X_NEG
    for it in (1, 2):
        x_neg, stats = iteration(m, bufs, x_start)
        out[f"it{it}/x_neg"] = x_neg
        out[f"it{it}/stats"] = stats
        g.snapshot(m, f"it{it}", out)
        x_start = x_neg
    return out, list(LRELU_INPUTS)


def kink_check(ins64, ins32):
    """(sign flips between the runs, smallest |x64| / rms(x32 - x64) of its call, smallest
    |x64|); None if the runs made different calls."""
    if [t.shape for t in ins64] != [t.shape for t in ins32]:
        return None
    flips, sigmas, closest = 0, float("inf"), float("inf")
    for a, b in zip(ins64, ins32):
        flips += int(((a > 0) != (b > 0)).sum())
        rms = (b - a).pow(2).mean().sqrt().clamp_min(1e-30)
        sigmas = min(sigmas, (a.abs().min() / rms).item())
        closest = min(closest, a.abs().min().item())
    return flips, sigmas, closest


def main():
    phase = 0.31
    while True:
        out, ins64 = compute(phase, torch.float64)
        _, ins32 = compute(phase, torch.float32)
        check = kink_check(ins64, ins32)
        if check is None:
            print(f"phase {phase:.2f}: float32 and float64 make different leaky-ReLU calls")
        else:
            flips, sigmas, closest = check
            print(f"phase {phase:.2f}: {flips} kink crossings float32 vs float64; closest "
                  f"leaky-ReLU input {closest:.2e}, {sigmas:.2f} rms differences of its call")
            if flips == 0 and sigmas >= KINK_SIGMAS and closest >= KINK_ABS:
                break
        phase = round(phase + 0.01, 2)
    del ins64, ins32
    golden = {k: (v if k.endswith("/stats") else v.to(torch.float32)).contiguous()
              for k, v in out.items()}
    golden["meta/phase"] = torch.tensor([phase], dtype=torch.float64)
    save_file(golden, os.path.join(HERE, "iteration_golden.safetensors"))
    print("wrote", len(golden), "tensors")


if __name__ == "__main__":
    main()
