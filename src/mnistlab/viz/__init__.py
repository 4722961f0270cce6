"""Pictures of training runs and of what a network computes.

    curves       `mnistlab plot`: loss, accuracy and learning rate of one or more runs
    compare      `mnistlab compare`: runs side by side, as a table and a bar chart
    featuremaps  `mnistlab featuremaps`: every layer's output for one image, any nn.Module
    mistakes     `mnistlab mistakes`: the most confident mistakes and the confusion matrix
    grids        image mosaics; `mnistlab data sample`
    report       `mnistlab report`: RUN/report.html, one self-contained page
    tensorboard  `mnistlab train --tensorboard`
    activations  forward hooks that capture every layer's output
    style        one look and one way to save (PNG, SVG, PDF) for all of them

Figures are `matplotlib.figure.Figure` objects made without pyplot (no GUI backend, no
global state); the library functions return them so that notebooks can show or restyle them.
"""
