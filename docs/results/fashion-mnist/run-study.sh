#!/usr/bin/env bash
# The Fashion-MNIST study behind docs/results.md, step by step. Every step is a `minigrad` study
# command that resumes where it stopped (finished trials are skipped, interrupted ones continue
# from their checkpoints), so this script can be run again after any interruption.
#
#   bash docs/results/fashion-mnist/run-study.sh STUDIES_DIR [JOBS] [FIRST_STEP]
#
# FIRST_STEP (default 1) skips the steps before it: a study continued with newer code starts at
# the first step that code has not run (a trial's name hashes its options with the defaults of
# its time, so newer code would rerun the earlier steps' K-FAC trials in full).
#
# Protocol (docs/results.md says why):
#   data     Fashion-MNIST (Debian's dataset-fashion-mnist), 60,000 training / 10,000 test images
#   model    MLP 784-256-256-10, ReLU, float32, seed 0
#   target   85% test accuracy, evaluated every K(B) steps (EVAL below: steps to target are
#            rounded up by at most K(B))
#   budget   E(B) = ceil(10 sqrt(B / 128)) epochs (BUDGET below)
#   lr       grid values are for B0 = 128 and scale as sqrt(B / B0)
#   trials   stop at the target; a run at chance for 3 evaluations after its first epoch
#            ends as diverged (`minigrad train --diverged-after`)
#   seeds    the search runs with seed 0; each batch size's best setting is then trained with
#            seeds 1 and 2 too, and the curve shows the 3-seed mean and spread (--confirm-seeds)
#   noise    the gradient noise scale B_simple along a reference SGD run at B = 128 (lr 0.05, the
#            search's best there), from 1024 fresh examples at every 10th step
#   K-FAC    the empirical Fisher (the true labels' gradients), as the MLP steps ran it: they were
#            run at commit 93e4830, when it was the command line's default; the default is now
#            the true Fisher (Martens & Grosse), so the script names it (KFAC below)
set -euo pipefail
out=${1:?usage: run-study.sh STUDIES_DIR [JOBS] [FIRST_STEP]}
jobs=${2:-2}
first=${3:-1}
step() { [ "$1" -ge "$first" ]; }   # whether step $1 runs
SIZES=128,256,512,1024,2048,4096,8192,16384
BUDGET=128=10,256=15,512=20,1024=29,2048=40,4096=57,8192=80,16384=114
EVAL=128=10,256=8,512=5,1024=4,2048=2,4096=1,8192=1,16384=1
MLP=(--dataset fashion-mnist --model mlp --hidden 256,256 --batch-sizes "$SIZES"
     --target-accuracy 0.85 --budget-epochs "$BUDGET" --eval-every "$EVAL"
     --lr-scaling sqrt --base-batch-size 128 --confirm-seeds 3 --jobs "$jobs")
SGD=(--grid sgd.lr=0.0125,0.025,0.05,0.1,0.2,0.4)
KFAC=(--grid kfac.lr=0.0125,0.05,0.2 --grid kfac.damping=0.001,0.01,0.1 --grid kfac.kl_clip=0,0.001,0.01
      --train-option kfac.fisher=empirical)
TR=(--grid trcg.radius=0.1,1,10 --grid strcg.radius=0.1,1,10)

# 1. SGD and K-FAC (minigrad's defaults: factors from the first batch, factored damping)
step 1 && minigrad scaling "${MLP[@]}" "${SGD[@]}" "${KFAC[@]}" --optimizers sgd,kfac --out "$out/mlp"
# the reference run for the noise scale (a run folder: resumed, or left alone once finished)
noise="$out/noise-sgd-b128"
if ! step 1; then
    :
elif [ -f "$noise/checkpoint.npz" ]; then
    minigrad train --out "$noise" --resume
else
    minigrad train --dataset fashion-mnist --model mlp --hidden 256,256 --optimizer sgd \
        --batch-size 128 --lr 0.05 --momentum 0.9 --epochs 3 --eval-every 10 \
        --noise-scale-examples 1024 --no-layer-stats --out "$noise"
fi
# 2. K-FAC as KFAC-PyTorch does it: factors start at the identity, eigenbasis damping
step 2 && minigrad scaling "${MLP[@]}" "${KFAC[@]}" --optimizers kfac \
    --train-option kfac.factor_init=identity --train-option kfac.damping_form=eigen \
    --out "$out/mlp-kfac-identity-eigen"
# 3. the trust-region methods (step 1's trials are reused, the same folder; K-FAC's only when
#    step 1 ran with the same code: see FIRST_STEP above)
step 3 && minigrad scaling "${MLP[@]}" "${SGD[@]}" "${KFAC[@]}" "${TR[@]}" --optimizers sgd,kfac,trcg,strcg \
    --out "$out/mlp"
# 4. LeNet-5: can every optimizer reach 88% test accuracy at B = 128 within 20 epochs? (the
#    target of the LeNet scaling study is chosen from this; see docs/results.md)
step 4 && minigrad compare --dataset fashion-mnist --model lenet --batch-size 128 --target-accuracy 0.88 \
    --budget-epochs 20 --eval-every 50 --jobs "$jobs" \
    --grid sgd.lr=0.01,0.02,0.05,0.1 --grid kfac.lr=0.05 --grid kfac.damping=0.001,0.01,0.1 \
    --train-option kfac.fisher=empirical \
    --grid trcg.radius=0.1,1,10 --grid strcg.radius=0.1,1,10 --out "$out/lenet-b128"
true   # the status of the script is that of its steps, not of the last step test
