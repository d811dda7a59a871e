"""Sweep files, PCMP records and IQA score caches are untrusted: a name or launcher value never
becomes a shell command or leads a path out of its folder, and every file read back is capped
in size and checked field by field (refused in one line, or recomputed with a warning)."""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
import yaml
from conftest import photo_like, save_rgb

import lic.iqa.benchmark as benchmark
import lic.pcmp.builder as pcmp_builder
import lic.sweep.launch as launch
from lic.cli import main
from lic.errors import InputError
from lic.iqa import evaluate, read_dataset
from lic.pcmp import build
from lic.sweep.plan import load_sweep

ROOT = Path(__file__).resolve().parents[1]


# ---- sweep files --------------------------------------------------------------------------
def fake_sbatch(bin_dir: Path) -> None:
    """sbatch/sacct/srun stand-ins: sbatch keeps every script it is given (none should be)."""
    bin_dir.mkdir()
    scripts = {
        "sbatch": f'n=$(ls {bin_dir}/job_* 2>/dev/null | wc -l); cp "$1" {bin_dir}/job_$n; '
        'echo "Submitted batch job $((n + 1001))"',
        "sacct": 'echo "JobID|State|NodeList"; echo "1001_0|PENDING|"',
        "srun": "exit 0",
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)


@pytest.fixture
def slurm_path(tmp_path, monkeypatch) -> Path:
    bin_dir = tmp_path / "bin"
    fake_sbatch(bin_dir)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def sweep_file(tmp_path: Path, **change) -> Path:
    values = {
        "name": "demo",
        "base": [str(ROOT / "configs" / "demo.yaml")],
        "out": str(tmp_path / "out"),
        "grid": {"model.lmbda": [0.01]},
        "launcher": {"slurm": {"partition": "gpu"}},
    }
    for key, value in change.items():  # "launcher.slurm.partition" sets a nested value
        *parents, last = key.split("__")
        node = values
        for parent in parents:
            node = node.setdefault(parent, {})
        node[last] = value
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def refused(capsys, argv: list[str], *fragments: str) -> str:
    """Run `lic ...` and check exit 2 with exactly one `error:` line holding `fragments`."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": "demo\n#SBATCH --wrap=touch /tmp/PWNED"}, "name"),
        ({"launcher__slurm__partition": "gpu\ntouch PWNED"}, "launcher.slurm.partition"),
        ({"launcher__slurm__setup": ["module load cuda", "echo\rtouch PWNED"]},
         "launcher.slurm.setup[1]"),
        ({"launcher__slurm__additional_parameters": {"mail-user\nx": "me"}},
         "launcher.slurm.additional_parameters key"),
        ({"launcher__slurm__qos": "normal\tx"}, "launcher.slurm.qos"),
        ({"launcher__local__timeout_min": "1\x1b[2J"}, "launcher.local.timeout_min"),
        ({"out": "out\n#SBATCH --wrap=x"}, "out"),
    ],
)  # fmt: skip
def test_control_characters_in_sweep_names_and_launcher_values_are_refused_before_any_script(
    tmp_path, capsys, slurm_path, change, field
):
    out = tmp_path / "out"
    out.mkdir()
    path = sweep_file(tmp_path, **change)
    for extra in (["--dry-run"], []):
        line = refused(capsys, ["sweep", str(path), "--launcher", "slurm", *extra], str(path))
        assert f": {field} " in line and "control character" in line
    assert list(out.iterdir()) == [] and not list(slurm_path.glob("job_*"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "out", "sweep.yaml"]


def test_control_characters_in_the_eval_jobs_slurm_settings_are_refused(tmp_path, capsys):
    (tmp_path / "val").mkdir()
    evaluation = {"tasks": ["fidelity"], "data_roots": {"fidelity": "val"}, "metrics": ["psnr"]}
    path = sweep_file(tmp_path, eval=evaluation | {"slurm": {"partition": "a\nrm -rf ~"}})
    refused(capsys, ["sweep", str(path), "--dry-run"], "eval.slurm.partition", "control character")


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        ({"grid": {"model.lmbda": ["0.01x"]}}, ("model.lmbda '0.01x' is not a positive number",)),
        ({"grid": {"model.lmbda": ["0.013/../../../X"]}}, ("is not a positive number",)),
        ({"grid": {"model.lmbda": [".nan"]}}, ("is not a positive number",)),
        ({"grid": {"model.lmbda": [-0.01]}}, ("is not a positive number",)),
        ({"grid": {"model.lmbda": [True]}}, ("is not a positive number",)),
        ({"fixed": {"model.codec": "x/../../../ESCAPED"}}, ("model.codec", "cannot name a file")),
        ({"fixed": {"model.distortion": {"mse/../../x": 1.0}}},
         ("model.distortion (objective)", "cannot name a file")),
        ({"fixed": {"model.distortion": {"mse": "heavy"}}}, ("model.distortion",)),
        ({"name": "../../escaped"}, ("name '../../escaped' cannot name a file",)),
        ({"out": ["a", "b"]}, ("'out' must be a folder path",)),
    ],
)  # fmt: skip
def test_run_folder_names_are_file_names_and_lambdas_numbers(
    tmp_path, capsys, slurm_path, change, fragments
):
    path = sweep_file(tmp_path, **change)
    refused(capsys, ["sweep", str(path), "--launcher", "slurm"], str(path), *fragments)
    assert not (tmp_path / "out").exists() and not list(slurm_path.glob("job_*"))
    assert not list(tmp_path.parent.glob("ESCAPED")) and not (tmp_path.parent / "x").exists()


def test_a_numeric_lambda_string_is_a_number_and_a_stem_a_file_name(tmp_path):
    path = sweep_file(tmp_path, grid={"model.lmbda": ["0.013"]}, name=None)
    renamed = path.rename(tmp_path / "my sweep (v2).yaml")
    sweep = load_sweep(renamed)
    assert sweep.name == "my_sweep__v2_"  # the stem, made a file name
    assert [r.name for r in sweep.runs()] == ["bmshj2018-hyperprior_mse_lambda0.013"]


def test_a_malformed_or_oversized_done_marker_is_not_taken_as_done(tmp_path, caplog):
    [run] = load_sweep(sweep_file(tmp_path)).runs()
    run.last_ckpt.parent.mkdir(parents=True)
    run.last_ckpt.write_bytes(b"x")
    run.marker.write_text(json.dumps({"args": list(run.args), "finished": "now"}, indent=1))
    assert run.status() == "done"
    for text in (
        run.marker.read_text()[:-10],  # truncated
        json.dumps(["args"]),  # not a record
        json.dumps({"args": list(run.args), "pad": " " * (2 * 2**20)}),  # oversized
    ):
        run.marker.write_text(text)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert run.status() == run.status() == "resume"
        assert len(caplog.records) == 1 and str(run.marker) in caplog.text  # warned once


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ('{"bmshj2018-hyperprior_mse_lambda0.01": "10', "not valid JSON"),
        ('["1001_0"]', "expected a mapping of run names to job ids"),
        ('{"run": "../../../x"}', "field 'run': '../../../x' is not a job id"),
        ('{"../run": "1001_0"}', "run name '../run' cannot name a file"),
        ('{"run": "1001_0", "pad": "' + "9" * (launch.JOBS_CAP + 1) + '"}', "holds more than"),
    ],
)
def test_a_malformed_slurm_state_file_stops_the_launch_before_any_submission(
    tmp_path, capsys, slurm_path, content, fragment
):
    path = sweep_file(tmp_path)
    jobs = tmp_path / "out" / "slurm" / "jobs.json"
    jobs.parent.mkdir(parents=True)
    jobs.write_text(content)
    line = refused(capsys, ["sweep", str(path), "--launcher", "slurm"], str(jobs), fragment)
    assert "remove it to submit every unfinished run again" in line
    assert not list(slurm_path.glob("job_*")) and jobs.read_text() == content


def test_an_oversized_summary_is_named_not_printed(tmp_path, capsys, monkeypatch):
    (tmp_path / "val").mkdir()
    evaluation = {"tasks": ["fidelity"], "data_roots": {"fidelity": "val"}, "metrics": ["psnr"]}
    sweep = load_sweep(sweep_file(tmp_path, eval=evaluation))
    summary = sweep.out / "eval" / "summary.md"
    summary.parent.mkdir(parents=True)
    summary.write_text("| task | psnr |\n" + "x" * 200)
    assert launch.report(sweep, sweep.runs(), {}, None) == 0
    assert "| task | psnr |" in capsys.readouterr().out
    monkeypatch.setattr(launch, "SUMMARY_CAP", 100)
    launch.report(sweep, sweep.runs(), {}, None)
    assert "holds more than 100 bytes" in capsys.readouterr().out


# ---- PCMP records -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pcmp_build(tmp_path_factory) -> Path:
    """A real two-reference build (one target, two families, one random voter: 0.3 s)."""
    root = tmp_path_factory.mktemp("pcmp")
    (root / "refs").mkdir()
    for i in range(2):
        save_rgb(root / "refs" / f"r{i}.png", photo_like(48, 64, seed=10 + i))
    build(
        root / "refs",
        root / "out",
        targets=(30.0,),
        families=("blur", "noise"),
        voters=["squeezenet1_1"],
        voter_weights="none",
    )
    return root


@pytest.fixture
def pcmp_out(pcmp_build, tmp_path) -> Path:
    """A copy of the build's output with pairs.csv and stats.json removed (merge remakes them)."""
    out = tmp_path / "out"
    shutil.copytree(pcmp_build / "out", out)
    (out / "pairs.csv").unlink()
    (out / "stats.json").unlink()
    return out


