#!/usr/bin/env bash
# One scaling study, run by a SLURM job array: every task is one worker that joins the same study
# in a PostgreSQL database and trains the trials nobody else has taken (docs/distributed.md,
# "A study on a cluster").
#
#   STORAGE_URL=postgresql+psycopg://minigrad@dbhost:5432/minigrad sbatch examples/slurm/study-workers.sh
#
# STORAGE_URL: the database (its password in ~/.pgpass, not here). STUDY_DIR: the study folder,
# on a file system every node mounts at the same path (default /shared/study). MINIGRAD_VENV: a
# virtual environment with minigrad and psycopg installed, also on that file system (default
# /shared/venv). sbatch passes on the environment it was started in. The nodes find Fashion-MNIST
# as `minigrad train` does (datasets/README.md), e.g. in MINIGRAD_DATA=/shared/data. More workers
# can join at any time: submit the script again.
#
#SBATCH --job-name=minigrad-study
#SBATCH --array=1-16
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#SBATCH --mem=4G
#SBATCH --time=12:00:00
#SBATCH --output=minigrad-study-%A_%a.out
set -euo pipefail

: "${STORAGE_URL:?set STORAGE_URL to the study database, e.g. postgresql+psycopg://minigrad@dbhost:5432/minigrad}"
STUDY_DIR=${STUDY_DIR:-/shared/study}
# shellcheck disable=SC1091
source "${MINIGRAD_VENV:-/shared/venv}/bin/activate"

# One BLAS thread per worker, the one core SLURM gave it (more threads than cores make each step
# several times slower; see docs/scaling.md).
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1

echo "worker ${SLURM_ARRAY_TASK_ID:-?} of job ${SLURM_ARRAY_JOB_ID:-?} on $(hostname)"
# Every worker runs exactly this command: the options define the study (here step 1 of
# docs/results/fashion-mnist/run-study.sh, SGD and K-FAC on the Fashion-MNIST MLP).
exec minigrad scaling \
    --dataset fashion-mnist --model mlp --hidden 256,256 --optimizers sgd,kfac \
    --batch-sizes 128,256,512,1024,2048,4096,8192,16384 --target-accuracy 0.85 \
    --budget-epochs 128=10,256=15,512=20,1024=29,2048=40,4096=57,8192=80,16384=114 \
    --eval-every 128=10,256=8,512=5,1024=4,2048=2,4096=1,8192=1,16384=1 \
    --lr-scaling sqrt --base-batch-size 128 \
    --grid sgd.lr=0.0125,0.025,0.05,0.1,0.2,0.4 \
    --grid kfac.lr=0.0125,0.05,0.2 --grid kfac.damping=0.001,0.01,0.1 \
    --grid kfac.kl_clip=0,0.001,0.01 --train-option kfac.fisher=empirical \
    --out "$STUDY_DIR" --storage "$STORAGE_URL" --jobs 1 --threads-per-job 1
