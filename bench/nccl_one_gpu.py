"""Can two NCCL ranks share one GPU here? The dry run issue 24 allows where only one GPU is lent.

    torchrun --nproc-per-node=2 -m bench.nccl_one_gpu

Each rank puts itself on ``cuda:0`` and all-reduces a tensor, then broadcasts one. NCCL normally
refuses two ranks on one device ("Duplicate GPU detected"); what it says here is printed, with
the versions, so the outcome is recorded rather than assumed. seedlock itself puts rank r on
``cuda:r`` and refuses a rank whose device this machine lacks (``trainers/device_check.py``).
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist


def main() -> int:
    rank = int(os.environ["RANK"])
    torch.cuda.set_device(0)
    print(f"rank {rank}: torch {torch.__version__}, NCCL {'.'.join(map(str, torch.cuda.nccl.version()))}, "
          f"{torch.cuda.get_device_name(0)}", flush=True)
    try:
        dist.init_process_group("nccl", device_id=torch.device("cuda", 0))
        value = torch.full((4,), float(rank + 1), device="cuda")
        dist.all_reduce(value)
        dist.broadcast(value, src=0)
        torch.cuda.synchronize()
        print(f"rank {rank}: all_reduce + broadcast on one GPU gave {value.tolist()}", flush=True)
        return 0
    except Exception as error:  # noqa: BLE001 - NCCL's refusal is the result being recorded
        print(f"rank {rank}: NCCL refused two ranks on one GPU: {type(error).__name__}: {error}".splitlines()[0], flush=True)
        return 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
