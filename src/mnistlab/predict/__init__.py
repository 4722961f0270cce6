"""Classify your own digit images: bring them into MNIST form, then predict."""

from mnistlab.predict.predict import Prediction, predict
from mnistlab.predict.preprocess import from_array, load_image, to_mnist

__all__ = ["Prediction", "from_array", "load_image", "predict", "to_mnist"]
