"""The model zoo. Importing this package registers every model."""

import mnistlab.models.ensemble  # noqa: F401  (registers the composite, not a zoo model)
from mnistlab.models import convnets, fast, lenet, mlp, pytorch_example  # noqa: F401  (register)
from mnistlab.models.registry import (
    MODELS,
    ModelEntry,
    create_model,
    get_entry,
    model_arguments,
    model_spec,
)
from mnistlab.models.summary import LayerInfo, describe, summarize

__all__ = ["MODELS", "LayerInfo", "ModelEntry", "create_model", "describe", "get_entry",
           "model_arguments", "model_spec", "summarize"]
