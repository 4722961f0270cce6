"""A neural network from scratch in NumPy, with checked gradients (docs/scratch.md).

    net = MLP((784, 200, 50, 10), activation="relu", init="he")
    history = fit(net, x_train, y_train, x_val, y_val, epochs=12, on_epoch=print)
    save_npz("model.npz", net, {"test_acc": 0.98})
    net, extra = load_npz("model.npz")

Only NumPy is imported, here and below: the torch side is `mnistlab.checkpoint_npz`.
"""

from mnistlab.scratch.checkpoint import CheckpointError, load_npz, save_npz
from mnistlab.scratch.convert import from_torch_state_dict, to_state_arrays, torch_key
from mnistlab.scratch.data import Splits, load_splits, split_and_standardise
from mnistlab.scratch.gradcheck import check_gradients, numerical_gradient, relative_error
from mnistlab.scratch.init import INITS
from mnistlab.scratch.layers import ACTIVATIONS, Dense, ReLU, Sigmoid, Tanh
from mnistlab.scratch.losses import log_softmax, softmax, softmax_cross_entropy
from mnistlab.scratch.network import MLP
from mnistlab.scratch.optim import SCHEDULES, SGD, lr_factor
from mnistlab.scratch.train import DEFAULT_RECIPE, evaluate, fit

__all__ = [
    "ACTIVATIONS",
    "DEFAULT_RECIPE",
    "INITS",
    "MLP",
    "SCHEDULES",
    "SGD",
    "CheckpointError",
    "Dense",
    "ReLU",
    "Sigmoid",
    "Splits",
    "Tanh",
    "check_gradients",
    "evaluate",
    "fit",
    "from_torch_state_dict",
    "load_npz",
    "load_splits",
    "log_softmax",
    "lr_factor",
    "numerical_gradient",
    "relative_error",
    "save_npz",
    "softmax",
    "softmax_cross_entropy",
    "split_and_standardise",
    "to_state_arrays",
    "torch_key",
]
