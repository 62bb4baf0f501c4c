"""What a stretch of training cost: peak memory and how busy the CPU or GPU was.

Trials of a sweep run one after another in one process, so the process-wide peak RSS would only
ever grow; on Linux the peak is reset at the start (`/proc/self/clear_refs`), so each trial gets
its own. On a GPU the peak is torch's allocator peak and utilisation is sampled through NVML.
"""

from __future__ import annotations

import resource
import sys
import threading
import time
from pathlib import Path

import torch


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class ResourceMeter:
    """`start()`, train, `stop()` -> figures for the stretch in between."""

    def __init__(self, device: torch.device, sample_every_s: float = 0.5) -> None:
        self.device = device
        self.sample_every_s = sample_every_s
        self._gpu_samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"

    def start(self) -> None:
        self._wall = time.perf_counter()
        self._cpu = _cpu_seconds()
        if self.on_gpu:
            torch.cuda.reset_peak_memory_stats(self.device)
            if self._gpu_utilisation() is not None:
                self._thread = threading.Thread(target=self._sample_gpu, daemon=True)
                self._thread.start()
        else:
            _reset_peak_rss()  # elsewhere than Linux the peak is the process's so far

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self._wall
        figures = {"fit_s": wall}
        if self.on_gpu:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            figures["peak_memory_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
            if self._gpu_samples:
                figures["gpu_util_pct"] = sum(self._gpu_samples) / len(self._gpu_samples)
        else:
            figures["peak_memory_mb"] = _peak_rss_mb()
            # one fully busy core = 100%; two = 200%
            figures["cpu_util_pct"] = 100 * (_cpu_seconds() - self._cpu) / max(wall, 1e-9)
        return figures

    def _gpu_utilisation(self) -> float | None:
        try:
            return float(torch.cuda.utilization(self.device))
        except Exception:  # NVML (pynvml) missing or not supported on this GPU
            return None

    def _sample_gpu(self) -> None:
        while not self._stop.wait(self.sample_every_s):
            value = self._gpu_utilisation()
            if value is not None:
                self._gpu_samples.append(value)
