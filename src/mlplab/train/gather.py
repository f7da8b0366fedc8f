"""Mini-batches gathered into preallocated buffers, optionally one update ahead.

The trainer's rows of update ``t`` are ``X[perm[b*B:(b+1)*B]]``; gathering them into one of
two alternating buffers avoids a fresh batch array per update. With ``ahead=True`` a helper
thread gathers the next update's rows while the current one computes (NumPy releases the
GIL inside ``np.take``). It only moves data: no number changes either way.

Whether to gather ahead is the caller's decision (:func:`gather_ahead`), not the loop's: it
pays when a core is free beside the BLAS threads.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np


def gather_ahead(threads: int) -> bool:
    """Gather the next batch in a helper thread when training with ``threads`` BLAS threads?

    Only with 1: the second core is then free. With 2 the helper competes with the BLAS
    threads (3072-50-10: 0.35 s per epoch gathering in the training thread, 0.38 s ahead;
    with 1 BLAS thread 0.43 and 0.42 s).
    """
    return threads == 1


class BatchGather:
    """Mini-batches of ``X`` gathered into two alternating buffers of ``B`` rows.

    Rows are gathered ahead only when they are known, that is within an epoch (the next
    epoch's permutation is drawn from the run's generator only when it starts).
    """

    def __init__(self, X: np.ndarray, B: int, *, ahead: bool = False) -> None:
        self.X = X
        self.ahead = ahead
        self.buffers = [np.empty((B, X.shape[1]), dtype=X.dtype) for _ in range(2)]
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="mlplab-gather") if ahead else None
        self.pending: tuple[int, Future[None]] | None = None

    def _gather(self, idx: np.ndarray, out: np.ndarray) -> None:
        # mode="clip": with the default "raise", numpy gathers into a fresh temporary and
        # copies it into ``out`` (twice the traffic plus an allocation per step); indices from
        # a permutation are always in range.
        np.take(self.X, idx, axis=0, out=out, mode="clip")

    def take(self, step: int, idx: np.ndarray) -> np.ndarray:
        """The rows ``idx`` of update ``step``, in that update's buffer."""
        out = self.buffers[step % 2]
        if self.pending is not None and self.pending[0] == step:
            self.pending[1].result()
        else:
            self._gather(idx, out)
        self.pending = None
        return out

    def prefetch(self, step: int, idx: np.ndarray) -> None:
        """Start gathering the rows ``idx`` of update ``step`` (the next one), if gathering
        ahead."""
        if self.pool is not None:
            self.pending = (step, self.pool.submit(self._gather, idx, self.buffers[step % 2]))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
