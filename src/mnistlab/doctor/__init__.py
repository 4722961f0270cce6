"""The doctor: find what is wrong with a digit classifier and its training setup, and say how
to fix it.

    from mnistlab.doctor import examine
    report = examine(model, loss_fn="cross_entropy", lr=0.01, batch_size=128, epochs=5)
    print(report.format())          # or report.to_dict(), report.findings, report.exit_code

    from mnistlab.doctor import examine_config      # a model trained as a TrainConfig says
    report = examine_config(resolve_config(model="lenet5"))

Every check observes behaviour (forward passes, hooks on torch calls, gradients, short
training runs on copies), so it holds for models it has never seen.
"""

from mnistlab.doctor.config import doctor_before_training, examine_config
from mnistlab.doctor.examine import examine
from mnistlab.doctor.findings import SEVERITIES, Finding, Report
from mnistlab.doctor.loading import load_user_model

__all__ = ["SEVERITIES", "Finding", "Report", "doctor_before_training", "examine",
           "examine_config", "load_user_model"]
