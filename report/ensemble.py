"""The report's ensemble section: the greedy ensemble of the best runs, with its pool."""

from __future__ import annotations

from cellzoo.analysis import ensemble as ens
from cellzoo.report import html as h
from cellzoo.report.context import Report, Unavailable
from cellzoo.report.labels import config_label, mixed_remark, weightless_remark


def ensemble_section(rep: Report) -> str:
    task = rep.need_task()
    ok = [r for r in rep.zoo.runs(task, "ok") if r.has_weights]
    if len(ok) < 2:
        raise Unavailable(f"an ensemble needs at least 2 ok runs with weights of task "
                          f"{task!r}; the zoo holds {len(ok)}")
    result = ens.build(rep.zoo, task, rep.options.top, "greedy", None, rep.options.data_dir,
                       rep.cache, ens.Layout(tokens=rep.options.eval_tokens))
    ens.save(result, rep.out / "ensemble.json")
    total = sum(m.weight for m in result.members)
    pool = sorted(result.pool, key=lambda m: (-m.weight, m.val_ppl))
    runs = [rep.zoo.run(m.run_id) for m in pool]
    rows = [[h.text(m.label), h.text(f"{m.weight}/{total}" if m.weight else "0"),
             h.num(m.val_ppl), h.num(m.test_ppl), h.text(m.run_id),
             h.text(config_label(run)), h.code(m.expr)] for m, run in zip(pool, runs, strict=True)]
    best = next(m for m in result.members if m.label == result.best_member)
    summary = [["greedy ensemble", h.num(result.val_ppl), h.num(result.test_ppl)],
               [f"best member ({h.text(best.label)})", h.num(best.val_ppl),
                h.num(best.test_ppl)],
               [f"uniform average of the pool ({len(result.pool)})", "–",
                h.num(result.uniform_test_ppl)]]
    tokens = (f"the first {rep.options.eval_tokens:,} tokens of each split"
              if rep.options.eval_tokens else "the full validation and test splits")
    # not the perplexities measured in training (other tokens): say which these are
    where = (f"first {rep.options.eval_tokens:,} tokens" if rep.options.eval_tokens
             else "full split")
    measured = [f"val ppl ({where})", f"test ppl ({where})"]
    return (h.para(f"Pool: the {len(result.pool)} runs of task {h.text(task)} with the lowest "
                   f"validation perplexity (copies of a better run left out); members chosen "
                   f"greedily (with replacement) on the validation split; perplexities on "
                   f"{tokens}. Ensemble gain over its best member: {result.gain:.1%}.")
            + mixed_remark(runs) + weightless_remark(rep.zoo.runs(), task)
            + h.table(["", *measured], summary, numeric=(1, 2),
                      table_id="ensemble-summary")
            + h.table(["run", "weight", *measured, "run id", "training", "DSL"], rows,
                      numeric=(1, 2, 3), table_id="ensemble-members")
            + h.para(h.link("ensemble.json", "the ensemble (for `cellzoo ensemble --load`)")))
