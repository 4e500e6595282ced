"""The trials of a search as a queue in its Optuna study, which any number of workers, on any
number of machines, take trials from: what is queued, how a worker claims a trial, what it
records when the trial ends, and what happens to the trial of a worker that died.

A grid or random search's trials are known before any of them runs (cli/search.py), so the
set of trials never depends on how many workers there are or in what order they run. A TPE
search draws its k-th point once its first k - 1 trials have all ended, from their results
(draw): every worker that draws it draws the same point, and the same name is queued at most
once in effect (duplicates, below). Each Optuna trial carries, as user attributes, the trial's folder name
("trial": <optimizer>-b<B>-<hash>, which says everything the trial trains with), its options
("spec", JSON) and its place in the search ("index"). One trial folder may have several Optuna
trials over time (a dead worker's trial queued again, a second study session); the *latest* one
(highest number, duplicates aside) says where the trial stands:

    none, or failed      queued (again) when a session starts (sync; so is a running trial
                         whose heartbeat stopped: its worker died with an earlier session)
    waiting              queued: the next worker free takes it (claim)
    running              a worker trains it and records a heartbeat
    complete             ended by itself: finished, diverged or reached its target (the run
                         folder's run.h5 holds the outcome; user attributes repeat its status
                         and steps to target)
    pruned               stopped by --prune-file (scaling: it could not beat the best)
    failed, "ended"      crashed (see its train.log), or its worker died too often: the session
                         moves on, the next session queues it again

Claiming. A worker claims the oldest waiting trial by setting it running: the database lets
one worker do that (storage.py: SQLite with BEGIN IMMEDIATE, a row lock elsewhere). One trial
may go first: the grid point that was best at the optimizer's next smaller batch size
(cli/study/workers.py), whose early, tight pruning bound stops more of the others sooner. The
order changes no figure (pruning is exact), only how much pruning saves (benchmarks/pruning.py
--order measures it). Two workers
that started together may both have queued a trial folder; so a worker that claims a trial
whose folder has an older trial waiting or running marks its own one a duplicate (failed, user
attribute "duplicate") and claims again: one trial per folder trains at any time, and a trial
folder already done is never trained again (cli/study/trials.py execute finds it done; such a
copy is dropped as a duplicate too when an older trial of the folder ended complete, so each
folder has one record of its end).

A dead worker. Every worker records a heartbeat for the trial it trains (storage.py); a running
trial whose heartbeat is too old is failed by the next worker that looks (Optuna's
fail_stale_trials), and any worker that finds a folder's latest trial failed without "ended"
queues a copy (requeue), at most MAX_RETRIES times: the copy's worker continues the trial from
its checkpoint (`minigrad train --resume`). A stopped worker (Ctrl-C, SIGTERM) does the same
for the trial it stopped.

A late worker. A worker that is alive but whose heartbeat came too late (a machine stalled for
GRACE_BEATS beats) keeps training while the copy queued for it continues the same folder from
its checkpoint. Nothing is fenced off. The two compute the same run (the same seed gives the
same run, and resuming is bit-exact; with pruning one may stop earlier, having read a tighter
bound, which no figure can tell), every file is written whole (temporary file and rename), and
the late worker records nothing when it ends (finish: its trial is failed already). What is
lost is the duplicated compute, and the folder's train.log holds both workers' lines. One rare
case costs more: if the late worker falls behind again and writes a "running" run.h5 after the
copy's last one, the copy's worker finds the trial unfinished and records it as crashed; the
next session continues it from its checkpoint to the same end.
"""
import contextlib
import hashlib
import json
import threading

from .. import search
from .specs import TPE_DRAW
from .storage import retry
from .trials import trial_name

TRIAL, SPEC, INDEX = "trial", "spec", "index"     # user attributes of every Optuna trial
SEARCH, POINT = "search", "point"                 # a TPE trial's: its search, its point at B0
DUPLICATE, ENDED, RETRIES = "duplicate", "ended", "retries"
STATUS, STEPS = "status", "steps_to_target"        # set when a trial ends
MAX_RETRIES = 3   # a trial whose worker died this often counts as crashed for the session


def _states():
    from optuna.trial import TrialState
    return TrialState


