"""The report's tables against hand-made run directories: the numbers, not only the files."""

import collections
import json
import pathlib
import statistics

import numpy as np
import pytest

from experiments import report
from experiments.report import loading
from wngan_jax import metrics, record
from wngan_jax.config import digits

# (model, seed): running-test losses at iterations 200, 400, ...; final-test loss (None: no final test)
RUNS = {
    ("vanilla", 0): ([0.05, 0.03, 0.02, 0.025, 0.04, 0.05, 0.06], 0.021),  # collapses at 1000
    ("vanilla", 1): ([0.05, 0.028, 0.022, 0.021, 0.021, 0.024, 0.025], 0.020),
    ("bn", 0): ([0.06, 0.04, 0.035, 0.03, 0.029, 0.031, 0.03], None),
    ("wn", 0): ([0.04, 0.02, 0.018, 0.017, 0.016, 0.0165, 0.016], 0.015),
    ("wn", 1): ([0.04, 0.021, 0.019, 0.018, 0.017, 0.016, 0.015], 0.014),
    ("wn", 2): ([0.04, 0.02, 0.017, 0.018, 0.018, 0.019, 0.02], 0.016),
}


CODE_SIZE = digits().model.code_size


def make_run(root, model, seed, losses, final):
    run = root / model / f"seed_{seed}"
    run.mkdir(parents=True)
    (run / "config.json").write_text(digits().replace(norm=model, seed=seed).to_json())
    lines = []
    for k, loss in enumerate(losses):
        it = 200 * (k + 1)
        lines += [json.dumps({"iteration": it - 100, "d_loss": 1.0}), json.dumps({"iteration": it, "test_loss": loss})]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    if final is not None:
        (run / "final_test").mkdir()
        last = {"mean_loss": 2 * final}  # the last generator's final test (paper Tables 6-7)
        (run / "final_test" / "report.json").write_text(json.dumps({"mean_loss": final, "steps": 500, "last": last}))
    return run


@pytest.fixture
def study(tmp_path):
    root = tmp_path / "study"
    for (model, seed), (losses, final) in RUNS.items():
        make_run(root, model, seed, losses, final)
    return root


def ms(values, fmt="{:.6f}"):
    return f"{fmt.format(statistics.mean(values))} ± {fmt.format(statistics.stdev(values))}"


def test_summary_and_instance_tables(study):
    instances = [report.load_instance(r, factor=1.5, tests=3) for r in report.find_runs([study])]
    rows = {r["model"]: r for r in report.summary_rows(instances)}
    assert list(rows) == ["vanilla", "bn", "wn"]  # the paper's order, not the directory order
    assert rows["vanilla"] == dict(
        model="vanilla",
        instances=2,
        best_loss=ms([0.02, 0.021]),
        best_iteration=ms([600, 800], "{:,.0f}"),  # the earliest of two equal losses
        final_loss=ms([0.021, 0.020]),
        collapsed="1/2",
        median_collapse="1,000",  # one of two collapsed at 1,000, the other ran to 1,400: S = 1/2 there
        ema_best_loss="-",
        ema_final_loss="-",
    )
    assert rows["bn"] == dict(
        model="bn",
        instances=1,
        best_loss="0.029000",
        best_iteration="1,000",
        final_loss="-",
        collapsed="0/1",
        median_collapse="not reached",
        ema_best_loss="-",
        ema_final_loss="-",
    )
    assert rows["wn"]["best_loss"] == ms([0.016, 0.015, 0.017])
    assert rows["wn"]["best_iteration"] == ms([1000, 1400, 600], "{:,.0f}")
    assert rows["wn"]["final_loss"] == ms([0.015, 0.014, 0.016]) and rows["wn"]["collapsed"] == "0/3"
    per_instance = {(r["model"], r["seed"]): r for r in report.instance_rows(instances)}
    assert per_instance[("vanilla", 0)] == dict(
        model="vanilla",
        seed=0,
        best_iteration="600",
        best_loss="0.020000",
        final_loss="0.021000",
        last_iteration="1,400",
        last_final_loss="0.042000",
        collapse="1,000",
        collapse_rule="loss",
        ema_best_loss="-",
        ema_final_loss="-",
        setting="-",
    )
    assert [per_instance[("wn", s)]["collapse"] for s in range(3)] == ["-", "-", "-"]
    # A looser rule (two tests above 1.1 x the best before them) finds more and earlier collapses:
    # vanilla 0: 0.025 > 0.022; vanilla 1: 0.024 > 0.0231; wn 2: 0.019 > 0.0187 (best 0.017).
    strict = [report.load_instance(r, factor=1.1, tests=2) for r in report.find_runs([study])]
    assert {(i.model, i.seed): i.collapse.iteration for i in strict if i.collapse} == {
        ("vanilla", 0): 800,
        ("vanilla", 1): 1200,
        ("wn", 2): 1200,
    }


