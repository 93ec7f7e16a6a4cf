"""Front end and driver: load a model file, trace it, run the passes, lower, save."""
