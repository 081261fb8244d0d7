#!/usr/bin/env bash
# The GPU check of sadajem, one command on the GPU machine, from the repository root:
#
#     bash gpu-check/run.sh
#
# `cargo xtask gpu-check` makes the folder gpu-check/ (the stripped CUDA `jem`, gzipped, and
# these scripts). This runs, each step in its own process (sized for about 5 minutes on an
# H200; not yet timed there):
#   1. parity of the GPU with the CPU (`jem bench parity`): a WRN forward/backward and one
#      SADA-JEM iteration, WRN-16-4 and WRN-28-10, fp32 and TF32: max abs / rel errors, PASS/FAIL;
#   2. `jem bench` on the GPU, WRN-28-10 with the paper's batches (64 p(x) and SGLD, 128
#      labelled, K = 5, SAM rho 0.2): classifier step, SGLD step, full iteration; fp32, TF32;
#   3. the same measures in PyTorch eager (torch_bench.py): fp32, TF32, bf16 autocast;
#   4. peak GPU memory of each step (nvidia-smi sampled every 100 ms, minus the memory in use
#      before the step; PyTorch's max_memory_allocated / reserved as well);
#   5. results.json, results.md (the table, the parity errors, hours per 200-epoch CIFAR-10
#      run) and gpu-check.log, in $OUT if set, else gpu-check/results/.
#
# Environment: DEVICE (cuda:0), PYTHON (python3: the one with torch), JEM (a jem binary
# instead of gpu-check/jem.gz), ITERS / WARMUP (5 / 2), STEP_TIMEOUT (seconds per step, 240),
# TINY=1 (tiny models: a quick check of this script, e.g. with DEVICE=cpu and a CPU jem),
# DRY_RUN=1 (print the steps, run none, still write the (empty) report).
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DEVICE=${DEVICE:-cuda:0}
PY=${PYTHON:-python3}
TINY=${TINY:-0}
DRY=${DRY_RUN:-0}
STEP_TIMEOUT=${STEP_TIMEOUT:-240}
RESULTS=${OUT:-$HERE/results}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
mkdir -p "$RESULTS"