def test_report_pages_and_markdown(study, tmp_path):
    index = report.write_report([study], tmp_path / "out", markdown=tmp_path / "docs" / "results.md")
    tables = (tmp_path / "out" / "tables.md").read_text()
    head = "| Model | Instances | Best 50-step loss | Iteration | Final 500-step loss | Collapsed | Median collapse |"
    assert head in tables
    vanilla = f"| vanilla | 2 | {ms([0.02, 0.021])} | {ms([600, 800], '{:,.0f}')} | {ms([0.021, 0.02])} | 1/2 | 1,000 |"
    assert vanilla in tables and "EMA" not in tables  # no run kept a generator EMA
    assert "| vanilla | 0 | 600 | 0.020000 | 0.021000 | 1,400 | 0.042000 | 1,000 | loss |" in tables
    assert "| bn | 0 | 1,000 | 0.029000 | - | 1,400 | - | - | - |" in tables
    page = index.read_text()
    assert page.count("<img ") == 2  # the curves and the survival: these runs have no checkpoints and no record
    # The loss against reconstruction steps, Figs. 2, 3-4, the collapse samples, the diversity and the
    # interpolation say why they are missing.
    assert page.count("Not available") == 6 and "collapse at iteration 1,000" in page
    assert (tmp_path / "out" / "fig1_running_test_loss.png").stat().st_size > 1000
    results = (tmp_path / "docs" / "results.md").read_text()
    assert tables in results and "trained to iterations 1,400" in results
    assert "![Figs. 1, 13-14: running-test reconstruction loss](results/fig1_running_test_loss.png)" in results
    assert (tmp_path / "docs" / "results" / "fig1_running_test_loss.png").is_file()
    # Regenerating the page keeps its hand-written sections (results of other studies), once, in order.
    resnet = "## The WN ResNet follow-up\n\n| c | d |\n\n"
    section = "## Stability under stress\n\nLong runs: ...\n\n### A sweep\n\n| a | b |\n"
    (tmp_path / "docs" / "results.md").write_text(results + resnet + "## Notes\n\ngone\n\n" + section)
    report.write_report([study], tmp_path / "out", markdown=tmp_path / "docs" / "results.md")
    again = (tmp_path / "docs" / "results.md").read_text()
    assert again.endswith(resnet + section) and again.count("## Stability under stress") == 1 and "gone" not in again


def test_collapse_figure_and_diversity_from_a_record(study, tmp_path):
    # vanilla seed 0 collapses at 1,000: give it a record every 100 iterations whose 3 codes become one image.
    writer = record.RecordWriter(study / "vanilla" / "seed_0", np.zeros((3, 4), np.float32))
    rng = np.random.default_rng(0)
    for it in range(100, 1401, 100):
        images = rng.integers(0, 256, (3, 8, 8, 1), dtype=np.uint8)
        writer.write(it, images if it < 1000 else np.repeat(images[:1], 3, axis=0))
    instance = report.load_instance(study / "vanilla" / "seed_0", factor=1.5, tests=3)
    its, diversity = report.diversity_curve(instance)
    assert its == list(range(100, 1401, 100)) and all(d > 0.2 for d in diversity[:9]) and max(diversity[9:]) == 0
    index = report.write_report([study], tmp_path / "out")
    page = index.read_text()
    assert (tmp_path / "out" / "fig5_collapse_vanilla_seed0.png").is_file()
    assert page.count("<img ") == 5  # curves, survival, samples over time, the collapse, diversity
    assert "3 fixed codes (rows)" in page


