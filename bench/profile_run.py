"""Where a training run's time goes: one short ``seedlock-train`` run under torch.profiler, with
``torch_deterministic`` false and then true, in one process, the top operators of each printed.

For a figure ``bench.train_throughput`` shows as poor (a determinism tax, an overhead): the ops
whose time grows between the two runs are the cause.

    python -m bench.profile_run --device cuda --task cartpole_rgb --trainer rsl_rl --num-envs 4096
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from pathlib import Path

import torch
from hydra import initialize_config_module
from torch.profiler import ProfilerActivity, profile

import determinism
import tasks
from bench.train_throughput import run_config
from trainers.run_config import register


def profiled_run(args: argparse.Namespace, deterministic: bool, work_dir: Path) -> tuple[float, str]:
    """Wall seconds of the run and the profiler's table of its top operators by self time."""
    from trainers.train import run_training

    cfg = run_config(args.task, args.trainer, args.device, args.num_envs, args.iterations, deterministic,
                     work_dir / ("det" if deterministic else "fast"), args.overrides)
    cuda = args.device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + [ProfilerActivity.CUDA] * cuda
    start = time.perf_counter()
    with profile(activities=activities) as profiler, contextlib.redirect_stdout(io.StringIO()):
        run_training(cfg)
        if cuda:
            torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    sort_by = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    return seconds, profiler.key_averages().table(sort_by=sort_by, row_limit=args.rows, max_name_column_width=60)


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.profile_run", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--task", default="cartpole", choices=sorted(tasks.EMBEDDED_TASKS))
    parser.add_argument("--trainer", default="rsl_rl")
    parser.add_argument("--num-envs", type=int, default=1024)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--rows", type=int, default=15)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Hydra overrides for both runs")
    args = parser.parse_args()
    if args.device.startswith("cuda"):
        determinism.reserve_cublas_workspace()  # before CUDA starts, for the deterministic run
    register()
    with initialize_config_module(config_module="conf", version_base="1.3"), \
            tempfile.TemporaryDirectory(prefix="seedlock-profile-") as work_dir:
        profiled_run(args, False, Path(work_dir) / "warm-up")  # imports, caches, the CUDA context
        for deterministic in (False, True):
            seconds, table = profiled_run(args, deterministic, Path(work_dir))
            print(f"\n== torch_deterministic={str(deterministic).lower()}: {seconds:.2f} s for "
                  f"{args.iterations} iterations of {args.trainer} on {args.task}, {args.num_envs} envs\n{table}", flush=True)


if __name__ == "__main__":
    main()
