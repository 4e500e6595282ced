"""The races a study's queue (cli/study/queue.py) and its session (cli/study/pool.py) meet when
several workers share one storage, each played out in one process: a worker claiming from a list
of waiting trials that another worker has since claimed and ended; a worker recording the end of
a trial that another worker failed as stale meanwhile; a session interrupted while a worker takes
a trial; a session whose workers all ended before the trials did; a worker killed as it claims
a trial; a storage that keeps refusing (one line, not a traceback); two sessions that started
together and both queued every trial.

The storage comes from the `study_storage_url` fixture (tests/conftest.py: SQLite, and an empty
database on the session's throwaway PostgreSQL server)."""

import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from minigrad.cli.scaling import scaling
from minigrad.cli.study import pool, queue, storage
from minigrad.cli.study.trials import STOPPED, execute

RESULT = {"status": "finished", "reached": True, "steps_to_target": 12}


def a_study(url, names=("sgd-b8-a", "sgd-b8-b")):
    study = storage.load_or_create(storage.open_storage(url, 30), "s/scaling/sgd-b8")
    for index, name in enumerate(names):
        queue.enqueue(study, name, {"optimizer": "sgd", "batch_size": 8}, index)
    return study


def test_a_claim_skips_a_trial_another_worker_claimed_and_ended(study_storage_url, monkeypatch):
    study = a_study(study_storage_url)
    stale = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))   # both waiting
    first = queue.claim(study, {"sgd-b8-a", "sgd-b8-b"})   # another worker, which ends it
    queue.finish(study, first, RESULT, prune=True)
    monkeypatch.setattr(study, "get_trials", lambda **kw: stale if kw.get("states") == (
        TrialState.WAITING,) else type(study).get_trials(study, **kw))
    taken = queue.claim(study, {"sgd-b8-a", "sgd-b8-b"})   # from the list read before
    assert taken is not None and taken.user_attrs[queue.TRIAL] == "sgd-b8-b"


def test_the_end_of_a_trial_failed_as_stale_meanwhile_is_not_recorded(study_storage_url):
    study = a_study(study_storage_url, ("sgd-b8-a",))
    mine = queue.claim(study, {"sgd-b8-a"})
    study._storage.set_trial_state_values(mine._trial_id, TrialState.FAIL)   # another worker
    queue.finish(study, mine, RESULT, prune=True)   # neither raises nor records
    queue.give_back(study, mine)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL]
    assert queue.STATUS not in trials[0].user_attrs


def test_an_interrupted_session_stops_its_workers_with_a_stop_signal(tmp_path, monkeypatch):
    """What the session writes to its stop file on Ctrl-C, read by a worker that has just
    claimed a trial, is a stop (the trial goes back to the queue), not a crash."""
    written = []

    def interrupted(workers, stop):
        raise KeyboardInterrupt
    monkeypatch.setattr(pool, "_forward_stops", interrupted)
    real = pool._stop_file
    monkeypatch.setattr(pool, "_stop_file",
                        lambda path, signum: (written.append(signum), real(path, signum)))
    options = {"jobs": 1, "threads_per_job": 1}
    assert pool._run_workers(str(tmp_path), [], "sqlite:///" + str(tmp_path / "db"), 30,
                             options, None) == 130
    stop = tmp_path / "stop"
    real(str(stop), written[-1])
    code, _ = execute({"optimizer": "sgd", "batch_size": 8}, str(tmp_path / "t"), stop=str(stop))
    assert code == 130 and code in STOPPED


def test_a_session_whose_workers_all_died_reports_no_table(tmp_path, monkeypatch):
    monkeypatch.setattr(pool, "_run_workers", lambda *args: 0)   # no trial was run
    out = tmp_path / "s"
    result = CliRunner().invoke(scaling, [
        "--hidden", "8", "--budget-epochs", "1", "--optimizers", "sgd", "--batch-sizes", "256",
        "--target-accuracy", "0.5", "--grid", "sgd.lr=0.1", "--out", str(out)])
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: the trials of 1 of 1 searches did not all end") and \
        "run the same command again" in last
    assert not (out / "scaling.h5").exists()


