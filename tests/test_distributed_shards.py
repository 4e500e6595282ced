"""Data parallelism: under `mpiexec -n 2`, each rank of `minigrad train` trains on ITS shard of
the global batch only (cli/train.py, datasets.batches, cli/parallel.shard_rows).

"Two ranks give the parameters of one process" (tests/test_distributed.py) cannot see a rank
that trains on the whole batch: with the shard weight n_r/N it still reduces to the global
mean. So here every rank records, at every step, what `one_step` gets and what the model's
forward is actually fed, plus the optimizer's `shard_rows`, and the test checks them against
the documented split, computed independently:

    epoch e order:  perm_e = numpy.random.default_rng([seed, e]).permutation(n)
    global batch k of the epoch:  I_k = perm_e[k B : (k+1) B]      (the last one shorter)
    rank r of P holds the r-th part of numpy.array_split(I_k, P)   (contiguous, sizes differ by
                                                                    at most one: B/P when full)

With B = 512 on the 1437 digits training rows an epoch is 512 + 512 + 413 rows, so 4 steps
cover full batches (256 + 256), the short batch (207 + 206) and the first batch of the next
epoch (a new order). Every training row is a distinct image, so the rows a rank was fed are
mapped back to their indices: the ranks' index sets must be exactly the parts above, hence
disjoint, and together the global batch.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from support import digits_train, mpiexec, needs_mpi

TIMEOUT = 120
BATCH, STEPS, SEED, RANKS = 512, 4, 3, 2




RECORD = textwrap.dedent("""
    import sys
    import numpy as np
    import minigrad.cli
    from minigrad.distributed import get_communicator

    step_module = sys.modules["minigrad.cli.training.steps"]
    real = step_module.one_step
    records = []

    def recording(name, model, optimizer, xb, yb, step, *rows):
        fed = []
        handle = model.register_forward_hook(
            lambda module, inputs, output: fed.append(np.array(inputs[0].data, copy=True)))
        try:
            return real(name, model, optimizer, xb, yb, step, *rows)
        finally:
            handle.remove()
            records.append((step, np.array(xb, copy=True), np.array(yb, copy=True), fed,
                            tuple(optimizer.shard_rows), float(optimizer.shard_weight)))

    step_module.one_step = recording
    try:
        minigrad.cli.main(sys.argv[2:], prog_name="minigrad")
    finally:
        rank = get_communicator().rank
        arrays = {"world": np.array(get_communicator().world_size)}
        for step, xb, yb, fed, shard_rows, weight in records:
            arrays[f"{step}.xb"], arrays[f"{step}.yb"] = xb, yb
            arrays[f"{step}.forwards"] = np.array(len(fed))
            for i, x in enumerate(fed):
                arrays[f"{step}.fed{i}"] = x
            arrays[f"{step}.shard_rows"] = np.array(shard_rows)
            arrays[f"{step}.shard_weight"] = np.array(weight)
        np.savez(f"{sys.argv[1]}/rank{rank}.npz", **arrays)
""")


def expected_shards(n):
    """[(global batch indices, [rank 0's indices, rank 1's indices])] for the STEPS steps, by
    the formulas of the module docstring."""
    out, epoch = [], 0
    while len(out) < STEPS:
        perm = np.random.default_rng([SEED, epoch]).permutation(n)
        for start in range(0, n, BATCH):
            batch = perm[start:start + BATCH]
            out.append((batch, np.array_split(batch, RANKS)))
            if len(out) == STEPS:
                break
        epoch += 1
    return out


@needs_mpi
@pytest.mark.parametrize("optimizer", ["sgd", "kfac"])
def test_each_rank_trains_on_its_own_disjoint_half_of_every_global_batch(tmp_path, optimizer):
    script = tmp_path / "record.py"
    script.write_text(RECORD)
    command = [mpiexec(), "-n", str(RANKS), sys.executable, "-m", "mpi4py", str(script),
               str(tmp_path), "train", "--optimizer", optimizer, "--hidden", "16",
               "--dtype", "float64", "--batch-size", str(BATCH), "--steps", str(STEPS),
               "--seed", str(SEED), "--eval-every", "1000", "--out", str(tmp_path / "run")]
    if optimizer == "kfac":
        command += ["--fisher", "empirical"]
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env=env)
    assert result.returncode == 0, result.stdout + result.stderr

    images, labels = digits_train()
    index_of = {row.tobytes(): i for i, row in enumerate(images)}
    assert len(index_of) == len(images)   # distinct rows: a fed row names its index
    plan = expected_shards(len(images))
    assert [len(b) for b, _ in plan] == [512, 512, 413, 512]
    records = [np.load(tmp_path / f"rank{r}.npz") for r in range(RANKS)]
    for r in range(RANKS):
        assert int(records[r]["world"]) == RANKS
    for step, (batch, parts) in enumerate(plan):
        held = []
        lo = 0
        for r in range(RANKS):
            rec = records[r]
            want = parts[r]
            assert len(want) == (BATCH // RANKS if len(batch) == BATCH else [207, 206][r])
            xb, yb = rec[f"{step}.xb"], rec[f"{step}.yb"]
            assert xb.shape == (len(want), 64) and yb.shape == (len(want),), (step, r, xb.shape)
            np.testing.assert_array_equal(xb, images[want])
            np.testing.assert_array_equal(yb, labels[want])
            # what the model itself was fed during the step: this shard, once
            assert int(rec[f"{step}.forwards"]) == 1, (step, r)
            fed = rec[f"{step}.fed0"]
            assert fed.shape == (len(want), 64), (step, r, fed.shape)
            fed_index = np.array([index_of[row.tobytes()] for row in fed])
            np.testing.assert_array_equal(fed_index, want)
            held.append(fed_index)
            # the optimizer's weight of this rank: its rows [lo, hi) of the N global rows
            assert tuple(rec[f"{step}.shard_rows"]) == (lo, lo + len(want), len(batch))
            assert float(rec[f"{step}.shard_weight"]) == len(want) / len(batch)
            lo += len(want)
        # disjoint, and together exactly the global batch in its order
        assert not set(held[0]) & set(held[1])
        assert sum(len(h) for h in held) == len(batch)
        np.testing.assert_array_equal(np.concatenate(held), batch)
    for r in range(RANKS):
        assert f"{STEPS}.xb" not in records[r].files   # exactly STEPS steps recorded
