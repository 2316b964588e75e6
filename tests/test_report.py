"""Comparison tables and the HTML report: numbers on a made-up table, then a real report of
tiny runs, parsed: every image on disk, every section present."""

import errno
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from seqbench import report, results
from seqbench.cli import main
from seqbench.config import RunConfig
from seqbench.train import run_and_save


def _row(model, T, seed, solved, step=None, ratio=1.0, sps=10.0, clip="norm:1", **kw):
    return {
        "task": "copy-task", "model": model, "bidirectional": kw.get("bi", False),
        "num_layers": 1, "options": kw.get("options", '{"readout": "last"}'), "seq_len": T,
        "clip": clip, "seed": seed, "status": kw.get("status", "finished"), "solved": solved,
        "solved_step": step, "loss_ratio": ratio, "steps_per_second": sps,
        "hidden_size": 64, "clip_fraction": 0.5, "max_preclip_norm": 3.0,
    }  # fmt: skip


LOSS = "copy-task: final loss / baseline, mean [95% interval] over seeds"
SOLVED = "copy-task: runs solved (model x T, over seeds)"


def test_which_model_solves_which_length_table():
    df = pd.DataFrame(
        [
            _row("elman", 10, 0, True, 300, 0.05),
            _row("elman", 10, 1, False, None, 0.9),
            _row("elman", 50, 0, False, None, 1.0),
            _row("elman", 50, 1, False, None, math.nan, status="diverged"),
            _row("lstm", 10, 0, True, 100, 0.01, sps=5),
            _row("lstm", 10, 1, True, 200, 0.02, sps=7),
            _row("lstm", 50, 0, True, 900, 0.08, sps=3, bi=True),
        ]
    )
    tables = report.summary_tables(df)
    solved = tables[SOLVED]
    assert solved.loc["elman", "T=10"] == "1/2" and solved.loc["elman", "T=50"] == "0/2"
    assert solved.loc["lstm", "T=10"] == "2/2" and solved.loc["lstm", "T=50"] == "–"
    assert solved.loc["lstm-bi", "T=50"] == "1/1"
    steps = tables["copy-task: median steps to solve"]
    assert steps.loc["lstm", "T=10"] == "150" and steps.loc["elman", "T=50"] == "–"
    loss = tables[LOSS]
    # mean 0.475 of 0.05 and 0.9, half-width t(0.975, 1) * s / sqrt(2) = 12.706 * 0.425
    assert loss.loc["elman", "T=10"] == "0.475 [-4.93, 5.88]"
    assert loss.loc["elman", "T=50"] == "1, 1 diverged"  # one seed left: no interval
    assert loss.loc["lstm-bi", "T=50"] == "0.08"
    assert "95% t interval" in " ".join(loss.attrs["notes"])
    assert tables["copy-task: median steps per second"].loc["lstm", "T=10"] == "6"
    assert not any(k.startswith("clipping") for k in tables)  # one clip setting

    df.loc[[1, 3], "clip"] = "none"
    tables = report.summary_tables(df)
    assert list(tables[SOLVED].index.names) == ["label", "clip"]
    clipping = tables["clipping: divergence and solve rates"]
    # per T as well: T=10 and T=50 are never pooled (they were before: 'elman none' read 1/2)
    assert clipping.loc[("copy-task", "elman", 10, "none"), "diverged"] == "0/1"
    assert clipping.loc[("copy-task", "elman", 50, "none"), "diverged"] == "1/1"
    assert clipping.loc[("copy-task", "elman", 50, "norm:1"), "diverged"] == "0/1"


