"""KID reference values from torch-fidelity itself (`kid_features_to_metric`).

Writes tests/golden/kid/*.npy (float32 features, as Inception gives them) and
tests/golden/kid/expected.json: torch-fidelity's mean and std for each case, computed with the
features as float64 tensors (numpy then works in float64, as jem-metrics does) and as float32
(torch-fidelity's own precision for Inception features).
    pip install torch torch-fidelity numpy
    python crates/jem-metrics/tests/golden/make_kid_golden.py
Seeded: a rerun rewrites the same files.
"""
import json
import os

import numpy as np
import torch
import torch_fidelity
from torch_fidelity.metric_kid import kid_features_to_metric

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kid")
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(20261204)

CASES = {
    # torch-fidelity's defaults but for smaller subsets
    "shifted": dict(n1=300, n2=260, d=32, shift=0.3,
                    kw=dict(kid_subsets=20, kid_subset_size=100)),
    # the same mean and 1.1 times the spread: a small KID
    "scaled": dict(n1=240, n2=240, d=16, shift=0.0,
                 kw=dict(kid_subsets=10, kid_subset_size=120, rng_seed=7)),
    # a non-default kernel
    "kernel": dict(n1=150, n2=180, d=8, shift=0.5,
                   kw=dict(kid_subsets=5, kid_subset_size=150, kid_kernel_poly_degree=2,
                           kid_kernel_poly_gamma=0.5, kid_kernel_poly_coef0=0.25, rng_seed=11)),
}

expected = {"torch_fidelity": torch_fidelity.__version__, "cases": {}}
for name, c in CASES.items():
    a = rng.standard_normal((c["n1"], c["d"])).astype(np.float32)
    b = (rng.standard_normal((c["n2"], c["d"])) * 1.1 + c["shift"]).astype(np.float32)
    np.save(os.path.join(OUT, f"{name}_1.npy"), a)
    np.save(os.path.join(OUT, f"{name}_2.npy"), b)
    kw = dict(c["kw"], verbose=False)
    r64 = kid_features_to_metric(torch.from_numpy(a).double(), torch.from_numpy(b).double(), **kw)
    r32 = kid_features_to_metric(torch.from_numpy(a), torch.from_numpy(b), **kw)
    first = np.random.RandomState(kw.get("rng_seed", 2020))
    expected["cases"][name] = {
        "features_1": f"{name}_1.npy",
        "features_2": f"{name}_2.npy",
        "subsets": kw["kid_subsets"],
        "subset_size": kw["kid_subset_size"],
        "degree": kw.get("kid_kernel_poly_degree", 3),
        "gamma": kw.get("kid_kernel_poly_gamma"),
        "coef0": kw.get("kid_kernel_poly_coef0", 1.0),
        "seed": kw.get("rng_seed", 2020),
        "first_subset_1": [int(i) for i in first.choice(c["n1"], kw["kid_subset_size"], replace=False)],
        "mean_float64": r64["kernel_inception_distance_mean"],
        "std_float64": r64["kernel_inception_distance_std"],
        "mean_float32": r32["kernel_inception_distance_mean"],
        "std_float32": r32["kernel_inception_distance_std"],
    }

with open(os.path.join(OUT, "expected.json"), "w") as f:
    json.dump(expected, f, indent=1)
    f.write("\n")
print(json.dumps({k: {m: v for m, v in c.items() if m.startswith(("mean", "std"))}
                  for k, c in expected["cases"].items()}, indent=1))