def latest(study, wanted=None):
    """{trial folder name: its latest Optuna trial (a FrozenTrial)}, duplicates aside; only the
    names in `wanted` if given."""
    out = {}
    for t in retry(lambda: study.get_trials(deepcopy=False)):
        name = t.user_attrs.get(TRIAL)
        if name is None or t.user_attrs.get(DUPLICATE) or (wanted is not None and name not in wanted):
            continue
        if name not in out or t.number > out[name].number:
            out[name] = t
    return out


def is_done(trial, prune):
    """Whether a folder's latest trial has ended for this session (pruned ones only when the
    study prunes: otherwise they are trained to their end)."""
    S = _states()
    return trial.state == S.COMPLETE or (trial.state == S.PRUNED and prune) or \
        (trial.state == S.FAIL and bool(trial.user_attrs.get(ENDED)))


def enqueue(study, name, spec, index, retries=0, more=None):
    """Queue the trial folder `name` (options `spec`, place `index` in its search; `more`: other
    user attributes)."""
    import optuna

    attrs = {TRIAL: name, SPEC: json.dumps(spec, sort_keys=True), INDEX: int(index),
             RETRIES: int(retries), **(more or {})}
    retry(lambda: study.add_trial(optuna.trial.create_trial(
        state=_states().WAITING, user_attrs=attrs)))


def record_done(study, name, spec, index, result, prune):
    """Record a trial whose folder was found done (by an earlier study session, perhaps before
    the study had a storage) as ended, without running it."""
    import optuna

    S = _states()
    state = S.PRUNED if result["status"] == "pruned" and prune else S.COMPLETE
    attrs = {TRIAL: name, SPEC: json.dumps(spec, sort_keys=True), INDEX: int(index),
             **outcome_attrs(result)}
    retry(lambda: study.add_trial(optuna.trial.create_trial(
        state=state, user_attrs=attrs, value=None if state == S.PRUNED else objective(result))))


def sync(study, names, specs, done, prune):
    """At the start of a session: fail the running trials whose heartbeat stopped (their
    workers died with an earlier session: left running, they would wait for an idle worker's
    repair, at the end of the queue), then queue every trial folder of `names` (in order;
    `specs` their options) that is not waiting, running or done in the study; `done` maps the
    names whose folder is done to their results (recorded as ended where the study has no
    record)."""
    import optuna

    retry(lambda: optuna.storages.fail_stale_trials(study))
    found = latest(study, set(names))
    S = _states()
    for index, name in enumerate(names):
        t = found.get(name)
        if t is not None and t.state in (S.WAITING, S.RUNNING):
            continue
        if name in done:
            if t is None or not is_done(t, prune):
                record_done(study, name, specs[index], index, done[name], prune)
        else:   # not done on disk, whatever the study says (a folder removed, a --no-prune)
            enqueue(study, name, specs[index], index)


def claim(study, wanted, first=None):
    """Claim the oldest waiting trial of a folder in `wanted` (a set of names), the one of the
    folder `first()` names (None: none) before all others: set it running and return it (a
    FrozenTrial), None if there is none to take (see the module docstring for duplicates).
    `first` is only called when some trial is waiting: it may read another study."""
    S = _states()
    storage = study._storage
    waiting = [t for t in retry(lambda: study.get_trials(deepcopy=False, states=(S.WAITING,)))
               if t.user_attrs.get(TRIAL) in wanted]
    preferred = first() if first is not None and waiting else None
    for t in sorted(waiting, key=lambda t: (t.user_attrs.get(TRIAL) != preferred, t.number)):
        # a heartbeat first: a running trial without one is never found stale, so a worker
        # killed right after its claim would leave the trial running for ever
        retry(lambda: storage.record_heartbeat(t._trial_id))
        if not _set_state(storage, t, S.RUNNING):
            continue   # another worker was first (and may have ended it since we looked)
        retry(lambda: storage.record_heartbeat(t._trial_id))
        if _older_twin(study, t):
            drop(study, t)
            continue
        return t
    return None


def drop(study, trial):
    """Record the claimed `trial` as a duplicate (failed): an older trial of its folder stands
    for it."""
    retry(lambda: study._storage.set_trial_user_attr(trial._trial_id, DUPLICATE, True))
    _set_state(study._storage, trial, _states().FAIL)


