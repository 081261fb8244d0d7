#!/bin/bash
# The PyTorch side of `cargo xtask bench` on a fresh machine: a virtual environment with the
# versions BENCHMARKS.md's measurements used (torch for (a)-(e), scikit-learn for (e)'s
# reference script, pytorch-fid for (f)). PyPI only; the CUDA wheels are large but the
# CPU is what they time. Usage: bash bench/setup-torch.sh [DIR]   (default: ../torchenv)
set -euo pipefail
dir=${1:-../torchenv}
python3 -m venv "$dir"
"$dir/bin/pip" install -q torch==2.15.0 torchvision==0.29.2 numpy scipy scikit-learn pillow
# without its dependencies, so that it cannot move the torch pinned above
"$dir/bin/pip" install -q --no-deps pytorch-fid==0.3.0
"$dir/bin/python" -c 'import torch, sklearn, pytorch_fid.inception; print("torch", torch.__version__)'
echo "ready: cargo xtask bench --python $dir/bin/python --only a,b,c,d,e,f"
