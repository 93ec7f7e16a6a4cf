"""The emulator's compiled loops (hybridc/runtime/kernels.pyx), built when hybridc is
installed; everything else about the package is in pyproject.toml."""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

# Built for the machine installing it, as a JIT would (the loops vectorise with its widest
# registers: about 1.7x faster than baseline x86-64). A wheel for other machines:
# HYBRIDC_MARCH=x86-64-v2 (any -march value; empty for the compiler's default). No fused
# multiply-add and no fast-math: the loops must round exactly as the torch ops they replace.
march = os.environ.get("HYBRIDC_MARCH", "native")
flags = ["-O3", "-ffp-contract=off"] + ([f"-march={march}"] if march else [])
kernels = Extension("hybridc.runtime.kernels", ["hybridc/runtime/kernels.pyx"], extra_compile_args=flags)
setup(ext_modules=cythonize([kernels], quiet=True))
