#!/usr/bin/env bash
# Isaac Lab 3.x physics determinism on a GPU machine without internet (the H200 of the device
# tool): the wheels arrive in parts (../shared/tools/stage-wheels), each part copied into $WHEELS
# by its own call; then this script installs them and runs the benches. Results go to $OUT.
#
#   bash bench/isaaclab_gpu.sh install            # unpack $WHEELS, install into $SITE, write assets
#   bash bench/isaaclab_gpu.sh physics [args...]  # bench.physics_determinism, 4096 envs
#   bash bench/isaaclab_gpu.sh train TASK [args]  # bench.train_determinism for TASK (TAG: file suffix)
#   bash bench/isaaclab_gpu.sh embedded TASK [args]  # the same for an embedded task (cartpole, cartpole_rgb)
#   bash bench/isaaclab_gpu.sh audit              # seedlock-audit's GPU tests, the camera task's audit,
#                                                 # its op costs and seedlock-verify --explain
#   bash bench/isaaclab_gpu.sh profile            # issue 23: launches and syncs per library (eager, fast path)
#   bash bench/isaaclab_gpu.sh speed              # issue 23: eager vs trainer.fast_path: env-steps/s, fingerprints
set -euo pipefail
WHEELS=${WHEELS:-/tmp/wheels}
SITE=${SITE:-/tmp/site}
ASSETS=${ASSETS:-/tmp/isaaclab-assets}
OUT=${OUT:-bench/results}
export PYTHONPATH=$SITE:$(pwd) PYTHONUNBUFFERED=1 SEEDLOCK_ISAACLAB_ASSETS=$ASSETS
# Isaac Lab's stack imports torch's own CUDA build (the machine's); warp's kernel cache stays warm.
case "${1:-}" in
  install)
    cd "$WHEELS" && cat chunk.* | tar -x && cd - >/dev/null
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$WHEELS"/*.whl
    python3 -m trainers.isaaclab_assets "$ASSETS"
    python3 -c "import isaaclab, warp, newton, mujoco_warp; print('isaaclab', isaaclab.__version__ if hasattr(isaaclab, '__version__') else '3', 'warp', warp.__version__, 'newton', newton.__version__)"
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
    ;;
  physics)
    shift
    python3 -m bench.physics_determinism --device cuda --num-envs 4096 --asset-root "$ASSETS" \
      --out "$OUT/physics_determinism_cuda.json" "$@"
    ;;
  train)
    task=$2; shift 2
    python3 -m bench.train_determinism --common "task=isaaclab/$task" device=cuda num_envs=4096 \
      "task.asset_root=$ASSETS" "$@" --out "$OUT/train_determinism_cuda_$(echo "${task#Isaac-}" | tr 'A-Z-' 'a-z_')${TAG:-}.json"
    ;;
  embedded)
    task=$2; shift 2
    python3 -m bench.train_determinism --common "task=$task" device=cuda "$@" --out "$OUT/train_determinism_cuda_$task${TAG:-}.json"
    ;;
  audit)
    SEEDLOCK_GPU_RESULTS=$OUT/gpu_determinism_audit.jsonl python3 -m pytest -q -p no:cacheprovider -m gpu -rs tests/test_gpu.py -k audit \
      2>&1 | tee "$OUT/test_gpu_audit.txt" || true
    rgb=(trainer=rl_games task=cartpole_rgb device=cuda num_envs=4096)
    python3 -m trainers.audit --audit-dir /tmp/audit_rgb "${rgb[@]}" 2>&1 | tee "$OUT/audit_cartpole_rgb_cuda.txt" || true
    cp /tmp/audit_rgb/audit.json "$OUT/audit_cartpole_rgb_cuda.json"
    python3 -m bench.op_cost /tmp/audit_rgb/audit.json --out "$OUT/op_cost_cuda" || true
    python3 -m trainers.verify --explain --verify-dir /tmp/explain_rgb "${rgb[@]}" max_iterations=2 2>&1 \
      | tee "$OUT/explain_cartpole_rgb_cuda.txt" || true
    ;;
  profile)
    python3 -m bench.step_profile --device cuda --num-envs 4096 --iterations 3 --out "$OUT/step_profile_cuda" | tail -30
    python3 -m bench.step_profile --device cuda --num-envs 4096 --iterations 3 --trainer rsl_rl --trainer skrl \
      trainer.fast_path=true --out "$OUT/step_profile_cuda_fast" | tail -12
    ;;
  speed)
    # env-steps/s from each run's summary.json (its whole training loop, capture and warm-up included)
    speed_run() {  # trainer envs fast_path iterations
      python3 -m trainers.train trainer=$1 device=cuda num_envs=$2 max_iterations=$4 torch_deterministic=true \
        trainer.fast_path=$3 run_dir=/tmp/speed/$1-$2-$3 progress=false >/tmp/speed-$1-$2-$3.log 2>&1 || tail -3 /tmp/speed-$1-$2-$3.log
      python3 -c "import json,sys; print(sys.argv[1], json.load(open(sys.argv[1] + '/summary.json'))['env_steps_per_second'])" /tmp/speed/$1-$2-$3
      grep -E "Collection time|Learning time" /tmp/speed-$1-$2-$3.log | tail -2 | tr -s ' ' | paste -sd' ' || true  # RSL-RL's own split
    }
    for n in ${SIZES:-4096 16384}; do
      for t in ${FAST_TRAINERS:-rl_games rsl_rl skrl}; do
        speed_run $t $n false ${ITERATIONS:-60}; speed_run $t $n true ${ITERATIONS:-60}
        cmp -s /tmp/speed/$t-$n-false/fingerprints.jsonl /tmp/speed/$t-$n-true/fingerprints.jsonl \
          && echo "$t $n fingerprints equal" || echo "$t $n fingerprints DIFFER"
      done
    done 2>&1 | tee "$OUT/fast_path_cuda.txt"
    [ -n "${QUICK:-}" ] && exit 0  # QUICK=1: the table's rows only
    speed_run sb3 4096 false 6 2>&1 | tee -a "$OUT/fast_path_cuda.txt"  # trainer.fast_path is refused for SB3
    # issue 24's dry run on one GPU: two NCCL ranks on cuda:0, and seedlock's own torchrun launch
    timeout 45 python3 -m torch.distributed.run --nproc-per-node=2 -m bench.nccl_one_gpu 2>&1 | grep -E "^rank|Error" | head -8 \
      | tee "$OUT/nccl_one_gpu.txt" || true
    timeout 60 python3 -m torch.distributed.run --nproc-per-node=2 -m trainers.train distributed=true device=cuda trainer=rsl_rl \
      num_envs=4096 max_iterations=2 run_dir=/tmp/dist progress=false 2>&1 | tail -12 | tee -a "$OUT/nccl_one_gpu.txt" || true
    ;;
  *) sed -n 2,9p "$0"; exit 2 ;;
esac
