"""``tonewatch retrain``: base data + analyst feedback -> a staged candidate -> a gate against production.

The candidate is written to a staging repository, never the live one, and is compared with the
production version on the same fixed evaluation set (the committed test split, which feedback never
enters). Only a candidate that does not lose more than ``margin`` weighted-F1 may be pushed, and, for
sentiment, not more than ``retrain.chat_tolerance`` of chat negative recall or chat macro-F1: chat is a
small share of the test split, so the figure over all texts would not show it getting worse (issue #29).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.artifact import MANIFEST, artifact_dir, next_version, read_manifest, validate_artifact
from models.data import Split, apply_corrections, load_dataset, norm_text, text_sources
from models.domains import domain_record
from models.feedback import Feedback, as_split, sources_by_text
from models.finetune import FinetuneConfig
from models.retrain_triggers import Job, OnError, follow_drift
from tonewatch.core.settings import Settings

log = logging.getLogger(__name__)
PASSED, REFUSED = 0, 3  # the command's exit codes


@dataclass(frozen=True)
class Gate:
    passed: bool
    candidate: float
    production: float | None
    margin: float
    reason: str


def gate(candidate_f1: float, production_f1: float | None, margin: float) -> Gate:
    """Pass iff candidate weighted-F1 >= production - margin (a first version always passes)."""
    if production_f1 is None:
        return Gate(True, candidate_f1, None, margin, "no production version to regress from")
    floor = round(production_f1 - margin, 6)
    if candidate_f1 >= floor:
        return Gate(True, candidate_f1, production_f1, margin,
                    f"candidate {candidate_f1:.4f} >= production {production_f1:.4f} - margin {margin} = {floor:.4f}")
    return Gate(False, candidate_f1, production_f1, margin,
                f"candidate {candidate_f1:.4f} < production {production_f1:.4f} - margin {margin} = {floor:.4f}")


CHAT_CHECKS = (("negative_recall", "negative recall"), ("macro_f1", "macro-F1"))


def domain_gate(overall: Gate, candidate: dict[str, Any] | None, production: dict[str, Any] | None,
                tolerance: float, domain: str = "chat") -> Gate:
    """``overall``, also refused when the candidate's ``domain`` negative recall or macro-F1 (figures of
    ``models.domains.figures``) is more than ``tolerance`` below production's on the same texts."""
    if candidate is None:
        return replace(overall, reason=f"{overall.reason}; no {domain} texts in the test split to compare")
    if production is None:
        return overall
    ok, parts = True, []
    for key, what in CHAT_CHECKS:
        floor = round(production[key] - tolerance, 6)
        passed = candidate[key] >= floor
        ok = ok and passed
        parts.append(f"{domain} {what} {candidate[key]:.4f} {'>=' if passed else '<'} production "
                     f"{production[key]:.4f} - {tolerance} = {floor:.4f}")
    return replace(overall, passed=overall.passed and ok, reason="; ".join([overall.reason, *parts]))


def held_out_filter(rows: Split, held_out: list[Split]) -> tuple[Split, int]:
    """Feedback rows whose text is not in any held-out split, and how many were dropped.

    A correction of an evaluation text must not leak into training: the gate would then grade the
    candidate on data it has seen, and production and candidate would no longer be compared fairly.
    """
    seen = {norm_text(t) for part in held_out for t in part.texts}
    keep = [i for i, t in enumerate(rows.texts) if norm_text(t) not in seen]
    return Split([rows.texts[i] for i in keep], [rows.labels[i] for i in keep]), len(rows.texts) - len(keep)


def feedback_sources(feedback: list[Feedback], used: Split, name: str, weight: int) -> dict[str, Any]:
    """Per source ("none": records from before sources), ``name``'s feedback rows and those used in training."""
    sources = sources_by_text(feedback, name)
    by_source = {s: {"rows": 0, "used": 0} for s in ("chat", "news", "none")}
    for fb in feedback:
        if fb.model == name:
            by_source[fb.source or "none"]["rows"] += 1
    for text in used.texts:
        by_source[sources.get(norm_text(text), "none")]["used"] += 1
    return {"chat_weight": weight, "by_source": by_source}


def parse_every(text: str) -> float:
    """Seconds in ``90s``, ``30m``, ``24h`` or ``7d``."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text.lower())
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"'{text}' is not a duration like 90s, 30m, 24h or 7d")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def production_version(settings: Settings, name: str) -> int | None:
    """The version production serves: the rollout's record when that exists, else what a start would load."""
    try:
        from models.rollout.events import current_routes  # type: ignore[import-not-found,unused-ignore]

        route = current_routes(settings).get(name)
        if route is not None and route.production is not None:
            return int(route.production)
    except ImportError:
        pass
    except Exception as exc:  # no broker (--no-feedback runs): what a start would load, said in the log
        log.warning("model-events not readable (%s): comparing with the version a start would load", exc)
    from models.triton_admin import startup_versions

    found = startup_versions(settings, name)
    return found[-1] if found else None


