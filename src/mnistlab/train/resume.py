"""`--resume RUN [--epochs N]`: what continuing a run means, decided before anything trains.

- An unfinished run (Ctrl-C, a crash, `max_epochs`) continues from `last.pt` exactly where it
  stopped, with its own options; the command line gives only the device and threads.
- A finished run (its summary.json was written at the checkpoint's step) with no more epochs
  asked for is left untouched: "already finished".
- `--epochs N` more than the run's epochs extends it, finished or not. The original schedule
  keeps its length (`schedule_epochs`); for one-cycle and cosine the added epochs follow a
  new cosine tail from a tenth of the peak rate (train.schedule); `step` and `none`
  continue. config.json records the new `epochs` and `schedule_epochs`.
- `--epochs N` fewer than the run's epochs is refused: a run is extended, never shortened.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mnistlab.atomic import write_json
from mnistlab.checkpoint import load_checkpoint, resolve_checkpoint_path
from mnistlab.errors import MnistlabError
from mnistlab.train.config import TrainConfig
from mnistlab.train.rundir import read_json
from mnistlab.train.schedule import SCHEDULES_WITH_LENGTH, TAIL_FACTOR

# What `--resume` needs beyond the weights; exports and conversions leave these out.
RESUME_KEYS = ("config", "optimizer", "rng", "epoch_stats", "epoch", "batch", "step", "best")


@dataclass
class ResumePlan:
    state: dict[str, Any]  # last.pt
    config: TrainConfig  # the run's options (+ device and threads from the command line)
    run_dir: Path
    finished: bool  # nothing to do: summary.json is already at this step
    extended_from: int | None = None  # the run's epochs before `--epochs` extended it

    def summary(self) -> dict[str, Any]:
        return read_json(self.run_dir / "summary.json")

    def finished_message(self) -> str:
        s = self.summary()
        accuracy = s.get("test_accuracy")
        result = f", test accuracy {accuracy:.2%}" if isinstance(accuracy, float) else ""
        return (f"{self.run_dir}: already finished ({s.get('epochs_run')} of "
                f"{self.config.epochs} epochs{result}); nothing changed. To train it longer: "
                f"mnistlab train --resume {self.run_dir} --epochs N")

    def extension_note(self) -> str:
        cfg = self.config
        if cfg.schedule in SCHEDULES_WITH_LENGTH:
            how = (f"the {cfg.schedule} schedule keeps its {cfg.schedule_epochs} epochs and the "
                   f"rest follow a cosine tail from {cfg.lr * TAIL_FACTOR:g} (a tenth of "
                   f"--lr) down to 0")
        else:
            how = f"the {cfg.schedule} schedule continues"
        return f"extending the run from {self.extended_from} to {cfg.epochs} epochs: {how}"

    def record_extension(self) -> None:
        """config.json says what the run now is: its new length and the schedule's."""
        path = self.run_dir / "config.json"
        if path.is_file():
            recorded = read_json(path)
            recorded.update(epochs=self.config.epochs,
                            schedule_epochs=self.config.schedule_epochs)
            write_json(path, recorded)


def plan_resume(resume: str | os.PathLike[str], config: TrainConfig,
                epochs: int | None = None) -> ResumePlan:
    """Load `resume`'s last.pt and decide what continuing it means (see the module notes)."""
    if resolve_checkpoint_path(resume, "last.pt", last_ok=True).suffix == ".npz":
        raise MnistlabError(f"{resume}: NumPy-backend runs cannot be resumed (they keep no "
                            "optimizer state); start a new run")
    state = load_checkpoint(resume, prefer="last.pt", last_ok=True)
    if any(state.get(k) is None for k in RESUME_KEYS):
        raise MnistlabError(f"{state['path']}: holds no training state (an inference-only "
                            "export or conversion); it cannot be resumed")
    run_config = TrainConfig.from_dict({**state["config"], "device": config.device,
                                        "threads": config.threads})
    ema = state.get("ema")
    if run_config.ema and not (isinstance(ema, dict)
                               and {"updates", "trained_state_dict"} <= set(ema)):
        raise MnistlabError(f"{state['path']}: the run trains with --ema {run_config.ema} but "
                            "the checkpoint holds no EMA state; it cannot be resumed exactly")
    if run_config.channels_last is None and state.get("channels_last") is not None:
        # The layout measured when the run started: a new measurement could choose the
        # other one, and the resumed steps would no longer be bit-identical.
        run_config = replace(run_config, channels_last=bool(state["channels_last"]))
    run_dir = Path(state["path"]).parent
    summary_path = run_dir / "summary.json"
    finished = (summary_path.is_file()
                and read_json(summary_path).get("steps") == state["step"])
    planned = run_config.epochs
    if epochs is None or epochs == planned:
        return ResumePlan(state, run_config, run_dir, finished)
    done = state["epoch"] + (1 if state["batch"] else 0)
    if epochs < planned:
        raise MnistlabError(f"--epochs {epochs}: {run_dir} was planned for {planned} epochs "
                            f"and has trained {done}; a run can be extended, not shortened")
    extended = replace(run_config, epochs=epochs,
                       schedule_epochs=run_config.schedule_epochs or planned)
    extended.validate()
    return ResumePlan(state, extended, run_dir, False, extended_from=planned)
