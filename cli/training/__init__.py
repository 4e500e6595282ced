"""One training run as a library: what `minigrad train` (cli/train.py) calls once it has read
its options, and what the commands that look at runs use to rebuild a model or evaluate it.

    config.py       the vocabulary of a run's configuration (data sets, models, optimizers)
    hyperparameters.py  the optimizers' options from the library's declarations: types,
                    defaults (the library's, a stated CLI preset), help, older runs' values
    model.py        the model from the configuration, its loss, eval mode
    optimizers.py   the optimizer from the configuration, its restore, the lr schedule
    data.py         the training and test splits, as the model takes them
    evaluation.py   loss and accuracy on a split; per-layer statistics; the gradient noise scale
    steps.py        one optimizer step on one batch
    signals.py      stop signals (Ctrl-C, SIGTERM, SIGUSR1) deferred to the end of a step
    stopping.py     when a run ends early: its targets reached, or stuck at chance
    progress.py     the progress bar at a terminal
    run_folder.py   the run folder: writable, cleared for --overwrite, process.json
    trainer.py      Trainer: the training loop, its evaluations and checkpoints
    session.py      one session of a run, from the data to the summary line, and how it ends

Nothing here parses options (hyperparameters.py builds the optimizers' option types and help,
which cli/train.py and the study commands parse with). Two mistakes found only here are still click usage errors, as on
the command line: a model that does not fit the images (build_model) and a resume asking for
fewer steps than the run has done (session.py).
"""
