"""`attnlife report`: draws what the run holds, prints the dashboard, one-line errors exit 2."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from attnlife.cli import app, main
from tests.support.synthetic import write_synthetic_run


def test_report_cli_on_a_metrics_only_run(tmp_path):
    run = write_synthetic_run(tmp_path / "m", parts=("metrics",))
    result = CliRunner().invoke(app, ["report", str(run), "--quiet"])
    assert result.exit_code == 0, result.output
    assert f"dashboard: {run / 'report' / 'dashboard.html'}" in result.output
    assert f"skipped weights_rank_heatmap: no weight spectra; run `attnlife spectra {run}`" in result.output
    assert (run / "report" / "val_loss_synthetic.png").is_file()
    html = (run / "report" / "dashboard.html").read_text()
    assert "no eigenvalue arrays: run `attnlife spectra RUN`" in html  # the section says what makes it


@pytest.mark.parametrize("args, message", [
    (["--heads", "layer0head1"], "--heads entry 'layer0head1' is not like L0H1"),
    (["--format", "jpg"], "--format jpg is not supported; use png, pdf or svg"),
])
def test_bad_options_are_one_line_errors(tmp_path, capsys, args, message):
    run = write_synthetic_run(tmp_path / "e", parts=())
    with pytest.raises(SystemExit) as exc:
        main(["report", str(run), "--quiet", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1
    assert not (run / "report").exists()
