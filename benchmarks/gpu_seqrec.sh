#!/usr/bin/env bash
# One prepared run of the sequential-recommendation runs (issue #6) for a session that is lent a
# GPU: benchmarks/seqrec.py on CUDA for $METHODS x $DATASETS (default: MCLRec on Sports), resumed
# from the checkpoints in $CKPT when they are there (CPU checkpoints resume on the GPU), for at
# most $MINUTES of training per run (the run stops after the epoch that crosses it, evaluates
# the selected epoch on the test split and writes benchmarks/results/seqrec_runs/*.json).
# The GPU machine has neither ../shared nor network: carry the data files and the checkpoints in
# folders named in .git/info/exclude:
#   mkdir -p .device/data/sequence && cp ../shared/data/sequence/{Beauty,Sports_and_Outdoors}.txt \
#       .device/data/sequence/ && mkdir -p .device/seqrec && cp -r .gl/seqrec/mclrec-sports-seed2020 .device/seqrec/
#   CONTRASTKIT_DATA=.device/data MINUTES=7 bash benchmarks/gpu_seqrec.sh     # carry: .device
# The checkpoints come back under $OUT/seqrec/ (copy them back to .gl/seqrec to go on on the CPU);
# time per epoch in the table then averages CPU and GPU epochs, the log.jsonl has each epoch's.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${OUT:-benchmarks/results}"
CKPT="${CKPT:-.device/seqrec}"
mkdir -p "$OUT" "$CKPT"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" 2>&1 \
    | tee "$OUT/gpu_seqrec_env.log"
# shellcheck disable=SC2086
timeout "${SEQREC_TIMEOUT:-540}" python3 benchmarks/seqrec.py --methods ${METHODS:-mclrec} \
    --datasets ${DATASETS:-sports} --device cuda --out "$CKPT" --resume --checkpoint-every 1 \
    --max-minutes "${MINUTES:-7}" --seed "${SEED:-2020}" 2>&1 | tail -n 20
if [ "$OUT" != "benchmarks/results" ]; then
    mkdir -p "$OUT/seqrec_runs" "$OUT/seqrec"
    cp benchmarks/results/seqrec_runs/*.json "$OUT/seqrec_runs/" 2>/dev/null
    cp benchmarks/results/seqrec.json benchmarks/results/seqrec.md "$OUT"/ 2>/dev/null
    cp -r "$CKPT"/. "$OUT/seqrec/"
fi
