#!/usr/bin/env bash
# The Fashion-MNIST study behind docs/results.md, step by step. Every step is a `minigrad` study
# command that resumes where it stopped (finished trials are skipped, interrupted ones continue
# from their checkpoints), so this script can be run again after any interruption.
#
#   bash docs/results/fashion-mnist/run-study.sh STUDIES_DIR [JOBS] [FIRST_STEP] [LAST_STEP]
#
# FIRST_STEP and LAST_STEP (default 1 and 11) run only the steps between them. A trial's folder
# name hashes its options (with the optimizer's defaults of the code that runs it), so a study
# continued with the same code reuses every finished trial; scaling studies stop a trial early
# once it can no longer beat the best finished one (exact: no reported figure changes).
#
# The study outlasts a machine. study_state.py (beside this script) saves its work so far in one
# small file, in-progress.tar.xz here while the study runs (finished trials' logs, unfinished
# trials' checkpoints), and restores it on a new machine, naming the commit to resume from.
# continue_study.py does a session's part unattended: it restores that file, makes the pinned
# checkout and its environment, runs the steps not yet done in the given order (rechecking each
# study's diverged trials after its step) and commits the saved work every hour:
#   python docs/results/fashion-mnist/continue_study.py STUDIES_DIR --steps 8,2,6,5,11,10
#
# Protocol (docs/results.md says why):
#   data     Fashion-MNIST (Debian's dataset-fashion-mnist), 60,000 training / 10,000 test images
#   models   MLP 784-256-256-10, ReLU; LeNet-5; float32, seed 0
#   target   MLP: 85% test accuracy (and, step 6, a training loss of 0.25 on the whole training
#            split); LeNet-5: 88% test accuracy. Evaluated every K(B) steps (EVAL below: steps
#            to target are rounded up by at most K(B))
#   budget   E(B) = ceil(E0 sqrt(B / 128)) epochs, E0 = 10 (MLP), 20 (LeNet-5) (BUDGET below)
#   lr       grid values are for B0 = 128 and scale as sqrt(B / B0)
#   search   a grid per optimizer and batch size with seed 0; grids widened where a best setting
#            sat on an edge (docs/results.md marks the ones still there)
#   trials   stop at the target; a run at chance for 3 evaluations after its first epoch
#            ends as diverged (`minigrad train --diverged-after`), except LeNet-5's SGD trials
#   seeds    each batch size's best setting is then trained with seeds 1 and 2 too, and the
#            curve shows the 3-seed mean and spread (--confirm-seeds)
#   warmup   none, except in step 11: SGD with a linear lr warmup over 5 epochs at each model's
#            three largest batch sizes
#   noise    the gradient noise scale B_simple along a reference SGD run at B = 128 per model (lr
#            0.05, the search's best there), from 1024 fresh examples at every evaluation (every
#            10th step on the MLP, 20th on LeNet-5)
#   K-FAC    the true Fisher (labels sampled from the model, Martens & Grosse; minigrad's
#            default), factors every step, eigenbases every 20 steps; step 2 adds the empirical
#            Fisher (the true labels' gradients) and step 3 the form of a common PyTorch
#            implementation (factors from the identity, damping on the eigenvalues); step 8
#            changes the update periods
set -euo pipefail
out=${1:?usage: run-study.sh STUDIES_DIR [JOBS] [FIRST_STEP] [LAST_STEP]}
jobs=${2:-2}
first=${3:-1}
last=${4:-11}
step() { [ "$1" -ge "$first" ] && [ "$1" -le "$last" ]; }   # whether step $1 runs

SIZES=128,256,512,1024,2048,4096,8192,16384
BUDGET=128=10,256=15,512=20,1024=29,2048=40,4096=57,8192=80,16384=114
EVAL=128=10,256=8,512=5,1024=4,2048=2,4096=1,8192=1,16384=1
MLP=(--dataset fashion-mnist --model mlp --hidden 256,256 --batch-sizes "$SIZES"
     --budget-epochs "$BUDGET" --eval-every "$EVAL"
     --lr-scaling sqrt --base-batch-size 128 --confirm-seeds 3 --jobs "$jobs")
SGD=(--grid sgd.lr=0.0125,0.025,0.05,0.1,0.2,0.4)
KFAC=(--grid kfac.lr=0.0001953125,0.00078125,0.003125,0.0125,0.05,0.2
      --grid kfac.damping=0.00001,0.0001,0.001,0.01,0.1 --grid kfac.kl_clip=0,0.0001,0.001,0.01)
KFAC_WIDE=(--grid kfac.lr=0.00078125,0.003125,0.0125,0.05,0.2,0.8
           --grid kfac.damping=0.0001,0.001,0.01,0.1,1 --grid kfac.kl_clip=0,0.001,0.01)
