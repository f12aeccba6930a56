"""The windows one loader worker of one rank reads from shards: a pure function of (seed, epoch,
rank, world size, worker, workers), so a killed run resumes exactly.

Epoch ``e`` orders all shards by a permutation drawn from ``(seed, e)``; rank ``r`` of ``W``
takes every ``W``-th of them from position ``r`` (ranks of every node: nodes never read the same
shard in an epoch), and its worker ``w`` of ``N`` every ``N``-th of those. A worker streams its
shards' clips in order (when it runs out within the epoch it goes round its shards again, in a
fresh order: every rank must take the same number of steps, whatever its shards hold), each clip's
frames as window descriptors ``(clip, k)`` into a shuffle buffer of ``buffer`` windows
(WebDataset's ``shuffle``: once full, each new window swaps out a random one), from a generator
seeded by ``(seed, e, r, w)``.

The buffer holds descriptors, not pictures: a clip's audio and JPEG bytes are kept while any of
its windows is pending, and a window is decoded only when it leaves the buffer. So resuming
after ``m`` windows replays the descriptors from the shard index alone (no reading), then reads
only the clips still pending (the shards they are in, from the first such), and goes on. The
rank's batch of step ``s`` comes from worker ``s mod N`` (a DataLoader's round robin), so the
windows each worker has handed out follow from the step. Torch-free.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from edge_sdk.data.shards import ClipData, ShardReader, ShardSet, cut_window
from edge_sdk.errors import DataError

__all__ = ["StreamPlan", "ClipRef", "WorkerStream", "batches_before"]


@dataclass(frozen=True, eq=False)
class StreamPlan:
    """Who reads what: the shards, the seed, this rank of ``world``, ``workers`` loader workers per rank,
    the shuffle buffer (in windows) and the model contract the windows are cut for."""

    shards: ShardSet
    seed: int
    rank: int
    world: int
    workers: int
    buffer: int
    contract: object

    def __post_init__(self):
        n = len(self.shards.urls)
        if n < self.world:
            raise DataError(
                f"{n} shard(s) for {self.world} training processes: every process reads shards of its own",
                f"re-shard into at least {self.world} shards (edge-sdk shard --clips-per-shard or --shard-mb smaller)",
            )
        if not 1 <= self.workers <= n // self.world:
            raise DataError(
                f"{self.workers} loader workers per process, {n // self.world} shard(s) each", "use fewer --loader-workers, or more shards"
            )

    def rank_shards(self, epoch: int) -> list[int]:
        """This rank's shards in epoch ``epoch`` (indices into ``shards``), in reading order."""
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.shards.urls))
        return [int(i) for i in order[self.rank :: self.world]]

    def worker_shards(self, epoch: int, worker: int) -> list[int]:
        return self.rank_shards(epoch)[worker :: self.workers]


