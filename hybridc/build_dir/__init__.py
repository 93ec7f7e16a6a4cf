"""The build directory: written atomically, loaded back as a CompiledModel, and read as
untrusted input (bounded sizes, files confined to the directory, sha256 checked)."""
