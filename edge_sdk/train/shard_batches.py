"""Training batches streamed from shards (``pretrain --shards``): what the trainer asks of a data
set, for a stream.

Each training process (rank) reads its own shards through one ``torch.utils.data.DataLoader``
for the whole run, over :class:`~edge_sdk.data.shard_stream.WorkerStream` s, one per loader
worker and epoch; the loader's round robin hands the batch of step ``s`` from worker ``s mod N``. An epoch is
``windows // batch_size`` steps (the windows of every shard), as for the other data sets.
The checkpoint's ``last.json`` carries the shard position (:meth:`ShardBatches.state`: epoch,
batch, windows each worker handed out, the shard set's digest, world size, workers, buffer);
a resumed run checks it and replays to it (:meth:`ShardBatches.check_resume`), so its batches are
those the killed run would have trained on. Each rank writes the shards it opened, by epoch, to
``OUT/shard_reads/rank-R.json`` when it finishes.
"""

from __future__ import annotations

import itertools
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from edge_sdk.data.shard_stream import StreamPlan, WorkerStream, batches_before
from edge_sdk.data.shards import ShardReader, cut_window, open_shards
from edge_sdk.errors import DataError, EdgeSDKError
from edge_sdk.outputs import atomic_write_text, output_folder

__all__ = ["ShardSource", "ShardBatches", "check_resume"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardSource:
    """``--shards`` and how it is read: ``spec`` (folder, glob, brace pattern or URL), its
    ``index.json`` when not beside the shards, DataLoader ``workers`` per process (0: read in the
    training process; 0 and 1 give the same batches) and the shuffle ``buffer`` in windows."""

    spec: str
    index: str | None = None
    workers: int = 1
    buffer: int = 1000

    def __post_init__(self):
        if self.workers < 0 or self.buffer < 1:
            raise EdgeSDKError(
                f"--loader-workers {self.workers} / --shuffle-buffer {self.buffer}", "use --loader-workers >= 0 and --shuffle-buffer >= 1"
            )


class _RunWindows(IterableDataset):
    """One rank's batches from step ``first`` on, epoch after epoch: DataLoader worker ``i`` plays
    logical worker ``(i + first) mod N`` (its turns are the steps ``s`` with ``s mod N`` = it), skipping
    in the first epoch the batches it made before ``first``."""

    def __init__(self, plan: StreamPlan, first: int, steps_per_epoch: int, local: int):
        self.plan, self.first, self.spe, self.local = plan, first, steps_per_epoch, local

    def __iter__(self):
        info = get_worker_info()
        n = self.plan.workers
        w = ((info.id if info is not None else 0) + self.first) % n
        e0, j0 = divmod(self.first, self.spe)
        for epoch in itertools.count(e0):
            mine = batches_before(w, self.spe, n, epoch * self.spe)
            skip = batches_before(w, j0, n, epoch * self.spe) if epoch == e0 else 0
            yield from itertools.islice(WorkerStream(self.plan, epoch, w).batches(self.local, skip), mine - skip)


class ShardBatches:
    """The data set the trainer reads when given shards: ``len`` (windows), :meth:`batch` (this
    rank's share of a step's batch), the checkpoint's shard position, and a few example windows
    (``data[i]``, for the map offset and the heatmaps)."""

    def __init__(self, source: ShardSource | str, spec, batch_size: int, seed: int, rank: int, world: int, dev, out: Path):
        source = ShardSource(source) if isinstance(source, str) else source
        self.source, self.dev, self.out, self.rank = source, dev, Path(out), rank
        self.shards = open_shards(source.spec, source.index)
        self.contract = spec.contract()
        self.shards.check_contract(self.contract)
        self.plan = StreamPlan(self.shards, seed, rank, world, max(1, source.workers), source.buffer, self.contract)
        self.local = batch_size // world
        self.steps_per_epoch = max(1, self.shards.windows // batch_size)
        self._it, self._next, self._examples = None, None, None
        self.reads: dict[int, list[str]] = {}
        log.info(
            "rank %d of %d: %d shards, %d windows, %d steps an epoch", rank, world, len(self.shards.urls), self.shards.windows, self.steps_per_epoch
        )

    def __len__(self) -> int:
        return self.shards.windows

    def set_epoch(self, epoch: int) -> None:
        pass  # the epoch is the step's (batch)

    def set_k(self, k: int) -> None:
        pass  # real clips hold what they hold

    def batch(self, step: int) -> tuple[int, dict[str, torch.Tensor]]:
        """The epoch of ``step`` and this rank's windows of its batch, on the training device."""
        if self._next != step:
            self._open(step)
        b = next(self._it)
        self._next = step + 1
        epoch = step // self.steps_per_epoch
        seen = self.reads.setdefault(epoch, [])
        seen += [s for s in dict.fromkeys(b["shards"]) if s not in seen]
        return epoch, {"image": torch.as_tensor(b["image"]).to(self.dev).float(), "wave": torch.as_tensor(b["wave"]).to(self.dev)}

    def _open(self, first: int) -> None:
        self._stop()
        data = _RunWindows(self.plan, first, self.steps_per_epoch, self.local)
        n = self.source.workers
        if n == 0:
            self._it = iter(data)
        else:  # a generator of its own: making the loader draws no number from torch's (re-seeded each step)
            loader = DataLoader(data, batch_size=None, num_workers=n, generator=torch.Generator(), prefetch_factor=4)
            self._it = iter(loader)
        self._next = first

    def _stop(self) -> None:
        self._it, self._next = None, None  # a DataLoader iterator stops its workers when dropped

    def state(self, step: int) -> dict:
        """The shard position after ``step`` steps, for ``checkpoints/last.json``."""
        epoch, j = divmod(step, self.steps_per_epoch)
        p = self.plan
        return {
            "spec": self.source.spec,
            "digest": self.shards.digest(),
            "world": p.world,
            "workers": p.workers,
            "buffer": p.buffer,
            "local_batch": self.local,
            "epoch": epoch,
            "batch": j,
            "windows_read_per_worker": [self.local * batches_before(w, j, p.workers, step - j) for w in range(p.workers)],
        }

    def examples(self, n: int = 64) -> list[dict]:
        """Up to ``n`` windows spread over the first shards' clips (the index's order), for plots."""
        if self._examples is None:
            self._examples = []
            for s in range(min(8, len(self.shards.urls))):
                reader = ShardReader(self.shards, s)
                try:
                    for frames in self.shards.frames(s):
                        clip = reader.read()
                        for k in np.linspace(0, frames - 1, min(8, frames)).astype(int):
                            self._examples.append(cut_window(clip, int(k), self.contract))
                finally:
                    reader.close()
                if len(self._examples) >= n:
                    break
        return self._examples[:n]

    def __getitem__(self, i: int) -> dict:
        ex = self.examples()
        return ex[i % len(ex)]

    def close(self) -> None:
        """Stop the loader; write the shards this rank opened, by epoch."""
        self._stop()
        folder = output_folder(self.out / "shard_reads", None)
        record = {"rank": self.rank, "world": self.plan.world, "workers": self.plan.workers, "epochs": {str(e): s for e, s in self.reads.items()}}
        atomic_write_text(folder / f"rank-{self.rank}.json", json.dumps(record, indent=1))


def check_resume(state: dict | None, data) -> None:
    """Refuse to resume a run from other data than it trained on: shards for a run that had none (or
    the reverse), other shards, another world size, worker count or buffer (the batches would differ)."""
    shards = isinstance(data, ShardBatches)
    if state is None and not shards:
        return
    if state is None:
        raise DataError("this run was trained without --shards", "resume it with the data it was trained on (leave out --shards)")
    if not shards:
        raise DataError(f"this run was trained on --shards {state.get('spec')}", f"resume it with --shards {state.get('spec')}")
    now = data.state(0)
    for key, flag in (("digest", "--shards"), ("world", "processes (torchrun --nnodes x --nproc-per-node)"), ("workers", "--loader-workers"),
                      ("buffer", "--shuffle-buffer")):  # fmt: skip
        if state.get(key) != now[key]:
            was = state.get("spec") if key == "digest" else state.get(key)
            raise DataError(
                f"this run was trained with other {flag} ({key} {state.get(key)} then, {now[key]} now)",
                f"resume with the same {flag} as before ({was}), or start a new --out folder",
            )
