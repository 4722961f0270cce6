"""Pictures of training runs and of what a network computes."""