def batches_before(worker: int, batch: int, workers: int, offset: int = 0) -> int:
    """How many of an epoch's first ``batch`` batches worker ``worker`` made, when batch j comes from worker
    ``(offset + j) mod workers`` (``offset``: the epoch's first step)."""
    first = (worker - offset) % workers
    return max(0, -(-(batch - first) // workers))


@dataclass(eq=False)
class ClipRef:
    """One clip in a worker's stream: which visit of which shard, its place there, its frames, and how many of its windows left the buffer."""

    order: int
    visit: int
    shard: int
    clip: int
    frames: int
    out: int = 0
    data: ClipData | None = None


class _Buffer:
    """WebDataset's shuffle over descriptors: fill to ``size``, then each push swaps out a random one."""

    def __init__(self, size: int, rng: np.random.Generator):
        self.size, self.rng, self.items, self.draws = size, rng, [], iter(())

    def push(self, item):
        if len(self.items) < self.size:
            self.items.append(item)
            return None
        u = next(self.draws, None)
        if u is None:  # random numbers in blocks: a replay of millions of windows stays fast
            self.draws = iter(self.rng.random(4096).tolist())
            u = next(self.draws)
        j = int(u * len(self.items))
        out, self.items[j] = self.items[j], item
        return out


class WorkerStream:
    """Worker ``worker``'s windows in epoch ``epoch`` of ``plan``: :meth:`batches` yields them
    cut and stacked, after skipping the ones an earlier run already trained on."""

    def __init__(self, plan: StreamPlan, epoch: int, worker: int):
        self.plan, self.epoch, self.worker = plan, epoch, worker
        held = sum(sum(plan.shards.frames(i)) for i in plan.worker_shards(epoch, worker))  # a small set: at most one round of it
        self.buffer = _Buffer(min(plan.buffer, held), np.random.default_rng([plan.seed, epoch, plan.rank, worker, 1]))
        self.pending: dict[int, ClipRef] = {}  # clips entered and not fully handed out, by order
        self.reading = False  # False while replaying descriptors without data
        self.reader: ShardReader | None = None
        self.reader_visit = -1
        self.opened: list[str] = []  # shards opened since the last batch

    def clips(self) -> Iterator[ClipRef]:
        """Every clip this worker reads in the epoch, in order (its shards, then again reshuffled, ...)."""
        mine, order, visit = self.plan.worker_shards(self.epoch, self.worker), 0, 0
        for p in itertools.count():
            rng = np.random.default_rng([self.plan.seed, self.epoch, self.plan.rank, self.worker, 2, p])
            for s in mine if p == 0 else [mine[i] for i in rng.permutation(len(mine))]:
                for c, frames in enumerate(self.plan.shards.frames(s)):
                    yield ClipRef(order, visit, s, c, frames)
                    order += 1
                visit += 1

    def descriptors(self) -> Iterator[tuple[ClipRef, int]]:
        """(clip, frame) of each window as it leaves the shuffle buffer."""
        for ref in self.clips():
            self.pending[ref.order] = ref
            if self.reading:
                self._load(ref)
            for k in range(ref.frames):
                out = self.buffer.push((ref, k))
                if out is not None:
                    out[0].out += 1
                    if out[0].out == out[0].frames:
                        del self.pending[out[0].order]
                    yield out

    def _load(self, ref: ClipRef) -> None:
        """Read ``ref``'s clip: on from the open shard, or a new read of its shard (refs come in stream order)."""
        if ref.visit != self.reader_visit:
            self._close_reader()
            self.reader, self.reader_visit = ShardReader(self.plan.shards, ref.shard), ref.visit
            self.opened.append(self.plan.shards.names[ref.shard])
        while self.reader.next_clip < ref.clip:
            self.reader.skip()
        ref.data = self.reader.read()
        if self.reader.next_clip == len(self.plan.shards.rows[ref.shard]["clips"]):
            self.reader.verify()
            self._close_reader()

    def _close_reader(self) -> None:
        if self.reader is not None:
            self.reader.close()
        self.reader, self.reader_visit = None, -1

    def windows(self, skip: int = 0) -> Iterator[dict]:
        """The windows after the first ``skip`` (replayed from the index, unread); decoded as they leave the buffer."""
        stream = self.descriptors()
        for _ in range(skip):
            next(stream)
        self.reading = True
        for ref in sorted(self.pending.values(), key=lambda r: r.order):  # the clips a window is still pending of
            self._load(ref)
        for ref, k in stream:
            window = cut_window(ref.data, k, self.plan.contract, uint8=True)
            if ref.out == ref.frames:
                ref.data = None
            yield window

    def batches(self, size: int, skip_batches: int = 0) -> Iterator[dict]:
        """Batches of ``size`` windows (``image``, ``wave`` stacked; ``shards`` opened meanwhile), after ``skip_batches``."""
        windows = self.windows(skip_batches * size)
        while True:
            items = list(itertools.islice(windows, size))
            opened, self.opened = self.opened, []
            yield {
                "image": np.stack([w["image"] for w in items]),  # uint8: a quarter of the bytes between processes
                "wave": np.stack([w["wave"] for w in items]),
                "shards": opened,
                "worker": self.worker,
            }
