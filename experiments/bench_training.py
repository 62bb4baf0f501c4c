"""Training speed: movielab's training step (`movielab.cli.train.train`, with the Trainer, callbacks
and loggers its configs build) against a plain PyTorch loop over the same net, the same batches,
the same optimizer, schedule and gradient clipping, and nothing else.

    flock /tmp/movielab-cpu.lock python experiments/bench_training.py [--models gpt ...]
        [--variants fp32 bf16 compile bf16+compile] [--repeats 3] [--threads 2] [--validation]
        [--control] 2>progress.log

Variants: how both arms train, fp32, `bf16` (trainer.precision=bf16-mixed; autocast on the
forward pass in the plain loop), `compile` (model.compile=true; torch.compile of the net in the
plain loop) or `bf16+compile`. Each repeat runs every variant once, in an order rotated from
repeat to repeat; in a variant's run both arms train from the same seed (same initial weights,
same dropout draws, the same batches) for `warmup` steps, then `steps` timed steps, paired step
by step (see PlainTwin). Tokens/s counts the input tokens of the timed steps over their time, so
every hook, log write, progress-bar refresh and batch draw of movielab's loop is in it;
validation is not (`--validation` times one validation after the timed steps, apart).
`--control` pairs two plain loops the same way, with no Lightning: the method's own bias and
spread. The report gives each variant's median tokens/s, the median over repeats of movielab's
ratio to the plain loop, the other variants' speed against the first, and how far the losses are.

The progress bar renders as on a terminal, to stderr (send stderr to a file: the figures go to
stdout). Data: the real files beside the project (../shared/data), else the bundled samples.
Figures and what was tried: experiments/bench_training.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lightning as L  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from torch import nn  # noqa: E402

from movielab import CONFIG_DIR  # noqa: E402
from movielab.cli.train import train  # noqa: E402
from movielab.models.build import build_language_model  # noqa: E402
from movielab.models.modules import training_module  # noqa: E402
from movielab.models.next_token import logits_and_targets  # noqa: E402
from movielab.models.spec import connect, data_needs, spec_from_config  # noqa: E402
from movielab.optim import optimizer_and_schedule  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


@dataclass(frozen=True)
class Case:
    """A model as a user trains it: config overrides, its real data file, warm-up and timed steps."""

    overrides: tuple[str, ...]
    data_file: str
    warmup: int
    steps: int
    note: str = ""


CASES = {
    # a GPT so small that a step is almost only the framework's own work: movielab's cost per step
    "tiny_gpt": Case(
        (
            "model.net.config.n_layer=1",
            "model.net.config.n_head=1",
            "model.net.config.n_embd=8",
            "model.net.config.block_size=8",
            "data.batching.batch_size=2",
        ),
        "letterboxd/movies.csv",
        warmup=20,
        steps=200,
        note="1 layer x 8, context 8, batch 2: the framework's own cost per step",
    ),
    # conf/model/gpt.yaml as it is (4 x 128, context 128), data=letterboxd (batch 32)
    "gpt": Case((), "letterboxd/movies.csv", warmup=5, steps=20),
    # nanoGPT's shakespeare-char model (6 layers x 384, 6 heads, context 256, dropout 0.2); its batch of
    # 64 windows takes ~10 s a step on 2 cores, so 8 windows here (the same model, fewer rows)
    "gpt_6x384": Case(
        (
            "model.net.config.n_layer=6",
            "model.net.config.n_head=6",
            "model.net.config.n_embd=384",
            "model.net.config.block_size=256",
            "model.net.config.dropout=0.2",
            "data.batching.batch_size=8",
        ),
        "letterboxd/movies.csv",
        warmup=3,
        steps=10,
        note="batch 8 windows of 256 (nanoGPT: 64)",
    ),
    # experiment=seinfeld_lstm: embedding 400, 2 x LSTM 512, 10-word windows, batch 256, clipping 5
    "seinfeld_lstm": Case(("experiment=seinfeld_lstm",), "seinfeld/Seinfeld_Scripts.txt", warmup=3, steps=10),
    # experiment=title_transformer: 6 x 128 GPT over 1024 pieces, rating prefix, batch 128 titles; the
    # rating-conditioning report at the end of training is left out (it is after the timed window)
    "title_transformer": Case(
        ("experiment=title_transformer", "~callbacks.rating_conditioning"),
        "imdb/movie_metadata.csv",
        warmup=5,
        steps=20,
    ),
}


@dataclass(frozen=True)
class Variant:
    """How both arms train: fp32, bf16 (bf16-mixed), compile (torch.compile of the net) or both."""

    name: str
    bf16: bool = False
    compile: bool = False

    @classmethod
    def parse(cls, text: str) -> Variant:
        flags = set(text.split("+"))
        if not flags <= {"fp32", "bf16", "compile"} or ("fp32" in flags and len(flags) > 1):
            raise SystemExit(f"--variants {text!r}: expected fp32, bf16, compile or bf16+compile")
        return cls(text, "bf16" in flags, "compile" in flags)


@dataclass
class StepPair:
    """Step k of the plain twin and of movielab, back to back: input tokens, wall and CPU seconds."""

    tokens: int
    plain_s: float
    plain_cpu_s: float
    movielab_s: float = 0.0
    movielab_cpu_s: float = 0.0


@dataclass
class Timing:
    """One run: the timed step pairs, both arms' losses, and one validation if asked for."""

    pairs: list[StepPair] = field(default_factory=list)
    movielab_losses: list[float] = field(default_factory=list)
    plain_losses: list[float] = field(default_factory=list)
    first_step_s: tuple[float, float] = (0.0, 0.0)  # (plain, movielab) step 0: compiling is in it
    validation_s: float | None = None  # movielab: the loop, samples, checkpoints
    plain_validation_s: float | None = None  # the twin: the validation loss only

    def tokens_per_s(self, who: str) -> float:
        return sum(p.tokens for p in self.pairs) / sum(getattr(p, f"{who}_s") for p in self.pairs)

    def cpu_ratio(self) -> float:
        """movielab's speed over plain's in process CPU time (every thread, so background work too)."""
        return sum(p.plain_cpu_s for p in self.pairs) / sum(p.movielab_cpu_s for p in self.pairs)

    def step_ratios(self) -> list[float]:
        """movielab's speed over the plain loop's, step by step."""
        return [p.plain_s / p.movielab_s for p in self.pairs]


