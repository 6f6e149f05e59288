"""How many examples the property and fuzz tests draw: Hypothesis profiles, loaded by conftest.

`dev` (the default: `make test` on a developer's machine) draws a twentieth of each test's count,
at least ten, with no deadline; `ci` draws every example a test asks for. HYPOTHESIS_PROFILE
names the profile (.ci/run sets it to ci); without it, CI=true (as CI runs) means ci too.

A test writes its full count once, as `examples(3000)`, and the profile scales it: an explicit
`max_examples` would override any profile, which is why the counts go through here.
"""

from __future__ import annotations

import os

from hypothesis import settings

PROFILE_ENV = "HYPOTHESIS_PROFILE"
FULL = 100  # Hypothesis's own default count, which the ci profile keeps
DEV_SHARE = 20  # dev draws one example in this many
DEV_FLOOR = 10  # ... and never fewer than this (or the full count, when that is smaller)

# No deadline in either: a 2-core machine under load makes a per-example time limit a coin toss.
settings.register_profile("ci", max_examples=FULL, deadline=None)
settings.register_profile("dev", max_examples=max(DEV_FLOOR, FULL // DEV_SHARE), deadline=None)


def load_profile() -> None:
    default = "ci" if os.environ.get("CI", "").lower() in ("1", "true", "yes") else "dev"
    settings.load_profile(os.environ.get(PROFILE_ENV) or default)


def examples(full: int, *, floor: int = DEV_FLOOR) -> int:
    """The count to draw of a test whose full count is `full`, under the loaded profile. A test
    that draws its count for each of many cases (every API operation) may set a lower `floor`:
    its draws add up over the cases."""
    if settings.default.max_examples >= FULL:
        return full
    return max(min(full, floor), full // DEV_SHARE)
