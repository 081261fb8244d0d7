"""Counts the multiply-adds of the reference WRN (../shared/bench/torch_baseline.py's model) with
forward hooks on every Conv2d and Linear, for the FLOP figures `cargo xtask bench` prints
(`xtask/src/flops.rs` tests against these numbers).

usage: python bench/count_flops.py [--script ../shared/bench/torch_baseline.py]
"""
import argparse
import importlib.util

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--script", default="../shared/bench/torch_baseline.py")
    a = ap.parse_args()
    spec = importlib.util.spec_from_file_location("tb", a.script)
    tb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tb)
    for depth, width in [(16, 4), (28, 10), (10, 1)]:
        m = make(tb, depth, width)
        macs = []

        def hook(mod, inp, out):
            if isinstance(mod, torch.nn.Conv2d):
                k = mod.kernel_size[0] * mod.kernel_size[1]
                macs.append((mod, out.numel() * mod.in_channels * k // mod.groups))
            elif isinstance(mod, torch.nn.Linear):
                macs.append((mod, out.numel() * mod.in_features))

        for mod in m.modules():
            if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
                mod.register_forward_hook(hook)
        with torch.no_grad():
            m.eval()(torch.zeros(1, 3, 32, 32))
        stem = macs[0][1]
        total = sum(n for _, n in macs)
        print(f"wrn{depth}-{width}: forward_flops={2 * total} stem_flops={2 * stem}")


def make(tb, depth, width):
    """The script's model with the flags its benchmark uses."""
    import inspect

    params = inspect.signature(tb.WideResNet.__init__).parameters
    kw = dict(num_classes=10, norm="batch", leak=0.2, dropout=0.0)
    if "stride_on" in params:
        kw["stride_on"] = params["stride_on"].default
    return tb.WideResNet(depth, width, **kw)


if __name__ == "__main__":
    main()