class PlainTwin(L.Callback):
    """The plain loop, run step for step inside movielab's run, so each pair of steps (plain k, then
    movielab k) meets the same load on a shared machine.

    At the start of training it builds its own copy of the net with the same weights, optimizer,
    schedule and clipping, and takes a copy of the random state; at the start of each of
    movielab's steps it first draws its own batch k and makes its step k (under its own random
    state, so both arms draw the same dropout masks), timed on its own; on odd steps it makes its
    step after movielab's instead (at the end of the batch), so neither arm always goes first.
    movielab's step k is one whole iteration of Lightning's loop, from the start of batch k to the
    start of batch k + 1 less the twin's step inside it, with every hook, log write, progress-bar
    refresh and batch draw.
    Given as `+callbacks.bench_twin._target_=__main__.PlainTwin`; the last one made is `last`.
    """

    last: PlainTwin | None = None

    def __init__(self, warmup: int, steps: int, bf16: bool = False, compile: bool = False) -> None:
        self.warmup, self.steps, self.bf16, self.compile = warmup, steps, bf16, compile
        self.timing = Timing()
        self._pair: StepPair | None = None  # the step pair in progress, if it is timed
        self._mark = self._inside = (0.0, 0.0)  # (wall, CPU) clocks
        self._validation_started: float | None = None
        PlainTwin.last = self

    def on_train_start(self, trainer, pl_module) -> None:  # noqa: ANN001
        with torch.random.fork_rng():  # building draws initial weights: not from movielab's stream
            net, conditions, _ = build_language_model(pl_module.spec)
        self.model = nn.ModuleDict({"net": net, "conditions": nn.ModuleDict(conditions)})
        self.model.load_state_dict(
            {k: v for k, v in pl_module.state_dict().items() if k.split(".")[0] in self.model}
        )
        self.model.train()
        self.forward = torch.compile(net) if self.compile else net
        self.loss_on = pl_module.loss_on
        schedule = optimizer_and_schedule(
            self.model, lambda: trainer.max_steps, pl_module.optimizer_factory, pl_module.scheduler_factory
        )
        self.optimizer = schedule["optimizer"] if isinstance(schedule, dict) else schedule
        self.scheduler = schedule["lr_scheduler"]["scheduler"] if isinstance(schedule, dict) else None
        self.clip = trainer.gradient_clip_val
        self.batches = endless(trainer.datamodule.train_dataloader())
        self.val_batches = trainer.datamodule.val_dataloader()
        self.rng = torch.get_rng_state()

    def _autocast(self):  # noqa: ANN202
        return torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()

    def _loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        with self._autocast():
            logits, targets = logits_and_targets(self.forward, self.model["conditions"], batch)
            if self.loss_on == "last":
                logits, targets = logits[:, -1:], targets[:, -1:]
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
        return loss, (targets != -100).sum()

    def plain_step(self) -> tuple[float, int]:
        """Draw the next batch, train on it; the loss and the batch's input tokens."""
        batch = next(self.batches)
        with torch.random.fork_rng():
            torch.set_rng_state(self.rng)
            self.optimizer.zero_grad(set_to_none=True)  # where Lightning's loop zeroes them too
            loss, _ = self._loss(batch)
            loss.backward()
            if self.clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            self.rng = torch.get_rng_state()
        return loss.item(), batch["inputs"].numel()

    def _timed_plain_step(self, step: int) -> tuple[float, float]:
        """The twin's step, its wall and CPU seconds; recorded in the step's pair if it is timed."""
        wall, cpu = time.perf_counter(), time.process_time()
        loss, tokens = self.plain_step()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        self.timing.plain_losses.append(loss)
        if step == 0:
            self.timing.first_step_s = (wall, 0.0)
        if self._pair is not None:
            self._pair.tokens, self._pair.plain_s, self._pair.plain_cpu_s = tokens, wall, cpu
        return wall, cpu

    def plain_validation(self) -> None:
        self.model.eval()
        with torch.no_grad():
            total = count = 0.0
            for batch in self.val_batches:
                loss, tokens = self._loss(batch)
                total, count = total + float(loss) * int(tokens), count + int(tokens)
        self.model.train()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        now, cpu_now = time.perf_counter(), time.process_time()
        step, timing = trainer.global_step, self.timing
        if self._validation_started is not None:  # the iteration before held a validation: timed apart
            timing.validation_s = now - self._validation_started
            self._validation_started = None
            if self._pair is not None:
                timing.pairs.remove(self._pair)
            began = time.perf_counter()
            self.plain_validation()
            timing.plain_validation_s = time.perf_counter() - began
            now, cpu_now = time.perf_counter(), time.process_time()
        elif self._pair is not None:  # movielab's iteration: mark to mark, less the twin's step inside it
            self._pair.movielab_s = now - self._mark[0] - self._inside[0]
            self._pair.movielab_cpu_s = cpu_now - self._mark[1] - self._inside[1]
        elif step == 1:
            timing.first_step_s = (timing.first_step_s[0], now - self._mark[0] - self._inside[0])
        self._pair, self._inside = None, (0.0, 0.0)
        if step >= self.warmup + self.steps:
            return
        if step >= self.warmup:
            self._pair = StepPair(0, 0.0, 0.0)
            timing.pairs.append(self._pair)
        if step % 2 == 0:  # the twin first on even steps, after movielab's step on odd ones
            self._timed_plain_step(step)
            now, cpu_now = time.perf_counter(), time.process_time()
        self._mark = (now, cpu_now)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.timing.movielab_losses.append(float(outputs["loss"]))
        step = trainer.global_step - 1  # the step just made
        if step % 2 == 1 and step < self.warmup + self.steps:
            self._inside = self._timed_plain_step(step)

    def on_validation_start(self, trainer, pl_module) -> None:  # noqa: ANN001
        if not trainer.sanity_checking:
            self._validation_started = time.perf_counter()


