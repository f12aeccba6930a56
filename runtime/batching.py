"""Frames of many streams into one inference, and that inference: DeepStream's stream muxer
(``nvstreammux``: a batch goes when it is full or when its first frame has waited
``batched-push-timeout``) on a CPU, over the streams of :mod:`.stream`.

:class:`Batcher` forms a batch from the frames that are *ready* (their sound is complete, see
:meth:`~.stream.Stream.ready`): it goes when ``batch`` frames are ready, when every active
stream has one ready, or when the oldest ready frame arrived ``batch_wait_ms`` ago (the
latency bound), whichever comes first. Streams are served round-robin, one frame each per
round (a file read as fast as possible fills what is left), starting after the last one
served, so no stream waits behind the others twice. A stream that is slow, lost or dead
never holds a batch longer than the bound: it is not waited for once it stops delivering,
and a lost network camera rejoins the batches when its frames come again.

:func:`infer` runs one batch through the towers (one ``embed_both`` for every stream's frames,
or with ``audio_hop_ms`` the image tower for all and the audio tower for the frames whose
sound is due) and each frame's own stream's task, and returns the results.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from edge_sdk.runtime.clock import now_ns
from edge_sdk.runtime.frames import Result
from edge_sdk.runtime.stats import Stats
from edge_sdk.runtime.stream import Staged, Stream
from edge_sdk.runtime.tasks import Geometry

__all__ = ["Batcher", "Taken", "infer"]


@dataclass
class Taken:
    """A staged frame taken into a batch, with its stream."""

    stream: Stream
    staged: Staged
    taken_ns: int


class Batcher:
    """Forms batches across ``streams`` (see the module's docstring); :meth:`take` waits on the
    streams' shared bell, never on one stream."""

    def __init__(self, streams: list[Stream], batch: int, wait_ms: float, stop, bell):
        self.streams, self.batch, self.wait_ns = streams, batch, int(wait_ms * 1e6)
        self.stop, self.bell = stop, bell
        self.next = 0  # the stream served first in the next batch

    def take(self, timeout: float = 0.05) -> list[Taken]:
        """The next batch, or [] when none formed within ``timeout`` seconds (the caller then
        checks whether the streams ended)."""
        t_end = now_ns() + int(timeout * 1e9)
        while not self.stop.is_set():
            self.bell.clear()  # before looking: what arrives from now on rings it again
            now = now_ns()
            ready = {}
            for s in self.streams:
                s.stage(self.batch)
                n = s.ready(now)
                if n:
                    ready[s] = n
            wake = t_end
            if ready:
                oldest = min(s.staged[0].arrived_ns for s in ready)
                full = sum(ready.values()) >= self.batch
                everyone = all(s in ready for s in self.streams if s.active or s.staged)
                if full or everyone or now - oldest >= self.wait_ns:
                    return self._collect(ready, now)
                wake = min(wake, oldest + self.wait_ns)
            elif now >= t_end:
                return []
            for s in self.streams:
                due = s.due_ns()
                if due is not None:
                    wake = min(wake, due)
            self.bell.wait(max(wake - now, 200_000) / 1e9)
        return []

    def _collect(self, ready: dict[Stream, int], now: int) -> list[Taken]:
        """Round-robin from :attr:`next`: one frame from each ready stream, then more from those
        with several ready (a file), up to ``batch``."""
        k = len(self.streams)
        order = [self.streams[(self.next + i) % k] for i in range(k)]
        order = [s for s in order if s in ready]
        taken: list[Taken] = []
        left = dict(ready)
        last = None
        while len(taken) < self.batch and any(left.values()):
            for s in order:
                if left[s] and len(taken) < self.batch:
                    taken.append(Taken(s, s.staged.popleft(), now))
                    left[s] -= 1
                    last = s
        if last is not None:
            self.next = (self.streams.index(last) + 1) % k
        return taken


def _embed(towers, waves: list[np.ndarray], images: np.ndarray, fresh: list[int]):
    """Embeddings of a batch: audio [n, shifts, D] for the ``fresh`` items (None for the others),
    image embeddings and maps for all."""
    n = len(waves)
    counts = [len(w) for w in waves]
    if len(fresh) == n:
        audio, image_emb, image_map = towers.embed_both(np.concatenate(waves), images)
    else:  # audio_hop_ms: only the frames a hop apart get their sound embedded
        image_emb, image_map = towers.embed_image(images)
        audio = towers.embed_audio(np.concatenate([waves[i] for i in fresh])) if fresh else np.zeros((0, 1))
        counts = [counts[i] for i in fresh]
    parts = np.split(audio, np.cumsum(counts)[:-1]) if counts else []
    out: list = [None] * n
    for i, part in zip(fresh, parts):
        out[i] = part
    return out, image_emb, image_map


def infer(towers, contract, taken: list[Taken], stats: Stats, batch_wait: bool = False) -> list[Result]:
    """Results for a batch of frames of any streams (in ``taken``'s order): one inference for
    all of them, each frame's task on its own stream; each frame's preprocessing, inference and
    task times are its share of the batch's. CPU seconds of the inference thread's
    preprocessing and inference are counted in ``stats`` (``cpu_ms_preprocess``,
    ``cpu_ms_inference``); with ``batch_wait``, each frame's wait for its batch too."""
    n = len(taken)
    t_start = now_ns()
    waves, skews = [], []
    for t in taken:
        st = t.staged
        w, skew = t.stream.windows(st.frame)
        ready = st.ready_ns if st.ready_ns is not None else t.taken_ns
        t.stream.stats.times(queue=(t_start - st.origin) / 1e6, audio_wait=(ready - st.staged_ns) / 1e6)
        if batch_wait:  # how long it waited, ready, for others to join its batch
            t.stream.stats.time("batch_wait", (t.taken_ns - ready) / 1e6)
        waves.append(w)
        skews.append(skew)
    c0, t0 = time.thread_time(), time.perf_counter()
    size = (contract.image.height, contract.image.width)
    cuts = np.stack([t.stream.stack.input(t.staged.frame) for t in taken])  # [B, (T,) H, W, 3]
    images = np.ascontiguousarray(np.moveaxis(cuts, -1, -3), dtype=np.float32)
    for t, image, w in zip(taken, images, waves):
        t.stream.stats.check_inputs(image[None] if image.ndim == 3 else image[-1:], [w[0]])  # a stack: its present frame
    c1, t1 = time.thread_time(), time.perf_counter()
    fresh, last = [], {}
    for i, t in enumerate(taken):  # the hop counts in each stream's own time, within and across batches
        s = t.stream
        prev = last.get(s, s.last_audio[0] if s.last_audio is not None else None)
        if s.fresh(t.staged.frame.pts_ns, len(waves[i]), prev):
            fresh.append(i)
            last[s] = t.staged.frame.pts_ns
    audio, image_emb, image_map = _embed(towers, waves, images, fresh)
    for i, t in enumerate(taken):  # the others reuse their stream's last sound
        s = t.stream
        if audio[i] is None:
            audio[i] = s.last_audio[1] if s.last_audio is not None else np.zeros((1, image_emb.shape[-1]), np.float32)
        else:
            s.last_audio = (t.staged.frame.pts_ns, audio[i])
            s.stats.count("audio_inferences")
    stats.count("inference_batches")
    c2, t2 = time.thread_time(), time.perf_counter()
    stats.count("cpu_ms_preprocess", (c1 - c0) * 1e3)
    stats.count("cpu_ms_inference", (c2 - c1) * 1e3)
    out = []
    m = contract.map
    for i, t in enumerate(taken):
        frame = t.staged.frame
        geom = Geometry(frame.shape, size, image_map.shape[-2:], m.offset if m else (0, 0), m.stride if m else None)
        values, heat = t.stream.task(frame, audio[i], image_emb[i], image_map[i], geom)
        out.append((values, heat))
    t3 = time.perf_counter()
    done = now_ns()
    results = []
    for t, (values, heat), skew in zip(taken, out, skews):
        st, s = t.staged, t.stream
        s.stats.times(
            preprocess=(t1 - t0) * 1e3 / n,
            inference=(t2 - t1) * 1e3 / n,
            task=(t3 - t2) * 1e3 / n,
            capture_to_result=(done - st.origin) / 1e6,
            skew=abs(skew) / 1e6,
        )
        f = st.frame
        results.append(Result(s.task.name, f.pts_ns, f.seq, done, values, heat, f, skew, None if s.paced else st.origin, stream=s.name))
    return results
