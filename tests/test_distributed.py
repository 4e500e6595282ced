"""Data parallelism: minigrad.distributed's communicators, and `minigrad train` / `scaling` on 2
MPI processes (`mpiexec -n 2 python -m mpi4py -m minigrad.cli ...` in a subprocess with a
timeout, so that a failing rank aborts the job instead of hanging the suite) against one process
with the same global batch."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import minigrad as mg
from minigrad import datasets, distributed
from minigrad.cli import parallel
from minigrad.cli.checkpoint import read_checkpoint
from minigrad.cli.runlog import read_run
from minigrad.distributed import SingleProcess, pack, unpack
from minigrad.optim import SGD
from support import assert_same_params, mpiexec, needs_mpi

TIMEOUT = 180




def mpirun(*args, ranks=2, rank1=None, cwd=None):
    """`minigrad ARGS` on `ranks` MPI processes (rank 1 may run the script `rank1` instead);
    returns the CompletedProcess."""
    program = [sys.executable, "-m", "mpi4py"]
    cli = ["-m", "minigrad.cli", *map(str, args)]
    if rank1 is None:
        command = [mpiexec(), "-n", str(ranks), *program, *cli]
    else:
        command = [mpiexec(), "-n", "1", *program, *cli, ":", "-n", "1", *program, str(rank1),
                   *map(str, args)]
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd,
                          env=env)


def single(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "minigrad.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=TIMEOUT, env=env)


def ok(result):
    assert result.returncode == 0, result.stdout + result.stderr
    return result


# --------------------------------------------------------------------------- communicators
def test_pack_and_unpack_fuse_one_buffer_per_dtype():
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((3, 4)), rng.standard_normal(5).astype(np.float32),
              rng.standard_normal(()), rng.standard_normal((2, 2, 2)).astype(np.float32)]
    packed = pack(arrays)
    assert [(str(d), f.shape, idx) for d, f, idx in packed] == [
        ("float64", (13,), [0, 2]), ("float32", (13,), [1, 3])]
    for got, want in zip(unpack(packed, arrays), arrays):
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    packed[0][1][:] = 0   # the buffer is a copy: the inputs stay
    assert arrays[0].any()


def test_single_process_collectives_are_the_identity():
    comm = SingleProcess()
    a = [np.arange(3.0)]
    assert comm.allreduce_mean(a)[0] is a[0] and comm.allreduce_sum(a)[0] is a[0]
    assert comm.broadcast(a)[0] is a[0] and comm.allreduce_scalars([2, 3]) == [2.0, 3.0]
    assert comm.allgather_object({"x": 1}) == [{"x": 1}] and comm.broadcast_object(5) == 5
    assert (comm.rank, comm.world_size, comm.stats.calls) == (0, 1, 0)


def test_auto_backend_is_single_outside_a_launcher(monkeypatch):
    for key in ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "PMIX_SIZE",
                "MV2_COMM_WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    previous = distributed.set_communicator(None)
    try:
        assert distributed.get_communicator().backend == "single"
        with pytest.raises(ValueError, match="backend must be one of"):
            distributed.get_communicator("gloo")
    finally:
        distributed.set_communicator(previous)


def test_mpi_backend_without_mpi4py_names_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    from minigrad.distributed.mpi import MPICommunicator
    with pytest.raises(ImportError, match=r"install it with pip install mpi4py mpich$"):
        MPICommunicator()


def test_shard_rows_are_the_split_of_datasets_batches():
    x = np.arange(1437)[:, None].astype(np.float64)
    y = np.arange(1437)
    for world in (1, 2, 3):
        parts = [list(datasets.batches(x, y, 66 if world == 3 else 64, seed=0, rank=r,
                                       world_size=world)) for r in range(world)]
        full = list(datasets.batches(x, y, 66 if world == 3 else 64, seed=0))
        for k, (_, yb) in enumerate(full):
            for r in range(world):
                lo, hi = parallel.shard_rows(len(yb), r, world)
                np.testing.assert_array_equal(parts[r][k][1], yb[lo:hi])


class _TwoRanks:
    """A fake communicator: this process plays rank `rank` of 2, the other rank's arrays are
    given; collectives add them."""
    world_size = 2

    def __init__(self, rank, other):
        self.rank, self.other = rank, other

    def allreduce_sum(self, arrays):
        return [a + b for a, b in zip(arrays, self.other)]

    def allreduce_scalars(self, values, op="sum"):
        return [v + o for v, o in zip(values, self.other)]


def test_optimizer_reduce_is_the_shard_weighted_sum():
    p = mg.tensor(np.zeros(3), requires_grad=True)
    opt = SGD([p], lr=0.1)
    g0 = np.array([1.0, 2.0, 3.0])
    assert opt.reduce([g0])[0] is g0 and opt.reduce_value(2.5) == 2.5   # one process
    # rank 0 holds 15 of 29 rows, its mean gradient g0; rank 1's part (14/29) g1 arrives
    g1 = np.array([-1.0, 0.5, 4.0])
    opt.distribute(_TwoRanks(0, [g1 * 14 / 29])).shard(15, 29)
    np.testing.assert_allclose(opt.reduce([g0])[0], (15 * g0 + 14 * g1) / 29, rtol=1e-15)
    with pytest.raises(ValueError, match="local_rows <= global_rows"):
        opt.shard(30, 29)


def test_check_same_names_the_option_and_the_rank():
    class Gather(_TwoRanks):
        def allgather_object(self, obj):
            return [obj, dict(obj, lr=0.2)]
    with pytest.raises(Exception, match=r"rank 1: lr=0.2 \(rank 0: 0.1\)"):
        parallel.check_same(Gather(0, None), "options", {"lr": 0.1, "seed": 0})


# ------------------------------------------------------------------------- mpiexec -n 2
COMMON = ("--hidden", "16", "--dtype", "float64", "--steps", 26, "--eval-every", 13,
          "--batch-size", 64)   # 26 steps cross the end of the first epoch (23 batches, the last 29 rows)


@needs_mpi
@pytest.mark.parametrize("optimizer, extra, rtol", [
    ("sgd", (), 1e-10), ("kfac", (), 1e-8), ("kfac", ("--fisher", "true"), 1e-8),
    ("trcg", (), 1e-8), ("strcg", (), 1e-8)])
def test_two_ranks_give_the_parameters_of_one_process(tmp_path, optimizer, extra, rtol):
    args = (*COMMON, "--optimizer", optimizer, *extra)
    result = ok(mpirun("train", *args, "--out", tmp_path / "two", "--profile"))
    ok(single("train", *args, "--out", tmp_path / "one"))
    assert_same_params(tmp_path / "two", tmp_path / "one", rtol)
    two, one = read_run(str(tmp_path / "two")), read_run(str(tmp_path / "one"))
    np.testing.assert_allclose(two["steps"]["loss"], one["steps"]["loss"], rtol=rtol)
    np.testing.assert_allclose(two["evals"]["test_accuracy"], one["evals"]["test_accuracy"])
    assert json.loads(two["attrs"]["config"])["world_size"] == 2
    # rank 0 alone prints and writes
    assert result.stdout.count("done: 26 steps") == 1
    assert "MB communicated" in result.stdout and (two["steps"]["comm_bytes"] > 0).all()
    if optimizer in ("trcg", "strcg"):
        np.testing.assert_array_equal(two["steps"]["curvature_products"],
                                      one["steps"]["curvature_products"])
        np.testing.assert_allclose(two["steps"]["grad_equivalents"],
                                   one["steps"]["grad_equivalents"], rtol=1e-12)


@needs_mpi
def test_a_distributed_run_resumes_exactly(tmp_path):
    args = ("--hidden", "16", "--dtype", "float64", "--optimizer", "kfac", "--batch-size", 64)
    ok(mpirun("train", *args, "--steps", 13, "--out", tmp_path / "two"))
    ok(mpirun("train", "--steps", 26, "--resume", "--out", tmp_path / "two"))
    ok(single("train", *args, "--steps", 26, "--out", tmp_path / "one"))
    assert_same_params(tmp_path / "two", tmp_path / "one", 1e-8)


@needs_mpi
def test_a_scaling_study_runs_distributed(tmp_path):
    study = ("scaling", "--hidden", "16", "--dtype", "float64", "--optimizers", "sgd,trcg",
             "--batch-sizes", "256,512", "--target-accuracy", 0.6, "--budget-epochs", 3,
             "--evals-per-epoch", 2, "--grid", "sgd.lr=0.1,0.4", "--grid", "trcg.radius=1")
    result = ok(mpirun(*study, "--out", tmp_path / "two"))
    ok(single(*study, "--out", tmp_path / "one"))
    import h5py
    with h5py.File(tmp_path / "two" / "scaling.h5") as f, \
            h5py.File(tmp_path / "one" / "scaling.h5") as g:
        for opt in ("sgd", "trcg"):
            for key in ("steps_to_target", "trial", "cost_to_target"):
                np.testing.assert_allclose(f[f"best/{opt}/{key}"][()], g[f"best/{opt}/{key}"][()],
                                           rtol=1e-12)
    assert result.stdout.count("results written to") == 1
    result = mpirun(*study, "--jobs", 2, "--out", tmp_path / "x")
    assert result.returncode == 2 and "use --jobs 1" in result.stdout + result.stderr


CRASH = textwrap.dedent("""
    import sys
    import minigrad.cli
    step_module = sys.modules["minigrad.cli.training.steps"]
    real = step_module.one_step

    def failing(name, model, optimizer, xb, yb, step, *rows):
        if step == 7:
            raise RuntimeError("injected failure in step 8")
        return real(name, model, optimizer, xb, yb, step, *rows)

    step_module.one_step = failing
    minigrad.cli.main(sys.argv[1:], prog_name="minigrad")
