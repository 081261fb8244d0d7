"""Reference values for jem-metrics' exact metric functions, from independent implementations.

Writes tests/golden/metrics/*.npy (inputs) and tests/golden/metrics/expected.json (outputs).
Needs numpy, scipy, scikit-learn, torch, torchmetrics, pytorch-fid and mpmath:
    pip install numpy scipy scikit-learn torch torchmetrics pytorch-fid mpmath
    python crates/jem-metrics/tests/golden/make_metrics_golden.py
Every input is seeded, so a rerun rewrites the same files.
"""
import json
import os
import warnings

import mpmath
import numpy as np
import scipy.stats
import sklearn.metrics as skm
import torch
from pytorch_fid.fid_score import calculate_frechet_distance
from torchmetrics.functional.classification import multiclass_calibration_error

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "metrics")
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(20261130)
expected = {}


def save(name, array):
    np.save(os.path.join(OUT, name + ".npy"), array)
    return name + ".npy"


# ---------------------------------------------------------------- FID
def exact_fid(a, b, dps=50):
    """FID in mpmath at `dps` digits: eigen route on the symmetric sqrt(S1) S2 sqrt(S1)."""
    mpmath.mp.dps = dps
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    S1, S2 = mpmath.matrix(s1.tolist()), mpmath.matrix(s2.tolist())
    e, q = mpmath.eigsy(S1)
    root = mpmath.diag([mpmath.sqrt(max(x, 0)) for x in e])
    r = q * root * q.T
    ev = mpmath.eigsy(r * S2 * r, eigvals_only=True)
    tr = sum(mpmath.sqrt(max(x, 0)) for x in ev)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr)


def pytorch_fid(a, b):
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        try:
            value = float(calculate_frechet_distance(mu1, s1, mu2, s2))
            error = None
        except ValueError as e:
            value, error = None, str(e)
    return value, error


fid_cases = {}
d = 24
mix = rng.normal(size=(d, d)) / np.sqrt(d)
# well conditioned: correlated Gaussians, different means and scales
a = rng.normal(size=(300, d)) @ mix
b = 0.5 + 1.3 * rng.normal(size=(200, d)) @ mix.T
fid_cases["random"] = (a, b)
# float32 features, as feature files usually are
fid_cases["float32"] = (a.astype(np.float32), (b * 0.9).astype(np.float32))
# rank-deficient covariances: fewer samples than dimensions
fid_cases["singular"] = (rng.normal(size=(12, d)), rng.normal(size=(15, d)) + 0.1)
# ill-conditioned: covariance eigenvalues from 1 down to 1e-14
q, _ = np.linalg.qr(rng.normal(size=(d, d)))
scales = np.logspace(0, -7, d)
fid_cases["ill_conditioned"] = (
    rng.normal(size=(400, d)) * scales @ q.T,
    rng.normal(size=(350, d)) * scales[::-1] ** 0.5 @ q.T,
)
for name, (a, b) in fid_cases.items():
    value, error = pytorch_fid(a.astype(np.float64), b.astype(np.float64))
    fid_cases[name] = {
        "a": save(f"fid_{name}_a", a),
        "b": save(f"fid_{name}_b", b),
        "pytorch_fid": value,
        "pytorch_fid_error": error,
        "exact": exact_fid(a.astype(np.float64), b.astype(np.float64)),
    }
expected["fid"] = fid_cases

