"""Golden values for jem-models and jem-optim, computed with PyTorch (CPU, float32).

Run:  python make_golden.py      (needs torch and safetensors; CI never runs it)
Writes golden.safetensors (< 2 MB) and reference_ckpt.pt beside this script.

The network is the reference's pre-activation Wide-ResNet (BatchNorm momentum 0.9,
LeakyReLU 0.2, conv biases, stride on the second conv of a stage's first block, 1x1
shortcut with bias on the raw input), written here from its description. Weights, inputs
and labels come from formulas that the Rust tests compute too, so only results are stored:

  for the k-th tensor of the state dict in name order (num_batches_tracked excluded),
  with t = sin(0.37 * i + 1.3 * k + 0.5) over its flat indices i (float64, then float32):
    running_var: 1 + 0.5 t^2      running_mean: 0.1 t
    BN weight:   1 + 0.2 t        BN bias and every other bias: 0.1 t
    conv / linear weight: t / sqrt(fan_in)
  batch b (0: labelled, 1: x+, 2: x-) of B images: x = 0.9 sin(0.013 j + 2.1 b + phase), j
  the flat index; labels (3 n + 1) % 10.

The phase (stored in the file as meta/phase) is the first of 0.30, 0.31, 0.32, ... for which
no leaky-ReLU input of any forward pass in this script comes closer to 0 than 5e-7: an input
within rounding distance of the kink could take the other branch in another implementation
and change the gradients for reasons that have nothing to do with correctness.
"""
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

torch.set_num_threads(2)
HERE = os.path.dirname(os.path.abspath(__file__))
B = 4


class Block(nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, momentum=0.9)
        self.conv1 = nn.Conv2d(cin, planes, 3, padding=1, bias=True)
        self.bn2 = nn.BatchNorm2d(planes, momentum=0.9)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, planes, 1, stride=stride, bias=True))

    def forward(self, x):
        out = self.conv1(lrelu(self.bn1(x)))
        out = self.conv2(lrelu(self.bn2(out)))
        return out + self.shortcut(x)


class Trunk(nn.Module):
    def __init__(self, depth, k):
        super().__init__()
        n = (depth - 4) // 6
        widths = [16, 16 * k, 32 * k, 64 * k]
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=True)
        cin = 16
        for s, (planes, stride) in enumerate(zip(widths[1:], [1, 2, 2])):
            blocks = []
            for i in range(n):
                blocks.append(Block(cin, planes, stride if i == 0 else 1))
                cin = planes
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.bn1 = nn.BatchNorm2d(cin, momentum=0.9)
        self.last = cin

    def forward(self, x):
        out = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        out = lrelu(self.bn1(out))
        return F.avg_pool2d(out, 8).view(out.size(0), -1)


class JEM(nn.Module):
    def __init__(self, depth, k, with_energy_head=False):
        super().__init__()
        self.f = Trunk(depth, k)
        if with_energy_head:
            self.energy_output = nn.Linear(self.f.last, 1)
        self.class_output = nn.Linear(self.f.last, 10)

    def forward(self, x):
        return self.class_output(self.f(x))


def formula_state(model):
    sd = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    out = {}
    for k, name in enumerate(sorted(sd)):
        shape = sd[name].shape
        i = torch.arange(sd[name].numel(), dtype=torch.float64)
        t = torch.sin(0.37 * i + 1.3 * k + 0.5)
        is_bn = ".bn" in name
        if name.endswith("running_var"):
            v = 1 + 0.5 * t * t
        elif name.endswith("running_mean"):
            v = 0.1 * t
        elif is_bn and name.endswith("weight"):
            v = 1 + 0.2 * t
        elif name.endswith("bias"):
            v = 0.1 * t
        else:
            fan_in = int(torch.tensor(shape[1:]).prod().item())
            v = t / math.sqrt(fan_in)
        out[name] = v.to(torch.float32).reshape(shape)
    return out


def batch(b, phase):
    j = torch.arange(B * 3 * 32 * 32, dtype=torch.float64)
    return (0.9 * torch.sin(0.013 * j + 2.1 * b + phase)).to(torch.float32).reshape(B, 3, 32, 32)


Y_LAB = torch.tensor([(3 * n + 1) % 10 for n in range(B)])
X_LAB = X_POS = X_NEG = None
MIN_ABS = [float("inf")]


def lrelu(x):
    MIN_ABS[0] = min(MIN_ABS[0], x.detach().abs().min().item())
    return F.leaky_relu(x, 0.2)


def set_phase(phase):
    global X_LAB, X_POS, X_NEG
    X_LAB, X_POS, X_NEG = batch(0, phase), batch(1, phase), batch(2, phase)


def fresh(depth, k):
    m = JEM(depth, k)
    m.load_state_dict(formula_state(m), strict=False)
    return m


def set_bn_momentum(model, m):
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.momentum = m


