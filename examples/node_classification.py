"""gCooL with POT on your own graph: any PyG ``Data`` with ``x`` and ``edge_index`` (``y`` to score)."""
import torch
import torch.nn.functional as F
from torch_geometric.data import Data
from torch_geometric.utils import stochastic_blockmodel_graph

from contrastkit.core.probes import random_split, torch_lr_probe
from contrastkit.core.trainer import Trainer
from contrastkit.graphcl.gcool import GCooL, GCooLConfig

# Your graph goes here; this one has 3 planted communities of 200 nodes and noisy features.
torch.manual_seed(0)
y = torch.arange(3).repeat_interleave(200)
p = torch.full((3, 3), 0.004).fill_diagonal_(0.04)
data = Data(x=torch.randn(600, 32) + 0.5 * F.one_hot(y, 32), y=y,
            edge_index=stochastic_blockmodel_graph([200, 200, 200], p))

config = GCooLConfig(dataset="mine", hidden_channels=64, projection_channels=64, epochs=100,
                     lr=1e-3, num_communities=3, stride=200, pot=True, pot_kappa=0.3)
method = GCooL(config, in_channels=data.num_features)
# The loss on the progress bar rises over the first 40 steps although the node term falls: the
# community terms (DeCA is negative) fade out on gCooL's schedule (weight 1 - step / (0.2 stride)).
Trainer(config.epochs, seed=0).fit(method, [data])

method.eval()
embeddings = method.embed(data)                      # [N, hidden_channels]
train, val, test = random_split(data.num_nodes, 0.1, 0.1, seed=0)
print("linear probe:", torch_lr_probe(embeddings, y, train, val, test))
print("community sizes:", torch.bincount(method.communities(data), minlength=3).tolist())