def prune_staged(folder: Path, name: str, keep: int) -> list[Path]:
    """Remove all but the newest ``keep`` staged candidates of ``name``; returns what was removed.

    A passed but unpushed candidate (or what a failed run left) stays for a later push or a look,
    but not forever: each is a full model copy. Only ``<name>-<UTC stamp>`` folders count.
    """
    pattern = re.compile(rf"{re.escape(name)}-\d{{8}}T\d{{6}}Z")
    staged = sorted(p for p in folder.glob(f"{name}-*") if p.is_dir() and pattern.fullmatch(p.name))
    old = staged[: max(len(staged) - keep, 0)]
    for path in old:
        shutil.rmtree(path, ignore_errors=True)
    return old


def install(repo: Path, name: str, staged: Path) -> int:
    """Copy a staged version into the live repository as its next version, atomically (tmp + rename)."""
    version = next_version(repo, name)
    tmp = repo / name / f".tmp-retrain-{version}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(staged, tmp)
    path = artifact_dir(tmp) / MANIFEST
    raw = json.loads(path.read_text())
    path.write_text(json.dumps({**raw, "version": version}, indent=2) + "\n")
    validate_artifact(tmp)
    tmp.rename(repo / name / str(version))
    return version


def push(settings: Settings, name: str, staged: Path) -> int:
    """Through ``models.publish.push_version`` (validation + smoke test) when the tree has it."""
    try:
        from models.publish import push_version  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return install(settings.triton.model_repository, name, staged)
    return int(push_version(settings, name, staged))


def run_retrain(
    settings: Settings, name: str, cfg: FinetuneConfig, feedback: list[Feedback], *, margin: float,
    limit: int | None = None, do_push: bool = False, device: str | None = None, command: str | None = None,
) -> dict[str, Any]:
    """Train, gate, optionally push, and write the report; returns the report."""
    from models.train import train_version

    t0 = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for path in prune_staged(settings.run_dir / "retrain", name, settings.retrain.keep_staged):
        log.info("removed old staged candidate %s", path)
    ds = load_dataset(name)
    rows, dropped = held_out_filter(as_split(feedback, name), [ds.val, ds.test])
    base = ds.train if limit is None else Split(ds.train.texts[:limit], ds.train.labels[:limit])
    test = ds.test if limit is None else Split(ds.test.texts[:limit], ds.test.labels[:limit])
    n_val = len(ds.val.texts) if limit is None else min(limit, len(ds.val.texts))
    _, new = apply_corrections(base, rows)
    prod = production_version(settings, name)
    staging = settings.run_dir / "retrain" / f"{name}-{stamp}"
    path = train_version(settings, name, cfg, limit=limit, device=device, extra=rows, out_repo=staging,
                         command=command, progress=False, extra_sources=sources_by_text(feedback, name))
    what = f"test split (committed MIT data, seed 7{f', first {limit}' if limit else ''})"
    decision, cand, prod_figures = _judge(settings, name, path, prod, test, what, margin, device or "cpu")
    pushed = push(settings, name, path) if decision.passed and do_push else None
    if pushed is not None or not decision.passed:
        shutil.rmtree(staging, ignore_errors=True)  # a passed, unpushed candidate stays for a later push
    report = {
        "model": name, "at": stamp, "mode": cfg.mode, "command": command, "limit": limit,
        "data": {"train": len(base.texts), "val": n_val, "test": len(test.texts),
                 "feedback_rows": len(as_split(feedback, name).texts), "feedback_used": len(rows.texts),
                 "feedback_new_texts": len(new.texts), "feedback_relabelled": len(rows.texts) - len(new.texts),
                 "feedback_dropped_held_out": dropped},
        "feedback": feedback_sources(feedback, rows, name, settings.retrain.chat_feedback_weight),
        "production": prod_figures,
        "candidate": {"staged": None if pushed is not None or not decision.passed else str(path), **cand},
        "gate": asdict(decision), "decision": "passed" if decision.passed else "refused", "pushed_version": pushed,
        "seconds": round(time.monotonic() - t0, 1),
    }
    write_report(settings.retrain.reports_dir, report)
    return report