# ---------------------------------------------------------------- Inception Score
def inception_score_reference(p, splits):
    """Original TF/OpenAI convention, KL via scipy.stats.entropy."""
    n = p.shape[0]
    scores = []
    for i in range(splits):
        part = p[i * n // splits:(i + 1) * n // splits]
        py = part.mean(0)
        scores.append(np.exp(np.mean([scipy.stats.entropy(row, py) for row in part])))
    return float(np.mean(scores)), float(np.std(scores)), [float(s) for s in scores]


is_cases = {}
probs = rng.dirichlet(np.full(10, 0.3), size=103)
probs[::7, 3] = 0.0  # exact zeros: 0 log 0 = 0
probs /= probs.sum(1, keepdims=True)
for splits in (1, 3, 10):
    m, s, per = inception_score_reference(probs, splits)
    is_cases[f"dirichlet_splits{splits}"] = {
        "probs": "is_probs.npy", "splits": splits, "mean": m, "std": s, "per_split": per}
save("is_probs", probs)
logits = rng.normal(size=(40, 7)) * 3
soft = torch.softmax(torch.tensor(logits), 1).numpy()
m, s, per = inception_score_reference(soft, 4)
is_cases["from_logits"] = {"logits": save("is_logits", logits), "splits": 4, "mean": m,
                           "std": s, "per_split": per}
expected["inception_score"] = is_cases

# ---------------------------------------------------------------- ECE
def reference_ece(conf, hits, n_bins=20):
    """The SADA-JEM reference's ECELoss: float32 torch.linspace edges, (lo, hi] bins."""
    conf, hits = torch.tensor(conf), torch.tensor(hits, dtype=torch.float32)
    edges = torch.linspace(0, 1, n_bins + 1)
    ece = torch.zeros(1)
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = conf.gt(lo.item()) * conf.le(hi.item())
        prop = in_bin.float().mean()
        if prop.item() > 0:
            ece += torch.abs(conf[in_bin].mean() - hits[in_bin].mean()) * prop
    return float(ece.item())


classes = 10
logits = rng.normal(size=(400, classes)) * 2.5
probs = torch.softmax(torch.tensor(logits, dtype=torch.float32), 1).numpy()
labels = np.where(rng.random(400) < 0.7, probs.argmax(1), rng.integers(0, classes, 400))
# rows whose confidence sits exactly on float32 bin edges of 15 and 20 bins, or equals 1
edge_rows = []
for e in list(torch.linspace(0, 1, 16).numpy()[2:]) + list(torch.linspace(0, 1, 21).numpy()[3:]):
    row = np.full(classes, (1 - e) / (classes - 1), dtype=np.float32)
    row[int(rng.integers(0, classes))] = e
    if row.max() == e:
        edge_rows.append(row)
onehot = np.zeros((5, classes), dtype=np.float32)
onehot[np.arange(5), [1, 2, 3, 4, 5]] = 1.0
probs = np.concatenate([probs, np.stack(edge_rows), onehot]).astype(np.float32)
labels = np.concatenate([labels, rng.integers(0, classes, len(edge_rows)), [1, 2, 0, 4, 0]])
labels = labels.astype(np.int64)
save("ece_probs", probs)
save("ece_labels", labels)
save("ece_labels_float", labels.astype(np.float32))
p_t, y_t = torch.tensor(probs), torch.tensor(labels)
conf = probs.max(1)
hits = (probs.argmax(1) == labels)
expected["ece"] = {
    "probs": "ece_probs.npy",
    "labels": "ece_labels.npy",
    "torchmetrics_15": {
        norm: float(multiclass_calibration_error(p_t, y_t, classes, n_bins=15, norm=norm))
        for norm in ("l1", "max", "l2")
    },
    "torchmetrics_10": float(multiclass_calibration_error(p_t, y_t, classes, n_bins=10)),
    "reference_20": reference_ece(conf, hits, 20),
    "reference_15": reference_ece(conf, hits, 15),
    "accuracy": float(hits.mean()),
    # the first 400 rows have no tied scores (scikit-learn breaks ties the other way)
    "top3_first400": float(
        skm.top_k_accuracy_score(labels[:400], probs[:400], k=3, labels=np.arange(classes))),
}

# ---------------------------------------------------------------- AUROC and friends
s_in = np.round(rng.normal(1.0, 1.0, size=500), 1)  # many ties
s_out = np.round(rng.normal(0.0, 1.2, size=400), 1)
y = np.r_[np.ones(500), np.zeros(400)]
s = np.r_[s_in, s_out]
fpr, tpr, thr = skm.roc_curve(y, s, drop_intermediate=False)
expected["ood"] = {
    "in": save("ood_in", s_in),
    "out": save("ood_out", s_out),
    "auroc": float(skm.roc_auc_score(y, s)),
    "aupr_in": float(skm.average_precision_score(y, s)),
    "aupr_out": float(skm.average_precision_score(1 - y, -s)),
    "fpr_at_95_tpr": float(fpr[np.searchsorted(tpr, 0.95, side="left")]),
    "roc_fpr": fpr.tolist(),
    "roc_tpr": tpr.tolist(),
    "roc_thresholds": thr[1:].tolist(),
}

with open(os.path.join(OUT, "expected.json"), "w") as f:
    json.dump(expected, f, indent=1, sort_keys=True)
    f.write("\n")
print(json.dumps({k: v for k, v in expected["fid"].items()}, indent=1))
