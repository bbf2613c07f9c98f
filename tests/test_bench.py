"""``python -m wngan_jax.bench``: every kind of row at a tiny size, with the keys the docs promise."""
import json

import pytest

from wngan_jax.bench.__main__ import main

COMMON = {"what", "size", "norm", "batch", "median_ms", "gflops", "roofline_fraction", "device"}


def rows(capsys, *argv):
    main(["--json", "--repeats", "1", *argv])
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert out
    for row in out:
        assert COMMON <= row.keys(), COMMON - row.keys()
    return out


def test_train_rows(capsys):
    (row,) = rows(capsys, "--what=train", "--size", "16", "--norm", "wn", "--batch", "4")
    assert row["median_ms"] > 0 and row["gflop_per_iteration"] > 0
    assert row["gflops"] == pytest.approx(row["gflop_per_iteration"] / row["median_ms"] * 1e3)
    assert row["roofline_fraction"] == pytest.approx(row["gflops"] / row["roofline_gflops"])


def test_authors_rows_compare_with_the_pytorch_iteration(capsys):
    pytest.importorskip("torch")
    (row,) = rows(capsys, "--what=authors", "--size", "16", "--norm", "bn", "--batch", "4")
    assert row["authors_median_ms"] > 0
    assert row["speedup"] == pytest.approx(row["authors_median_ms"] / row["median_ms"])
    assert row["authors_roofline_fraction"] == pytest.approx(
        row["roofline_fraction"] * row["median_ms"] / row["authors_median_ms"])


def test_authors_refuses_a_variant_the_authors_do_not_have(capsys):
    pytest.importorskip("torch")
    with pytest.raises(SystemExit, match="no 'wn_clip' variant"):
        main(["--what=authors", "--size", "16", "--norm", "wn_clip", "--batch", "4"])


def test_reconstruct_rows(capsys):
    (row,) = rows(capsys, "--what=reconstruct", "--size", "16", "--samples", "8")
    assert row["sample_steps_per_s"] > 0 and row["baseline_sample_steps_per_s"] > 0
    assert 0 < row["roofline_fraction"] and 0 < row["baseline_roofline_fraction"]


def test_layer_rows(capsys):
    out = rows(capsys, "--what=layers", "--size", "16", "--batch", "2")
    assert {r["size"] for r in out} == {16}
