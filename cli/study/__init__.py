"""What the study commands (scaling, sensitivity, compare) share: their options, running trials,
reading a trial's outcome, picking the best trial, and the trial table in the study's HDF5.

A trial is one ordinary `minigrad train` run, in STUDY/trials/<optimizer>-b<B>-<hash>/, where
<hash> is the first 10 hex digits of the SHA-1 of the trial's options (JSON, sorted keys): the
same trial in any later study with the same folder is found again, and a changed option makes a
new trial instead of reusing an old one. Running a study again therefore resumes it:

    run.h5 says "finished" or "failed"   done, skipped (its results are read back)
    a checkpoint.npz, not done           continued with `minigrad train --resume`
    anything else                        started again from scratch (--overwrite)

A trial that diverges ends with status "failed" and counts as not reaching the target.

Where the trials run. Each (optimizer, batch size) search is an Optuna study in the study's
storage (storage.py): its trials are queued there, and --jobs J worker processes on this
machine, with those of any other machine running the same command with the same --storage
(and a shared file system for the study folder), take them until all have ended; a worker's
trial whose heartbeat stops is queued again and continued from its checkpoint (queue.py).

What a trial is given. The study sets the data, model, optimizer, batch size, seed, budget
(--budget-epochs E, or per batch size B1=E1,B2=E2,...), the evaluation interval (--eval-every K
steps, or per batch size B1=K1,...; without it ceil(steps per epoch / --evals-per-epoch)) and the
targets, and the point of the search; the defaults of its optimizer's other options, written
into the trial's options (specs.py: a changed default makes a new trial); TRIAL_DEFAULTS
(trials.py); and any other `minigrad train` option fixed for the whole study with
--train-option [OPTIMIZER.]NAME=VALUE (repeatable; without the prefix it goes to every studied
optimizer it applies to), e.g. --train-option kfac.damping_form=eigen --train-option
kfac.factor_init=identity. A fixed option is checked by `minigrad train`'s own option types
before any trial starts.

    options.py    the options every study command takes, and reading them
    trials.py     one trial: the options every trial gets, its folder, what is left to do,
                  running it
    storage.py    the Optuna storage the workers share: SQLite in the study folder, or
                  --storage URL (any SQLAlchemy URL) for many machines
    queue.py      each search's trials as a queue in its Optuna study: claiming, heartbeats,
                  a dead worker's trial queued again, TPE's draws
    workers.py    a worker process: takes trials until every trial of its searches has ended
    pool.py       a session's trials: its worker processes, stop signals, mpiexec
    pruning.py    scaling's exact early stopping (why it changes no reported figure)
    results.py    a trial's outcome, settings over seeds, the best trial (the module says how)
    files.py      the study folder and its HDF5 file with the trial table
    specs.py      the trials of a search as their options (trial_spec), before they run

The names below are what the study commands use, imported here so that they read
`study.run_trials(...)`, `study.best_index(...)`.
"""
from .files import study_attrs, study_folder, write_study, write_trials
from .options import check_targets, int_list, per_batch, per_batch_text, study_options
from .pool import run_trials
from .results import (aggregate, best_index, describe, fmt, grid_edges, outcome, setting_key,
                      target_text, trial_result)
from .specs import prepare, trial_spec
from .trials import (LOG_FILE, TRIAL_DEFAULTS, TRIALS, execute, fixed_train_options, trial_mode,
                     trial_name)

__all__ = ["LOG_FILE", "TRIALS", "TRIAL_DEFAULTS", "aggregate", "best_index",
           "check_targets", "describe", "execute", "fixed_train_options", "fmt", "grid_edges",
           "int_list", "outcome", "per_batch", "per_batch_text", "prepare", "run_trials",
           "setting_key", "study_attrs", "study_folder", "study_options", "target_text",
           "trial_mode", "trial_name", "trial_result", "trial_spec", "write_study",
           "write_trials"]
