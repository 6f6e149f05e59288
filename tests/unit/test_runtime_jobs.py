"""Each domain declares its periodic jobs beside their code; the runtime binds them by name."""

from __future__ import annotations

import inspect

import pytest

from guidebot.periodic import PeriodicJob
from guidebot.runtime import DECLARED_JOBS, Runtime


def _resource_names() -> list[str]:
    fake = Runtime(*(object() for _ in Runtime.__dataclass_fields__))  # type: ignore[arg-type]
    return list(fake.resources())


def test_every_declared_job_gets_the_resources_it_names():
    resources = {name: object() for name in _resource_names()}
    ids = [job.id for job in DECLARED_JOBS]
    assert len(ids) == len(set(ids)), ids
    for declared in DECLARED_JOBS:
        bound = declared.bind(resources)
        assert (bound.id, bound.every_seconds, bound.cron) == (
            declared.id,
            declared.every_seconds,
            declared.cron,
        )
        wanted = [
            p.name
            for p in inspect.signature(declared.run).parameters.values()
            if p.default is inspect.Parameter.empty
        ]
        assert bound.run.keywords == {name: resources[name] for name in wanted}


def test_a_job_asking_for_what_no_one_provides_fails_at_start_up():
    async def needs_a_printer(sessions, printer) -> None:
        pass

    with pytest.raises(LookupError, match="printer"):
        PeriodicJob("print", needs_a_printer, every_seconds=1).bind({"sessions": None})
