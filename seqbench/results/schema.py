"""The on-disk layout of a results directory and the columns and dtypes of its tables."""

RUNS, HISTORY, PROFILES = "runs", "history", "profiles"
STATUSES = ("finished", "diverged", "failed")

_STR, _INT, _FLOAT, _BOOL = "string", "Int64", "float64", "boolean"

# The fields that define a run: run_id hashes exactly these (options: a dict of extra choices
# such as readout, nonlinearity, forget_bias, tbptt).
CONFIG_FIELDS = (
    "task", "model", "backend", "dtype", "seq_len", "hidden_size", "num_layers",
    "bidirectional", "batch_size", "optimizer", "lr", "clip", "init", "seed", "steps",
    "options",
)  # fmt: skip

ENVIRONMENT_FIELDS = (
    "seqbench_version", "numpy_version", "numba_version", "torch_version", "python_version",
    "cpu", "gpu", "git_commit",
)  # fmt: skip

RUN_SCHEMA = {
    "run_id": _STR,
    # config
    "task": _STR,
    "model": _STR,
    "backend": _STR,
    "dtype": _STR,
    "seq_len": _INT,
    "hidden_size": _INT,
    "num_layers": _INT,
    "bidirectional": _BOOL,
    "batch_size": _INT,
    "optimizer": _STR,
    "lr": _FLOAT,
    "clip": _STR,
    "init": _STR,
    "seed": _INT,
    "steps": _INT,
    "options": _STR,  # JSON object
    # outcome
    "status": _STR,  # one of STATUSES
    "diverged_step": _INT,
    "final_loss": _FLOAT,
    "eval_loss_se": _FLOAT,  # standard error of final_loss over the evaluated sequences
    "eval_sequences": _INT,  # held-out sequences behind final_loss
    "baseline_loss": _FLOAT,
    "loss_ratio": _FLOAT,  # final_loss / baseline_loss
    "solved": _BOOL,
    "solved_step": _INT,
    "metrics": _STR,  # JSON object
    # speed
    "train_seconds": _FLOAT,
    "compile_seconds": _FLOAT,
    "steps_per_second": _FLOAT,
    "sequence_steps_per_second": _FLOAT,
    # gradient stability. The probe (seqbench.probe): log10 ||dL_T/dh_1|| / ||dL_T/dh_T||, L_T
    # the loss at the last target step alone; -inf for an exact 0, with the reason in the note.
    # The unsuffixed columns hold the final values, as *_final does.
    "grad_ratio_log10": _FLOAT,
    "grad_ratio_log10_init": _FLOAT,  # before the first update
    "grad_ratio_log10_final": _FLOAT,  # at the end of training
    "grad_probe_note_init": _STR,  # why the ratio is not a finite number, when it is not
    "grad_probe_note_final": _STR,
    "clip_fraction": _FLOAT,
    "max_preclip_norm": _FLOAT,
    "spectral_radius": _FLOAT,
    "spectral_radius_init": _FLOAT,
    "spectral_radius_final": _FLOAT,
    "max_singular_value": _FLOAT,
    "max_singular_value_init": _FLOAT,
    "max_singular_value_final": _FLOAT,
    "parameters": _INT,
    # environment
    "started_at": _STR,  # UTC, ISO 8601
    **{name: _STR for name in ENVIRONMENT_FIELDS},
}
RUN_COLUMNS = list(RUN_SCHEMA)

HISTORY_SCHEMA = {
    "run_id": _STR,
    "step": _INT,
    "loss": _FLOAT,
    "preclip_norm": _FLOAT,
    "clipped": _BOOL,
    "seconds": _FLOAT,
}
# dh_norm: the training gradient's ||dL/dh_t||; probe_log10: log10 ||dL_T/dh_t|| of the probe
PROFILE_SCHEMA = {
    "run_id": _STR,
    "step": _INT,
    "layer_dir": _STR,
    "t": _INT,
    "dh_norm": _FLOAT,
    "probe_log10": _FLOAT,
}