def compose_config(case: Case, data_path: Path | None, work: Path, run: str, extra: list[str]):  # noqa: ANN201
    overrides = [
        *case.overrides,
        f"paths.root_dir={work}",
        f"paths.output_dir={work / 'runs' / run}",
        f"paths.cache_dir={work / 'cache'}",
        "trainer.accelerator=cpu",
        f"trainer.max_steps={case.warmup + case.steps + 1}",
        # the bar as a terminal shows it, written to stderr
        "+callbacks.progress_bar.console_kwargs={force_terminal:true,stderr:true}",
        *([f"data.path={data_path}"] if data_path else []),
        *extra,
    ]
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        return compose(config_name="train", overrides=overrides)


def run_arm(
    case: Case,
    arm: Variant,
    data_path: Path | None,
    work: Path,
    run: str,
    validation: bool,
    overrides: tuple[str, ...] = (),
) -> Timing:
    """movielab's train() as the CLI runs it, with the plain twin inside."""
    extra = [
        *overrides,
        "+callbacks.bench_twin._target_=__main__.PlainTwin",
        f"+callbacks.bench_twin.warmup={case.warmup}",
        f"+callbacks.bench_twin.steps={case.steps}",
        f"+callbacks.bench_twin.bf16={arm.bf16}",
        f"+callbacks.bench_twin.compile={arm.compile}",
    ]
    if arm.bf16:
        extra.append("trainer.precision=bf16-mixed")
    if arm.compile:
        extra.append("model.compile=true")
    if validation:  # one validation, right after the last timed step (that pair is left out)
        extra.append(f"trainer.val_check_interval={case.warmup + case.steps}")
    with contextlib.redirect_stdout(sys.stderr):  # Lightning's and train's own lines: not figures
        train(compose_config(case, data_path, work, run, extra))
    return PlainTwin.last.timing