def test_a_worker_killed_as_it_claims_leaves_a_trial_that_goes_stale(study_storage_url,
                                                                      monkeypatch):
    """A running trial without any heartbeat is never found stale (Optuna's fail_stale_trials):
    the heartbeat comes before the claim, so a worker killed between the two leaves a trial the
    others take over."""
    import optuna
    import time

    study = a_study(study_storage_url, ("sgd-b8-a",))
    backend = study._storage._backend

    def killed(trial_id):
        raise SystemExit(137)   # the worker dies right after it set the trial running
    running = backend.set_trial_state_values
    monkeypatch.setattr(backend, "set_trial_state_values", lambda *a, **kw: (
        running(*a, **kw), killed(a[0]))[0])
    with pytest.raises(SystemExit):
        queue.claim(study, {"sgd-b8-a"})
    monkeypatch.setattr(backend, "set_trial_state_values", running)
    monkeypatch.setattr(backend, "grace_period", 0)
    time.sleep(1.1)   # SQLite's clock has whole seconds
    optuna.storages.fail_stale_trials(study)
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL]


def test_a_storage_that_keeps_refusing_is_one_line(monkeypatch):
    import sqlalchemy.exc

    from minigrad.cli.common import UserError

    def refused():
        raise sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception(
            "connection to server at \"db\" failed: Connection refused\n\tIs the server running?"))
    monkeypatch.setattr(storage.time, "sleep", lambda seconds: None)
    with pytest.raises(UserError) as raised:
        storage.retry(refused)
    assert "\n" not in str(raised.value) and "Connection refused" in str(raised.value)


def test_a_second_sessions_copy_of_a_folder_found_done_is_not_recorded_twice(
        study_storage_url, tmp_path, monkeypatch):
    """Two sessions that start together both queue every trial; the copy claimed once the
    first one has ended finds its folder done and is dropped: one ended record per folder."""
    from minigrad.cli.study import workers
    from minigrad.cli.study.trials import DONE_EARLIER

    study = a_study(study_storage_url, ("sgd-b8-a", "sgd-b8-a"))   # two sessions' syncs
    first = queue.claim(study, {"sgd-b8-a"})
    queue.finish(study, first, RESULT, prune=False)
    second = queue.claim(study, {"sgd-b8-a"})
    monkeypatch.setattr(workers, "execute", lambda *args, **kwargs: (0, DONE_EARLIER))
    monkeypatch.setattr(workers, "trial_result", lambda folder: RESULT)
    search = workers.Search(study.study_name, ["sgd-b8-a"], [{}], [0])
    workers._run(str(tmp_path), study, search, second, 30, None, None)
    ended = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert [t.number for t in ended] == [first.number]
    assert queue.complete(study, {"sgd-b8-a"}, False)


def test_an_idle_worker_looks_less_often_the_longer_it_finds_nothing(study_storage_url, tmp_path,
                                                                      monkeypatch):
    """A worker with nothing to take while another trains looks again after 0.5 s, then 1, 2
    and 4 s (each look reads every trial), and ends when the search is complete."""
    from minigrad.cli.study import workers

    a_study(study_storage_url, ("sgd-b8-a",))
    search = workers.Search("s/scaling/sgd-b8", ["sgd-b8-a"],
                            [{"optimizer": "sgd", "batch_size": 8}], [0])
    looks = iter([False] * 5 + [True])
    # another worker trains the one trial
    monkeypatch.setattr(workers, "_take", lambda studies, searches, previous: None)
    monkeypatch.setattr(workers.Search, "complete", lambda self, study, prune: next(looks))
    waits = []
    monkeypatch.setattr(workers, "_sleep_unless_stopped", lambda s, stop: waits.append(s))
    monkeypatch.setattr(workers.signal, "signal", lambda *a: None)   # keep pytest's handlers
    workers.work(str(tmp_path), [search], study_storage_url, 30, str(tmp_path / "stop"), None)
    assert waits == [0.5, 1.0, 2.0, 4.0, 4.0]


