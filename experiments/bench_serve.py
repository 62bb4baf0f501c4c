"""`movielab serve` under load: 1, 8 and 32 concurrent clients on loopback, batching on
(max_batch=32) against off (max_batch=1), interleaved, several repeats.

    flock /tmp/movielab-cpu.lock python experiments/bench_serve.py [--repeats 3] [--seconds 4]

The model is the default char GPT (conf/model/gpt.yaml: 4 layers, 128 wide, context 128, ~0.8M
parameters) trained 20 steps on the bundled Letterboxd sample, so it writes characters but rarely
its stop: every request writes its max_new_tokens (64). Two servers run side by side as
`python -m movielab.serve` subprocesses (the idle one waits on a condition and takes no CPU).

Each client is a closed loop: it sends a streamed request (its own title and seed), reads the
Server-Sent Events to the end, and sends the next, until `--seconds` have passed (then it finishes
the request in flight; at most --max-requests each). The clients of a cell start spread over the
first `--ramp` seconds, as users do; started in one instant, requests that all write 64 tokens
would stay in lockstep, every one arriving in the same step as the others. That case is measured
on its own: a burst of 32 requests sent at once, one each. The client is a few lines of asyncio on raw
sockets, so the load generator takes little of the 2 CPUs the server needs. Per cell: requests/s
over the wall time from the first send to the last answer, tokens/s as the server counts them
while every client is sending (from the end of the ramp to `--seconds`), and p50/p95 of the time
to the first written token (the first `piece` event not of the prompt) and to the last.
Figures and the machine: experiments/bench_serve.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's movielab, as the servers (run from REPO) import it
CLIENTS = (1, 8, 32)
NEW_TOKENS = 64
FIRST_WRITTEN = b'"prompt": false'
NEW_TOKENS_FIELD = re.compile(rb'event: finished\ndata: \{[^\n]*"new_tokens": (\d+)')


def train_model(root: Path) -> Path:
    """The default char GPT, briefly trained (the weights' values do not change the cost of a step)."""
    overrides = [
        f"paths.root_dir={root}",
        f"paths.output_dir={root / 'run'}",
        "trainer.max_steps=20",
        "trainer.val_check_interval=20",
        "++trainer.limit_val_batches=2",
        "trainer.accelerator=cpu",
        "++trainer.enable_progress_bar=false",
        "~callbacks.progress_bar",
        "~callbacks.text_samples",
        "logger=csv",
    ]
    subprocess.run([sys.executable, "-m", "movielab.train", *overrides], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return root / "run" / "checkpoints" / "last.ckpt"


def engine_tokens_per_second(ckpt: Path, rows: int, seconds: float) -> float:
    """The decoding loop alone, no HTTP: `rows` rows kept in one DecodingBatch (a finished row is
    replaced at once, as the closed-loop clients do), with the torch threads the server uses."""
    from movielab.checkpoint import load_model
    from movielab.cli.serve import decoding_threads
    from movielab.generation import DecodingBatch, Request, RowFinished
    from movielab.sampling import SamplingSettings

    torch.set_num_threads(decoding_threads(None))
    sampler = load_model(ckpt).sampler
    settings = SamplingSettings(top_p=0.95, max_new_tokens=NEW_TOKENS)
    batch, started, tokens = DecodingBatch(sampler), 0, 0
    with torch.inference_mode():
        for started in range(rows):
            batch.add(started, Request({"title": f"Movie {started}"}, settings, started))
        begin = time.perf_counter()
        while time.perf_counter() - begin < seconds:
            tokens += len(batch)
            for event in batch.step():
                if isinstance(event, RowFinished):
                    started += 1
                    batch.add(started, Request({"title": f"Movie {started}"}, settings, started))
        return tokens / (time.perf_counter() - begin)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    def __init__(self, ckpt: Path, max_batch: int) -> None:
        self.port = free_port()
        self.max_batch = max_batch
        command = [sys.executable, "-m", "movielab.serve", f"ckpt={ckpt}", f"port={self.port}",
                   f"max_batch={max_batch}", "log_level=warning", "device=cpu"]  # fmt: skip
        self.process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as answer:
                    self.name = next(iter(json.load(answer)["models"]))
                    return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"server max_batch={max_batch} did not start") from None
                time.sleep(0.2)

    def health(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5) as answer:
            return json.load(answer)["models"][self.name]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@dataclass
class Timing:
    first_token: float
    last_token: float
    tokens: int


async def one_request(port: int, body: bytes) -> Timing:
    """POST a streamed generation; the times to the first written token and to the end."""
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    await writer.drain()
    received, first = b"", None
    while chunk := await reader.read(65536):
        if first is None and FIRST_WRITTEN in received[-64:] + chunk:
            first = time.perf_counter() - start
        received += chunk
    last = time.perf_counter() - start
    writer.close()
    if not received.startswith(b"HTTP/1.1 200") or first is None:
        raise RuntimeError(f"bad answer: {received[:300]!r}")
    return Timing(first, last, sum(int(n) for n in NEW_TOKENS_FIELD.findall(received)))


async def load(
    server: Server, clients: int, seconds: float, max_requests: int, repeat: int, ramp: float = 0.0
) -> dict:
    """`clients` closed-loop clients, started `ramp` / clients apart; each sends at least once.
    tokens/s is the server's own count over the window when every client is sending (from the
    end of the ramp to `seconds`), not diluted by the ramp or by the last answers draining."""

    async def client(number: int) -> list[Timing]:
        await asyncio.sleep(ramp * number / clients)
        timings = []
        while not timings or (len(timings) < max_requests and time.perf_counter() - begin < seconds):
            body = {"title": f"Movie {number} take {len(timings)}", "seed": 1000 * repeat + 100 * number +
                    len(timings), "max_new_tokens": NEW_TOKENS, "stream": True}  # fmt: skip
            timings.append(await one_request(server.port, json.dumps(body).encode()))
        return timings

    async def steady_tokens_per_second() -> float | None:
        if seconds <= ramp:
            return None
        await asyncio.sleep(ramp)
        start = (time.perf_counter(), (await asyncio.to_thread(server.health))["tokens"])
        await asyncio.sleep(max(0.0, begin + seconds - time.perf_counter()))
        end = (time.perf_counter(), (await asyncio.to_thread(server.health))["tokens"])
        return (end[1] - start[1]) / (end[0] - start[0])

    begin = time.perf_counter()
    steady = asyncio.ensure_future(steady_tokens_per_second())
    results = await asyncio.gather(*(client(i) for i in range(clients)))
    wall = time.perf_counter() - begin
    timings = [t for per_client in results for t in per_client]
    firsts = [t.first_token for t in timings]
    lasts = [t.last_token for t in timings]
    return {
        "requests": len(timings),
        "wall": wall,
        "requests_s": len(timings) / wall,
        "tokens_s": await steady,
        "ttft_p50": percentile(firsts, 50),
        "ttft_p95": percentile(firsts, 95),
        "last_p50": percentile(lasts, 50),
        "last_p95": percentile(lasts, 95),
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = int(position), min(int(position) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="how long each client keeps sending")
    parser.add_argument("--max-requests", type=int, default=200, help="most requests per client and cell")
    parser.add_argument("--ramp", type=float, default=0.5, help="seconds over which a cell's clients start")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        ckpt = train_model(Path(folder))
        servers = {"on": Server(ckpt, 32), "off": Server(ckpt, 1)}
        try:
            for server in servers.values():  # warm up: first calls are slower (allocations, imports)
                for clients in (1, 8):
                    asyncio.run(load(server, clients, 0.5, 5, repeat=99))
            cells: dict[tuple[str, int], list[dict]] = {}
            for repeat in range(args.repeats):
                modes = ["on", "off"] if repeat % 2 == 0 else ["off", "on"]
                for clients in CLIENTS:
                    for mode in modes:
                        cell = asyncio.run(
                            load(
                                servers[mode],
                                clients,
                                args.seconds,
                                args.max_requests,
                                repeat,
                                args.ramp,
                            )
                        )
                        cells.setdefault((mode, clients), []).append(cell)
                        print(f"repeat {repeat} batching {mode:<3} clients {clients:>2}: "
                              f"{cell['requests']:>4} requests, {cell['tokens_s']:7.0f} tokens/s, "
                              f"ttft p95 {cell['ttft_p95'] * 1000:7.1f} ms", flush=True)  # fmt: skip
                burst = asyncio.run(load(servers["on"], 32, 0, 1, repeat, ramp=0))
                cells.setdefault(("burst", 32), []).append(burst)
                print(f"repeat {repeat} burst of 32 at once, batching on: "
                      f"ttft p95 {burst['ttft_p95'] * 1000:.1f} ms", flush=True)  # fmt: skip
                engines = [engine_tokens_per_second(ckpt, rows, args.seconds / 2) for rows in (1, 32)]
                cells.setdefault(("engine", 0), []).append(dict(zip(("one", "many"), engines, strict=True)))
                print(f"repeat {repeat} decoding loop alone: 1 row {engines[0]:.0f} tokens/s, "
                      f"32 rows {engines[1]:.0f} tokens/s", flush=True)  # fmt: skip
            health = {mode: server.health() for mode, server in servers.items()}
        finally:
            for server in servers.values():
                server.stop()
    report(cells, health, args)


def report(cells: dict, health: dict, args: argparse.Namespace) -> None:
    def median(mode: str, clients: int, key: str) -> float:
        return statistics.median(cell[key] for cell in cells[(mode, clients)])

    def ms(mode: str, clients: int, key: str) -> str:
        p50, p95 = (median(mode, clients, f"{key}_p{q}") * 1000 for q in (50, 95))
        return f"{p50:.0f} / {p95:.0f}"

    machine = platform.processor() or platform.machine()
    print(
        f"\nmachine: {machine}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"python {platform.python_version()}"
    )
    print(
        f"medians of {args.repeats} repeats, {args.seconds:g} s of sending a cell (clients starting over "
        f"{args.ramp:g} s), {NEW_TOKENS} new tokens a request"
    )
    print("| batching | clients | requests | requests/s | tokens/s | first token p50 / p95 (ms) "
          "| last token p50 / p95 (ms) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for clients in CLIENTS:
        for mode in ("on", "off"):
            row = [mode, str(clients), f"{median(mode, clients, 'requests'):.0f}",
                   f"{median(mode, clients, 'requests_s'):.1f}", f"{median(mode, clients, 'tokens_s'):.0f}",
                   ms(mode, clients, "ttft"), ms(mode, clients, "last")]  # fmt: skip
            print("| " + " | ".join(row) + " |")
    on32, off32, on1 = cells[("on", 32)], cells[("off", 32)], cells[("on", 1)]
    speedups = [on["tokens_s"] / off["tokens_s"] for on, off in zip(on32, off32, strict=True)]
    ttft = [many["ttft_p95"] / one["ttft_p95"] for many, one in zip(on32, on1, strict=True)]
    print(f"\n32 clients, tokens/s batching on / off: median {statistics.median(speedups):.1f}x "
          f"(per repeat {', '.join(f'{s:.1f}' for s in speedups)}; target >= 10x)")  # fmt: skip
    print(f"batching on, p95 time to first token 32 clients / 1 client: {statistics.median(ttft):.2f}x "
          f"(per repeat {', '.join(f'{r:.2f}' for r in ttft)}; target <= 2x)")  # fmt: skip
    bursts = [
        burst["ttft_p95"] / one["ttft_p95"] for burst, one in zip(cells[("burst", 32)], on1, strict=True)
    ]
    burst_ms = statistics.median(burst["ttft_p95"] for burst in cells[("burst", 32)]) * 1000
    per_burst = ", ".join(f"{r:.1f}" for r in bursts)
    print(f"a burst of 32 requests sent at once (batching on), p95 time to first token: {burst_ms:.0f} ms, "
          f"{statistics.median(bursts):.1f}x one client's (per repeat {per_burst})")  # fmt: skip
    engine = [cell["many"] / cell["one"] for cell in cells[("engine", 0)]]
    one, many = (statistics.median(cell[key] for cell in cells[("engine", 0)]) for key in ("one", "many"))
    per_repeat = ", ".join(f"{r:.1f}" for r in engine)
    print(f"the decoding loop alone (no HTTP): 1 row {one:.0f} tokens/s, 32 rows {many:.0f} tokens/s, "
          f"{statistics.median(engine):.1f}x (per repeat {per_repeat})")  # fmt: skip
    together = {mode: health[mode]["max_rows_together"] for mode in ("on", "off")}
    print(f"most rows decoded together: on {together['on']}, off {together['off']}")


if __name__ == "__main__":
    main()
