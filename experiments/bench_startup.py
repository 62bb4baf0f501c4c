"""Start-up: whole processes, an old commit against this tree, from the command to the first useful work.

    flock /tmp/movielab-cpu.lock python experiments/bench_startup.py [--old 620c59e] [--repeats 5]

Each figure is one `python` process timed from its start to a line it prints (or to its exit):

- `import torch`, `import lightning`: the floor every entry point stands on (tree-independent);
- `import movielab.train` / `.generate` / `.evaluate`: each entry point's module;
- train: `python -m movielab.train` (the default char GPT on the bundled sample, its token cache
  warm) up to the end of the first training step (a probe callback prints a line then and exits);
- generate: `python -m movielab.generate ckpt=... num_samples=1 max_new_tokens=1` up to the
  heading of its sample, printed once the first token is drawn;
- evaluate: `python -m movielab.evaluate ckpt=... num_samples=2` (one grid cell of 8 tokens) up to
  "sampled 2 texts" (its first samples) and up to its exit (the report written).

The old tree is `git archive` of the old commit into a temporary folder; every process runs from
a scratch folder with PYTHONPATH set to its tree (so its own `conf/` is the CONFIG_DIR), with
OMP_NUM_THREADS set. Each version first trains the default model for 2 steps (untimed) to warm
its token cache and write the checkpoint generate and evaluate then read. Every repeat runs each
command for the old and the new tree back to back, in alternating order; the report gives the
medians and the median of the per-repeat old/new ratios. Figures: experiments/bench_startup.md.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

PROBE = '''
"""Prints a line at the end of the first training step and ends the process (bench_startup.py)."""
import os
import sys

import lightning as L


class FirstStep(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        print("STARTUP_PROBE first_step", flush=True)
        sys.stdout.flush()
        os._exit(0)
'''


@dataclass(frozen=True)
class Command:
    """A measured process: its arguments (after `python`) and the line that ends its clock."""

    name: str
    args: tuple[str, ...]
    marker: str | None = None  # None: the clock stops when the process exits
    per_tree: bool = True  # False: the same command for both trees (measured once a repeat)


def commands(work: Path, tree: str, repeat: int = 0) -> list[Command]:
    root = work / tree
    ckpt = root / "run" / "checkpoints" / "last.ckpt"
    return [
        Command("import torch", ("-c", "import torch"), per_tree=False),
        Command("import lightning", ("-c", "import lightning"), per_tree=False),
        Command("import movielab.train", ("-c", "import movielab.train")),
        Command("import movielab.generate", ("-c", "import movielab.generate")),
        Command("import movielab.evaluate", ("-c", "import movielab.evaluate")),
        Command(
            "train: first step",
            (
                "-m",
                "movielab.train",
                f"paths.root_dir={root}",
                f"hydra.run.dir={root / f'probe_run_{repeat}'}",  # a new folder: a used one is refused
                "+callbacks.startup_probe._target_=startup_probe.FirstStep",
            ),
            marker="STARTUP_PROBE first_step",
        ),
        Command(
            "generate: first token",
            ("-m", "movielab.generate", f"ckpt={ckpt}", "num_samples=1", "max_new_tokens=1", "save=false"),
            marker="sample 1",
        ),
        Command("evaluate: first samples", evaluate_args(root, ckpt), marker="sampled 2 texts"),
        Command("evaluate: report written", evaluate_args(root, ckpt)),
    ]


def evaluate_args(root: Path, ckpt: Path) -> tuple[str, ...]:
    return (
        "-m",
        "movielab.evaluate",
        f"ckpt={ckpt}",
        "num_samples=2",
        "temperatures=[1.0]",
        "top_ps=[null]",
        "max_new_tokens=8",
        f"out_dir={root / 'evaluation'}",
    )


def environment(tree: Path, probe: Path, threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=f"{tree}{os.pathsep}{probe}",
        OMP_NUM_THREADS=str(threads),
        PYTHONUNBUFFERED="1",
        HYDRA_FULL_ERROR="1",
        TERM="dumb",
    )
    return env


def timed(command: Command, env: dict[str, str], cwd: Path, limit_s: float = 600) -> float:
    """Seconds from starting the process to its marker line (or to its exit)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [PYTHON, *command.args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd, text=True
    )
    seen: list[str] = []
    elapsed = None
    for line in process.stdout:
        seen.append(line)
        if command.marker is not None and command.marker in line:
            elapsed = time.perf_counter() - started
            break
    process.stdout.close()
    code = process.wait(timeout=limit_s)
    if elapsed is None:
        elapsed = time.perf_counter() - started
        if code != 0 or command.marker is not None:
            tail = "".join(seen[-15:])
            raise SystemExit(f"{command.name}: exit status {code} before {command.marker!r}:\n{tail}")
    return elapsed


def prepare(tree: Path, env: dict[str, str], root: Path, cwd: Path) -> None:
    """Warm the token cache and write the checkpoint that generate and evaluate read."""
    args = [
        PYTHON,
        "-m",
        "movielab.train",
        f"paths.root_dir={root}",
        f"hydra.run.dir={root / 'run'}",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "callbacks.text_samples.num_samples=1",
        "callbacks.text_samples.max_new_tokens=8",
    ]
    result = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0 or not (root / "run" / "checkpoints" / "last.ckpt").exists():
        raise SystemExit(
            f"training a checkpoint with {tree} failed:\n{result.stdout[-2000:]}{result.stderr[-3000:]}"
        )