main() {
echo "# gpu-check: device=$DEVICE tiny=$TINY dry=$DRY work=$WORK results=$RESULTS $(date -u +%FT%TZ)"

# --- the binary and its CUDA libraries -----------------------------------------------------
if [ -n "${JEM:-}" ]; then
  jem=$JEM
else
  jem=$WORK/jem
  if command -v gzip > /dev/null; then
    gzip -dc "$HERE/jem.gz" > "$jem"
  else
    "$PY" -c 'import gzip, shutil, sys; shutil.copyfileobj(gzip.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$HERE/jem.gz" "$jem"
  fi && chmod +x "$jem" || echo "!! cannot unpack $HERE/jem.gz"
fi
GPU=0
if [[ $DEVICE == cuda* ]]; then
  IDX=${DEVICE#cuda}; IDX=${IDX#:}; IDX=${IDX:-0}
  command -v nvidia-smi > /dev/null && GPU=1
  # the CUDA 13 runtime, cuBLAS, cuRAND (and cuDNN for a --cudnn build) that jem links: the
  # pip wheels beside torch, else the toolkit's folders
  libdirs=$("$PY" - <<'PYEOF' 2>/dev/null
import glob, os, site
roots = site.getsitepackages() + [site.getusersitepackages()]
want = ("libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13", "libcurand.so.10",
        "libcudnn.so.9")
found = []
for r in roots:
    for w in want:
        for f in glob.glob(os.path.join(r, "nvidia", "**", w), recursive=True):
            d = os.path.dirname(f)
            if d not in found:
                found.append(d)
print(":".join(found))
PYEOF
)
  export LD_LIBRARY_PATH="${libdirs:+$libdirs:}/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "# LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
fi
if [ -x "$jem" ]; then
  missing=$(ldd "$jem" 2>&1 | grep "not found")
  [ -n "$missing" ] && echo "!! jem misses libraries (its steps will fail):" && echo "$missing"
  "$jem" --version
fi
if [ $GPU = 1 ]; then
  nvidia-smi -i "$IDX" --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$WORK/gpu.txt"
fi
"$PY" -c 'import torch; print("# torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'

# --- one step: a command, its time, its exit status and its peak GPU memory ---------------
step() {
  local name=$1; shift
  echo; echo "==> $name: $*"
  [ "$DRY" = 1 ] && return 0
  local smi= base=
  if [ $GPU = 1 ]; then
    base=$(nvidia-smi -i "$IDX" --query-gpu=memory.used --format=csv,noheader,nounits | head -1)
    nvidia-smi -i "$IDX" --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 \
      > "$WORK/smi-$name.txt" 2> /dev/null &
    smi=$!
  fi
  local t0=$SECONDS
  timeout "$STEP_TIMEOUT" "$@"
  local rc=$?
  if [ -n "$smi" ]; then
    kill "$smi" 2> /dev/null; wait "$smi" 2> /dev/null
    local peak
    peak=$(sort -n "$WORK/smi-$name.txt" | tail -1)
    echo "$base ${peak:-$base}" > "$WORK/mem-$name.txt"
    echo "    peak GPU memory: $(( ${peak:-$base} - base )) MiB above the $base MiB in use before"
  fi
  echo "$name $rc $((SECONDS - t0))" >> "$WORK/steps.txt"
  echo "<== $name: exit $rc, $((SECONDS - t0)) s"
}

if [ "$TINY" = 1 ]; then
  SIZES=(--depth 10 --width 1 --batch-px 4 --batch-lab 8 --sgld-steps 2 --buffer-size 64)
  TIMING=(--iters "${ITERS:-2}" --warmup "${WARMUP:-1}")
  PARITY_A=(--depth 10 --width 1 --batch-px 4 --batch-lab 8 --sgld-steps 2 --buffer-size 64)
  PARITY_B=(--depth 10 --width 2 --batch-px 2 --batch-lab 4 --sgld-steps 1 --buffer-size 16)
else
  SIZES=(--depth 28 --width 10 --batch-px 64 --batch-lab 128 --sgld-steps 5 --buffer-size 10000)
  TIMING=(--iters "${ITERS:-5}" --warmup "${WARMUP:-2}")
  PARITY_A=(--depth 16 --width 4 --batch-px 32 --batch-lab 64 --sgld-steps 5 --buffer-size 1000)
  PARITY_B=(--depth 28 --width 10 --batch-px 8 --batch-lab 16 --sgld-steps 2 --buffer-size 100)
fi
TORCH_DEVICE=$DEVICE
[[ $DEVICE == cuda* ]] && TORCH_DEVICE=cuda:${IDX}

# 1. parity with the CPU
for prec in fp32 tf32; do
  flag=(); [ $prec = tf32 ] && flag=(--tf32)
  step "parity-a-$prec" "$jem" bench parity --device "$DEVICE" --reference cpu "${PARITY_A[@]}" "${flag[@]}" --out "$WORK/parity-a-$prec.json"
  step "parity-b-$prec" "$jem" bench parity --device "$DEVICE" --reference cpu "${PARITY_B[@]}" "${flag[@]}" --out "$WORK/parity-b-$prec.json"
done
# 2. ours, 3. torch: one process per measure, so that each peak memory is that measure's
for m in clf_step sgld_step sadajem_iter; do
  for prec in fp32 tf32; do
    flag=(); [ $prec = tf32 ] && flag=(--tf32)
    step "ours-$prec-$m" "$jem" bench --device "$DEVICE" --measure $m "${SIZES[@]}" "${TIMING[@]}" "${flag[@]}" --out "$WORK/ours-$prec-$m.json"
  done
  for prec in fp32 tf32 bf16; do
    step "torch-$prec-$m" "$PY" "$HERE/torch_bench.py" --device "$TORCH_DEVICE" --measure $m --precision $prec "${SIZES[@]}" "${TIMING[@]}" --json "$WORK/torch-$prec-$m.json"
  done
done

# 4. the report
echo
"$PY" "$HERE/report.py" --work "$WORK" --out "$RESULTS" --device "$DEVICE" --tiny "$TINY"
echo "# results: $RESULTS/results.md, $RESULTS/results.json, $RESULTS/gpu-check.log"
# exit status: 1 when a step failed (a parity FAIL included)
! awk '$2 != 0 { bad = 1 } END { exit !bad }' "$WORK/steps.txt" 2> /dev/null
}

main 2>&1 | tee "$RESULTS/gpu-check.log"
