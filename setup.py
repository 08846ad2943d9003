"""The one compiled part: the Monitor's fold (mapek/_fold.c). Everything else is in
pyproject.toml. Without a C compiler the install still works; the Monitor then folds in
Python (mapek.monitor, `_fold_py`), the same observations at about twice the cost."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("mapek._fold", ["mapek/_fold.c"], optional=True)])
