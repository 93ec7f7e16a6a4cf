"""Front end: load a model file, trace it with torch.fx, record shapes. Imports nothing above it."""
