"""Build: drive the passes and targets, write the build directory atomically, load it back."""
