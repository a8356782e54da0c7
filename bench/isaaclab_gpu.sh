#!/usr/bin/env bash
# Isaac Lab 3.x physics determinism on a GPU machine without internet (the H200 of the device
# tool): the wheels arrive in parts (../shared/tools/stage-wheels), each part copied into $WHEELS
# by its own call; then this script installs them and runs the benches. Results go to $OUT.
#
#   bash bench/isaaclab_gpu.sh install            # unpack $WHEELS, install into $SITE, write assets
#   bash bench/isaaclab_gpu.sh physics [args...]  # bench.physics_determinism, 4096 envs
#   bash bench/isaaclab_gpu.sh train TASK [args]  # bench.train_determinism for TASK
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
      "task.asset_root=$ASSETS" "$@" --out "$OUT/train_determinism_cuda_$task.json"
    ;;
  *) sed -n 2,9p "$0"; exit 2 ;;
esac
