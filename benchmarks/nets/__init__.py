"""Plain torch.nn networks at the seeds' real sizes, for the benchmark zoo (no torchvision or timm here)."""
