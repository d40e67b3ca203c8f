"""How the page names a run's training: its task, shape and length, and the preset it
follows with what it changed (`config_label`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cellzoo.report import html as h
from cellzoo.train import PRESETS
from cellzoo.train.config import NOT_LEARNED
from cellzoo.zoo import Run


def config_label(run: Run) -> str:
    """A run's training in a few words: task, layers x hidden, length, preset name if any."""
    c = run.config
    preset = _preset_label(c)
    return (f"{run.task} {c.get('layers', 1)}×{c.get('hidden')}, {run_length(c)}"
            + (f" ({preset})" if preset else ""))


def run_length(config: dict) -> str:
    """How long a run trained: a token budget (a ladder rung's as a prefix of the full run's
    schedule, "149,188 of 12,084,280 tokens"), else its epochs."""
    budget, schedule = config.get("budget_tokens"), config.get("schedule_tokens")
    if not budget:
        return f"{config['epochs']} epochs" if config.get("epochs") else ""
    if schedule and schedule > budget:
        return f"{budget:,} of {schedule:,} tokens"
    return f"{budget:,} tokens" + (", compressed schedule" if schedule else "")


#: what a run may change and still follow its preset: width (`--match-params`), learning
#: rate, seed, a ladder rung's token budget and schedule, and what changes nothing learned
#: (device, extra evaluation points)
PRESET_FREE = ("hidden", "emb", "lr", "seed", "budget_tokens", "schedule_tokens",
               *NOT_LEARNED)


def preset_of(config: dict) -> str | None:
    """The preset whose recipe ``config`` follows (every field but `PRESET_FREE` equal)."""
    return next((name for name, preset in PRESETS.items()
                 if all(config.get(k) == v for k, v in preset.to_dict().items()
                        if k not in PRESET_FREE)), None)


def _preset_label(config: dict) -> str | None:
    """The preset a configuration follows, with its learning rate and seed if changed:
    retrainings at another width, rate or seed and ladder rungs name the preset they follow."""
    name = preset_of(config)
    return None if name is None else ", ".join([name, *preset_changes(config, name)])


def preset_changes(config: dict, name: str) -> list[str]:
    """The learning rate and seed of ``config`` where they differ from preset ``name``'s."""
    fields = PRESETS[name].to_dict()
    return [f"{k} {config[k]:g}" for k in ("lr", "seed") if config.get(k) not in (None, fields[k])]


def mixed_remark(runs: Sequence[Run]) -> str:
    """A warning when ``runs`` trained for different lengths (a ladder's rung runs beside
    full runs): the lowest perplexities are then not the best cells ('' otherwise)."""
    if len({run_length(r.config) for r in runs}) < 2:
        return ""
    return h.remark("These runs trained for different lengths (see 'training': rung runs of "
                    "a ladder search are short prefixes of a full run), so their perplexities "
                    "are not comparable with each other.")


def weightless_remark(runs: Iterable[Run], task: str) -> str:
    """A note on the ok runs of ``task`` a pool passed over for want of weights: a search
    rebuilt from its log (`cellzoo evolve --restore`) stores results without them ('' when
    there are none)."""
    count = sum(r.status == "ok" and r.task == task and not r.has_weights for r in runs)
    if not count:
        return ""
    runs_have = "1 ok run has" if count == 1 else f"{count:,} ok runs have"
    return h.remark(f"{runs_have} no weights (results restored from an evaluations log by "
                    f"cellzoo evolve --restore, or stored without them) and cannot be run: "
                    f"the pool leaves {'it' if count == 1 else 'them'} out.")
