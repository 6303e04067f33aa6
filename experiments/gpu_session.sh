#!/usr/bin/env bash
# The project's open GPU measurements as prepared, time-boxed parts.
#
#   bash experiments/gpu_session.sh PART [OUTDIR]
#
# PART (one per call; the step limits of each add up to at most 540 s, so a
# part ends inside a 10-minute command limit even when every step runs out):
#   losses      NT-Xent fwd+bwd: dense, blockwise, fused Pallas; PyTorch peer
#   throughput  SimCLR ResNet-18 CIFAR at batch 1024 (PyTorch peer, pipeline stall),
#               ResNet-50 224 SimCLR/BYOL, the step without augmentation
#   table       the Fashion-MNIST table (experiments/fashion_mnist_table.py)
#   semi        FixMatch vs. supervised-only at a paper-like length
#   remat       the SimCLR ResNet-18 step at batch 1024 and 4096 with and without
#               recomputed block activations (encoder_kwargs remat=True): time
#               and XLA's step memory, which the CPU cannot show
#
# Everything a part's steps write (JSON, markdown, PNG) is packed into
# OUTDIR/PART.tgz, with the part's log beside it as OUTDIR/PART.log
# (OUTDIR defaults to $OUT, else ./gpu_out), so two files carry a whole part
# off a machine that keeps nothing. The packing also runs when the script is
# stopped (TERM/INT). Unpack with `tar xzf PART.tgz -C experiments/results`.
#
# Each step runs under its own `timeout`, so one slow step leaves the next
# their time; a step cut short or failed is named in the log, and the script
# then exits 1 (after packing). QUICK=1 runs the same steps in their
# seconds-long CPU modes (how the script itself is tested).
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
  losses|throughput|table|semi|remat) ;;
  *) echo "usage: bash experiments/gpu_session.sh {losses|throughput|table|semi|remat} [OUTDIR]" >&2
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
FAILED=0

say() { echo "[$(( $(date +%s) - START ))s] $*" | tee -a "$LOG"; }

pack() {
  tar czf "$OUTDIR/$PART.tgz" -C "$RESULTS" .
  say "packed $(tar tzf "$OUTDIR/$PART.tgz" | grep -vc '/$') files into $OUTDIR/$PART.tgz"
  rm -rf "$WORK"
}
CHILD=""
stopped() {
  say "stopped by a signal"
  # timeout passes the TERM on to its command (which may save and exit).
  if [ -n "$CHILD" ]; then kill -TERM "$CHILD" 2> /dev/null; wait "$CHILD"; fi
  pack
  exit 1
}
trap stopped TERM INT

# step SECONDS NAME COMMAND...: runs COMMAND under a time limit, logging it.
step() {
  local limit="$1" name="$2"; shift 2
  say "== $name (limit ${limit}s): $*"
  # In the background and waited for: a signal's trap runs at once, not
  # after the step.
  timeout --signal=TERM --kill-after=5 "$limit" "$@" >> "$LOG" 2>&1 &
  CHILD=$!
  wait "$CHILD"
  local rc=$?
  CHILD=""
  case $rc in
    0) say "== $name: done" ;;
    124|137) say "== $name: CUT SHORT at ${limit}s (rc $rc)"; FAILED=1 ;;
    *) say "== $name: FAILED (rc $rc)"; FAILED=1 ;;
  esac
  return 0
}

# The folder with the Fashion-MNIST IDX files, on stdout; 1 if there is none.
data_dir() {
  local d
  for d in /usr/share/datasets/fashion-mnist .data/fashion-mnist; do
    if [ -f "$d/train-images-idx3-ubyte.gz" ]; then (cd "$d" && pwd); return 0; fi
  done
  return 1
}

say "part $PART, quick=$QUICK, out $OUTDIR"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
    || echo "no nvidia-smi"
  python -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
} >> "$LOG" 2>&1
# The project runs from the checkout, no install: an offline machine could
# not fetch the build backend an install needs, and the machine's own jax
# stays. Child processes (the PyTorch peers, isolated benchmark runs) import
# it through PYTHONPATH; the command runs as a module, so pip's script folder
# need not be on PATH either.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
SSL_JAX=(python -m ssl_jax.cli)

EXTRA=()
B=1024
if [ "$QUICK" = 1 ]; then EXTRA=(--quick --encoder small_convnet); B=8; fi