def _judge(settings: Settings, name: str, candidate: Path, prod: int | None, test: Split, what: str, margin: float,
           device: str) -> tuple[Gate, dict[str, Any], dict[str, Any] | None]:
    """Candidate and production on the same test texts, over all and per source, and the gate's decision."""
    from models.evaluate import Report, evaluate_by_source, local_predictor

    sources = text_sources(name, test.texts)
    labels = read_manifest(candidate).labels

    def judge(vdir: Path, version: str) -> dict[str, Report]:
        return evaluate_by_source(local_predictor(vdir, device), test, sources, labels, model=name,
                                  version=version, data=what)

    cand = _figures(judge(candidate, f"{read_manifest(candidate).version} (candidate)"))
    production = None if prod is None else {
        "version": prod, **_figures(judge(settings.triton.model_repository / name / str(prod), str(prod)))}
    decision = gate(cand["weighted_f1"], production["weighted_f1"] if production else None, margin)
    if "by_source" in cand:  # sentiment: chat must not get worse either
        decision = domain_gate(decision, cand["by_source"].get("chat"),
                               production["by_source"].get("chat") if production else None,
                               settings.retrain.chat_tolerance)
    return decision, cand, production


def _figures(reports: dict[str, Any]) -> dict[str, Any]:
    """The report's figures over all texts, and per source for a model with a negative class (sentiment)."""
    r = reports["all"].as_dict()
    out = {k: r[k] for k in ("n", "accuracy", "macro_f1", "weighted_f1", "per_class")}
    record = domain_record(reports)
    if record is not None:
        out["by_source"] = {s: f for s, f in record["figures"].items() if s != "all"}
    return out


def write_report(folder: Path, report: dict[str, Any]) -> Path:
    """``<model>-<stamp>.json`` and ``.md`` side by side; returns the JSON path."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"{report['model']}-{report['at']}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(report))
    report["report"] = str(stem.with_suffix(".json"))
    return stem.with_suffix(".json")


def markdown(r: dict[str, Any]) -> str:
    d, g = r["data"], r["gate"]
    lines = [f"# Retrain {r['model']} ({r['mode']}), {r['at']}: **{r['decision']}**", "",
             f"- gate: {g['reason']}",
             f"- data: {d['train']} base train / {d['val']} val / {d['test']} test texts; feedback "
             f"{d['feedback_rows']} rows, {d['feedback_used']} used ({d['feedback_new_texts']} new texts, "
             f"{d['feedback_relabelled']} relabelled), {d['feedback_dropped_held_out']} dropped (in val/test)",
             *_by_source_line(r.get("feedback")),
             f"- pushed as version: {r['pushed_version']}" if r["pushed_version"] is not None
             else f"- not pushed{'; staged at ' + r['candidate']['staged'] if r['candidate']['staged'] else ''}",
             f"- took {r['seconds']} s", "",
             "| model | n | accuracy | macro-F1 | weighted-F1 |", "|---|---|---|---|---|"]
    rows = [("candidate", r["candidate"])] + ([(f"production v{r['production']['version']}", r["production"])]
                                               if r["production"] else [])
    for label, f in rows:
        lines.append(f"| {label} | {f['n']} | {f['accuracy']:.4f} | {f['macro_f1']:.4f} | {f['weighted_f1']:.4f} |")
    if any(f.get("by_source") for _, f in rows):
        lines += ["", "Per source (the gate also compares chat):", "",
                  "| model | source | n | accuracy | macro-F1 | weighted-F1 | negative precision | negative recall | "
                  "negatives |", "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {label} | {s} | {g['n']} | {g['accuracy']:.4f} | {g['macro_f1']:.4f} | {g['weighted_f1']:.4f} | "
                  f"{g['negative_precision']:.4f} | {g['negative_recall']:.4f} | {g['negatives']} |"
                  for label, f in rows for s, g in (f.get("by_source") or {}).items()]
    return "\n".join(lines) + "\n"


def _by_source_line(fb: dict[str, Any] | None) -> list[str]:
    if not fb:  # reports written before issue #29
        return []
    n = fb["by_source"]
    return [f"- feedback by source: chat {n['chat']['rows']} rows ({n['chat']['used']} used, each counted "
            f"{fb['chat_weight']} times), news {n['news']['rows']} ({n['news']['used']} used), no source "
            f"{n['none']['rows']} ({n['none']['used']} used)"]


def on_drift(settings: Settings, name: str, job: Job, on_error: OnError,
             stop: Callable[[], bool] | None = None) -> int:
    """Follow ``model-events`` (until ``stop``); run ``job`` once per due drift event of ``name``."""
    from tonewatch.core.kafka_io import ensure_topics, iter_topic

    topic = settings.kafka.topic("model-events")
    ensure_topics(settings.kafka, [topic])
    values = (rec.value for rec in iter_topic(settings.kafka, topic, follow=True, stop=stop))
    return follow_drift(values, name, job, settings.retrain.drift_cooldown_s, on_error)
