"""OmegaConf resolvers for movielab's configs, registered when the training entry point loads.

`${steps_for_tokens:TOKENS,BATCH,LENGTH}` is the number of optimizer steps that trains on TOKENS
tokens with batches of BATCH windows of LENGTH tokens: a fixed token budget per run, so sweeps
over the batch size or the sequence length compare runs that saw the same amount of text (with
BATCH=1 it is the number of windows that hold TOKENS tokens). `${mul:A,B}` is A*B, e.g. the last
step of a run that validates N times, every K steps. `${rank_log_name:JOB}` names the log file of
this process: JOB for rank 0, `JOB.rank<N>` for rank N of a torchrun or srun launch (all ranks
share one run folder; Lightning's own launcher names its ranks' jobs itself).
"""

from __future__ import annotations

import math
import os

from omegaconf import OmegaConf

from movielab.run_folder import launched_rank


def steps_for_tokens(tokens: float, batch_size: int, block_size: int) -> int:
    return max(1, math.ceil(float(tokens) / (int(batch_size) * int(block_size))))


def mul(a: int, b: int) -> int:
    return int(a) * int(b)


def rank_log_name(job_name: str) -> str:
    rank = launched_rank(os.environ)
    return job_name if rank == 0 or "ddp_process" in job_name else f"{job_name}.rank{rank}"


OmegaConf.register_new_resolver("steps_for_tokens", steps_for_tokens, replace=True)
OmegaConf.register_new_resolver("mul", mul, replace=True)
OmegaConf.register_new_resolver("rank_log_name", rank_log_name, replace=True)