def test_merge_of_the_untouched_records_gives_the_builds_pairs(pcmp_build, pcmp_out, capsys):
    assert main(["pcmp", "merge", "--out", str(pcmp_out)]) == 0
    built = pcmp_build / "out"
    assert (pcmp_out / "pairs.csv").read_text() == (built / "pairs.csv").read_text()
    assert (pcmp_out / "stats.json").read_text() == (built / "stats.json").read_text()
    assert json.loads(capsys.readouterr().out)["pairs"] == 2


def _edit(record: dict, change: str) -> dict | list:
    """`record` (a real one) with one field damaged as `change` says."""
    pair = record["pairs"][0]
    if change == "a list":
        return [record]
    if change == "no pairs":
        del record["pairs"]
    elif change == "pairs not a list":
        record["pairs"] = {"A": 1}
    elif change == "a pair without p":
        del pair["p"]
    elif change == "a skipped unknown family":
        record["skipped"] = [{"family": "x/y", "target": 30.0}]
    else:
        pair.update(
            {
                "p outside [0, 1]": {"p": 7},
                "A leads out": {"A": "../../../../etc/passwd"},
                "B absolute": {"B": "/etc/passwd"},
                "A a number": {"A": 5},
                "a nested value": {"psnr_a": {"x": 1}},
                "an unknown family": {"family_b": "rm -rf"},
                "another voter": {"cons_a_other": 0.5},
            }[change]
        )
    return record


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ("no pairs", "field 'pairs' is missing"),
        ("pairs not a list", "field 'pairs' is not a list"),
        ("a pair without p", "field 'pairs[0].p' is missing"),
        ("p outside [0, 1]", "field 'pairs[0].p' 7 is not a share in [0, 1]"),
        ("A leads out", "field 'pairs[0].A' '../../../../etc/passwd' is not a path inside"),
        ("B absolute", "field 'pairs[0].B' '/etc/passwd' is not a path inside"),
        ("A a number", "field 'pairs[0].A' 5 is not a path inside"),
        ("a nested value", "field 'pairs[0].psnr_a' holds {'x': 1}, not a number or text"),
        ("a list", "is not a PCMP record (a JSON object)"),
        ("an unknown family", "field 'pairs[0].family_b' 'rm -rf' is not a PCMP family"),
        ("a skipped unknown family", "field 'skipped[0].family' is not a PCMP family"),
        ("another voter", "field 'pairs[0]' differs from earlier records in ['cons_a_other']"),
    ],
)
def test_merge_refuses_a_malformed_record_naming_the_file_and_the_field(
    pcmp_out, capsys, change, field
):
    record_path = pcmp_out / "refs" / "r1.json"  # the second: r0's rows come first
    record_path.write_text(json.dumps(_edit(json.loads(record_path.read_text()), change)))
    line = refused(capsys, ["pcmp", "merge", "--out", str(pcmp_out)], str(record_path), field)
    assert "run `lic pcmp build` again" in line
    assert sorted(p.name for p in pcmp_out.iterdir()) == ["images", "refs"]  # nothing written