def test_the_command_keeps_its_single_run_form(study, tmp_path, capsys):
    runs = [study / "vanilla" / "seed_0", study / "wn" / "seed_0"]
    assert report.main([*map(str, runs), f"--plot={tmp_path / 'fig1.png'}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        "| Model | Instances | Best 50-step loss | Iteration | Final 500-step loss | Collapsed | Median collapse |"
    )
    assert lines[2] == "| vanilla | 1 | 0.020000 | 600 | 0.021000 | 1/1 | 1,000 |"
    assert lines[3] == "| wn | 1 | 0.016000 | 1,000 | 0.015000 | 0/1 | not reached |"
    assert (tmp_path / "fig1.png").is_file()
    assert report.main([str(tmp_path / "empty")]) == 1
    assert "not a run directory" in capsys.readouterr().err


def test_paired_comparison_and_loss_against_reconstruction_steps(tmp_path):
    """WN's per-target losses are 0.9 x vanilla's on the same targets: "-10.0%" with a point interval; each
    instance's loss after 50, 100 and 500 steps becomes the appendix C.3 figure."""
    base = np.random.default_rng(0).uniform(0.01, 0.03, 40)
    for model, scale in (("vanilla", 1.0), ("wn", 0.9)):
        run = make_run(tmp_path / "study", model, 0, [0.05, 0.03], None)
        per_sample = list(scale * base)
        curve = {"50": 3 * scale * base.mean(), "100": 2 * scale * base.mean(), "500": scale * base.mean()}
        (run / "final_test").mkdir()
        final = {"mean_loss": float(np.mean(per_sample)), "steps": 500, "per_sample_loss": per_sample}
        (run / "final_test" / "report.json").write_text(json.dumps(final | {"loss_curve": curve}))
    instances = [report.load_instance(r, factor=1.5, tests=3) for r in report.find_runs([tmp_path / "study"])]
    (row,) = report.paired_rows(instances)
    assert row["model"] == "wn seed 0 vs vanilla seed 0" and row["samples"] == 40
    assert row["relative"] == "-10.0% [-10.0%, -10.0%]"
    assert row["difference"].startswith(f"{-0.1 * base.mean():+.6f} [")
    index = report.write_report([tmp_path / "study"], tmp_path / "out")
    assert "## Paired comparison" in (tmp_path / "out" / "tables.md").read_text()
    assert (tmp_path / "out" / "fig_reconstruction_steps.png").stat().st_size > 1000
    assert "Appendix C.3: final-test loss against reconstruction steps" in index.read_text()


def test_the_report_reads_each_run_once(study, tmp_path, monkeypatch, capsys):
    """``--out`` writes the tables and every figure and prints Table 2 from one reading of each run: its
    metrics, its final test and its fixed-code record are each read once, shared by tables and figures."""
    writer = record.RecordWriter(study / "vanilla" / "seed_0", np.zeros((3, 4), np.float32))
    for it in range(100, 1401, 100):
        writer.write(it, np.full((3, 8, 8, 1), it % 256, np.uint8))
    reads = collections.Counter()

    def counted(what, read):
        def wrapper(run, *args, **kwargs):
            reads[what, pathlib.Path(run)] += 1
            return read(run, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(loading, "load_instance", counted("run", loading.load_instance))
    monkeypatch.setattr(metrics, "records", counted("metrics", metrics.records))
    monkeypatch.setattr(record, "read", counted("record", record.read))
    assert report.main([str(study), f"--out={tmp_path / 'out'}"]) == 0
    assert "| wn | 3 |" in capsys.readouterr().out
    assert (tmp_path / "out" / "fig5_collapse_vanilla_seed0.png").is_file()  # the record was used
    runs = report.find_runs([study])
    assert len(runs) == len(RUNS)
    assert reads == {(what, run): 1 for run in runs for what in ("run", "metrics", "record")}


def test_ema_columns_and_which_rule_fired(study, tmp_path):
    """Runs with a generator EMA get the averaged generator's best running-test loss and final loss beside the
    raw one's; a run whose samples lose their diversity collapses by that rule though its loss does not rise."""
    wn = study / "wn" / "seed_0"
    rows = [json.loads(line) for line in (wn / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        if "test_loss" in row:
            row["ema_test_loss"] = row["test_loss"] * 0.9
    (wn / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    final = json.loads((wn / "final_test" / "report.json").read_text())
    (wn / "final_test" / "report.json").write_text(json.dumps(final | {"ema": {"mean_loss": 0.0125}}))
    writer = record.RecordWriter(wn, np.zeros((3, 4), np.float32))
    rng = np.random.default_rng(0)
    for it in range(100, 1401, 100):
        images = rng.integers(0, 256, (3, 8, 8, 1), dtype=np.uint8)
        writer.write(it, images if it < 700 else np.repeat(images[:1], 3, axis=0))
    study_ = report.load([study])
    (wn_row,) = [r for r in report.summary_rows(study_.instances) if r["model"] == "wn"]
    assert wn_row["ema_best_loss"] == "0.014400" and wn_row["ema_final_loss"] == "0.012500"  # 0.9 x 0.016 (seed 0)
    (collapse,) = [i.collapse for i in study_.instances if i.run == wn]
    assert (collapse.iteration, collapse.rule) == (700, "diversity")
    report.write(study_, tmp_path / "out")
    tables = (tmp_path / "out" / "tables.md").read_text()
    assert "| Collapsed | Median collapse | EMA best 50-step loss | EMA final loss |" in tables
    assert (
        "| wn | 0 | 1,000 | 0.016000 | 0.015000 | 1,400 | 0.030000 | 700 | diversity | 0.014400 | 0.012500 |" in tables
    )
    assert "below 0.5 times the highest before it (rule: diversity)" in tables
    # The loss rule alone (--collapse_diversity=0) does not see it.
    assert [i.collapse for i in report.load([study], diversity=None).instances if i.run == wn] == [None]


def test_a_sweep_is_reported_per_value_and_a_divergence_is_a_collapse(tmp_path):
    """A study that swept --lr: Table 2 per value, headed by it; the collapsed fraction against the value; a
    run the study gave up on (diverged.json) collapsed where it stopped."""
    root = tmp_path / "study"
    spec = {"norms": ["vanilla", "wn"], "seeds": [0, 1], "sweep": {"flag": "lr", "values": ["2e-4", "4e-3"]}}
    (root).mkdir()
    (root / "study.json").write_text(json.dumps(spec | {"command": "python -m experiments.study --sweep=lr=..."}))
    steady, rising = [0.05, 0.03, 0.02, 0.02], [0.05, 0.03, 0.06, 0.07, 0.08]
    for model in ("vanilla", "wn"):
        for text, lr in (("2e-4", 2e-4), ("4e-3", 4e-3)):
            for seed in (0, 1):
                run = loading.run_dir(root, model, seed, f"lr={text}")
                losses = rising if (model, text, seed) == ("vanilla", "4e-3", 0) else steady
                make_run(run.parent.parent.parent, model, seed, losses, 0.02)  # <model>/seed_k ...
                run.parent.mkdir(parents=True, exist_ok=True)
                (run.parent.parent / f"seed_{seed}").rename(run)  # ... moved under lr=<value>
                config = json.loads((run / "config.json").read_text()) | {"lr": lr}
                (run / "config.json").write_text(json.dumps(config))
    gave_up = loading.run_dir(root, "vanilla", 1, "lr=4e-3")
    (gave_up / "diverged.json").write_text(json.dumps({"iteration": 700, "error": "non-finite"}))
    study_ = report.load([root])
    assert study_.sweep == "lr" and len(study_.instances) == 8
    report.write(study_, tmp_path / "out")
    tables = (tmp_path / "out" / "tables.md").read_text()
    assert "## Table 2, lr=2e-4: best generator of each model" in tables
    assert "## Table 2, lr=4e-3: best generator of each model" in tables
    low, high = tables.split("## Table 2, lr=4e-3")
    assert "| vanilla | 2 |" in low and "| 0/2 | not reached |" in low
    # vanilla at 4e-3: seed 0 collapses at 600 by the loss rule, seed 1 diverged at 700: median 600.
    assert "| 2/2 | 600 |" in high
    assert "| lr=4e-3 | vanilla | 1 |" in tables and "| 700 | diverged |" in tables
    page = (tmp_path / "out" / "index.html").read_text()
    assert "Collapses against lr" in page and "instances per point are few" in page
    assert (tmp_path / "out" / "fig_collapse_fraction.png").stat().st_size > 1000
    assert (tmp_path / "out" / "fig1_running_test_loss_lr=4e-3.png").is_file()
    assert (tmp_path / "out" / "fig_survival.png").is_file()


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    "flag, expected",
    [
        ("--out={file}", "--out=.* is a file; name a directory"),
        ("--out={file}/report", "--out=.* lies under the file"),
        ("--out={readonly}/report", "--out=.* cannot be written \\(Read-only file system\\)"),
        ("--plot={readonly}/fig1.png", "--plot=.* cannot be written"),
        ("--plot={tmp}/fig.xyz", "--plot=.*unknown figure extension '.xyz'"),
        ("--plot={file}/fig.png", "--plot=.* lies under the file"),
        ("--markdown={file}/results.md", "--markdown=.* lies under the file"),
        ("--collapse_factor=-1", "--collapse_factor must be a number above 1.*-1"),
        ("--collapse_factor=nan", "--collapse_factor must be a number above 1"),
        ("--collapse_tests=0", "--collapse_tests must be 1 or more.*0"),
    ],
)
def test_bad_outputs_and_rules_are_refused_before_any_run_is_read(study, tmp_path, monkeypatch, capsys, flag, expected):
    import errno
    import re
    import tempfile

    (tmp_path / "a_file").write_text("x")
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    real_temporary_file = tempfile.TemporaryFile

    def read_only_mount(*args, dir=None, **kwargs):  # the tests run as root, where permissions do not hold
        if dir is not None and pathlib.Path(dir) == readonly:
            raise OSError(errno.EROFS, "Read-only file system")
        return real_temporary_file(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only_mount)
    monkeypatch.setattr(loading, "load", lambda *a, **k: pytest.fail("a run was read"))
    flag = flag.format(file=tmp_path / "a_file", readonly=readonly, tmp=tmp_path)
    extra = [f"--out={tmp_path / 'out'}"] if flag.startswith("--markdown") else []
    before = sorted(tmp_path.rglob("*"))
    assert report.main([str(study), flag, *extra]) == 1
    assert re.search(expected, _one_error_line(capsys.readouterr().err))
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_damaged_files_leave_out_their_part_of_the_report_and_say_so(study, tmp_path, capsys):
    """Each damaged file costs only what it holds: the report is written, Table 2 is made of the rest, and
    each damage is one line naming the file, in the report and on stderr."""
    _truncate(study / "vanilla" / "seed_1" / "config.json")  # the whole run: its model and seed are unknown
    metrics_file = study / "bn" / "seed_0" / "metrics.jsonl"  # its curve
    metrics_file.write_text(metrics_file.read_text().replace('"test_loss": 0.06', '"test_loss": null'))
    _truncate(study / "wn" / "seed_0" / "final_test" / "report.json")  # its final test's numbers
    codes = study / "wn" / "seed_1" / "final_test" / "codes.npy"
    np.save(codes, np.zeros((20, CODE_SIZE), np.float32))
    _truncate(codes)  # its reconstructions
    broken_record = study / "wn" / "seed_2"
    writer = record.RecordWriter(broken_record, np.zeros((3, 4), np.float32))
    for it in (100, 200, 300):
        writer.write(it, np.zeros((3, 16, 16, 1) if it != 200 else (3, 8, 8, 1), np.uint8))  # one of another shape
    cut_record = study / "vanilla" / "seed_0"
    writer = record.RecordWriter(cut_record, np.zeros((3, 4), np.float32))
    for it in (100, 200):
        writer.write(it, np.zeros((3, 16, 16, 1), np.uint8))
    _truncate(cut_record / "record" / "iter_0000100.npy")

    assert report.main([str(study), f"--out={tmp_path / 'out'}"]) == 0
    out, err = capsys.readouterr()
    assert "| vanilla | 1 |" in out  # seed 1 is left out
    assert "| bn | 1 | - | - | - | 0/1 |" in out  # no curve
    assert (
        f"| wn | 3 | {ms([0.016, 0.015, 0.017])} | {ms([1000, 1400, 600], '{:,.0f}')} | {ms([0.014, 0.016])} |" in out
    )
    damaged = {
        study / "vanilla" / "seed_1" / "config.json": "leaves out this run",
        metrics_file: "bn seed 0: the running-test curve left out",
        study / "wn" / "seed_0" / "final_test" / "report.json": "wn seed 0: the final test's numbers left out",
        codes: "wn seed 1: the final test's reconstructions left out",
        broken_record / "record" / "iter_0000200.npy": "wn seed 2: the fixed-code record left out",
        cut_record / "record" / "iter_0000100.npy": "vanilla seed 0: the fixed-code record left out",
    }
    notes = [line for line in err.splitlines() if line.startswith("left out: ")]
    assert len(notes) == len(damaged) and "Traceback" not in err
    page = (tmp_path / "out" / "index.html").read_text()
    tables = (tmp_path / "out" / "tables.md").read_text()
    for path, part in damaged.items():
        (note,) = [n for n in notes if str(path) in n]
        assert part in note
        assert str(path) in page and f"{path}" in tables
    assert page.count("<figure>") >= 7  # every figure or its sentence


def test_damaged_study_file_finds_the_runs_below_it(study, tmp_path, capsys):
    (study / "study.json").write_text('{"norms": ["vanilla", "bn", "wn"], "seeds": [0, 1')
    assert report.main([str(study), f"--plot={tmp_path / 'fig1.png'}"]) == 0
    out, err = capsys.readouterr()
    assert "| wn | 3 |" in out and "| vanilla | 2 |" in out
    (note,) = err.splitlines()
    assert note.startswith(f"left out: {study / 'study.json'} is cut off or damaged") and "below" in note


def test_metrics_values_that_are_not_numbers_are_one_line_naming_the_record(tmp_path):
    from wngan_jax.errors import DamagedFile

    rows = [{"iteration": 100, "test_loss": "nan"}, {"iteration": 200, "test_loss": "0.5x"}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DamagedFile, match=r"metrics.jsonl: the record of iteration 200 has test_loss = '0.5x'"):
        metrics.read_metrics(tmp_path, "test_loss")
    (tmp_path / "metrics.jsonl").write_text(json.dumps(rows[0]) + "\n")
    assert np.isnan(metrics.read_metrics(tmp_path, "test_loss")[1][0])  # how non-finite losses are written


def test_empty_checkpoint_directories_give_sentences_not_an_aborted_report(study, tmp_path):
    """A run whose ``checkpoints/best`` and ``last`` are empty (killed before its first save) has no generator to
    show: Figs. 2/12 and the interpolation say so, and every other figure is still made."""
    run = study / "wn" / "seed_1"
    for which in ("best", "last"):
        (run / "checkpoints" / which).mkdir(parents=True)
    np.save(run / "final_test" / "codes.npy", np.zeros((20, CODE_SIZE), np.float32))
    run = study / "vanilla" / "seed_0"  # the representative of vanilla, with a best checkpoint that cannot be read
    (run / "checkpoints" / "best" / "5").mkdir(parents=True)
    np.save(run / "final_test" / "codes.npy", np.zeros((20, CODE_SIZE), np.float32))
    index = report.write_report([study], tmp_path / "out", factor=1.5, tests=3)
    page = index.read_text()
    assert page.count("<figure>") == 8  # with the time to collapse
    assert "Figs. 2, 12" in page and "Not available: no run has a final test" in page
    assert "Interpolation" in page
    (note,) = page.split("<h2>Left out</h2><ul><li>")[1].split("</ul>")[0].split("<li>")
    assert note.startswith("vanilla seed 0: the best generator left out: ") and str(study / "vanilla") in note