def run_control(case: Case, arm: Variant, data_path: Path | None, work: Path, run: str) -> Timing:
    """Two plain loops of the same model paired exactly as the plain twin and movielab are
    (`--control`), with no Lightning loop around them: the first trains in fp32, the second, in
    movielab's place, as the variant says. Under fp32 that is the method's own bias and spread;
    under bf16 or compile it is the variant's speed against fp32 step for step, under the same load.
    """
    cfg = compose_config(case, data_path, work, run, [])
    L.seed_everything(cfg.seed)
    datamodule = instantiate(cfg.data)
    spec = spec_from_config(cfg.model)
    datamodule.connect(data_needs(spec))
    module = training_module(connect(spec, datamodule.facts()), cfg.model)
    trainer = SimpleNamespace(
        max_steps=cfg.trainer.max_steps,
        gradient_clip_val=cfg.trainer.gradient_clip_val,
        datamodule=datamodule,
    )
    first = PlainTwin(case.warmup, case.steps)
    second = PlainTwin(case.warmup, case.steps, arm.bf16, arm.compile)
    for twin in (first, second):
        twin.on_train_start(trainer, module)
    timing = Timing()
    for step in range(case.warmup + case.steps):
        order = (first, second) if step % 2 == 0 else (second, first)
        seconds = {}
        for twin in order:
            began, cpu = time.perf_counter(), time.process_time()
            loss, tokens = twin.plain_step()
            seconds[id(twin)] = (time.perf_counter() - began, time.process_time() - cpu)
            (timing.plain_losses if twin is first else timing.movielab_losses).append(loss)
        if step >= case.warmup:
            (plain_s, plain_cpu), (other_s, other_cpu) = seconds[id(first)], seconds[id(second)]
            timing.pairs.append(StepPair(tokens, plain_s, plain_cpu, other_s, other_cpu))
    return timing


def endless(loader) -> Iterator[dict[str, torch.Tensor]]:  # noqa: ANN001
    while True:
        yield from loader


def data_file(case: Case) -> Path | None:
    path = DATA / case.data_file
    return path if path.exists() else None


def _figures(values: list[float], digits: int = 3) -> str:
    return " ".join(f"{v:.{digits}f}" for v in values)


def _median(values: list[float]) -> float:
    return statistics.median(values)