def jem_loss(model):
    fp = model(X_POS).logsumexp(1).mean()
    fq = model(X_NEG).logsumexp(1).mean()
    ce = F.cross_entropy(model(X_LAB), Y_LAB)
    return -(fp - fq) + ce


def params(model):
    return [p for _, p in sorted(model.named_parameters())]


def sgd_step(model, bufs, lr, momentum=0.9, wd=5e-4):
    with torch.no_grad():
        for (name, p) in sorted(model.named_parameters()):
            d = p.grad + wd * p
            if name in bufs:
                bufs[name].mul_(momentum).add_(d)
            else:
                bufs[name] = d.clone()
            p.add_(bufs[name], alpha=-lr)


def sam_iteration(model, bufs, lr, rho, adaptive):
    """One SADA-JEM optimizer iteration: pass 1 (running stats updated), perturb, pass 2
    (BN momentum 0) on the same batches, restore, SGD step."""
    set_bn_momentum(model, 0.9)
    model.zero_grad()
    jem_loss(model).backward()
    ps = params(model)
    with torch.no_grad():
        norm = torch.norm(torch.stack([((p.abs() if adaptive else 1.0) * p.grad).norm(p=2) for p in ps]), p=2)
        scale = rho / (norm + 1e-12)
        old = [p.data.clone() for p in ps]
        for p in ps:
            p.add_((torch.pow(p, 2) if adaptive else 1.0) * p.grad * scale)
    model.zero_grad()
    set_bn_momentum(model, 0.0)
    jem_loss(model).backward()
    with torch.no_grad():
        for p, o in zip(ps, old):
            p.data = o
    sgd_step(model, bufs, lr)
    set_bn_momentum(model, 0.9)


def snapshot(model, prefix, out, buffers_only=False):
    for name, v in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        if buffers_only and not name.startswith("running", name.rfind(".") + 1):
            continue
        out[f"{prefix}/{name}"] = v.detach().clone().contiguous()


def compute():
    out = {}
    # forward and input gradients of WRN-10-2 (has a stride-1 shortcut), eval and train BN
    for mode in ["eval", "train"]:
        m = fresh(10, 2)
        m.train(mode == "train")
        x = X_LAB.clone().requires_grad_(True)
        logits = m(x)
        lse = logits.logsumexp(1)
        (g,) = torch.autograd.grad((-lse).sum(), [x])
        out[f"wrn10_2/{mode}/logits"] = logits.detach()
        out[f"wrn10_2/{mode}/lse"] = lse.detach()
        out[f"wrn10_2/{mode}/dEdx"] = g
        if mode == "train":
            snapshot(m, "wrn10_2/train/after", out, buffers_only=True)

    # WRN-10-1: gradients of CE + (E(x+) - E(x-)) in the reference order, train-mode BN
    m = fresh(10, 1)
    m.train()
    jem_loss(m).backward()
    for name, p in sorted(m.named_parameters()):
        out[f"grads/{name}"] = p.grad.detach().clone()
    snapshot(m, "grads_bn", out, buffers_only=True)
    # ... one plain SGD step with those gradients (lr 0.1, momentum 0.9, wd 5e-4)
    sgd_step(m, {}, 0.1)
    snapshot(m, "sgd1", out)

    # one SAM iteration (rho 0.2) and one ASAM iteration (rho 2), both passes
    for tag, rho, adaptive in [("sam1", 0.2, False), ("asam1", 2.0, True)]:
        m = fresh(10, 1)
        m.train()
        sam_iteration(m, {}, 0.1, rho, adaptive)
        snapshot(m, tag, out)

    # three SAM iterations with a linear warm-up over 2 iterations: lr 0, 0.05, 0.1
    m = fresh(10, 1)
    m.train()
    bufs = {}
    for it in range(3):
        lr = 0.1 * it / 2 if it <= 2 else 0.1
        sam_iteration(m, bufs, lr, 0.2, False)
    snapshot(m, "sam3_warmup", out)
    out["meta/closest_to_kink"] = torch.tensor([MIN_ABS[0]], dtype=torch.float64)

    return out


def main():
    phase = 0.3
    while True:
        set_phase(phase)
        MIN_ABS[0] = float("inf")
        out = compute()
        closest = out["meta/closest_to_kink"].item()
        print(f"phase {phase:.2f}: closest leaky-ReLU input to 0 is {closest:.2e}")
        if closest >= 5e-7:
            break
        phase = round(phase + 0.01, 2)
    out["meta/phase"] = torch.tensor([phase], dtype=torch.float64)
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(HERE, "golden.safetensors"))

    # a checkpoint in the reference's format, with the unused energy head and a buffer
    ck = JEM(10, 1, with_energy_head=True)
    ck.load_state_dict(formula_state(ck))
    torch.save({"model_state_dict": ck.state_dict(), "replay_buffer": X_NEG.clone()},
               os.path.join(HERE, "reference_ckpt.pt"))
    print("wrote", len(out), "tensors")


if __name__ == "__main__":
    main()