def test_merge_refuses_a_truncated_record_naming_the_file(pcmp_out, capsys):
    record_path = pcmp_out / "refs" / "r0.json"
    record_path.write_text(record_path.read_text()[:100])
    refused(capsys, ["pcmp", "merge", "--out", str(pcmp_out)], str(record_path), "not valid JSON")
    assert sorted(p.name for p in pcmp_out.iterdir()) == ["images", "refs"]


def test_merge_refuses_an_oversized_record_without_reading_it_whole(pcmp_out, capsys):
    record_path = pcmp_out / "refs" / "r0.json"
    record = json.loads(record_path.read_text())
    padding = " " * (2 * pcmp_builder.RECORD_CAP)  # JSON whitespace: a valid record beyond it
    record_path.write_text(json.dumps(record)[:-1] + padding + "}")
    tracemalloc.start()
    refused(capsys, ["pcmp", "merge", "--out", str(pcmp_out)], str(record_path), "holds more than")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1.5 * pcmp_builder.RECORD_CAP  # stopped at the cap, never the whole 25 MiB


def test_a_build_into_a_relative_folder_merges(pcmp_build, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    build(pcmp_build / "refs", "rel", targets=(30.0,), families=("blur", "noise"),
          voters=["squeezenet1_1"], voter_weights="none")  # fmt: skip
    assert main(["pcmp", "merge", "--out", "rel"]) == 0
    assert (tmp_path / "rel" / "pairs.csv").read_text().count("images/r1/") == 2


def test_real_records_are_far_below_the_cap_and_build_bounds_what_it_counts_on(pcmp_build):
    sizes = [p.stat().st_size for p in (pcmp_build / "out" / "refs").glob("*.json")]
    assert max(sizes) * 100 < pcmp_builder.RECORD_CAP
    with pytest.raises(ValueError, match="at most 32 target PSNRs"):
        build(pcmp_build / "refs", pcmp_build / "more", targets=[20.0 + i for i in range(33)])
    assert not (pcmp_build / "more").exists()


# ---- IQA score caches ---------------------------------------------------------------------
@pytest.fixture
def scored_set(tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    reference = photo_like(32, 40, seed=1)
    save_rgb(folder / "r.png", reference)
    lines = ["ref,dist,score"]
    for i, level in enumerate([0.02, 0.05, 0.1, 0.2]):
        save_rgb(folder / f"d{i}.png", (reference * (1 - level)).clamp(0, 1))
        lines.append(f"r.png,d{i}.png,{5 - 10 * level:.2f}")
    (folder / "scores.csv").write_text("\n".join(lines) + "\n")
    return folder


def _edit_scores(text: str, key: str | None, value: object) -> str:
    """The cache with `key` (None: its first pair) set to `value`, its digest left as is."""
    cache = json.loads(text)
    cache["scores"][key or next(iter(cache["scores"]))] = value
    return json.dumps(cache)


def _cache_file(cache: Path) -> Path:
    [path] = cache.glob("psnr-*.json")
    return path


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda text: text[: len(text) // 2], "not valid JSON"),
        (lambda text: json.dumps(["a", "b"]), "not a lic score cache of format 1"),
        (lambda text: _edit_scores(text, "x|y", "99"), "field 'x|y' holds '99'"),
        (lambda text: _edit_scores(text, "x|y", True), "field 'x|y' holds True"),
        (lambda text: _edit_scores(text, None, 99.0), "do not match their SHA-256"),
        (lambda text: text[:-1] + " " * (24 * 2**20) + "}", "holds more than"),
    ],
)
def test_a_malformed_or_oversized_iqa_cache_is_recomputed_with_a_warning(
    scored_set, tmp_path, caplog, damage, message
):
    dataset, cache = read_dataset("csv", scored_set), tmp_path / "cache"
    clean = evaluate(dataset, ["psnr"], cache_dir=cache, bootstrap=10)[0]
    path = _cache_file(cache)
    original = json.loads(path.read_text())
    path.write_text(damage(path.read_text()))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        tracemalloc.start()
        again = evaluate(dataset, ["psnr"], cache_dir=cache, bootstrap=10)[0]
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert again["srcc"] == clean["srcc"] and again["n"] == 4
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert str(path) in record.getMessage() and message in record.getMessage()
    assert "recomputing its scores" in record.getMessage()
    assert json.loads(path.read_text()) == original  # rewritten from the recomputed scores
    assert peak < 8 * 2**20  # the 24 MiB cache is never read whole


def test_the_iqa_command_warns_in_one_line_and_recomputes(scored_set, tmp_path):
    """The real command (its own process: logging as users see it)."""
    cache = tmp_path / "cache"
    argv = [sys.executable, "-m", "lic", "iqa", "--dataset", "csv", "--root", str(scored_set)]
    argv += ["--metrics", "psnr", "--bootstrap", "10", "--device", "cpu", "--cache", str(cache)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
    _cache_file(cache).write_text("{")
    again = subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
    assert again.stdout == first.stdout and first.stderr == ""
    assert again.stderr.strip() == (
        f"{_cache_file(cache)}: not valid JSON (Expecting property name enclosed in double "
        "quotes: line 1 column 2 (char 1)); recomputing its scores"
    )


def test_a_cache_is_read_with_a_cap_proportional_to_the_pairs(scored_set, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    dataset = read_dataset("csv", scored_set)
    evaluate(dataset, ["psnr"], cache_dir=cache, bootstrap=10)
    size = _cache_file(cache).stat().st_size
    monkeypatch.setattr(benchmark, "CACHE_SLACK", 0)
    monkeypatch.setattr(benchmark, "CACHE_ENTRY_BYTES", size // 4)  # just under 4 entries
    assert benchmark.read_cache(_cache_file(cache), 4) == {}
    monkeypatch.setattr(benchmark, "CACHE_ENTRY_BYTES", size // 4 + 1)
    assert len(benchmark.read_cache(_cache_file(cache), 4)) == 4


def test_a_metric_name_never_leads_the_cache_elsewhere(tmp_path):
    with pytest.raises(InputError, match=r"metric '\.\./x' cannot name a file"):
        benchmark.metric_scores(
            "../x", [(tmp_path / "a.png", tmp_path / "b.png")], {}, "cpu", tmp_path
        )


def test_pcmp_pairs_csv_rows_are_what_iqa_reads(pcmp_build):
    """pairs.csv, written from checked records, is a pair set iqa reads with every path
    inside the build's folder."""
    out = pcmp_build / "out"
    dataset = read_dataset("pcmp", out)
    with (out / "pairs.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(dataset.pairs) == len(rows) == 2
    for _, a, b, p in dataset.pairs:
        assert out.resolve() in a.resolve().parents and out.resolve() in b.resolve().parents
        assert 0 <= p <= 1
