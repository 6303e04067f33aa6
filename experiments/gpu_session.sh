#!/usr/bin/env bash
# The project's open GPU measurements as prepared, time-boxed parts.
#
#   bash experiments/gpu_session.sh PART [OUTDIR]
#
# PART (one per call; each ends within 9.5 minutes on one H100/H200):
#   losses      NT-Xent fwd+bwd: dense, blockwise, fused Pallas; PyTorch peer    (~9 min)
#   throughput  SimCLR ResNet-18 CIFAR at batch 1024 (PyTorch peer, pipeline stall),
#               ResNet-50 224 SimCLR/BYOL, the step without augmentation       (~9 min)
#   table       the Fashion-MNIST table (experiments/fashion_mnist_table.py)     (~9 min)
#   semi        FixMatch vs. supervised-only at a paper-like length              (~9 min)
#
# Everything a part writes (JSON, markdown, PNG, its log) is packed into
# OUTDIR/PART.tgz beside OUTDIR/PART.log (OUTDIR defaults to $OUT, else
# ./gpu_out), so two files carry a whole part off a machine that keeps
# nothing. Unpack with `tar xzf PART.tgz -C experiments/results`.
#
# Each step runs under its own `timeout`, so one slow step leaves the next
# their time; a step cut short is named in the log. QUICK=1 runs the same
# steps in their seconds-long CPU modes (how the script itself is tested).
#
# The Fashion-MNIST IDX files are read from /usr/share/datasets/fashion-mnist,
# or from .data/fashion-mnist in the checkout (an ignored folder: copy the
# files there and send it along with the checkout).
set -uo pipefail
cd "$(dirname "$0")/.."

PART="${1:-}"
OUTDIR="${2:-${OUT:-gpu_out}}"
QUICK="${QUICK:-0}"
case "$PART" in
  losses|throughput|table|semi) ;;
  *) echo "usage: bash experiments/gpu_session.sh {losses|throughput|table|semi} [OUTDIR]" >&2
     exit 2 ;;
esac
mkdir -p "$OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd)"
WORK="$(mktemp -d)"
RESULTS="$WORK/results"
mkdir -p "$RESULTS"
LOG="$OUTDIR/$PART.log"
: > "$LOG"
export PYTHONUNBUFFERED=1
START=$(date +%s)

say() { echo "[$(( $(date +%s) - START ))s] $*" | tee -a "$LOG"; }

# step SECONDS NAME COMMAND...: runs COMMAND under a time limit, logging it.
step() {
  local limit="$1" name="$2"; shift 2
  say "== $name (limit ${limit}s): $*"
  timeout --signal=TERM --kill-after=15 "$limit" "$@" >> "$LOG" 2>&1
  local rc=$?
  case $rc in
    0) say "== $name: done" ;;
    124|137) say "== $name: CUT SHORT at ${limit}s (rc $rc)" ;;
    *) say "== $name: FAILED (rc $rc)" ;;
  esac
  return 0
}

data_dir() {
  for d in /usr/share/datasets/fashion-mnist .data/fashion-mnist; do
    if [ -f "$d/train-images-idx3-ubyte.gz" ]; then (cd "$d" && pwd); return; fi
  done
  say "no Fashion-MNIST files in /usr/share/datasets/fashion-mnist or .data/fashion-mnist"
  exit 1
}

say "part $PART, quick=$QUICK, out $OUTDIR"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
    || echo "no nvidia-smi"
  python -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
} >> "$LOG" 2>&1
if ! python -c "import ssl_jax" 2>/dev/null; then
  # Keep the machine's own jax: install the project alone.
  step 120 install python -m pip install -q --no-deps -e .
fi

Q=()
[ "$QUICK" = 1 ] && Q=(--quick)

case "$PART" in
  losses)
    if [ "$QUICK" = 1 ]; then
      step 300 losses ssl-jax bench losses --quick --out "$RESULTS"
    else
      # The two target sizes first, every implementation and both dtypes
      # (the fused kernels' first GPU run); then the full size sweep with the
      # PyTorch peer, without the kernels. Every configuration is compiled
      # before the first is timed, so the first step is kept small.
      step 240 losses_targets env XLA_PYTHON_CLIENT_MEM_FRACTION=.95 \
        ssl-jax bench losses --sizes 8192,262144 --fused --fused-splits 1,2 --no-torch \
        --out "$RESULTS/targets"
      step 270 losses_sweep env XLA_PYTHON_CLIENT_MEM_FRACTION=.95 \
        ssl-jax bench losses --no-fused --out "$RESULTS"
    fi
    ;;
  throughput)
    EXTRA=()
    B=1024
    [ "$QUICK" = 1 ] && EXTRA=(--quick --encoder small_convnet) && B=4
    # Batch 1024 (the target) with augmentation, the PyTorch peer and the
    # pipeline stall; ResNet-50; the step without augmentation.
    step 240 simclr ssl-jax bench simclr_throughput "${EXTRA[@]}" --batch-sizes "$B" \
      --out "$RESULTS"
    step 150 resnet50 ssl-jax bench resnet50_throughput "${EXTRA[@]}" --out "$RESULTS"
    step 120 simclr_no_augment ssl-jax bench simclr_throughput "${EXTRA[@]}" --no-augment \
      --batch-sizes "$B" --no-pipeline --no-torch --out "$RESULTS/no_augment"
    ;;
  table)
    DATA="$(data_dir)"
    if [ "$QUICK" = 1 ]; then
      step 300 table python experiments/fashion_mnist_table.py --quick --methods simclr \
        --workdir-root "$WORK/runs" --output "$RESULTS/fashion_mnist_table"
    else
      # The workdirs stay in the checkout (runs/ is ignored): the same part
      # called again on the still-warm machine keeps the finished rows and
      # runs the rest; the table it packs then holds them all.
      step 560 table python experiments/fashion_mnist_table.py --data-dir "$DATA" \
        --time-budget-s 450 --workdir-root runs/fashion_mnist_table \
        --output "$RESULTS/fashion_mnist_table"
    fi
    ;;
  semi)
    DATA="$(data_dir)"
    if [ "$QUICK" = 1 ]; then
      step 300 semi python experiments/semi_fashion_mnist.py --encoder small_convnet \
        --widths 4,8 --steps 2 --supervised-steps 2 --labelled-batch 8 --mu 1 --seeds 0 \
        --data-dir "$DATA" --out "$RESULTS/semi_fashion_mnist_gpu"
    else
      step 560 semi python experiments/semi_fashion_mnist.py --encoder small_convnet \
        --widths 32,64,128 --steps 50000 --supervised-steps 12500,25000,50000 \
        --labelled-batch 64 --seeds 0 --data-dir "$DATA" \
        --out "$RESULTS/semi_fashion_mnist_gpu"
    fi
    ;;
esac

tar czf "$OUTDIR/$PART.tgz" -C "$RESULTS" .
say "packed $(tar tzf "$OUTDIR/$PART.tgz" | grep -vc '/$') files into $OUTDIR/$PART.tgz"
rm -rf "$WORK"
