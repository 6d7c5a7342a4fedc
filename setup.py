"""The package list, which pyproject.toml cannot state: everything else is there.

The Alembic migrations stay at the top of the repository (``migrations/``, where
``alembic upgrade head`` finds them from a checkout) and ship inside the package
as ``app.migrations``, so an installed ``ancla db upgrade`` needs no checkout.
A ``packages.find`` table in pyproject.toml finds only folders named like their
package, so the mapped one is added here; a generic top-level ``migrations``
package is never installed.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[
        # What pyproject.toml's find table found before (namespaces included).
        *find_namespace_packages(include=["ledger*", "app*"]),
        "app.migrations",
        "app.migrations.versions",
    ],
    package_dir={"app.migrations": "migrations"},
)