def test_clipped_and_unclipped_runs_are_not_pooled_unless_asked():
    """The README's old 1.32x for Elman at T=10 was the median of a clipped 1.00 and an
    unclipped 1.64; now each is its own row, and --pool clip says it pooled."""
    df = pd.DataFrame([_row("elman", 10, 0, False, ratio=1.64, clip="none"),
                       _row("elman", 10, 0, False, ratio=1.00, clip="norm:1")])  # fmt: skip
    loss = report.summary_tables(df)[LOSS]
    assert loss.loc[("elman", "none"), "T=10"] == "1.64"
    assert loss.loc[("elman", "norm:1"), "T=10"] == "1"
    pooled = report.summary_tables(df, pool=["clip"])[LOSS]
    assert pooled.loc["elman", "T=10"].startswith("1.32 [")
    assert any("pooled over seeds and clip" in n for n in pooled.attrs["notes"])


def test_best_lr_per_cell_and_fails_at_the_best_rate():
    rows = []
    for lr, ratios, solved in ((0.1, (0.2, 0.3), (True, True)), (0.01, (0.9, 1.0), (False,) * 2)):
        for seed, (ratio, ok) in enumerate(zip(ratios, solved, strict=True)):
            r = _row("gru", 10, seed, ok, 50 if ok else None, ratio)
            rows.append({**r, "lr": lr, "final_loss": ratio})
    # at T=50 the large rate diverges in one seed: the small one is best there
    for lr, status in (
        (0.1, "diverged"),
        (0.1, "finished"),
        (0.01, "finished"),
        (0.01, "finished"),
    ):
        r = _row("gru", 50, len(rows) % 2, False, None, 0.7, status=status)
        rows.append({**r, "lr": lr, "final_loss": 0.7})
    tables = report.summary_tables(pd.DataFrame(rows))
    best = tables["copy-task: best lr"]
    assert best.loc["gru", "T=10"] == "0.1" and best.loc["gru", "T=50"] == "0.01"
    solved = tables[SOLVED]
    assert list(solved.index) == ["gru"]  # lr is the choice, not a row key
    assert solved.loc["gru", "T=10"] == "2/2" and solved.loc["gru", "T=50"] == "0/2"
    assert any("best lr" in n for n in solved.attrs["notes"])


def test_model_labels_show_only_the_options_that_vary():
    df = pd.DataFrame(
        [
            _row("esn", 10, 0, False, options='{"leak": 0.3, "spectral_radius": 0.9}'),
            _row("esn", 10, 0, False, options='{"leak": 1.0, "spectral_radius": 0.9}'),
            _row("gru", 10, 0, False),
        ]
    )
    assert list(report.model_labels(df)) == ["esn leak=0.3", "esn leak=1.0", "gru"]


# ---------------------------------------------------------------- the report itself


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    """Eight tiny real runs (elman, gru x T=3, 5 x clip none, norm:1) and one diverged."""
    out = tmp_path_factory.mktemp("report") / "res"
    base = dict(task="copy-task", hidden_size=8, batch_size=4, steps=8, eval_every=4,
                profile_every=2)  # fmt: skip
    for model in ("elman", "gru"):
        for T in (3, 5):
            for clip in ("none", "norm:1"):
                run_and_save(RunConfig(model=model, seq_len=T, clip=clip, **base), out)
    record = results.load(out).iloc[0].to_dict()
    record.update(run_id=None, seed=9, status="diverged", diverged_step=3, final_loss=None,
                  loss_ratio=None, solved=False)  # fmt: skip
    history = pd.DataFrame({"step": [1, 2, 3], "loss": [2.0, 40.0, math.inf]})
    results.write_run(out, record, history=history)
    return out


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.sections, self.tables, self.stack = [], [], 0, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src"))
            assert attrs.get("alt"), "every image has alt text"
        elif tag == "section":
            self.sections.append(attrs.get("id"))
        elif tag == "table":
            self.tables += 1
        if tag not in ("img", "meta", "br"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1:]}>"
        self.stack.pop()


