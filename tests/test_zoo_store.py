"""The zoo's API, its file format (read with plain h5py), its errors and its repair."""

import json
import math
import os
import shutil

import h5py
import pytest
import torch

from cellzoo.dsl import cell_hash
from cellzoo.dsl.compile import CompiledCell
from cellzoo.train import TrainConfig, train_cell
from cellzoo.zoo import Zoo, ZooError
from cellzoo.zoo.repair import repair
from cellzoo.zoo.store import _unique

CFG = TrainConfig(task="synthetic", hidden=8, batch_size=4, bptt=10, budget_tokens=400,
                  eval_tokens=200)
RNN = "Tanh(Add(MM(x), MM(h)))"
GATED = "Gate3(h, Tanh(MM(x)), Add(MM(x), MM(h)))"
NO_COMPACTION = {"max_pending": 10_000, "compact_fraction": math.inf, "compact_on_close": False}


@pytest.fixture(scope="module")
def results():
    """Two real (tiny) training runs of different cells."""
    return [train_cell(RNN, CFG), train_cell(GATED, CFG.replace(seed=1, emb=6))]


@pytest.fixture
def zoo_path(tmp_path, results):
    path = tmp_path / "z.h5"
    with Zoo.open(path, "a") as zoo:
        first = zoo.add_run(results[0], {"origin": "library", "operator": "seed"})
        zoo.add_run(results[1], {"origin": "mutation", "parents": [results[0].hash],
                                 "operator": "point", "generation": 3, "run_id": "search-1"})
    assert first
    return path


def test_add_then_query_metadata(zoo_path, results):
    rnn, gated = results
    with Zoo.open(zoo_path) as zoo:
        assert len(zoo) == 2
        assert zoo.has_run(rnn.hash, CFG.key())
        assert not zoo.has_run(rnn.hash, CFG.replace(seed=5).key())
        found = zoo.find_run(gated.hash, gated.config.key())
        assert found.expr == gated.expr and found.val_ppl == gated.val_ppl
        assert found.parents == [rnn.hash] and found.origin == "mutation"
        assert found.generation == 3 and found.search_id == "search-1"
        assert found.config == gated.config.to_dict() and found.seed == 1
        assert found.cell_params == sum(p.numel() for p in CompiledCell(GATED, 6, 8).parameters())
        first = next(zoo.runs())
        assert zoo.cell(rnn.hash[:5]).runs == (zoo.run(first.run_id[:6]),)
        assert [r.hash for r in zoo.top(2)] == [r.hash for r in sorted(results,
                                                                      key=lambda r: r.val_ppl)]
        assert [r.hash for r in zoo.runs(task="synthetic", status="ok")] == [rnn.hash, gated.hash]
        assert list(zoo.runs(status="failed")) == []
        frame = zoo.dataframe()
        assert list(frame["hash"]) == [rnn.hash, gated.hash]
        assert "state_dict" not in frame.columns and "curve" not in frame.columns


def test_curves_and_weights_round_trip(zoo_path, results):
    with Zoo.open(zoo_path) as zoo:
        for run, result in zip(zoo.runs(), results, strict=True):
            assert run.curve == result.curve  # float64 columns: exact
            weights = zoo.load_state_dict(run.run_id)
            assert weights.keys() == result.state_dict.keys()
            assert all(torch.equal(weights[k], v) for k, v in result.state_dict.items())


def test_rebuilt_model_reproduces_stored_perplexities(zoo_path, results):
    with Zoo.open(zoo_path) as zoo:
        run = zoo.find_run(results[1].hash, results[1].config.key())
        again = zoo.reevaluate(run.run_id)
    assert again["val_ppl"] == pytest.approx(run.val_ppl, rel=1e-6)
    assert again["test_ppl"] == pytest.approx(run.test_ppl, rel=1e-6)


def test_prefix_lookups_name_the_problem(zoo_path):
    with Zoo.open(zoo_path) as zoo:
        with pytest.raises(ZooError, match=f"no cell hash starting with 'zzzz' in {zoo_path}"):
            zoo.cell("zzzz")
        with pytest.raises(ZooError, match="no run id starting with ''"):
            zoo.run("")
    with pytest.raises(ZooError, match="run id prefix 'ab' is ambiguous in z.h5: abc, abd"):
        _unique("ab", ["abc", "abd"], "run id", "z.h5")


def test_bad_lineage_is_refused(tmp_path, results):
    with Zoo.open(tmp_path / "z.h5", "a") as zoo:
        with pytest.raises(ZooError, match="unknown lineage keys"):
            zoo.add_run(results[0], {"parent": ["abc"]})
        with pytest.raises(ZooError, match="unknown lineage origin"):
            zoo.add_run(results[0], {"origin": "martian"})
        assert len(zoo) == 0


