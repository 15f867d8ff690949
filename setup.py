"""Finds the packages (everything under arpo/, plus `arpo.kernels` from the top-level kernels/
folder, mapped in pyproject.toml; pyproject's own discovery cannot reach a mapped folder) and builds
the optional `arpo._C` extension (KV block ops in csrc/) when torch and a compiler are
present at build time: C++ always, CUDA sources too when a CUDA toolkit is found. Without them the
package installs without the extension and uses its torch fallbacks.

Build with the runtime's torch: `pip install --no-build-isolation .` (an isolated build
environment would fetch a different torch and compile against the wrong ABI).
"""

import glob
import os
import shutil
import sys

from setuptools import find_packages, setup


def extension_modules():
    if os.environ.get("ARPO_NO_EXT") == "1":
        return [], {}
    sources = sorted(glob.glob("csrc/*.cpp"))
    if not sources:
        return [], {}
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
    except ImportError:
        print("arpo: torch not importable at build time; skipping the csrc extension", file=sys.stderr)
        return [], {}
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        print("arpo: no C++ compiler; skipping the csrc extension", file=sys.stderr)
        return [], {}
    cuda_sources = sorted(glob.glob("csrc/*.cu"))
    # A CUDA toolkit next to a CPU build of torch (no CUDA headers of torch's own) cannot build it.
    use_cuda = (
        bool(cuda_sources)
        and CUDA_HOME is not None
        and torch.version.cuda is not None
        and os.environ.get("ARPO_NO_CUDA") != "1"
    )
    # -fopenmp-simd lets the compiler vectorise the `omp simd` reductions of the attention loops
    # (without it a float dot product stays scalar: the decode attention op ran 2x slower).
    args = {"cxx": ["-O3", "-std=c++17", "-fopenmp-simd"]}
    if use_cuda:
        args["nvcc"] = ["-O3"]
        ext = CUDAExtension(
            "arpo._C",
            sources + cuda_sources,
            extra_compile_args=args,
            define_macros=[("ARPO_WITH_CUDA", None)],
        )
    else:
        ext = CppExtension("arpo._C", sources, extra_compile_args=args)
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=shutil.which("ninja") is not None)}


ext_modules, cmdclass = extension_modules()
setup(
    packages=[*find_packages(include=["arpo", "arpo.*"]), "arpo.kernels"],
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