def test_report_html_every_image_exists_and_sections_present(tiny_results, tmp_path, capsys):
    html_path = tmp_path / "site" / "index.html"
    assert main(["report", "--out", str(tiny_results), "--html", str(html_path)]) == 0
    assert "wrote" in capsys.readouterr().out
    text = html_path.read_text()
    page = _Page()
    page.feed(text)
    page.close()
    assert not page.stack, f"unclosed tags: {page.stack}"
    assert set(page.sections) >= {"solved", "loss", "gradients", "success", "speed",
                                  "clipping", "runs"}  # fmt: skip
    assert len(page.images) == 4
    for src in page.images:
        png = html_path.parent / src
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", src
        assert "/" not in src  # written next to the page: the folder can be moved as one
    assert page.tables >= 6
    assert "copy-task: runs solved" in text and "clipping: divergence" in text
    assert "diverged" in text and "<script" not in text


def test_report_replaces_stale_figures_and_errors_are_one_line(tiny_results, tmp_path, capsys):
    path = report.write_report(tiny_results, tmp_path / "r.html")
    stale = tmp_path / "r-loss.png"
    assert stale.is_file()
    empty = tmp_path / "empty"
    results.check_writable(empty)
    assert main(["report", "--out", str(empty)]) == 2
    err = capsys.readouterr().err
    assert "no runs in" in err and err.count("\n") == 1
    assert main(["report", "--out", str(tmp_path / "missing")]) == 2
    assert "no results directory" in capsys.readouterr().err
    assert path.read_text().startswith("<!DOCTYPE html>")


