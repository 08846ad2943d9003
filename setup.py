"""The one compiled part: the tail's fold over the log's bytes (mapek/_tailfold.c).
Everything else is in pyproject.toml. Without a C compiler the install still works;
the tail process then folds in Python (mapek.monitor), the same answers at over twice
the CPU (bench/README, "The tail's fold in C")."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("mapek._tailfold", ["mapek/_tailfold.c"], optional=True,
                             extra_compile_args=["-O2", "-Wall", "-Wextra",
                                                 "-Wno-unused-parameter",
                                                 "-Wno-missing-field-initializers"])])
