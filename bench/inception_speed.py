"""pytorch-fid's FID Inception-v3 on the CPU, the speed anchor of `jem metric stats`.

Builds pytorch-fid's network (`pytorch_fid.inception.InceptionV3([3])`: torchvision's
Inception-v3 with the FID blocks, resize to 299x299 and normalisation inside) with random
weights, since speed does not depend on them and its weight file is a download, and:

  --save-weights FILE   writes that state dict in pytorch-fid's own layout, which
                        `jem metric stats --weights FILE` reads, so both sides run the
                        same network on the same images;
  --time                extracts the pool3 features of the first --images test images of
                        Fashion-MNIST (IDX files in --data) in batches of --batch (pytorch-fid's
                        default 50) --rounds times and prints one JSON line per round.

Run with the PyTorch of ../shared/bench/README.md; `cargo xtask bench --inception` (or the
README's commands) alternates it with `jem metric stats`.
"""
import argparse
import gzip
import json
import os
import time

import numpy as np
import torch
import pytorch_fid.inception as pi


BUILT = []


def fid_inception_random():
    """pytorch-fid's `fid_inception_v3()` without its weight download (kept in BUILT: the
    wrapper `InceptionV3` reuses its modules)."""
    net = pi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = pi.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pi.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pi.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pi.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pi.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pi.FIDInceptionE_1(1280)
    net.Mixed_7c = pi.FIDInceptionE_2(2048)
    BUILT.append(net)
    return net


def idx_images(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    n, h, w = (int.from_bytes(data[i:i + 4], "big") for i in (4, 8, 12))
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, h, w)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--save-weights")
    ap.add_argument("--time", action="store_true")
    ap.add_argument("--data", default="../shared/data/fashion-mnist")
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    pi.fid_inception_v3 = fid_inception_random
    model = pi.InceptionV3([pi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    if a.save_weights:
        # the modules of the timed model, as pytorch-fid's weight file names them
        torch.save(BUILT[0].state_dict(), a.save_weights)
    if a.time:
        name = next(f for f in ("t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte")
                    if os.path.exists(os.path.join(a.data, f)))
        x = idx_images(os.path.join(a.data, name))[: a.images]
        x = torch.from_numpy(x.astype(np.float32) / 255.0)[:, None].repeat(1, 3, 1, 1)
        for r in range(a.rounds):
            t0 = time.perf_counter()
            with torch.no_grad():
                feats = [model(x[i:i + a.batch])[0].squeeze(-1).squeeze(-1)
                         for i in range(0, len(x), a.batch)]
            dt = time.perf_counter() - t0
            f = torch.cat(feats)
            print(json.dumps({"round": r, "images": len(x), "seconds": dt,
                              "images_per_s": len(x) / dt, "features": list(f.shape),
                              "threads": torch.get_num_threads()}), flush=True)


if __name__ == "__main__":
    main()