def ended_before(study, trial, prune):
    """Whether an older trial of the same folder (duplicates aside) has ended complete (or
    pruned, when the study prunes): then the claimed `trial`, which found its folder done, is
    the copy of a second session that queued it while the first one's trial trained (two
    sessions that started together), and is dropped rather than recorded twice."""
    S, name = _states(), trial.user_attrs[TRIAL]
    return any(t.user_attrs.get(TRIAL) == name and t.number < trial.number
               and not t.user_attrs.get(DUPLICATE)
               and (t.state == S.COMPLETE or (t.state == S.PRUNED and prune))
               for t in retry(lambda: study.get_trials(deepcopy=False)))


def _older_twin(study, trial):
    """Whether an older Optuna trial of the same folder is waiting or running."""
    S = _states()
    name = trial.user_attrs[TRIAL]
    return any(t.user_attrs.get(TRIAL) == name and t.number < trial.number
               and not t.user_attrs.get(DUPLICATE)
               for t in retry(lambda: study.get_trials(deepcopy=False,
                                                       states=(S.WAITING, S.RUNNING))))


@contextlib.contextmanager
def heartbeat(study, trial, seconds):
    """While training `trial`: its heartbeat recorded every `seconds` by a thread."""
    storage, stop = study._storage, threading.Event()

    def beat():
        while not stop.wait(seconds):
            with contextlib.suppress(Exception):   # a missed beat; the next one may pass
                retry(lambda: storage.record_heartbeat(trial._trial_id))
    thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def objective(result):
    """The value Optuna records for an ended trial (lower is better): its steps to target, inf
    where it did not reach the target."""
    return float(result["steps_to_target"]) if result["reached"] else float("inf")


def outcome_attrs(result):
    return {STATUS: result["status"],
            STEPS: -1 if result["steps_to_target"] is None else int(result["steps_to_target"])}


def _set_state(storage, trial, state, values=None):
    """Set the state of `trial` (and its values); False where another worker was first: it
    claimed the trial, or it has ended (another worker ended it, or failed it as stale)."""
    import optuna

    try:
        return retry(lambda: storage.set_trial_state_values(trial._trial_id, state, values))
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def finish(study, trial, result, prune, crashed=False):
    """Record the end of the claimed `trial` with its `result` (trial_result of its folder):
    complete, pruned (when the study prunes), or failed and "ended" if it crashed. Nothing is
    recorded if another worker failed the trial as stale meanwhile (its heartbeat was late):
    the copy queued for it finds the folder done."""
    import optuna

    S = _states()
    storage = study._storage
    attrs = dict(outcome_attrs(result), **({ENDED: "crashed"} if crashed else {}))
    try:
        for key, value in attrs.items():
            retry(lambda: storage.set_trial_user_attr(trial._trial_id, key, value))
    except optuna.exceptions.UpdateFinishedTrialError:
        return
    if crashed:
        _set_state(storage, trial, S.FAIL)
    elif result["status"] == "pruned" and prune:
        _set_state(storage, trial, S.PRUNED)
    else:
        _set_state(storage, trial, S.COMPLETE, [objective(result)])


def give_back(study, trial):
    """The claimed `trial` was stopped (a stop signal): failed, and queued again for any
    worker to continue from its checkpoint (unless another worker failed it as stale first:
    then a copy is queued by whoever finds it failed)."""
    if _set_state(study._storage, trial, _states().FAIL):
        requeue(study, trial, died=False)


def requeue(study, trial, died=True):
    """Queue a copy of the failed `trial` (its worker died, or stopped: not `died`), or, after
    MAX_RETRIES copies for dead workers, record the folder as ended for this session."""
    import optuna

    retries = int(trial.user_attrs.get(RETRIES, 0)) + int(died)
    if retries > MAX_RETRIES:
        attrs = dict(trial.user_attrs, **{ENDED: f"its worker died {MAX_RETRIES + 1} times"})
        retry(lambda: study.add_trial(optuna.trial.create_trial(
            state=_states().FAIL, user_attrs=attrs)))
        return
    enqueue(study, trial.user_attrs[TRIAL], json.loads(trial.user_attrs[SPEC]),
            trial.user_attrs[INDEX], retries,
            {k: trial.user_attrs[k] for k in (SEARCH, POINT) if k in trial.user_attrs})