TR=(--grid trcg.radius=0.01,0.1,1,10,20 --grid strcg.radius=0.01,0.1,1,10,20)
# the K-FAC variants of steps 2 and 8: a small, a medium and a large batch size of SIZES
K_SIZES=(--batch-sizes 512,4096,16384 --budget-epochs 512=20,4096=57,16384=114
         --eval-every 512=5,4096=1,16384=1)

# 1. the four optimizers on the MLP (K-FAC as minigrad's defaults have it: the true Fisher,
#    factors from the first batch, factored damping)
step 1 && minigrad scaling "${MLP[@]}" --target-accuracy 0.85 "${SGD[@]}" "${KFAC[@]}" "${TR[@]}" \
    --optimizers sgd,kfac,trcg,strcg --out "$out/mlp"
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
# 2. K-FAC with the empirical Fisher, at a small, a medium and a large batch size (as step 8)
step 2 && minigrad scaling "${MLP[@]}" "${K_SIZES[@]}" --target-accuracy 0.85 "${KFAC[@]}" \
    --optimizers kfac --train-option kfac.fisher=empirical --out "$out/mlp-kfac-empirical"
# 3. K-FAC as a common PyTorch implementation has it: factors start at the identity, eigenbasis
#    damping (a wider grid: its best settings sat on both ends of the narrower one)
step 3 && minigrad scaling "${MLP[@]}" --target-accuracy 0.85 "${KFAC_WIDE[@]}" --optimizers kfac \
    --train-option kfac.factor_init=identity --train-option kfac.damping_form=eigen \
    --out "$out/mlp-kfac-identity-eigen"
# 4. LeNet-5: can every optimizer reach 88% test accuracy at B = 128 within 20 epochs? (the
#    check behind the LeNet-5 target; docs/results.md)
step 4 && minigrad compare --dataset fashion-mnist --model lenet --batch-size 128 \
    --target-accuracy 0.88 \
    --budget-epochs 20 --eval-every 50 --jobs "$jobs" \
    --grid sgd.lr=0.01,0.02,0.05,0.1 --grid kfac.lr=0.05 --grid kfac.damping=0.001,0.01,0.1 \
    --train-option kfac.fisher=empirical \
    --grid trcg.radius=0.1,1,10 --grid strcg.radius=0.1,1,10 --out "$out/lenet-b128"
# 5. LeNet-5 scaling, SGD and K-FAC (SGD's lr grid three steps lower than the MLP's: from B =
#    2048 on, the sqrt-scaled lr of the MLP's grid sent LeNet-5 to chance within two epochs at
#    every value; K-FAC's grid widened by one value on each axis where its first pass, lr
#    0.003125 to 0.2, damping 0.01 to 1 and kl_clip 0.001 or off, put the best settings on an
#    edge). Step 10 adds the trust-region methods to the same study.
LENET=(--dataset fashion-mnist --model lenet --batch-sizes 128,256,512,1024,2048,4096,8192
       --target-accuracy 0.88 --budget-epochs 128=20,256=29,512=40,1024=57,2048=80,4096=114,8192=160
       --eval-every 128=50,256=25,512=20,1024=10,2048=8,4096=5,8192=4
       --lr-scaling sqrt --base-batch-size 128 --confirm-seeds 3 --jobs "$jobs")
# LeNet-5's SGD trials run without the divergence rule: its recheck found a trial the rule had
# stopped at chance (B = 4096) that, trained on, reached 88% in fewer steps than its search's
# best; so they run to the target or their bound, and the figures are exact
LENET_SGD=(--grid sgd.lr=0.0015625,0.003125,0.00625,0.0125,0.025,0.05,0.1,0.2
           --train-option sgd.diverged_after=0)
LENET_KFAC=(--grid kfac.lr=0.00078125,0.003125,0.0125,0.05,0.2
            --grid kfac.damping=0.001,0.01,0.1,1 --grid kfac.kl_clip=0,0.0001,0.001)
step 5 && minigrad scaling "${LENET[@]}" "${LENET_SGD[@]}" "${LENET_KFAC[@]}" \
    --optimizers sgd,kfac --out "$out/lenet"
# LeNet-5's reference run for the noise scale (lr 0.05, the search's best at B = 128)
noise_lenet="$out/noise-lenet-sgd-b128"
if ! step 5; then
    :
elif [ -f "$noise_lenet/checkpoint.npz" ]; then
    minigrad train --out "$noise_lenet" --resume
else
    minigrad train --dataset fashion-mnist --model lenet --optimizer sgd --batch-size 128 \
        --lr 0.05 --momentum 0.9 --epochs 4 --eval-every 20 --noise-scale-examples 1024 \
        --no-layer-stats --out "$noise_lenet"
