"""What a KPI is (guidebot.metrics.kpis defines every one): its name, words and formula over
summed guide_daily counters, and the yuan format money KPIs are shown in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from guidebot.i18n import ZH


@dataclass(frozen=True, slots=True)
class Kpi:
    name: str
    label: str  # the short Chinese label in guides' reports
    kind: str  # "count", "rate", "money" or "minutes" (an average)
    definition: str
    source: str
    plus: tuple[str, ...]
    minus: tuple[str, ...] = ()
    over: tuple[str, ...] = ()  # a rate's (or an average's) denominator
    scale: int = 1  # the numerator's unit: reply_pct_x100 is in hundredths of a percent
    lower_is_better: bool = False  # for ranking: fewer minutes to answer is better
    title_en: str = ""  # the display name on English pages (label is the Chinese one)
    definition_zh: str = ""  # the definition above, in Chinese, for the Chinese pages

    def title(self, lang: str) -> str:
        """The KPI's display name in a guidebot.i18n language."""
        return self.label if lang == ZH else self.title_en

    def explain(self, lang: str) -> str:
        """The KPI's definition in a guidebot.i18n language."""
        return self.definition_zh if lang == ZH else self.definition

    def numerator(self, totals: Mapping[str, int]) -> int:
        return sum(totals.get(c, 0) for c in self.plus) - sum(totals.get(c, 0) for c in self.minus)

    def value(self, totals: Mapping[str, int]) -> Any:
        number = self.numerator(totals)
        if self.kind in ("rate", "minutes"):
            base = sum(totals.get(c, 0) for c in self.over) * self.scale
            return round(number / base, 4 if self.kind == "rate" else 1) if base else None
        if self.kind == "money":
            return yuan(number)
        return number


def yuan(fen: int) -> str:
    """Integer fen as a yuan decimal string with 2 places: 12345 -> "123.45"."""
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"


__all__ = ["Kpi", "yuan"]
