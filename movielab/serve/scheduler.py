"""Continuous batching for one served model: a thread that owns the model's `DecodingBatch`.

Requests from every client line up in one queue; between two decoding steps the loop lets
waiting rows join the batch (up to `max_batch` rows) and drops the rows whose client went away.
A row leaves the batch at its stop or its token limit, making room for the next. Each row draws
from its own seeded generator (movielab.generation), so a text does not depend on the rows it
was decoded beside.

The model is touched by this thread only (prompts are prepared by the request handlers, which
run the condition encoders but never the decoder). Events go back to a job through its
`deliver` callable, called from this thread: the server's passes them to its event loop.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from movielab.generation import DecodingBatch, Event, GeneratesText, PreparedPrompt, Request, RowFinished

log = logging.getLogger(__name__)

# what a job receives: the events of one step for its rows, or the error that ended them
Delivery = Sequence[Event] | BaseException


class DecodingFailed(RuntimeError):
    """Decoding failed while the job's rows were in the batch (the model's fault, not the request's)."""


@dataclass(eq=False)
class Job:
    """One request's rows: row ids in request order (the i-th text is row `rows[i]`)."""

    rows: list[int]
    deliver: Callable[[Delivery], None]
    started: list[bool] = field(default_factory=list)  # per row: has it joined the batch
    open_rows: set[int] = field(default_factory=set)

    def index(self, row: int) -> int:
        return self.rows.index(row)


@dataclass
class _Waiting:
    row: int
    request: Request
    prompt: PreparedPrompt
    job: Job


class DecodingScheduler:
    """One decoding loop over a sampler; `submit` rows, receive their events, `cancel` them."""

    def __init__(
        self,
        sampler: GeneratesText,
        max_batch: int = 32,
        copies: Callable[[str], bool] | None = None,
        device: torch.device | str = "cpu",
        use_cache: bool = True,
        name: str = "model",
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch={max_batch} must be at least 1")
        self.sampler = sampler
        self.max_batch = max_batch
        self.name = name
        self._new_batch = lambda: DecodingBatch(sampler, use_cache, copies, device=device)
        self._batch = self._new_batch()
        self._owner: dict[int, Job] = {}  # every row waiting or in the batch -> its job
        self._waiting: deque[_Waiting] = deque()
        self._cancelled: set[int] = set()
        self._next_row = 0
        self._held = 0
        self._closed = False
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"decoding {name}", daemon=True)
        # what the loop has done, for /healthz, the tests and the benchmark
        self.steps = 0
        self.tokens = 0
        self.max_rows_together = 0
        self.cancelled_rows = 0

    def start(self) -> DecodingScheduler:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the loop; rows still waiting or decoding get a DecodingFailed."""
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        for job in {w.job for w in self._waiting} | set(self._owner.values()):
            job.deliver(DecodingFailed("the server is shutting down"))

    @property
    def active_rows(self) -> int:
        return len(self._batch)

    @property
    def waiting_rows(self) -> int:
        return len(self._waiting)

    def submit(
        self,
        requests: Sequence[Request],
        prompts: Sequence[PreparedPrompt],
        deliver: Callable[[Delivery], None],
    ) -> Job:
        """Queue one row per request (prompts already checked and prepared); they join the batch
        in order as room frees up."""
        with self._wake:
            if self._closed:
                raise DecodingFailed("the server is shutting down")
            rows = list(range(self._next_row, self._next_row + len(requests)))
            self._next_row += len(requests)
            job = Job(rows, deliver, [False] * len(rows), set(rows))
            for row, request, prompt in zip(rows, requests, prompts, strict=True):
                self._waiting.append(_Waiting(row, request, prompt, job))
                self._owner[row] = job
            self._wake.notify_all()
        return job

    def cancel(self, job: Job) -> None:
        """The job's client went away: its waiting rows never start, its decoding rows leave the
        batch before the next step. Nothing more is delivered to it."""
        with self._wake:
            gone = [row for row in job.rows if self._owner.get(row) is job]
            if not gone:
                return
            self._waiting = deque(w for w in self._waiting if w.job is not job)
            for row in gone:
                del self._owner[row]
            started = [row for row, joined in zip(job.rows, job.started, strict=True) if joined]
            self._cancelled.update(row for row in started if row in gone)
            self.cancelled_rows += len(gone)
            job.open_rows.clear()
            self._wake.notify_all()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Decoding pauses while held, so that requests sent meanwhile line up and start in one
        step when it ends (the batching tests rely on it)."""
        with self._wake:
            self._held += 1
        try:
            yield
        finally:
            with self._wake:
                self._held -= 1
                self._wake.notify_all()

    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self._wake:
                    while not self._closed and (self._held or not (self._waiting or len(self._batch))):
                        self._wake.wait()
                    if self._closed:
                        return
                    for row in self._cancelled:
                        self._batch.cancel(row)  # rows that finished meanwhile are not there: no-op
                    self._cancelled.clear()
                    joining = []
                    while self._waiting and len(self._batch) + len(joining) < self.max_batch:
                        joining.append(self._waiting.popleft())
                    for waiting in joining:
                        waiting.job.started[waiting.job.index(waiting.row)] = True
                try:
                    self._dispatch(self._draw(joining))
                    self._dispatch(self._batch.advance())  # the loop sends the tokens meanwhile
                except Exception as error:  # the model failed: every row in the batch fails with it
                    log.exception("decoding %s failed", self.name)
                    self._fail_batch(error)

    def _draw(self, joining: list[_Waiting]) -> list[Event]:
        """Joining rows start, then every row draws its next token (delivered before the net
        runs, so a token reaches its client one forward pass sooner)."""
        events = self._batch.add_many([(w.row, w.request, w.prompt) for w in joining])
        rows = len(self._batch)
        if rows:
            events += self._batch.draw()
            self.steps += 1
            self.tokens += rows
            self.max_rows_together = max(self.max_rows_together, rows)
        return events

    def _dispatch(self, events: list[Event]) -> None:
        per_job: dict[Job, list[Event]] = {}
        with self._wake:
            for event in events:
                job = self._owner.get(event.row)
                if job is None:
                    continue  # cancelled meanwhile
                per_job.setdefault(job, []).append(event)
                if isinstance(event, RowFinished):
                    del self._owner[event.row]
                    job.open_rows.discard(event.row)
        for job, job_events in per_job.items():
            job.deliver(job_events)

    def _fail_batch(self, error: Exception) -> None:
        """Every job with a row in the batch fails whole (its waiting rows are dropped too); the
        loop goes on with a fresh batch for the rows of other jobs."""
        with self._wake:
            failed = {job for row, job in self._owner.items() if job.started[job.index(row)]}
            self._owner = {row: job for row, job in self._owner.items() if job not in failed}
            self._waiting = deque(w for w in self._waiting if w.job not in failed)
            self._cancelled.clear()
            self._batch = self._new_batch()
        reason = DecodingFailed(f"decoding failed: {' '.join(str(error).split()) or type(error).__name__}")
        for job in failed:
            job.open_rows.clear()
            job.deliver(reason)
