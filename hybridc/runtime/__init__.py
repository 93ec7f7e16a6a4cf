"""Runtime: run a build (every stage on its own backend) and check it against PyTorch."""
