#!/usr/bin/env bash
# One prepared run of the graph GPU checks (issue #3), for a session that is lent a GPU:
#   1. benchmarks/gcn_propagation.py --device cuda: message passing vs sparse CSR GCN steps at
#      gCooL's Coauthor-CS / Amazon-Computers and GCA's Computers configurations (~1 minute);
#   2. gCooL_c at the official schedules (Computers 2,900 steps, Coauthor-CS 600 steps) for the
#      seeds in $SEEDS (default "0"), the paper's table's runs (README "gCooL").
# The GPU machine has neither ../shared nor network: carry the two graph folders (10 MB) in a
# folder named in .git/info/exclude and point CONTRASTKIT_DATA at it:
#   mkdir -p .device/data/graph && cp -r ../shared/data/graph/{amazon,coauthor} .device/data/graph/
#   CONTRASTKIT_DATA=.device/data SEEDS="0 1" bash benchmarks/gpu_graph.sh     # carry: .device
# Results land in benchmarks/results/ and, when $OUT is set (the device tool), are copied there.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export CONTRASTKIT_CACHE="${CONTRASTKIT_CACHE:-/tmp/contrastkit-cache}"
OUT="${OUT:-benchmarks/results}"
SEEDS="${SEEDS:-0}"
mkdir -p "$OUT"
python3 -c "import torch, torch_geometric as g; print('torch', torch.__version__, 'pyg',
            g.__version__, torch.cuda.get_device_name())" 2>&1 | tee "$OUT/gpu_graph_env.log"
timeout 150 python3 benchmarks/gcn_propagation.py --device cuda --steps 5 --timeout 60 \
    --name gcn_propagation_cuda 2>&1 | tail -n 8
# shellcheck disable=SC2086
timeout "${GCOOL_TIMEOUT:-380}" python3 benchmarks/graph_node_classification.py --device cuda \
    --runs gcool:cs gcool:computers --seeds $SEEDS --timeout 300 2>&1 | tail -n 12
if [ "$OUT" != "benchmarks/results" ]; then
    cp benchmarks/results/gcn_propagation_cuda.* benchmarks/results/graph_node_classification.* \
        "$OUT"/ 2>/dev/null
fi
