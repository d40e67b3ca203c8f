"""The report's hidden-state section: heat maps of the best runs' hidden units, their
CKA clustermap, and ensemble gain against dissimilarity."""

from __future__ import annotations

from collections.abc import Sequence

from cellzoo.analysis.activations import activations, split_text
from cellzoo.analysis.compare import comparison, draw_comparison
from cellzoo.analysis.selection import labels, select_runs
from cellzoo.report import html as h
from cellzoo.report.context import IMAGES, Report
from cellzoo.report.labels import config_label, mixed_remark, weightless_remark
from cellzoo.train import load_corpus
from cellzoo.zoo import Run


def hidden_section(rep: Report) -> str:
    task = rep.need_task()
    runs = select_runs(rep.zoo, top=rep.options.top, task=task)
    corpus = load_corpus(task, rep.options.data_dir)
    text = split_text(corpus, "valid", rep.options.tokens)
    recorded = activations(rep.zoo, runs, text, rep.cache)
    data = comparison(runs, labels(runs), recorded, text)
    paths = draw_comparison(data, rep.out / IMAGES)
    parts = [h.para(f"The {len(runs)} runs of task {h.text(task)} with the lowest validation "
                    f"perplexity (copies of a better run left out), run over {h.text(text.source)} "
                    "(top layer)."),
             mixed_remark(runs), weightless_remark(rep.zoo.runs(), task),
             _runs_table(runs, data.names),
             h.figure(rep.src(paths["heatmaps"]),
                      "hidden units over the first sentence, one panel per run")]
    if data.cka is None:
        parts.append(h.note("the similarity clustermap needs at least 2 runs"))
        return "".join(parts)
    data.cka.to_csv(rep.out / "similarity_cka.csv")
    if data.constant:
        parts.append(h.remark(f"CKA is undefined (blank) for {', '.join(data.constant)}: their "
                              f"hidden state does not vary over the text"))
    src, div_src = rep.src(paths["clustermap"]), rep.src(paths["diversity"])
    parts += [h.row(h.figure(src, "linear CKA between the runs' hidden states, clustered on "
                                  "1 - CKA"),
                    h.figure(div_src, "per pair of runs: gain of their two-member ensemble "
                                      "over the better one (same tokens) against 1 - CKA")),
              h.para(h.link("similarity_cka.csv", "CKA matrix (CSV)"))]
    return "".join(parts)


def _runs_table(runs: Sequence[Run], names: Sequence[str]) -> str:
    rows = [[h.text(n), h.text(r.run_id), h.text(config_label(r)), h.num(r.params),
             h.num(r.val_ppl), h.num(r.test_ppl), h.code(r.expr)]
            for n, r in zip(names, runs, strict=True)]
    return h.table(["label", "run", "training", "params", "val ppl (as trained)", "test ppl",
                    "DSL"], rows,
                   numeric=(3, 4, 5), table_id="analysed-runs")
