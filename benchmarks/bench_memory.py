"""Memory: evaluation works batch by batch, and a 49k training run stays under 1.5x its data.

    python benchmarks/bench_memory.py

1. Evaluation of 10,000 images (3072-1024-512-10, float32): the peak of NumPy
   allocations (tracemalloc) beyond the input array, against the size of one
   batch of activations.
2. A child process makes the ``49k`` split of a CIFAR-shaped data set, drops the raw
   pixels as a run does, trains one epoch of 3072-50-10 and evaluates the test set;
   its peak resident memory (ru_maxrss) is compared with the size of the float32
   training array (49,000 x 3072 x 4 bytes = 602 MB).
"""

from __future__ import annotations

import subprocess
import sys
import tracemalloc

import numpy as np

CHILD = r"""
import resource, numpy as np
from mlplab.config import Config
from mlplab.data import RawDataset, make_splits
from mlplab.nn.network import Network
from mlplab.train.trainer import Trainer
rng = np.random.default_rng(0)
raw = RawDataset(x_train=rng.integers(0, 256, (50000, 3072), dtype=np.uint8),
                 y_train=rng.integers(0, 10, 50000), x_test=rng.integers(0, 256, (10000, 3072),
                 dtype=np.uint8), y_test=rng.integers(0, 10, 10000),
                 classes=tuple("abcdefghij"), train_batch=None, source="synthetic")
s = make_splits(raw, "49k", rng)
del raw  # as mlplab.train.run does: the splits hold what the run needs
cfg = Config(name="m", split="49k", hidden=[50], lam=0.01, n_s=980, record_every=490).validate()
net = Network.build(3072, [50], 10, rng=rng)
Trainer(net, cfg, rng, progress=False).fit(s.x_train, s.y_train, s.x_val, s.y_val,
                                           max_updates=490)
net.evaluate(s.x_test, s.y_test)  # the test set, standardised only now
print(s.x_train.nbytes, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def main() -> None:
    from mlplab.nn.network import Network

    rng = np.random.default_rng(0)
    net = Network.build(3072, [1024, 512], 10, rng=rng)
    X = rng.standard_normal((10_000, 3072), dtype=np.float32)
    y = rng.integers(0, 10, 10_000)
    batch = 1000
    one_batch = batch * (3072 + 1024 + 512 + 10) * 4  # input slice + all activations
    net.evaluate(X[:batch], y[:batch])  # warm-up
    tracemalloc.start()
    net.evaluate(X, y, batch_size=batch)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"evaluation of 10,000 images: peak NumPy allocation {peak / 1e6:.1f} MB; one batch "
        f"of {batch} activations (input + every layer) = {one_batch / 1e6:.1f} MB"
    )
    out = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, check=True
    ).stdout.split()
    train_bytes, rss = int(out[0]), int(out[1])
    print(
        f"49k training run: peak RSS {rss / 1e6:.0f} MB = {rss / train_bytes:.2f} x the float32 "
        f"training array ({train_bytes / 1e6:.0f} MB)"
    )


if __name__ == "__main__":
    main()
