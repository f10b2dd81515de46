#!/usr/bin/env bash
# One prepared run of the GPU-only checks, for a session that is lent a GPU (about 8 minutes on
# an H100/H200; everything it needs is synthetic, so nothing has to be carried):
#   1. the fused-kernel tests on CUDA (float32, bfloat16, TF32 against the float64 reference);
#   2. benchmarks/loss_kernel.py: dense / blockwise / fused GRACE loss, forward + backward, at
#      N = 19,717, 50,000, 169,343, d = 128, in TF32 and in bfloat16 (the issue's table);
#   3. GRACE and gCooL end to end on the 169,343-node SBM graph, fused vs blockwise loss.
# Results land in benchmarks/results/ and, when $OUT is set (the device tool), are copied there.
#
#   bash benchmarks/gpu_session.sh            # from the repository root, with PyTorch + Triton
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${OUT:-benchmarks/results}"
mkdir -p "$OUT"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__,
            torch.cuda.get_device_name())" 2>&1 | tee "$OUT/gpu_env.log"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_fused_kernel.py 2>&1 \
    | tail -n 30 | tee "$OUT/gpu_tests.log"
timeout 170 python3 benchmarks/loss_kernel.py --device cuda --dtype tf32 --repeats 3 \
    --timeout 90 --name loss_kernel 2>&1 | tail -n 12
timeout 130 python3 benchmarks/loss_kernel.py --device cuda --dtype bfloat16 --repeats 3 \
    --timeout 60 --name loss_kernel_bf16 2>&1 | tail -n 12
timeout 150 python3 benchmarks/loss_kernel.py --device cuda --dtype tf32 --variants --grace \
    --gcool --sizes 169343 --epochs 3 --timeout 70 --name loss_kernel_end_to_end 2>&1 | tail -n 8
if [ "$OUT" != "benchmarks/results" ]; then
    cp benchmarks/results/loss_kernel*.json benchmarks/results/loss_kernel*.md "$OUT"/ 2>/dev/null
fi