def test_reader_sees_a_snapshot_then_refreshes(tmp_path, results):
    path = tmp_path / "z.h5"
    writer = Zoo.open(path, "a", **NO_COMPACTION)
    first = writer.add_run(results[0])
    reader = Zoo.open(path)
    assert len(reader) == 1 and reader.pending_runs == 1  # read from the journal
    second = writer.add_run(results[1])
    assert len(reader) == 1
    reader.refresh()
    assert [r.run_id for r in reader.runs()] == [first, second]
    writer.compact()  # the journal entries the reader knows are gone now
    assert not list(writer.journal.dir.glob("*.h5"))
    assert torch.equal(reader.load_state_dict(second)["decoder.bias"],
                       results[1].state_dict["decoder.bias"])
    writer.close()
    assert Zoo.open(path).pending_runs == 0


def test_closing_a_writer_compacts_its_journal(tmp_path, results):
    path = tmp_path / "z.h5"
    with Zoo.open(path, "a", max_pending=10_000, compact_fraction=math.inf) as zoo:
        ids = [zoo.add_run(r) for r in results]
        assert zoo.pending_runs == 2
    assert list(zoo.journal.dir.iterdir()) == []
    with h5py.File(path, "r") as f:
        assert [json.loads(s)["run_id"] for s in f["index"].asstr()[:]] == ids


def test_second_writer_gets_an_error_naming_the_holder(tmp_path):
    path = tmp_path / "z.h5"
    with Zoo.open(path, "a"):
        with pytest.raises(ZooError, match=f"open for writing by pid {os.getpid()} on host"):
            Zoo.open(path, "a", timeout=0.2)
        assert len(Zoo.open(path, "r")) == 0  # readers are never blocked
    with Zoo.open(path, "a"):
        pass


def test_writer_cleans_what_a_killed_writer_left(tmp_path, results):
    path = tmp_path / "z.h5"
    with Zoo.open(path, "a", **NO_COMPACTION) as zoo:
        zoo.add_run(results[0])
    entry = next(zoo.journal.dir.glob("*.h5"))
    saved = tmp_path / "entry.h5"
    shutil.copy(entry, saved)
    with Zoo.open(path, "a") as zoo:
        zoo.compact()
    # as if killed: after publishing the compacted file, before deleting the journal entry,
    # and in the middle of writing a new entry and a new compacted file
    shutil.copy(saved, entry)
    (zoo.journal.dir / "000000009-abc.h5.tmp").write_bytes(b"half")
    path.with_name("z.h5.compacting").write_bytes(b"half")
    assert len(Zoo.open(path)) == 1  # the duplicate is dropped by run id
    with Zoo.open(path, "a") as zoo:
        assert len(zoo) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry.h5", "z.h5", "z.h5.journal",
                                                          "z.h5.lock"]
    assert list(zoo.journal.dir.iterdir()) == []


def _assert_names(path, err):
    text = str(err.value)
    assert str(path) in text and "HDF5-DIAG" not in text and "Traceback" not in text
    return text


