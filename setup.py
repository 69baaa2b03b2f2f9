"""The optional compiled UDP fast path (service/pygdnsd/transport/_fastpath.c).

Everything else about the build is in pyproject.toml. ``optional=True``: where
the module cannot be compiled (no C compiler, no Python headers) the build
warns and goes on, and pygdnsd serves with its pure-Python path (README.rst,
"How the engine answers fast").
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "pygdnsd.transport._fastpath",
            sources=["service/pygdnsd/transport/_fastpath.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
            optional=True,
        )
    ]
)
