"""A key's detector state and what flows into it: trend events, partials, windows, the open alert.

Frozen dataclasses of counts and sums, small enough for one changelog record per key; ``KeyState.from_dict``
reads states written by earlier versions, each field missing from them defaulting to a calm key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from streams.windows import changepoint, rolling, spread
from streams.windows.baseline import Level
from streams.windows.prevalence import corrected_share
from streams.windows.rolling import Recent


@dataclass(frozen=True)
class TrendEvent:
    """One scored message seen from one dimension (ticker, topic, source...)."""

    dimension: str
    key: str
    ts: float
    negative: bool
    p_negative: float
    message_id: str
    text: str
    source: str
    model_versions: dict[str, str] = field(default_factory=dict)
    adjusted: float | None = None  # its share of a corrected negative count (prevalence.py); None: its label
    tickers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Driver:
    message_id: str
    text: str
    source: str
    p_negative: float
    tickers: tuple[str, ...] = ()  # what it is about: relates a sector, topic or source alert to a ticker's

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Driver:
        """From JSON (a state or a partial); drivers written before ``tickers`` have none."""
        tickers = d.get("tickers", ())
        if not isinstance(tickers, list | tuple) or not all(isinstance(t, str) for t in tickers):
            raise ValueError("a driver's tickers must be a list of strings")
        return cls(**{**d, "tickers": tuple(tickers)})


@dataclass(frozen=True)
class Partial:
    """A batch's events of one key in one window, summed before they travel (a combiner).

    Its window is ``window_start(ts)``: the score stage and the agent share ``window_s``. Why, and what
    it changes: docs/decisions/2026-12-07-trend-partials.md.
    """

    dimension: str
    key: str
    ts: float  # the latest event time among them: the key's watermark moves this far
    count: int
    negative: int
    p_negative_sum: float
    drivers: tuple[Driver, ...] = ()  # the most negative of them, at most ``top_messages``
    message_ids: tuple[str, ...] = ()  # all of them: a late partial is dead-lettered with every id
    model_versions: dict[str, str] = field(default_factory=dict)
    # the corrected negative count (streams/windows/prevalence.py); None (records from before it): ``negative``
    adjusted_sum: float | None = None
    slices: spread.Slices = ()  # (count, negative) per sixth of its window (spread.py); () for one message

    @classmethod
    def of(cls, ev: TrendEvent) -> Partial:
        drivers = (Driver(ev.message_id, ev.text, ev.source, round(ev.p_negative, 4), tuple(ev.tickers)),) \
            if ev.negative else ()
        return cls(ev.dimension, ev.key, ev.ts, 1, int(ev.negative), ev.p_negative, drivers, (ev.message_id,),
                   ev.model_versions, ev.adjusted)


@dataclass(frozen=True)
class Window:
    start: float
    count: int = 0
    negative: int = 0
    p_negative_sum: float = 0.0
    drivers: tuple[Driver, ...] = ()
    latest: float | None = None  # the latest event time in it: its model versions speak for the window
    model_versions: dict[str, str] = field(default_factory=dict)
    adjusted_sum: float = 0.0  # corrected negative count: equals ``negative`` where no version has rates
    slices: spread.Slices = ()  # when in the window its messages came (spread.py); () in states from before

    @property
    def share(self) -> float:
        """The counted share: how many messages the model labelled negative."""
        return self.negative / self.count if self.count else 0.0

    @property
    def corrected_share(self) -> float:
        """The estimated true negative share, corrected for each message's model error rates."""
        return corrected_share(self.adjusted_sum, self.count)


@dataclass(frozen=True)
class Firing:
    alert_id: str
    started: float
    severity: str
    peak_score: float
    reason: str = "share"


@dataclass(frozen=True)
class KeyState:
    """Open windows within the allowed lateness, the key's baseline, and its open alert."""

    windows: tuple[Window, ...] = ()
    watermark: float | None = None  # the latest watermark this key was advanced to
    closed_until: float | None = None  # end of the last closed window: earlier events are too late
    baseline: float | None = None  # of the counted share: what the z's are computed against
    corrected: float | None = None  # of the corrected share: what effect sizes (min_delta) are measured from
    closed_windows: int = 0
    firing: Firing | None = None
    volume: Level | None = None  # baseline of negative messages per window
    cooldown_until: float | None = None  # event time before which the key may not fire again
    recent: Recent = ()  # closed windows inside the rolling view, as counts
    # (partition, offset) of the last trend-events record folded in: a restarted worker re-reads records
    # after the last commit, and the state restored from the changelog may already hold them
    applied: tuple[int, int] | None = None
    # the offsets folded in that a consumer may still deliver again (a restart re-reads from the committed
    # offset, the hole healer from a record the agent never got): ``applied`` alone assumed records come in order
    applied_offsets: tuple[int, ...] | None = None
    # change-point evidence (changepoint.py): defaults, so states written before it load as a calm key
    evidence: float = 0.0
    shift: float = 0.0
    shift_negatives: int = 0
    run: changepoint.Run = (0.0, 0)  # the evidence's window z's summed, and how many: the surge's size
    recent_slices: spread.Slices = ()  # the last closed windows' slices: does a surge outlast one window (spread.py)

    def holds(self, partition: int, offset: int) -> bool:
        """Whether the record at ``partition``/``offset`` is already part of this state."""
        if self.applied is None or self.applied[0] != partition:
            return False
        if not self.applied_offsets:  # a state written before the list: every offset up to the last one folded
            return offset <= self.applied[1]
        return offset in self.applied_offsets or offset < self.applied_offsets[0]  # below it: committed long ago

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> KeyState:
        if not data:
            return cls()
        windows = tuple(
            Window(start=w["start"], count=w["count"], negative=w["negative"], p_negative_sum=w["p_negative_sum"],
                   drivers=tuple(Driver.from_dict(d) for d in w["drivers"]), latest=w.get("latest"),
                   model_versions=w.get("model_versions", {}), adjusted_sum=w.get("adjusted_sum", w["negative"]),
                   slices=spread.from_json(w.get("slices")))
            for w in data.get("windows", ())
        )
        f, v = data.get("firing"), data.get("volume")
        return cls(
            windows=windows, watermark=data.get("watermark"), closed_until=data.get("closed_until"),
            baseline=data.get("baseline"), corrected=data.get("corrected", data.get("baseline")),
            closed_windows=data.get("closed_windows", 0),
            firing=Firing(**f) if f else None, volume=Level(**v) if v else None,
            cooldown_until=data.get("cooldown_until"), recent=rolling.from_json(data.get("recent")),
            applied=tuple(data["applied"]) if data.get("applied") else None,
            applied_offsets=tuple(int(o) for o in data["applied_offsets"]) if data.get("applied_offsets") else None,
            evidence=data.get("evidence", 0.0), shift=data.get("shift", 0.0),
            shift_negatives=data.get("shift_negatives", 0), run=_run(data.get("run")),
            recent_slices=spread.from_json(data.get("recent_slices")),
        )


def _run(value: Any) -> changepoint.Run:
    """A stored run, or none (states written before it, or not a pair of numbers: no evidence)."""
    if isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(x, int | float) for x in value):
        return float(value[0]), int(value[1])
    return 0.0, 0
