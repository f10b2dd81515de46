#!/usr/bin/env bash
# One prepared run of the vision GPU checks (issue #9), for a session that is lent a GPU:
#   1. benchmarks/vision_throughput.py: one SimCLR+DCL training step (ResNet-18, two 32x32 views,
#      batch 512, bf16, channels_last, compile) with our on-device augmentation vs a torchvision
#      DataLoader pipeline (skipped when torchvision is absent), about 2 minutes;
#   2. raw pixels, random init and SimCLR + DCL with ResNet-18 on Fashion-MNIST under the kNN
#      protocol (k = 200, t = 0.1), $EPOCHS epochs (default 100) on all 60,000 train images.
# Fashion-MNIST is not on the GPU machine: copy the four idx .gz files beside the repository and
# point CONTRASTKIT_DATA at them, e.g. (folder named in .git/info/exclude, passed in `carry`):
#   mkdir -p .device/data/image/fashion-mnist
#   cp /usr/share/datasets/fashion-mnist/*.gz .device/data/image/fashion-mnist/
#   CONTRASTKIT_DATA=.device/data EPOCHS=100 bash benchmarks/gpu_vision.sh
# Results land in benchmarks/results/ and, when $OUT is set (the device tool), are copied there.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${OUT:-benchmarks/results}"
EPOCHS="${EPOCHS:-100}"
mkdir -p "$OUT"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" \
    2>&1 | tee "$OUT/gpu_vision_env.log"
timeout 200 python3 benchmarks/vision_throughput.py --device cuda --batch-size 512 --amp bf16 \
    --channels-last --compile --workers 15 --warmup 10 --steps 50 2>&1 | tail -n 14
timeout "${VISION_TIMEOUT:-420}" python3 benchmarks/vision_fashion_mnist.py --backbone resnet18 \
    --epochs "$EPOCHS" --subset 0 --batch-size 512 --device cuda \
    --methods raw_pixels random_init simclr_dcl --name vision_fashion_mnist_resnet18 \
    --set amp=bf16 channels_last=true deterministic=false data_on_device=true \
    2>&1 | tail -n 20
if [ "$OUT" != "benchmarks/results" ]; then
    cp benchmarks/results/vision_throughput.* benchmarks/results/vision_fashion_mnist_resnet18.* \
        "$OUT"/ 2>/dev/null
fi