# the import chain of `import movielab.train`, as `python -X importtime` names it
CHAIN = (
    "torch",
    "lightning",
    "torchmetrics.functional",  # imported by lightning.fabric.utilities.imports (a version check)
    "torchmetrics.functional.text.bert",
    "transformers",
    "matplotlib.pyplot",
    "torch._dynamo",
    "hydra",
    "movielab.models.modules",
    "movielab.cli.train",
)


def import_chain(module: str, env: dict[str, str], cwd: Path) -> dict[str, float]:
    """Cumulative seconds of each CHAIN module where it is first imported (`-X importtime`)."""
    result = subprocess.run(
        [PYTHON, "-X", "importtime", "-c", f"import {module}"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    seconds = {}
    for line in result.stderr.splitlines():
        parts = [part.strip() for part in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[2] in CHAIN and parts[2] not in seconds:
            seconds[parts[2]] = int(parts[1]) / 1e6
    return seconds


def old_tree(commit: str, into: Path) -> Path:
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default="620c59e", help="the commit to compare with (default: 620c59e)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of every process")
    parser.add_argument("--only", nargs="*", default=None, help="measure only these commands (by name)")
    parser.add_argument("--chain", action="store_true", help="also `-X importtime` of import movielab.train")
    args = parser.parse_args()

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "movielab", "conf"], cwd=ROOT, capture_output=True
    )
    print(
        f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"OMP_NUM_THREADS={args.threads}; old {args.old}, new {commit}"
        f"{' with uncommitted changes' if dirty.stdout.strip() else ''} ({ROOT})",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench_startup_") as tmp:
        work = Path(tmp)
        probe = work / "probe"
        probe.mkdir()
        (probe / "startup_probe.py").write_text(PROBE)
        scratch = work / "cwd"
        scratch.mkdir()
        trees = {"old": old_tree(args.old, work / "old_tree"), "new": ROOT}
        envs = {name: environment(tree, probe, args.threads) for name, tree in trees.items()}
        for name, tree in trees.items():
            prepare(tree, envs[name], work / name, scratch)
        by_tree = {tree: {c.name: c for c in commands(work, tree)} for tree in trees}
        names = [name for name in by_tree["new"] if args.only is None or name in args.only]
        times: dict[tuple[str, str], list[float]] = {}
        for repeat in range(args.repeats):
            order = ["old", "new"] if repeat % 2 == 0 else ["new", "old"]
            by_tree = {tree: {c.name: c for c in commands(work, tree, repeat)} for tree in trees}
            for name in names:
                for tree in order if by_tree["new"][name].per_tree else ["new"]:
                    elapsed = timed(by_tree[tree][name], envs[tree], scratch)
                    times.setdefault((name, tree), []).append(elapsed)
            line = "; ".join(
                f"{n} " + "/".join(f"{times[(n, t)][-1]:.2f}" for t in ("old", "new") if (n, t) in times)
                for n in names
            )
            print(f"repeat {repeat} (old/new s): {line} (load average {os.getloadavg()[0]:.1f})", flush=True)
        report(names, times)
        if args.chain:
            print("\n`python -X importtime -c 'import movielab.train'`, cumulative s where first imported:")
            for tree in ("old", "new"):
                for _ in range(3):
                    chain = import_chain("movielab.train", envs[tree], scratch)
                    print(
                        f"  {tree}: "
                        + ", ".join(f"{name} {chain[name]:.2f}" for name in CHAIN if name in chain),
                        flush=True,
                    )


def report(names: list[str], times: dict[tuple[str, str], list[float]]) -> None:
    print(f"\n{'':<26} {'old s':>7} {'new s':>7} {'new/old':>8}  every repeat (new)")
    for name in names:
        new = times[(name, "new")]
        old = times.get((name, "old"))
        figures = " ".join(f"{t:.2f}" for t in new)
        if old is None:
            print(f"{name:<26} {'':>7} {statistics.median(new):7.2f} {'':>8}  {figures}")
            continue
        ratio = statistics.median(n / o for n, o in zip(new, old, strict=True))
        print(
            f"{name:<26} {statistics.median(old):7.2f} {statistics.median(new):7.2f} {ratio:8.2f}  {figures}"
            f"  (old {' '.join(f'{t:.2f}' for t in old)})"
        )
    if ("import torch", "new") not in times:
        return
    torch_s = statistics.median(times[("import torch", "new")])
    print(f"\nimport beyond `import torch` ({torch_s:.2f} s), as a share of torch's own import:")
    for name in names:
        if name.startswith("import movielab"):
            for tree in ("old", "new"):
                beyond = statistics.median(times[(name, tree)]) - torch_s
                print(f"  {name:<26} {tree}: {beyond:5.2f} s = {beyond / torch_s:.2f}x")


if __name__ == "__main__":
    main()
