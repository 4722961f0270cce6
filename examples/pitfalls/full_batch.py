"""Pitfall: the whole training set as one batch, for 10 epochs.

10 epochs x ceil(60,000 / 60,000) = 10 optimizer steps: the model barely leaves its
initialisation, however many images each step averages over. Diagnose:
    mnistlab doctor examples/pitfalls/full_batch.py:Net --lr 0.05 --batch-size 60000 --epochs 10
    mnistlab doctor examples/pitfalls/full_batch.py:Net --lr 0.05 --batch-size 128 --epochs 1
"""

from common import MLP, fit

Net = MLP  # the model is fine; the batch size is the bug

if __name__ == "__main__":
    fit(Net(), lr=0.05, batch_size=60000, epochs=10, label="one batch of 60,000, 10 epochs")
    # Fewer images seen in all (one epoch, not ten), but 469 updates instead of 10.
    fit(Net(), lr=0.05, batch_size=128, epochs=1, label="fixed: batches of 128, 1 epoch")
