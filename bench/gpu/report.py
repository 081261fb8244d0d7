#!/usr/bin/env python3
"""Collects the files of gpu-check/run.sh into results.json and results.md.

Reads from --work: ours-<precision>-<measure>.json (`jem bench --json`),
torch-<precision>-<measure>.json (torch_bench.py --json), parity-<a|b>-<precision>.json
(`jem bench parity --json`), mem-<step>.txt ("<MiB in use before> <peak MiB>" from
nvidia-smi), steps.txt ("<step> <exit status> <seconds>") and gpu.txt. Anything missing
is reported as missing, never guessed. Standard library only.
"""
import argparse
import json
import os

MEASURES = ["clf_step", "sgld_step", "sadajem_iter"]
PRECISIONS = ["fp32", "tf32", "bf16"]
CIFAR_TRAIN, EPOCHS = 50_000, 200


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def mem_peak(work, step):
    """Peak MiB of a step above the memory in use before it (nvidia-smi), or None."""
    try:
        with open(os.path.join(work, f"mem-{step}.txt")) as f:
            base, peak = (int(v) for v in f.read().split()[:2])
        return peak - base
    except (OSError, ValueError):
        return None


def result(doc):
    return doc["results"][0] if doc and doc.get("results") else None


def hours(iter_ms, batch_lab):
    iters = -(-CIFAR_TRAIN // batch_lab) * EPOCHS
    return iters * iter_ms / 1e3 / 3600


def fmt(v, spec):
    return "—" if v is None else format(v, spec)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--tiny", default="0")
    a = p.parse_args()
    w = a.work
    steps = {}
    try:
        with open(os.path.join(w, "steps.txt")) as f:
            for line in f:
                name, rc, secs = line.split()
                steps[name] = {"exit": int(rc), "seconds": int(secs)}
    except OSError:
        pass
    gpu = None
    try:
        with open(os.path.join(w, "gpu.txt")) as f:
            gpu = f.read().strip()
    except OSError:
        pass

    rows, raw = [], {}
    for m in MEASURES:
        for prec in PRECISIONS:
            ours_doc = load(os.path.join(w, f"ours-{prec}-{m}.json"))
            torch_doc = load(os.path.join(w, f"torch-{prec}-{m}.json"))
            raw[f"ours-{prec}-{m}"] = ours_doc
            raw[f"torch-{prec}-{m}"] = torch_doc
            o, t = result(ours_doc), result(torch_doc)
            ours_ips = o["images_per_s"] if o else None
            torch_ips = t["images_per_s"] if t else None
            batch_lab = (ours_doc or torch_doc or {}).get("config", {}).get("batch_lab", 128)
            rows.append({
                "measure": m,
                "precision": prec,
                "ours_images_per_s": ours_ips,
                "torch_images_per_s": torch_ips,
                "ratio_ours_over_torch": ours_ips / torch_ips if ours_ips and torch_ips else None,
                "ours_median_ms": o["median_ms"] if o else None,
                "torch_median_ms": t["median_ms"] if t else None,
                "ours_peak_mib_smi": mem_peak(w, f"ours-{prec}-{m}"),
                "torch_peak_mib_smi": mem_peak(w, f"torch-{prec}-{m}"),
                "torch_peak_allocated_mib": t.get("peak_allocated_mib") if t else None,
                "torch_peak_reserved_mib": t.get("peak_reserved_mib") if t else None,
                "ours_hours_200_epochs": hours(o["median_ms"], batch_lab)
                if o and m == "sadajem_iter" else None,
                "torch_hours_200_epochs": hours(t["median_ms"], batch_lab)
                if t and m == "sadajem_iter" else None,
                "ours_step": steps.get(f"ours-{prec}-{m}"),
                "torch_step": steps.get(f"torch-{prec}-{m}"),
            })
    parity = []
    for tag in ("a", "b"):
        for prec in ("fp32", "tf32"):
            doc = load(os.path.join(w, f"parity-{tag}-{prec}.json"))
            step = steps.get(f"parity-{tag}-{prec}")
            parity.append({"name": f"parity-{tag}-{prec}", "precision": prec, "report": doc,
                           "step": step})

    doc = {"device": a.device, "gpu": gpu, "tiny": a.tiny == "1", "rows": rows,
           "parity": parity, "steps": steps, "raw": raw,
           "notes": ["images/s: labelled images for sadajem_iter; median of the timed iterations",
                     "ratio: ours / torch (above 1: ours faster)",
                     "peak MiB (smi): nvidia-smi every 100 ms, minus the memory in use before the step",
                     "hours: 391 iterations per epoch (50,000 / 128) x 200 epochs x median "
                     "iteration time, evaluations not counted",
                     "ours has no bf16 row: the model runs in f32; candle's bf16 switch only "
                     "affects bf16 matrix products",
                     "parity: max rel = max |a - r| / max |r| per tensor; rel L2 = ||a - r|| / ||r||; "
                     "floor L2 = rel L2 of the CPU against itself on images moved by 1e-6 (ReLU "
                     "kinks that rounding flips); a group passes with max rel <= tol or rel L2 <= "
                     "5 x floor L2"]}
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(doc, f, indent=2)

    md = [f"# gpu-check results ({a.device}{', TINY sizes' if a.tiny == '1' else ''})", ""]
    if gpu:
        md += ["```", gpu, "```", ""]
    md += ["| measure | precision | ours img/s | torch img/s | ours/torch | ours peak MiB (smi) "
           "| torch peak MiB (smi) | torch max allocated MiB |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ours = fmt(r["ours_images_per_s"], ".1f") if r["precision"] != "bf16" else "n/a"
        md.append(f"| {r['measure']} | {r['precision']} | {ours} | {fmt(r['torch_images_per_s'], '.1f')} "
                  f"| {fmt(r['ratio_ours_over_torch'], '.2f')} | {fmt(r['ours_peak_mib_smi'], 'd')} "
                  f"| {fmt(r['torch_peak_mib_smi'], 'd')} | {fmt(r['torch_peak_allocated_mib'], '.0f')} |")
    md += ["", "Hours per 200-epoch CIFAR-10 run (391 iterations per epoch, from the full "
           "iteration's median; evaluations not counted):", ""]
    for r in rows:
        if r["measure"] == "sadajem_iter":
            md.append(f"- {r['precision']}: ours {fmt(r['ours_hours_200_epochs'], '.1f')} h, "
                      f"torch {fmt(r['torch_hours_200_epochs'], '.1f')} h")
    md += ["", "## Parity with the CPU", "",
           "| run | model | precision | check | max abs | max rel | tol | rel L2 | floor L2 | result |",
           "|---|---|---|---|---:|---:|---:|---:|---:|---|"]
    for pr in parity:
        rep = pr["report"]
        if not rep:
            md.append(f"| {pr['name']} | — | {pr['precision']} | (no result: step {pr['step']}) "
                      f"| | | | FAIL |")
            continue
        s = rep["config"]["sizes"]
        model = f"WRN-{s['depth']}-{s['width']} px{s['batch_px']} lab{s['batch_lab']} K{s['sgld_steps']}"
        for c in rep["checks"]:
            md.append(f"| {pr['name']} | {model} | {pr['precision']} | {c['check']} "
                      f"| {c['max_abs']:.2e} | {c['max_rel']:.2e} | {c['tol']:.0e} "
                      f"| {fmt(c.get('rel_l2'), '.2e')} | {fmt(c.get('floor_l2'), '.2e')} "
                      f"| {'PASS' if c['pass'] else 'FAIL'} |")
    failed = [n for n, s in steps.items() if s["exit"] != 0]
    md += ["", f"Steps: {len(steps)} run, {len(failed)} failed"
           + (f" ({', '.join(failed)})" if failed else "") + ".", ""]
    md += [f"- {n}" for n in doc["notes"]]
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
