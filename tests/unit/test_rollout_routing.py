"""Routing from model events (pure): who scores which message id during canary, shadow and after."""

from __future__ import annotations

import pytest

from streams.control.routing import InvalidEvent, ModelEvent, Route, bucket, fold, pick_version, shadow_version


def ev(event: str, version: int, **kw: object) -> ModelEvent:
    return ModelEvent.from_dict({"model": "sentiment", "version": version, "event": event, **kw})


def test_canary_routes_a_stable_share_of_ids_and_promotion_ends_it() -> None:
    route = fold([ev("promoted", 1), ev("loaded", 2), ev("canary", 2, share=0.3)])["sentiment"]
    assert route == Route(production=1, candidate=2, mode="canary", share=0.3)
    ids = [f"n-{i}" for i in range(5000)]
    picked = [pick_version(route, i) for i in ids]
    assert set(picked) == {1, 2}
    assert 0.27 < picked.count(2) / len(ids) < 0.33
    assert picked == [pick_version(route, i) for i in ids]  # same id, same version, every time
    assert bucket("n-1") == bucket("n-1") and 0 <= bucket("x") < 1
    done = fold([ev("promoted", 2)], {"sentiment": route})["sentiment"]
    assert done == Route(production=2) and {pick_version(done, i) for i in ids} == {2}


def test_rollback_returns_every_id_to_production_and_can_name_a_version() -> None:
    routes = fold([ev("promoted", 1), ev("canary", 2, share=1.0)])
    assert pick_version(routes["sentiment"], "a") == 2
    back = fold([ev("rolled_back", 2)], routes)["sentiment"]
    assert back == Route(production=1) and pick_version(back, "a") == 1
    to = fold([ev("rolled_back", 1, to=0)], {"sentiment": Route(production=1)})["sentiment"]
    assert to.production == 0


def test_shadow_keeps_production_for_every_id_and_names_the_shadow() -> None:
    route = fold([ev("promoted", 3), ev("shadow", 4)])["sentiment"]
    assert pick_version(route, "any") == 3 and shadow_version(route) == 4
    assert shadow_version(Route(production=3)) is None


def test_no_events_means_triton_default_and_other_models_are_untouched() -> None:
    assert pick_version(Route(), "x") is None
    routes = fold([ev("promoted", 2), ModelEvent.from_dict({"model": "topic", "version": 5, "event": "drift"})])
    assert routes["sentiment"].production == 2 and routes["topic"] == Route()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"model": "m", "version": 1, "event": "exploded"}, "unknown model event"),
        ({"model": "m", "version": 1, "event": "canary", "share": 1.5}, "share"),
        ({"model": "m", "version": 1, "event": "canary"}, "share"),
        ({"model": "m", "event": "promoted"}, "bad model event"),
        ({"model": "m", "version": "two", "event": "promoted"}, "bad model event"),
    ],
)
def test_bad_events_are_refused(raw: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidEvent, match=message):
        ModelEvent.from_dict(raw)


def test_event_round_trip_drops_empty_fields() -> None:
    e = ev("canary", 2, share=0.5, reason="gates passed")
    assert ModelEvent.from_dict(e.to_dict()) == e and "to" not in e.to_dict()