def test_an_idle_workers_wait_ends_when_the_stop_file_appears(tmp_path):
    from minigrad.cli.study import workers

    stop = tmp_path / "stop"
    stop.write_text("")
    workers._sleep_unless_stopped(3600, str(stop))   # returns at once, or the test hangs



def test_a_session_queues_again_at_once_a_trial_an_earlier_sessions_dead_worker_left_running(
        study_storage_url, monkeypatch):
    """A trial left running by a worker that died with its session is failed as stale, and its
    folder queued again, when the next session starts: not only when a worker is idle (repair),
    which in a long queue is at its end."""
    import time

    study = a_study(study_storage_url, ("sgd-b8-a", "sgd-b8-b"))
    dead = queue.claim(study, {"sgd-b8-a", "sgd-b8-b"})   # its worker then died
    monkeypatch.setattr(study._storage._backend, "grace_period", 0)
    time.sleep(1.1)   # SQLite's clock has whole seconds
    spec = {"optimizer": "sgd", "batch_size": 8}
    queue.sync(study, ["sgd-b8-a", "sgd-b8-b"], [spec, spec], {}, prune=True)
    states = {t.number: t.state for t in study.get_trials()}
    assert states[dead.number] == TrialState.FAIL
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert sorted(t.user_attrs[queue.TRIAL] for t in waiting) == ["sgd-b8-a", "sgd-b8-b"]
    assert queue.claim(study, {"sgd-b8-a", "sgd-b8-b"}).user_attrs[queue.TRIAL] == "sgd-b8-b"


def test_the_workers_best_is_the_fewest_steps_then_the_earliest_queued():
    """queue.fewest_steps, the rule behind best_name (and benchmarks/pruning.py first_choice):
    fewest steps to target, the earliest queued among equals, whatever order the candidates
    come in; None without candidates."""
    assert queue.fewest_steps([(40, 3, "c"), (30, 2, "b"), (30, 1, "a"), (50, 0, "z")]) == "a"
    assert queue.fewest_steps(iter([(30, 2, "b"), (31, 1, "a")])) == "b"
    assert queue.fewest_steps([]) is None


def test_the_best_grid_point_of_the_next_smaller_batch_size_is_claimed_first(study_storage_url):
    """A search's trials go in queue order, except the grid point that reached the target in
    the fewest steps at the same optimizer's next smaller batch size (same grid), which goes
    first; before anything there ended, queue order."""
    from minigrad.cli.study import workers

    url, lrs = study_storage_url, (0.05, 0.1, 0.2)
    searches, studies = [], []
    for opt, b in (("sgd", 8), ("kfac", 8), ("sgd", 16), ("sgd", 32)):
        names = [f"{opt}-b{b}-{k}" for k in range(3)]
        specs = [{"optimizer": opt, "batch_size": b, "lr": lr} for lr in lrs]
        searches.append(workers.Search(f"s/scaling/{opt}-b{b}", names, specs, [0, 1, 2]))
        study = storage.load_or_create(storage.open_storage(url, 30), searches[-1].study)
        for index, (name, spec) in enumerate(zip(names, specs)):
            queue.enqueue(study, name, spec, index)
        studies.append(study)
    assert workers.previous_searches(searches) == [None, None, 0, 2]
    # nothing ended at B = 8: B = 16 takes its oldest
    assert workers.first_choice(searches[2], searches[0], studies[0]) is None
    steps = {"sgd-b8-0": 30, "sgd-b8-1": None, "sgd-b8-2": 20}
    for name in steps:
        trial = queue.claim(studies[0], {name})
        reached = steps[name] is not None
        queue.finish(studies[0], trial, {"status": "finished", "reached": reached,
                                         "steps_to_target": steps[name]}, prune=True)
    assert workers.first_choice(searches[2], searches[0], studies[0]) == "sgd-b16-2"
    taken = [queue.claim(studies[2], set(searches[2].names),
                         lambda: "sgd-b16-2").user_attrs[queue.TRIAL] for _ in range(3)]
    assert taken == ["sgd-b16-2", "sgd-b16-0", "sgd-b16-1"]