def report(name: str, case: Case, variants: list[Variant], results: dict[str, list[Timing]]) -> None:
    base = variants[0].name
    print(f"\n{name}: {case.steps} timed steps after {case.warmup} warm-up, {case.note or 'as configured'}")
    for variant in variants:
        runs = results[variant.name]
        movielab = [t.tokens_per_s("movielab") for t in runs]
        plain = [t.tokens_per_s("plain") for t in runs]
        window = [m / p for m, p in zip(movielab, plain, strict=True)]
        steps = [_median(t.step_ratios()) for t in runs]
        cpu = [t.cpu_ratio() for t in runs]
        gap = max(abs(a - b) for t in runs for a, b in zip(t.movielab_losses, t.plain_losses, strict=False))
        print(f"  {variant.name}: movielab {_median(movielab):.0f} tokens/s, plain {_median(plain):.0f}")
        print(f"    movielab/plain over the window   {_median(window):.3f}  ({_figures(window)})")
        print(f"    median of the step-pair ratios   {_median(steps):.3f}  ({_figures(steps)})")
        print(f"    in process CPU time              {_median(cpu):.3f}  ({_figures(cpu)})")
        extra_ms = [1000 * _median([p.movielab_s - p.plain_s for p in t.pairs]) for t in runs]
        print(f"    movielab - plain, a step         {_median(extra_ms):.2f} ms  ({_figures(extra_ms, 2)})")
        print(f"    movielab's and plain's losses differ by at most {gap:.1e}")
        first = [t.first_step_s for t in runs]
        print(f"    the first step, s (plain, movielab): {'; '.join(f'{p:.2f}, {m:.2f}' for p, m in first)}")
        if variant.name != base:
            pairs = list(zip(runs, results[base], strict=True))
            speedups = [t.tokens_per_s("movielab") / b.tokens_per_s("movielab") for t, b in pairs]
            print(
                f"    movielab {variant.name} / {base}        {_median(speedups):.3f}  ({_figures(speedups)})"
            )
            ours, theirs = runs[0].movielab_losses, results[base][0].movielab_losses
            drift = max(abs(a - b) for a, b in zip(ours, theirs, strict=False))
            print(
                f"    losses against {base}: max |diff| {drift:.4f} over {min(len(ours), len(theirs))} steps"
            )
        validations = [t for t in runs if t.validation_s is not None]
        if validations:
            print(
                f"    one validation: movielab {_figures([t.validation_s for t in validations], 2)} s "
                "(loop, samples, checkpoints); the plain loss loop "
                f"{_figures([t.plain_validation_s for t in validations], 2)} s"
            )
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=[c for c in CASES if c != "tiny_gpt"], choices=list(CASES)
    )
    parser.add_argument("--variants", nargs="+", default=["fp32"], help="fp32, bf16, compile, bf16+compile")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (intra-op)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: per model)")
    parser.add_argument(
        "--validation", action="store_true", help="time one validation, after the timed steps"
    )
    parser.add_argument(
        "--control",
        action="store_true",
        help="a plain fp32 loop paired with a plain loop in the variant (fp32: the method's own error)",
    )
    parser.add_argument(
        "--overrides", nargs="*", default=[], help="config overrides for movielab's run (what costs what)"
    )
    args = parser.parse_args()
    variants = [Variant.parse(v) for v in args.variants]
    torch.set_num_threads(args.threads)
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, lightning {L.__version__}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}"
    )
    if args.overrides:
        print(f"movielab's runs with {' '.join(args.overrides)}")
    if args.control:
        print(
            "control: 'movielab' below is a second plain loop (no Lightning) in the variant, "
            "'plain' a plain loop in fp32"
        )
    with tempfile.TemporaryDirectory(prefix="bench_training_") as tmp:
        work = Path(tmp)
        for name in args.models:
            case = CASES[name]
            if args.steps:
                case = Case(case.overrides, case.data_file, case.warmup, args.steps, case.note)
            path = data_file(case)
            print(f"\n{name}: data {path or 'the bundled sample (real file not found)'}", flush=True)
            results: dict[str, list[Timing]] = {v.name: [] for v in variants}
            for repeat in range(args.repeats):
                shift = repeat % len(variants)
                for variant in variants[shift:] + variants[:shift]:
                    run = f"{name}-{variant.name}-{repeat}"
                    if args.control:
                        timing = run_control(case, variant, path, work, run)
                    else:
                        timing = run_arm(
                            case, variant, path, work, run, args.validation, tuple(args.overrides)
                        )
                    results[variant.name].append(timing)
                    print(
                        f"  repeat {repeat} {variant.name}: movielab "
                        f"{timing.tokens_per_s('movielab'):.0f} tokens/s, "
                        f"plain {timing.tokens_per_s('plain'):.0f}"
                        f", median step ratio {_median(timing.step_ratios()):.3f}"
                        f" (load average {os.getloadavg()[0]:.1f})",
                        flush=True,
                    )
            report(name, case, variants, results)


if __name__ == "__main__":
    main()
