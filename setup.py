"""Packaging for pgtwist: a PostgreSQL read/write-splitting, pooling proxy on Twisted."""

from setuptools import find_packages, setup

setup(
    name="pgtwist",
    version="0.1.0",
    description="PostgreSQL proxy on Twisted: Pgpool-II compatible routing and pooling",
    python_requires=">=3.10",
    packages=find_packages(include=["pgtwist", "pgtwist.*"]) + ["twisted.plugins", "plugins"],
    package_data={"twisted": ["plugins/pgtwist_dropin.py"]},
    install_requires=[
        "twisted>=23.8",
        "zope.interface>=6",
        "sqlglot>=25",
        "pyyaml>=6",
        "scramp>=1.4",
        "cryptography>=41",
        "pyOpenSSL>=23",          # TLS on both sides (twisted.internet.ssl)
        "service_identity>=21",   # hostname checks when verifying backends
        "prometheus-client>=0.17",  # /metrics exposition (pgtwist.metrics)
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-timeout>=2",
            "psycopg[binary]>=3.1",
            "asyncpg>=0.29",
            "ruff>=0.5",
            "hypothesis>=6.100",
        ],
        # coverage-guided engine for `python -m tests.fuzz.codec --atheris` (optional)
        "fuzz": ["atheris>=2.3"],
        "docker": ["testcontainers>=4"],
        # sqlglot's compiled build: 2-3x faster classification on a cache miss.
        "fast": ["sqlglotc"],
    },
    entry_points={"console_scripts": ["pgtwist = pgtwist.cli:main"]},
    zip_safe=False,
)
