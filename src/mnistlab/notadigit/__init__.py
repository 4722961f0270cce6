"""Not a digit: everything that lets a digit model say "none of these", in one package.

    negatives   seeded generators of 28x28 non-digits (and printed digits) in MNIST's framing
    exposure    outlier exposure: the one hook the Trainer calls (extend the batch, add the
                loss, calibrate and store the gate after training)
    gate        DigitGate: the calibrated accept/reject rule stored in a checkpoint

Layering: this package sits below train/ (which calls its hook) and predict/ (which applies
the gate); it never imports either. docs/not-a-digit.md has the design and the figures, and
docs/evaluation.md the protocol by which its settings were chosen.
"""

from mnistlab.notadigit.gate import DigitGate

__all__ = ["DigitGate"]
