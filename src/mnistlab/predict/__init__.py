"""Classify your own digit images: bring them into MNIST form, then predict."""

from mnistlab.predict.predict import Prediction, predict
from mnistlab.predict.preprocess import Prepared, from_array, load_image, prepare, to_mnist
from mnistlab.predict.segment import DigitCrop, segment_digits

__all__ = ["DigitCrop", "Prediction", "Prepared", "from_array", "load_image", "predict",
           "prepare", "segment_digits", "to_mnist"]
