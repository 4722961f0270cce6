"""mnistlab: handwritten-digit recognition on MNIST, Fashion-MNIST and KMNIST.

The library comes first and the CLI (`mnistlab ...`) is a thin layer over it.
Importing the package is cheap: torch is imported only by the modules that need it,
so `mnistlab.scratch` (pure NumPy) stays torch-free.
"""

__version__ = "0.1.0"