case "$PART" in
  losses)
    if [ "$QUICK" = 1 ]; then
      step 300 losses "${SSL_JAX[@]}" bench losses --quick --out "$RESULTS"
    else
      # The two target sizes first, every implementation and both dtypes
      # (the fused kernels' first GPU run); then the full size sweep with the
      # PyTorch peer, without the kernels. Every configuration is compiled
      # before the first is timed, so the first step is kept small. In one
      # process, a configuration's GPU peak is measured when it rises above
      # the earlier ones (they run in increasing estimated memory).
      step 250 losses_targets env XLA_PYTHON_CLIENT_MEM_FRACTION=.95 \
        "${SSL_JAX[@]}" bench losses --sizes 8192,262144 --fused --fused-splits 1,2 --no-torch \
        --out "$RESULTS/targets"
      step 270 losses_sweep env XLA_PYTHON_CLIENT_MEM_FRACTION=.95 \
        "${SSL_JAX[@]}" bench losses --no-fused --out "$RESULTS"
    fi
    ;;
  throughput)
    # Batch 1024 (the target) with augmentation, the PyTorch peer and the
    # pipeline stall; ResNet-50; the step without augmentation.
    # (${EXTRA[@]+...}: an empty array under `set -u` on bash < 4.4.)
    step 240 simclr "${SSL_JAX[@]}" bench simclr_throughput ${EXTRA[@]+"${EXTRA[@]}"} \
      --batch-sizes "$B" --out "$RESULTS"
    step 160 resnet50 "${SSL_JAX[@]}" bench resnet50_throughput ${EXTRA[@]+"${EXTRA[@]}"} \
      --out "$RESULTS"
    step 120 simclr_no_augment "${SSL_JAX[@]}" bench simclr_throughput ${EXTRA[@]+"${EXTRA[@]}"} \
      --no-augment --batch-sizes "$B" --no-pipeline --no-torch --out "$RESULTS/no_augment"
    ;;
  remat)
    # Without and with remat at the target batch and at 4x it (where memory
    # matters); the step alone, resident batch, no PyTorch peer.
    # (Quick: the width-1/8 ResNet-18; the small conv net has no blocks to recompute.)
    Q=()
    if [ "$QUICK" = 1 ]; then Q=(--quick); fi
    for r in --no-remat --remat; do
      step 260 "simclr$r" "${SSL_JAX[@]}" bench simclr_throughput ${Q[@]+"${Q[@]}"} \
        "$r" --batch-sizes "$([ "$QUICK" = 1 ] && echo 8 || echo 1024,4096)" --no-pipeline \
        --no-torch --out "$RESULTS"
    done
    ;;
  table|semi)
    if ! DATA="$(data_dir)"; then
      say "no Fashion-MNIST files in /usr/share/datasets/fashion-mnist or .data/fashion-mnist"
      FAILED=1
    elif [ "$PART" = table ] && [ "$QUICK" = 1 ]; then
      step 300 table python experiments/fashion_mnist_table.py --quick --methods simclr \
        --workdir-root "$WORK/runs" --output "$RESULTS/fashion_mnist_table"
    elif [ "$PART" = table ]; then
      # The workdirs stay in the checkout (runs/ is ignored): the same part
      # called again on the still-warm machine keeps the finished rows and
      # runs the rest; the table it packs then holds them all.
      step 520 table python experiments/fashion_mnist_table.py --data-dir "$DATA" \
        --time-budget-s 420 --workdir-root runs/fashion_mnist_table \
        --output "$RESULTS/fashion_mnist_table"
    elif [ "$QUICK" = 1 ]; then
      step 300 semi python experiments/semi_fashion_mnist.py --encoder small_convnet \
        --widths 4,8 --steps 2 --supervised-steps 2 --labelled-batch 8 --mu 1 --seeds 0 \
        --data-dir "$DATA" --out "$RESULTS/semi_fashion_mnist_gpu"
    else
      step 520 semi python experiments/semi_fashion_mnist.py --encoder small_convnet \
        --widths 32,64,128 --steps 50000 --supervised-steps 12500,25000,50000 \
        --labelled-batch 64 --seeds 0 --data-dir "$DATA" \
        --out "$RESULTS/semi_fashion_mnist_gpu"
    fi
    ;;
esac

pack
exit "$FAILED"