""")


@needs_mpi
def test_a_crashing_rank_aborts_the_job_and_the_last_checkpoint_stays(tmp_path):
    script = tmp_path / "crash.py"
    script.write_text(CRASH)
    out = tmp_path / "run"
    result = mpirun("train", *COMMON, "--checkpoint-every", 5, "--out", out, rank1=script)
    assert result.returncode != 0
    assert "Error: rank 1: RuntimeError: injected failure in step 8" in result.stderr
    model_state, state = read_checkpoint(str(out))
    assert state["step"] == 5 and all(np.isfinite(v).all() for v in model_state.values())
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]


@needs_mpi
def test_mismatched_configurations_are_found_at_start(tmp_path):
    script = tmp_path / "same.py"
    script.write_text("import sys, minigrad.cli\nminigrad.cli.main(sys.argv[1:] + ['--lr', '0.2'], "
                      "prog_name='minigrad')\n")
    result = mpirun("train", *COMMON, "--out", tmp_path / "run", rank1=script)
    assert result.returncode == 2
    assert "disagree on their options: rank 1: lr=0.2 (rank 0: 0.1)" in result.stderr
    assert not (tmp_path / "run" / "run.h5").exists()


@needs_mpi
def test_a_batch_size_not_divisible_by_the_processes_is_a_usage_error(tmp_path):
    result = mpirun("train", "--batch-size", 63, "--out", tmp_path / "run")
    assert result.returncode == 2 and "--batch-size 63 is not divisible by the 2" in result.stderr


def test_kfac_layers_go_largest_first_to_the_least_loaded_rank():
    from minigrad.nn import models
    from minigrad.optim import KFAC

    model = models.mlp([64, 100, 30, 30, 10], rng=0)   # (d+1)^3 + o^3: 2.8e5+1e6, 1e6+2.7e4, ...
    opt = KFAC(model, lr=0.1, damping=0.01)
    try:
        opt.distribute(_TwoRanks(0, None))
        owners = opt.owners()
        weights = [w for _, _, w, _ in opt.layers]
        costs = [(m.weight.shape[1] + 1) ** 3 + m.weight.shape[0] ** 3 for _, m, _, _ in opt.layers]
        load = [sum(c for c, w in zip(costs, weights) if owners[w] == r) for r in (0, 1)]
        assert owners[weights[int(np.argmax(costs))]] == 0 and set(owners.values()) == {0, 1}
        assert max(load) - min(load) <= max(costs)   # greedy: within one layer of balance
        A, G = np.eye(65), np.eye(100)
        got = opt._decompose_all([(weights[0], "0", A, G), (weights[1], "2", np.eye(101),
                                                            np.eye(30))])
        assert (got[weights[0]] is None) == (owners[weights[0]] != 0)
        assert (got[weights[1]] is None) == (owners[weights[1]] != 0)
    finally:
        opt.close()


@needs_mpi
@pytest.mark.parametrize("optimizer", [("kfac", "--fisher", "true"), ("trcg",)])
def test_a_rank_with_an_empty_shard_adds_nothing(tmp_path, optimizer):
    """Batch 1436 of 1437 rows: every second step is the epoch's last batch, one row, which
    rank 0 holds alone while rank 1 has none."""
    args = ("train", "--hidden", "16", "--dtype", "float64", "--batch-size", 1436, "--steps", 5,
            "--optimizer", *optimizer)
    ok(mpirun(*args, "--out", tmp_path / "two"))
    ok(single(*args, "--out", tmp_path / "one"))
    assert_same_params(tmp_path / "two", tmp_path / "one", 1e-8)


@needs_mpi
def test_a_failure_every_rank_meets_ends_the_run_together_with_its_files(tmp_path):
    out = tmp_path / "run"
    result = mpirun("train", "--hidden", "16", "--steps", 30, "--lr", 1e30, "--out", out)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "non-finite loss" in errors[0] and "rank" not in errors[0]
    assert read_run(str(out))["attrs"]["status"] == "failed"   # rank 0 wrote it before the exit


def _rank_pids(launcher_pid):
    """The pids of the MPI ranks under an mpiexec (hydra: mpiexec -> hydra_pmi_proxy -> ranks),
    in rank order of their start."""
    def children(pid):
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    return sorted(rank for proxy in children(launcher_pid) for rank in children(proxy))


# The signal is sent to the ranks, as mpiexec's forwarding does: MPICH 5.0.2's hydra occasionally
# loses a SIGINT sent to mpiexec itself (3 of 14 runs on this machine: it never prints "Sending
# Ctrl-C to processes" and a second SIGINT trips an assertion in its proxy), which is hydra's
# bug and made this test hang. Sending SIGTERM to rank 1 alone shows that one rank's signal
# stops every rank after the same step (agreed_signal).
@needs_mpi
@pytest.mark.parametrize("signame, to_ranks", [("SIGINT", (0, 1)), ("SIGTERM", (1,))])
def test_a_stop_signal_stops_every_rank_after_the_same_step_with_a_checkpoint(
        tmp_path, signame, to_ranks):
    import signal
    import time

    out = tmp_path / "run"
    command = [mpiexec(), "-n", "2", sys.executable, "-m", "mpi4py", "-m", "minigrad.cli",
               "train", "--hidden", "16", "--steps", 10 ** 6, "--eval-every", 100, "--out", out]
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    process = subprocess.Popen(list(map(str, command)), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline()   # the first evaluation: training is under way
        assert line.startswith("step"), line
        time.sleep(0.5)
        ranks = _rank_pids(process.pid)
        assert len(ranks) == 2, ranks
        for r in to_ranks:
            os.kill(ranks[r], getattr(signal, signame))
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    finally:
        process.kill()
    number = int(getattr(signal, signame))
    assert process.returncode == 128 + number, stdout + stderr
    assert f"{signame}: stopped at step" in stderr
    step = read_checkpoint(str(out))[1]["step"]
    assert read_run(str(out))["attrs"]["status"] == "interrupted" and step >= 100
    assert f"stopped at step {step};" in stderr
    ok(single("train", "--out", out, "--resume", "--steps", step + 5))
    assert read_run(str(out))["attrs"]["steps"] == step + 5


@needs_mpi
def test_a_distributed_study_survives_a_diverging_trial(tmp_path):
    study = ("scaling", "--hidden", "16", "--optimizers", "sgd", "--batch-sizes", "256",
             "--target-accuracy", 0.5, "--budget-epochs", 2, "--grid", "sgd.lr=1e30,0.5",
             "--out", tmp_path / "s")
    result = ok(mpirun(*study))
    assert "diverged" in result.stdout and (tmp_path / "s" / "scaling.h5").is_file()
    bad = mpirun("scaling", "--batch-sizes", "33,64", "--target-accuracy", 0.5,
                 "--out", tmp_path / "x")
    assert bad.returncode == 2 and "not divisible by the 2 processes" in bad.stderr


@needs_mpi
@pytest.mark.parametrize("args, words", [
    (["train", "--bogus"], "No such option '--bogus'"),
    (["train", "--batch-size", "5000"], "--batch-size 5000 exceeds the 1437 training examples"),
])
def test_a_usage_error_is_printed_once_per_job(tmp_path, args, words):
    """The same mistake on every rank: rank 0 says it, once, and every rank exits 2."""
    result = mpirun(*args, "--out", tmp_path / "r")
    assert result.returncode == 2, result.stdout + result.stderr
    output = result.stdout + result.stderr
    # (python -m mpi4py, which runs the ranks here, turns a non-zero exit into MPI_Abort)
    assert output.count(words) == 1 and "Error: rank" not in output, output


TRUE_FISHER_WITHOUT_OUTPUTS = textwrap.dedent("""
    import numpy as np
    import minigrad as mg
    import minigrad.functional as F
    from minigrad import distributed, nn
    from minigrad.optim import KFAC

    comm = distributed.get_communicator()
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(3, 4, rng=rng), nn.Tanh(), nn.Linear(4, 2, rng=rng))
    opt = KFAC(model, lr=0.1, damping=0.1, fisher="true", rng=0).distribute(comm)
    x = np.random.default_rng(1).standard_normal((8, 3)).astype(np.float32)
    y = np.array([0, 1] * 4)
    rows = slice(4 * comm.rank, 4 * comm.rank + 4)
    opt.shard(4, 8, 4 * comm.rank)
    opt.zero_grad()
    F.cross_entropy(model(mg.tensor(x[rows])), y[rows]).backward()
    try:
        opt.step()                      # the true Fisher's labels need the logits: a mistake
    except ValueError as e:
        print(f"rank {comm.rank}: ValueError: {e}", flush=True)
""")


@needs_mpi
def test_a_true_fisher_step_without_outputs_is_an_error_on_every_rank_with_rows(tmp_path):
    script = tmp_path / "no_outputs.py"
    script.write_text(TRUE_FISHER_WITHOUT_OUTPUTS)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    result = subprocess.run([mpiexec(), "-n", "2", sys.executable, str(script)],
                            capture_output=True, text=True, timeout=TIMEOUT, env=env)
    for rank in (0, 1):
        assert f"rank {rank}: ValueError: KFAC.step: fisher='true' needs the model's outputs" \
            in result.stdout, result.stdout + result.stderr
