"""Write a few photo-like test pictures to try `mnistlab predict` on (seeded, always the same).

    python examples/photos.py photos/
    mnistlab predict RUN photos/digit-*.jpg photos/letter.png photos/shape.png photos/tap.png
    mnistlab predict RUN photos/number-*.jpg --number --save-preprocessed seen/

The handwritten digits are MNIST *test* images (never training ones) put on generated paper
by benchmarks/devset.py, the development generator of `benchmarks/realworld.py`; the non-digits
come from the same generator. Needs the MNIST files (`MNISTLAB_DATA`, or a download).
"""

import argparse
import sys
from pathlib import Path

from mnistlab.data.dataset import load_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import devset as photolike  # a benchmark module, not part of the library


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write the pictures into")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    test = load_dataset("mnist")
    images, labels = test.test_images.numpy(), test.test_labels.numpy()
    samples = [
        *photolike.digit_samples("handwritten", 1, seed=args.seed, mnist_images=images,
                                 mnist_labels=labels, conditions=["gradient"]),
        *photolike.number_samples("handwritten", 3, seed=args.seed, mnist_images=images,
                                  mnist_labels=labels),
        *photolike.non_digit_samples(1, seed=args.seed),
    ]
    for s in samples:
        if s.kind == "handwritten":
            name = f"digit-{s.text}-{s.condition}.jpg"
        elif s.kind.startswith("number"):
            name = f"number-{s.text}.jpg"
        else:
            name = f"{s.kind}.png"
        s.image.save(args.out / name)
        print(args.out / name)


if __name__ == "__main__":
    main()
