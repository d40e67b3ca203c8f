"""The report's first section: each search run's settings, its ladder or proxy
training, and the training configurations in the zoo."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from cellzoo.report import html as h
from cellzoo.report.context import EXPECTED_ERRORS, Report, SearchRun
from cellzoo.report.labels import config_label
from cellzoo.zoo import Run, Zoo


def configs_section(rep: Report) -> str:
    parts = [h.note(f"run directory {r.label}: {r.problem}") for r in rep.runs if r.problem]
    configured = [r for r in rep.runs if r.config is not None]
    if configured:
        header = ["setting"] + [r.label for r in configured]
        search, train = _settings_rows(configured)
        ladders = [r.config.ladder is not None for r in configured]
        title = ("the ladder's base training (its preset)" if all(ladders) else
                 "proxy training" if not any(ladders) else "proxy training or ladder preset")
        ladder = (h.table(["ladder"] + header[1:], _ladder_rows(rep, configured),
                          table_id="ladder-config") if any(ladders) else "")
        parts.append(h.row(h.table(header, search, table_id="search-config"),
                           ladder + h.table([title] + header[1:], train,
                                            table_id="train-config")))
    else:
        parts.append(h.note("no search run directory given (--run-dir DIR, made by "
                            "`cellzoo evolve`)" if not rep.runs else
                            "none of the run directories has a readable configuration"))
    parts.append("<h3>Training configurations in the zoo</h3>")
    parts.append(_zoo_configs_table(rep.zoo))
    return "".join(parts)


def _settings_rows(runs: Sequence[SearchRun]) -> tuple[list[list[str]], list[list[str]]]:
    """Rows of the search settings and of the resolved proxy training, one column per run."""
    search = [r.config.to_dict() for r in runs]
    train = [r.proxy_train or {} for r in runs]
    search_rows = [["kind of search"] + [h.text(r.arm) for r in runs],
                   ["directory"] + [h.text(r.path) for r in runs]]
    shown_apart = {"train"} | ({"ladder"} if any(s["ladder"] for s in search) else set())
    search_rows += [[h.text(k)] + [h.text(_setting(r, s, k))
                                   for r, s in zip(runs, search, strict=True)]
                    for k in search[0] if k not in shown_apart]
    train_rows = [["config key"] + [h.text(r.proxy_key) for r in runs]]
    names = dict.fromkeys(k for t in train for k in t)
    train_rows += [[h.text(k)] + [h.text(_value(t.get(k))) for t in train] for k in names]
    return search_rows, train_rows


def _ladder_rows(rep: Report, runs: Sequence[SearchRun]) -> list[list[str]]:
    """The runs' ladders in words, one column per run ('–' for a proxy search)."""
    columns = [_ladder_text(rep, r) for r in runs]
    names = dict.fromkeys(k for c in columns for k in c)
    return [[h.text(k)] + [h.text(c.get(k, "–")) for c in columns] for k in names]


def _ladder_text(rep: Report, search: SearchRun) -> dict[str, str]:
    """Setting -> its meaning, of one search's ladder ({} for a proxy search)."""
    ladder, table = search.config.make_ladder(), search.config.ladder
    if ladder is None:
        return {}
    base = ladder.base
    text = {"preset": f"{ladder.preset} ({base.task} {base.layers}×{base.hidden}, "
                      f"{base.epochs} epochs, lr {base.learning_rate:g})",
            "eta": f"{ladder.eta}: the best 1/{ladder.eta} of a rung's results go up",
            "schedule": (f"{ladder.schedule}: a rung trains the first tokens of the full run"
                         if ladder.schedule == "prefix" else
                         f"{ladder.schedule}: the full run's rate schedule, compressed"),
            "width": f"each cell at {ladder.reference}'s parameter count",
            "learning rates": "per cell, probed at rung 0: "
                              + ", ".join(f"{base.learning_rate * s:g}" for s in table["probe"])}
    try:
        tokens, full = rep.rung_tokens(search)
    except EXPECTED_ERRORS as err:
        return {**text, "rungs": f"not available ({err})"}
    for rung, budget in enumerate(tokens):
        text[f"rung {rung}"] = (f"{budget:,} tokens (the full run)" if budget == full else
                                f"{budget:,} tokens ({budget / full:.1%} of the full run)")
    return text


def _setting(run: SearchRun, settings: dict[str, Any], name: str) -> str:
    """A search setting's value, or a dash where it has no effect in that search."""
    return "– (no effect)" if name in run.config.inert else _value(settings[name])


def _value(value: object) -> str:
    return "–" if value is None else json.dumps(value) if isinstance(value, dict) else str(value)


def _zoo_configs_table(zoo: Zoo) -> str:
    groups: dict[str, list[Run]] = {}
    for run in zoo.runs():
        groups.setdefault(run.config_key, []).append(run)
    if not groups:
        return h.note(f"the zoo {zoo.path} holds no runs")
    rows = []
    for key, runs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        statuses = Counter(r.status for r in runs)
        rows.append([h.text(config_label(runs[0])), h.text(key), h.num(len(runs)),
                     h.num(statuses.get("ok", 0)), h.num(len(runs) - statuses.get("ok", 0))])
    return h.table(["training", "config key", "runs", "ok", "diverged/failed"], rows,
                   numeric=(2, 3, 4), table_id="zoo-configs")