def test_unusable_files_get_clear_errors(tmp_path, zoo_path):
    cases = {}
    cases["missing"] = tmp_path / "missing.h5"
    cases["text"] = tmp_path / "notes.h5"
    cases["text"].write_text("not hdf5\n")
    cases["foreign"] = tmp_path / "foreign.h5"
    with h5py.File(cases["foreign"], "w") as f:
        f["data"] = [1, 2, 3]
    cases["truncated"] = tmp_path / "truncated.h5"
    cases["truncated"].write_bytes(zoo_path.read_bytes()[: zoo_path.stat().st_size // 2])
    cases["newer"] = tmp_path / "newer.h5"
    shutil.copy(zoo_path, cases["newer"])
    with h5py.File(cases["newer"], "a") as f:
        f.attrs["format_version"] = 99
    cases["directory"] = tmp_path / "folder.h5"
    cases["directory"].mkdir()
    expected = {"missing": "no zoo file at", "text": "is not an HDF5 file",
                "foreign": "not a cellzoo zoo", "truncated": "truncated or corrupt",
                "newer": "zoo format version 99", "directory": "is a directory"}
    for name, path in cases.items():
        with pytest.raises(ZooError) as err:
            Zoo.open(path)
        assert expected[name] in _assert_names(path, err), name
    before = cases["foreign"].read_bytes()
    with pytest.raises(ZooError, match="not a cellzoo zoo"):
        Zoo.open(cases["foreign"], "a")
    assert cases["foreign"].read_bytes() == before  # never overwritten


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_gets_a_clear_error(zoo_path):
    zoo_path.chmod(0)
    with pytest.raises(ZooError) as err:
        Zoo.open(zoo_path)
    assert "cannot open" in _assert_names(zoo_path, err)


def test_plain_h5py_reads_the_documented_layout(zoo_path, results):
    """Follows docs/zoo-format.md without any cellzoo code."""
    with h5py.File(zoo_path, "r") as f:
        assert f.attrs["format"] == "cellzoo.zoo" and f.attrs["format_version"] == 1
        rows = [json.loads(s) for s in f["index"].asstr()[:]]
        assert [r["hash"] for r in rows] == [r.hash for r in results]
        for row, result in zip(rows, results, strict=True):
            cell = f["cells"][row["hash"]]
            assert cell.attrs["expr"] == result.expr == row["expr"]
            assert cell_hash(cell.attrs["expr"]) == row["hash"]
            assert json.loads(cell.attrs["op_counts"])["MM"] == result.expr.count("MM(")
            run = cell["runs"][row["run_id"]]
            assert run.attrs["val_ppl"] == row["val_ppl"] == result.val_ppl
            assert json.loads(run.attrs["config"]) == result.config.to_dict() == row["config"]
            assert run.attrs["config_key"] == result.config.key()
            assert json.loads(run.attrs["parents"]) == row["parents"]
            curve = run["curve"][()]
            assert list(curve["val_ppl"]) == [p["val_ppl"] for p in result.curve]
            for name, tensor in result.state_dict.items():
                assert (run["weights"][name][()] == tensor.numpy()).all()


def test_import_merges_without_duplicates(tmp_path, zoo_path, results):
    other = tmp_path / "other.h5"
    with Zoo.open(other, "a") as zoo:
        zoo.add_run(results[0], {"origin": "manual"})
    merged = tmp_path / "merged.h5"
    with Zoo.open(merged, "a") as zoo:
        assert zoo.import_from(zoo_path) == (2, 0)
        assert zoo.import_from(other) == (1, 0)
        assert zoo.import_from(zoo_path) == (0, 2)
    with Zoo.open(merged) as zoo:
        assert len(zoo) == 3 and len(zoo.hashes()) == 2
        run = zoo.find_run(results[1].hash, results[1].config.key())
        assert run.parents == [results[0].hash]
        assert torch.equal(zoo.load_state_dict(run.run_id)["encoder.weight"],
                           results[1].state_dict["encoder.weight"])


def test_import_without_weights_keeps_results_and_the_destinations_own_weights(
        tmp_path, zoo_path, results):
    """A results-only copy (what a search's run directory moves with): the imported runs
    keep their index rows and curves and lose their weights; a run the destination holds
    in its journal keeps its own."""
    light = tmp_path / "light.h5"
    with Zoo.open(light, "a", **NO_COMPACTION) as zoo:
        own = zoo.add_run(results[0], {"origin": "manual"})
        assert zoo.pending_runs == 1
        assert zoo.import_from(zoo_path, weights=False) == (2, 0)
    with Zoo.open(zoo_path) as full, Zoo.open(light) as zoo:
        assert zoo.pending_runs == 0 and len(zoo) == 3
        assert zoo.run(own).has_weights
        for run in full.runs():
            copy = zoo.run(run.run_id)
            assert not copy.has_weights
            assert {**copy.to_dict(), "has_weights": True} == run.to_dict()
            assert zoo.curve(run.run_id) == full.curve(run.run_id)
            with pytest.raises(ZooError, match="has no stored weights"):
                zoo.load_state_dict(run.run_id)
    with h5py.File(light, "r") as f:
        kept = {run.name.rsplit("/", 1)[1] for cell in f["cells"].values()
                for run in cell["runs"].values() if "weights" in run}
    assert kept == {own}


def test_repair_sets_aside_a_corrupt_journal_entry(tmp_path, results):
    path = tmp_path / "z.h5"
    with Zoo.open(path, "a", **NO_COMPACTION) as zoo:
        keep = zoo.add_run(results[0])
        zoo.add_run(results[1])
    bad = sorted(zoo.journal.dir.glob("*.h5"))[1]
    bad.write_bytes(bad.read_bytes()[:300])
    with pytest.raises(ZooError) as err:
        Zoo.open(path)
    assert f"cellzoo zoo repair {path}" in _assert_names(bad, err)
    done = repair(path)
    assert any("set aside" in line and bad.name in line for line in done)
    with Zoo.open(path) as zoo:
        assert [r.run_id for r in zoo.runs()] == [keep] and zoo.pending_runs == 0
    assert (zoo.journal.dir / "quarantine" / bad.name).exists()


def test_repair_rebuilds_a_lost_index(zoo_path, results):
    with h5py.File(zoo_path, "a") as f:
        del f["index"]
    with pytest.raises(ZooError, match="repair"):
        Zoo.open(zoo_path)
    assert any("rebuilt the index" in line for line in repair(zoo_path))
    with Zoo.open(zoo_path) as zoo:
        assert [r.hash for r in zoo.runs()] == [r.hash for r in results]
        assert zoo.runs().__next__().origin == "library"


def test_a_diverged_run_is_stored_without_weights(tmp_path):
    result = train_cell(RNN, CFG.replace(optimizer="sgd", lr=1e6))
    assert result.status == "diverged" and result.state_dict is None
    with Zoo.open(tmp_path / "z.h5", "a") as zoo:
        run_id = zoo.add_run(result, {"origin": "random"})
    with Zoo.open(tmp_path / "z.h5") as zoo:
        run = zoo.run(run_id)
        assert run.status == "diverged" and math.isnan(run.val_ppl) and "exploded" in run.error
        assert run.curve == [] and not run.has_weights and zoo.top(5) == []
        assert zoo.has_run(result.hash, result.config.key())  # the search will not retry it
        with pytest.raises(ZooError, match="has no stored weights"):
            zoo.load_state_dict(run_id)
