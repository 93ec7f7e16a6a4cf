"""The compiler: trace and tag (`lower`), cut the graph into stages, hand each stage to its
target's `preprocess`, record the edges between stages, and write the build directory."""