def repair(study, wanted):
    """Fail the running trials whose heartbeat stopped, and queue again every folder of
    `wanted` whose latest trial failed without ending (requeue)."""
    import optuna

    retry(lambda: optuna.storages.fail_stale_trials(study))
    S = _states()
    for t in latest(study, wanted).values():
        if t.state == S.FAIL and not t.user_attrs.get(ENDED):
            requeue(study, t)


def complete(study, wanted, prune):
    """Whether every folder of `wanted` has ended for this session."""
    found = latest(study, wanted)
    return len(found) == len(wanted) and all(is_done(t, prune) for t in found.values())


def fewest_steps(candidates):
    """The workers' rule for the best trial so far: of `candidates`, (steps to target, place in
    the queue, item) for the trials that reached the target, the item with the fewest steps,
    the earliest queued among equals; None if there is none. (Not results.best_index, which
    the reports use: it ranks ties by cost and accuracy.)"""
    best = min(candidates, key=lambda c: c[:2], default=None)
    return None if best is None else best[2]


def best_name(study, wanted):
    """The folder of `wanted` whose ended trial reached the target in the fewest steps (the
    earliest queued among equals: fewest_steps), None if none has."""
    S = _states()
    return fewest_steps((t.user_attrs[STEPS], t.user_attrs.get(INDEX, 0), t.user_attrs[TRIAL])
                        for t in latest(study, wanted).values()
                        if t.state == S.COMPLETE and t.user_attrs.get(STEPS, -1) >= 0)


def best_steps(study, wanted):
    """The fewest steps to target among the ended trials of `wanted` that reached it (the
    --prune-file bound), None if none did."""
    S = _states()
    steps = [t.user_attrs.get(STEPS, -1) for t in latest(study, wanted).values()
             if t.state == S.COMPLETE]
    steps = [s for s in steps if s is not None and s >= 0]
    return min(steps) if steps else None


def tpe_search(placeholder, trials):
    """What a worker needs to draw the points of the TPE search whose first placeholder spec
    (cli/study/specs.py) is `placeholder`, of `trials` points."""
    template = {k: v for k, v in placeholder.items() if k != TPE_DRAW}
    key = hashlib.sha1(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
    return dict(placeholder[TPE_DRAW], template=template, trials=trials, key=key)


def drawn(study, tpe):
    """{index: trial folder name} of the points the TPE search `tpe` (tpe_search) has drawn."""
    return {t.user_attrs[INDEX]: t.user_attrs[TRIAL]
            for t in retry(lambda: study.get_trials(deepcopy=False))
            if t.user_attrs.get(SEARCH) == tpe["key"] and not t.user_attrs.get(DUPLICATE)}


def draw(study, tpe):
    """Queue the next point of the TPE search `tpe` if it has fewer than its trials and every
    trial before it has ended (the history then is the same for every worker)."""
    names = drawn(study, tpe)
    if len(names) >= tpe["trials"]:
        return
    found = latest(study, set(names.values()))
    if len(found) < len(names) or not all(is_done(t, False) for t in found.values()):
        return
    history = []
    for k in sorted(names):
        t = found[names[k]]
        value = t.value if t.state == _states().COMPLETE and t.value is not None else float("inf")
        history.append((json.loads(t.user_attrs[POINT]), value))
    template = tpe["template"]
    point = search.tpe_point(template["optimizer"], template["batch_size"], tpe["seed"], history)
    spec = dict(template, **search.scale_lr(point, tpe["lr_factor"]))
    enqueue(study, trial_name(spec), spec, len(names),
            more={SEARCH: tpe["key"], POINT: json.dumps(point)})


def drawn_specs(study, tpe):
    """The specs of the TPE search's drawn points, in the order they were drawn."""
    names = drawn(study, tpe)
    found = latest(study, set(names.values()))
    return [json.loads(found[names[k]].user_attrs[SPEC]) for k in sorted(names)]