def test_cli_start_imports_neither_matplotlib_nor_dask():
    code = (
        "import sys, seqbench.cli as c; c.build_parser(); "
        "print([m for m in ('matplotlib', 'distributed', 'dask') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_report_page_has_no_na_no_table_twice_and_shows_the_probes(tiny_results, tmp_path):
    text = report.write_report(tiny_results, tmp_path / "r.html").read_text()
    assert "<NA>" not in text and "&lt;NA&gt;" not in text and ">nan<" not in text
    captions = re.findall(r"<caption>(.*?)(?:<span|</caption>)", text)
    assert len(captions) == len(set(captions)) >= 6
    assert text.count('<div class="scroll">') == text.count("<table")  # every table boxed
    assert "95% t interval" in text
    df = results.load(tiny_results)
    for col in ("grad_ratio_log10_init", "grad_ratio_log10_final"):
        if col in df.columns and df[col].notna().any():  # records of this version have them
            assert f"<th>{col}</th>" in text


def test_runs_table_tolerates_old_records_and_puts_init_beside_final():
    from seqbench.report.html import runs_table
    from seqbench.report.tables import labelled

    old = labelled(pd.DataFrame([_row("gru", 10, 0, False)]).assign(run_id="a"))
    assert "grad_ratio_log10_init" not in runs_table(old).columns
    new = old.assign(grad_ratio_log10_final=-1.0, grad_ratio_log10_init=-3.0,
                     spectral_radius_init=1.1, spectral_radius_final=0.9)  # fmt: skip
    cols = list(runs_table(new).columns)
    i = cols.index("grad_ratio_log10_init")
    assert cols[i : i + 4] == ["grad_ratio_log10_init", "grad_ratio_log10_final",
                               "spectral_radius_init", "spectral_radius_final"]  # fmt: skip


def _nothing_written(folder: Path, before: set) -> bool:
    return {p.name for p in folder.iterdir()} == before


def test_report_into_a_folder_is_one_line_exit_2(tiny_results, tmp_path, capsys):
    folder = tmp_path / "site"
    folder.mkdir()
    assert main(["report", "--out", str(tiny_results), "--html", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "is a folder" in err and err.count("\n") == 1
    assert not any(folder.iterdir())


def test_report_on_a_full_disk_writes_nothing(tiny_results, tmp_path, capsys, monkeypatch):
    from matplotlib.figure import Figure

    site = tmp_path / "site"
    site.mkdir()
    (site / "keep.txt").write_text("mine")
    calls = []

    def full(self, *args, **kwargs):  # the second figure meets a full disk
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, *args, **kwargs)

    original = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", full)
    html_path = site / "new" / "report.html"
    assert main(["report", "--out", str(tiny_results), "--html", str(html_path)]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "nothing was written" in err
    assert err.count("\n") == 1
    assert _nothing_written(site, {"keep.txt"})  # not even the folder it made


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod; see the full-disk test")
def test_report_into_a_read_only_folder_writes_nothing(tiny_results, tmp_path, capsys):
    site = tmp_path / "ro"
    site.mkdir()
    site.chmod(0o555)
    try:
        assert main(["report", "--out", str(tiny_results), "--html", str(site / "r.html")]) == 2
        err = capsys.readouterr().err
        assert "cannot write the report" in err and err.count("\n") == 1
        assert not any(site.iterdir())
    finally:
        site.chmod(0o755)


def test_report_where_the_folder_cannot_be_made_writes_nothing(tiny_results, tmp_path, capsys,
                                                               monkeypatch):  # fmt: skip
    """As root chmod stops nothing: a refused temp folder stands in for a read-only place."""

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    site = tmp_path / "site"
    site.mkdir()
    assert main(["report", "--out", str(tiny_results), "--html", str(site / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "Permission denied" in err and err.count("\n") == 1
    assert not any(site.iterdir())


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Reports, once the page has loaded, the page's width, the viewport's and by how much the
# widest table box scrolls (a table wider than the page, kept in its box).
PROBE = """<script>addEventListener("load", () => {
  const boxes = [...document.querySelectorAll(".scroll")].map(e => e.scrollWidth - e.clientWidth);
  document.title = `SW=${document.documentElement.scrollWidth} ` +
    `VW=${document.documentElement.clientWidth} BOX=${Math.max(0, ...boxes)}`;
});</script>"""


def _widths(page: Path) -> dict:
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000",
         "--dump-dom", page.resolve().as_uri()],
        check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    found = re.search(r"<title>SW=(\d+) VW=(\d+) BOX=(\d+)</title>", done.stdout)
    assert found, done.stdout[:500]
    return dict(zip(("page", "viewport", "box"), map(int, found.groups()), strict=True))


@pytest.mark.skipif(not CHROMIUM, reason="headless Chromium not installed (.ci/run installs it)")
def test_report_fits_a_1280_px_window_in_headless_chromium(tiny_results, tmp_path):
    html_path = report.write_report(tiny_results, tmp_path / "report.html")
    text = html_path.read_text()
    # the runs table made wider than any window: only its box may scroll, never the page
    wide = text.replace("<td>", "<td>" + "w" * 40, 3)
    probed = tmp_path / "probed.html"
    probed.write_text(wide.replace("</body>", PROBE + "</body>"))
    w = _widths(probed)
    assert w["box"] > 0, "no table wider than the page: the check would prove nothing"
    assert 1200 <= w["viewport"] <= 1280 and w["page"] <= w["viewport"], w
    # the same page without the scrolling boxes overflows: the check can fail
    unboxed = tmp_path / "unboxed.html"
    unboxed.write_text(probed.read_text().replace("overflow-x: auto;", ""))
    assert _widths(unboxed)["page"] > w["viewport"]
    shot = tmp_path / "shot.png"
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
         "--window-size=1280,3000", html_path.resolve().as_uri()],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(shot.read_bytes()[16:20], "big") == 1280  # PNG width


def test_report_pool_names_what_it_pooled_and_rejects_the_rest(tiny_results, tmp_path, capsys):
    html_path = tmp_path / "r.html"
    assert main(["report", "--out", str(tiny_results), "--html", str(html_path), "--pool",
                 "clip"]) == 0  # fmt: skip
    assert "pooled over seeds and clip" in html_path.read_text()
    assert main(["report", "--out", str(tiny_results), "--pool", "seed"]) == 2
    assert "cannot pool over seed" in capsys.readouterr().err
