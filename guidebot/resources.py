"""Where the top-level folders shipped beside the package are: templates/ and sop/."""

from __future__ import annotations

from pathlib import Path


def project_dir(name: str) -> Path:
    """`name` in the source checkout when run from one, else in the working directory.

    The Docker image installs the package as a wheel and puts templates/ and sop/ in its
    working directory, /app.
    """
    checkout = Path(__file__).resolve().parents[1] / name
    return checkout if checkout.is_dir() else Path.cwd() / name
