"""Golden outputs of pytorch-fid's FID Inception-v3 for `tests/inception.rs`.

Run from this folder with a Python that has torch, torchvision, pytorch-fid 0.3.0 and
safetensors (no network access and no real weights are needed):

    python make_golden.py

It writes, next to itself:

- `golden.safetensors`: the network's outputs for a few formula images under formula weights
  (both defined below and re-implemented identically by the Rust test), plus bilinear resize
  outputs of `F.interpolate(mode="bilinear", align_corners=False)`;
- `parameters.txt`: the name and shape of every tensor the network loads (one per line);
- `state_zip.pth` and `state_legacy.pth`: one small state dict saved in the zip format
  (torch >= 1.6) and in the legacy format (`_use_new_zipfile_serialization=False`), for the
  reader tests.

Formula weights. For a tensor called `name`, flat row-major (PyTorch layout) index `i` and
phase `p = (sum of the UTF-8 bytes of name mod 97) * 0.1`, let

    q = 0.7548776662466927 * (i * i)          (f64; i * i is exact)
    s(a) = sin(a * i + p + 6.283185307179586 * (q - floor(q)))   (left to right)

The term `2 pi frac(q)` makes the values pseudo-random along `i`. A pure `sin(a * i + p)`
would make every conv filter a high-pass, rank-2 pattern: the input signal then dies
within a few layers and the features barely depend on the image (measured: 3e-4 of their
size), which would make the golden test blind to input handling. With it, activations
stay O(0.1..10) and features vary by ~30% between images. Values:

    *.conv.weight          sqrt(4 / fan_in) * s(0.9137),  fan_in = in_ch * kh * kw
    *.bn.weight            1 + 0.2 * s(1.31)
    *.bn.bias              0.1 * s(1.73)
    *.bn.running_mean      0.1 * s(2.11)
    *.bn.running_var       1 + 0.5 * s(2.93) ** 2
    fc.weight              sqrt(1 / 2048) * s(0.577)
    fc.bias                0.1 * s(0.331)

each computed in f64, then cast to f32 (the f64 run casts the f32 values up, so that both
precisions run the same weights).

Formula images (x in [0, 1], indices b, c, h, w):

    cifar  [4, 3, 32, 32]    0.5 + 0.5 * sin((0.3 + 0.2 * b) * h * (c + 1) + 0.17 * w * (b + 1) + 1.1 * b)
    mnist  [2, 1, 28, 28]    0.5 + 0.5 * sin(0.21 * h + 0.37 * w + 0.013 * h * w + 2.3 * b)
                             (fed to pytorch-fid repeated to 3 channels)
    large  [1, 3, 320, 300]  0.5 + 0.5 * sin(0.05 * h * (c + 1) + 0.031 * w + 7e-4 * h * w)

each computed in f64, then cast to f32.

Resize cases (input formula 0.5 + 0.5 * sin(0.7 * h + 0.3 * w * (c + 1)), f32):
`up` [1, 2, 5, 7] -> 13 x 11, `down` [1, 2, 37, 41] -> 13 x 11, `mixed` [1, 1, 9, 20] -> 15 x 6.
"""

import math
import os

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file

import pytorch_fid.inception as pfi

HERE = os.path.dirname(os.path.abspath(__file__))
G = 0.7548776662466927
TWO_PI = 6.283185307179586


def phase(name):
    return (sum(name.encode("utf-8")) % 97) * 0.1


def s(a, n, name):
    i = np.arange(n, dtype=np.float64)
    q = G * (i * i)
    return np.sin(a * i + phase(name) + TWO_PI * (q - np.floor(q)))


def formula_tensor(name, shape):
    n = int(np.prod(shape)) if len(shape) > 0 else 1
    if name.endswith(".conv.weight"):
        fan_in = int(np.prod(shape[1:]))
        v = math.sqrt(4.0 / fan_in) * s(0.9137, n, name)
    elif name.endswith(".bn.weight"):
        v = 1.0 + 0.2 * s(1.31, n, name)
    elif name.endswith(".bn.bias"):
        v = 0.1 * s(1.73, n, name)
    elif name.endswith(".bn.running_mean"):
        v = 0.1 * s(2.11, n, name)
    elif name.endswith(".bn.running_var"):
        v = 1.0 + 0.5 * s(2.93, n, name) ** 2
    elif name == "fc.weight":
        v = math.sqrt(1.0 / 2048.0) * s(0.577, n, name)
    elif name == "fc.bias":
        v = 0.1 * s(0.331, n, name)
    else:
        raise ValueError(f"no formula for {name}")
    return torch.from_numpy(v.astype(np.float32).reshape(shape))


class FormulaWeights:
    """Stands in for the downloaded state dict: filled from the module's own names."""


def formula_state_dict(reference):
    out = {}
    for name, t in reference.items():
        if name.endswith("num_batches_tracked"):
            out[name] = t.clone()
        else:
            out[name] = formula_tensor(name, tuple(t.shape))
    return out


def build_model():
    """pytorch-fid's own InceptionV3 construction, with formula weights instead of the URL."""
    captured = {}
    original = torchvision.models.inception.Inception3.load_state_dict

    def patched_load(self, state_dict, *args, **kwargs):
        if isinstance(state_dict, FormulaWeights):
            state_dict = formula_state_dict(self.state_dict())
            captured.update(state_dict)
        return original(self, state_dict, *args, **kwargs)  # strict: names and shapes match

    def fake_download(url, *args, **kwargs):
        assert url == pfi.FID_WEIGHTS_URL
        return FormulaWeights()

    pfi.load_state_dict_from_url = fake_download
    torchvision.models.inception.Inception3.load_state_dict = patched_load
    try:
        model = pfi.InceptionV3(
            [3], resize_input=True, normalize_input=True, use_fid_inception=True
        )
    finally:
        torchvision.models.inception.Inception3.load_state_dict = original
    model.eval()
    return model, captured


