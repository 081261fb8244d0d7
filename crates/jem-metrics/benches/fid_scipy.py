"""pytorch-fid's route for the FID benchmark: np.cov, then calculate_frechet_distance
(scipy.linalg.sqrtm). Prints the value and the time in the format benches/fid.rs reads."""
import sys
import time

import numpy as np
from pytorch_fid.fid_score import calculate_frechet_distance

a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
t0 = time.perf_counter()
mu1, s1 = np.mean(a, axis=0), np.cov(a, rowvar=False)
mu2, s2 = np.mean(b, axis=0), np.cov(b, rowvar=False)
t1 = time.perf_counter()
fid = calculate_frechet_distance(mu1, s1, mu2, s2)
t2 = time.perf_counter()
print(f"FID {fid:.6f}  stats {t1 - t0:.2f} s + distance {t2 - t1:.2f} s = {t2 - t0:.2f} s")