fi
# 6. the MLP to a training-loss target: optimization speed apart from generalization
step 6 && minigrad scaling "${MLP[@]}" --target-loss 0.25 "${SGD[@]}" "${KFAC[@]}" "${TR[@]}" \
    --optimizers sgd,kfac,trcg,strcg --out "$out/mlp-loss"
# 7. robustness: every grid point at a small, a medium and a large batch size (minigrad
#    sensitivity's grids: 4 to 7 values per axis; K-FAC with its default KL clip), each trial
#    stopped at the target (the fraction reaching it is the same as with the whole budget)
step 7 && minigrad sensitivity --dataset fashion-mnist --model mlp --hidden 256,256 \
    --batch-sizes 256,2048,16384 --budget-epochs 256=15,2048=40,16384=114 \
    --eval-every 256=8,2048=2,16384=1 --target-accuracy 0.85 --stop-at-target --lr-scaling sqrt \
    --base-batch-size 128 --jobs "$jobs" --optimizers sgd,kfac,trcg,strcg \
    --out "$out/mlp-sensitivity"
# 8. K-FAC's update periods at a small, a medium and a large batch size, each with step 1's
#    grid: eigenbases every step instead of every 20, and the sparse schedule common in
#    practice (factors every 10 steps, eigenbases every 100)
step 8 && minigrad scaling "${MLP[@]}" "${K_SIZES[@]}" --target-accuracy 0.85 "${KFAC[@]}" \
    --optimizers kfac --train-option kfac.inv_update_every=1 --out "$out/mlp-kfac-eigen-every-step"
step 8 && minigrad scaling "${MLP[@]}" "${K_SIZES[@]}" --target-accuracy 0.85 "${KFAC[@]}" \
    --optimizers kfac --train-option kfac.cov_update_every=10 \
    --train-option kfac.inv_update_every=100 --out "$out/mlp-kfac-sparse-updates"
# 9. robustness without K-FAC's KL clip: step 7's K-FAC grid (lr x damping) with kl_clip off
step 9 && minigrad sensitivity --dataset fashion-mnist --model mlp --hidden 256,256 \
    --batch-sizes 256,2048,16384 --budget-epochs 256=15,2048=40,16384=114 \
    --eval-every 256=8,2048=2,16384=1 --target-accuracy 0.85 --stop-at-target --lr-scaling sqrt \
    --base-batch-size 128 --jobs "$jobs" --optimizers kfac --grid kfac.kl_clip=0 \
    --out "$out/mlp-sensitivity-kfac-noclip"
# 10. LeNet-5 scaling with all four optimizers: step 5's trials (reused) and the trust-region
#     methods' (after steps 6 to 9: they do not reach 88% at B = 128, so their trials may run
#     their whole budgets, an hour or more each). One initial radius per method, the one that
#     ended best at B = 128 in step 4 (TRCG 0.1, STRCG 1), not searched: the radius adapts as
#     a run goes (halved on every rejected step), and at B = 128 the radii 0.1, 1 and 10 end
#     within 0.05 of each other's accuracy for both methods; three radii would triple about
#     12 h of CPU.
step 10 && minigrad scaling "${LENET[@]}" "${LENET_SGD[@]}" "${LENET_KFAC[@]}" \
    --grid trcg.radius=0.1 --grid strcg.radius=1 --optimizers sgd,kfac,trcg,strcg \
    --out "$out/lenet"
# 11. SGD with a linear lr warmup over its first 5 epochs (Goyal et al. 2017) at each model's
#     three largest batch sizes, each with its model's SGD grid: without it, from B = 2048 on
#     most of LeNet-5's lr values collapsed to chance after a loss spike in the first epochs,
#     and the MLP missed its target at B = 16384; does SGD's large-batch figure depend on a
#     warmup?
step 11 && minigrad scaling "${LENET[@]}" "${LENET_SGD[@]}" --batch-sizes 2048,4096,8192 \
    --budget-epochs 2048=80,4096=114,8192=160 --eval-every 2048=8,4096=5,8192=4 \
    --optimizers sgd --train-option sgd.warmup_epochs=5 --out "$out/lenet-sgd-warmup"
step 11 && minigrad scaling "${MLP[@]}" --batch-sizes 4096,8192,16384 \
    --budget-epochs 4096=57,8192=80,16384=114 --eval-every 4096=1,8192=1,16384=1 \
    --target-accuracy 0.85 "${SGD[@]}" --optimizers sgd --train-option sgd.warmup_epochs=5 \
    --out "$out/mlp-sgd-warmup"
true   # the status of the script is that of its steps, not of the last step test