def images(kind):
    if kind == "cifar":
        b, c, h, w = np.meshgrid(*[np.arange(k) for k in (4, 3, 32, 32)], indexing="ij")
        x = 0.5 + 0.5 * np.sin((0.3 + 0.2 * b) * h * (c + 1) + 0.17 * w * (b + 1) + 1.1 * b)
    elif kind == "mnist":
        b, c, h, w = np.meshgrid(*[np.arange(k) for k in (2, 1, 28, 28)], indexing="ij")
        x = 0.5 + 0.5 * np.sin(0.21 * h + 0.37 * w + 0.013 * h * w + 2.3 * b)
    elif kind == "large":
        b, c, h, w = np.meshgrid(*[np.arange(k) for k in (1, 3, 320, 300)], indexing="ij")
        x = 0.5 + 0.5 * np.sin(0.05 * h * (c + 1) + 0.031 * w + 7e-4 * h * w)
    else:
        raise ValueError(kind)
    return torch.from_numpy(x.astype(np.float32))


def resize_input(shape):
    b, c, h, w = np.meshgrid(*[np.arange(k) for k in shape], indexing="ij")
    x = 0.5 + 0.5 * np.sin(0.7 * h + 0.3 * w * (c + 1))
    return torch.from_numpy(x.astype(np.float32))


def run(model, weights, x, dtype):
    model = model.to(dtype)
    x = x.to(dtype)
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    with torch.no_grad():
        pool = model(x)[0].squeeze(3).squeeze(2)
        w = weights["fc.weight"].to(dtype)
        b = weights["fc.bias"].to(dtype)
        logits = F.linear(pool, w, b)
        unbiased = F.linear(pool, w)
    return pool, logits, unbiased


def save_state_dicts():
    """A small state dict shaped like the real weight file (an OrderedDict with `_metadata`,
    from a BasicConv2d), plus a few layouts a reader must handle. Values: v(i) = (i % 17) / 2 - 4.
    """
    gen = lambda n, dtype: torch.tensor([(i % 17) * 0.5 - 4.0 for i in range(n)], dtype=dtype)
    sd = torchvision.models.inception.BasicConv2d(3, 4, kernel_size=3).state_dict()
    sd["conv.weight"] = gen(4 * 3 * 3 * 3, torch.float32).reshape(4, 3, 3, 3)
    sd["bn.weight"] = gen(4, torch.float32)
    sd["bn.bias"] = gen(4, torch.float32)
    sd["bn.running_mean"] = gen(4, torch.float32)
    sd["bn.running_var"] = gen(4, torch.float64)
    sd["bn.num_batches_tracked"] = torch.tensor(7, dtype=torch.int64)
    base = gen(12, torch.float32)
    sd["transposed"] = gen(12, torch.float32).reshape(4, 3).t()
    sd["view_base"] = base
    sd["view"] = base[3:9]
    sd["half"] = gen(4, torch.float16).reshape(2, 2)
    assert hasattr(sd, "_metadata")
    assert not sd["transposed"].is_contiguous() and sd["view"].storage_offset() == 3
    torch.save(sd, os.path.join(HERE, "state_zip.pth"))
    torch.save(sd, os.path.join(HERE, "state_legacy.pth"), _use_new_zipfile_serialization=False)


def main():
    torch.set_num_threads(2)
    model, weights = build_model()
    out = {}
    for kind in ("cifar", "mnist", "large"):
        x = images(kind)
        pool, logits, unbiased = run(model, weights, x, torch.float32)
        out[f"{kind}.pool"] = pool.contiguous()
        out[f"{kind}.logits"] = logits.contiguous()
        out[f"{kind}.logits_unbiased"] = unbiased.contiguous()
        print(kind, "pool |max|", pool.abs().max().item(), "mean", pool.mean().item(),
              "logits |max|", logits.abs().max().item())
    # float64 reference of one CIFAR image and the large image (precision check)
    for kind, sl in (("cifar", slice(0, 1)), ("large", slice(0, 1))):
        x = images(kind)[sl]
        pool, logits, unbiased = run(model, weights, x, torch.float64)
        out[f"{kind}.f64.pool"] = pool.contiguous()
        out[f"{kind}.f64.logits"] = logits.contiguous()
        out[f"{kind}.f64.logits_unbiased"] = unbiased.contiguous()
        rel = (pool - out[f"{kind}.pool"][sl].double()).abs().max() / pool.abs().max()
        print(kind, "f32 vs f64 pool rel diff", rel.item())
    model = model.float()
    for name, shape, size in (
        ("up", (1, 2, 5, 7), (13, 11)),
        ("down", (1, 2, 37, 41), (13, 11)),
        ("mixed", (1, 1, 9, 20), (15, 6)),
    ):
        x = resize_input(shape)
        out[f"resize.{name}"] = F.interpolate(
            x, size=size, mode="bilinear", align_corners=False
        ).contiguous()
    save_file(out, os.path.join(HERE, "golden.safetensors"))
    with open(os.path.join(HERE, "parameters.txt"), "w") as f:
        for name, t in weights.items():
            if not name.endswith("num_batches_tracked"):
                f.write(f"{name} {','.join(str(d) for d in t.shape)}\n")
    save_state_dicts()


if __name__ == "__main__":
    main()
