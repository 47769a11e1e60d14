"""How often the Train page's live job list reruns while a run trains (each rerun takes CPU from the run)."""

from core.config import TrainConfig
from core.jobs.queue import JobInfo
from ui.jobs_view import CHART_S, LONGEST_S, REFRESH_S, STOPPING_S, chart_rows, refresh_interval


def job(state: str, seconds_per_row: float | None = None) -> JobInfo:
    rows = [] if seconds_per_row is None else [{"seconds": seconds_per_row * i} for i in (1, 2, 3, 4)]
    return JobInfo(job_id=1, cfg=TrainConfig(), dataset="d", state=state, created=0.0, history=rows)


def test_the_live_list_reruns_once_per_row_within_bounds_and_not_at_all_when_idle():
    assert refresh_interval([]) is None
    assert refresh_interval([job("finished", 0.5)]) is None  # nothing left to follow
    assert refresh_interval([job("running")]) == REFRESH_S  # features, the test pass: no rows yet
    assert refresh_interval([job("running", 0.7)]) == REFRESH_S  # a row per 0.7 s: not a rerun per row
    assert refresh_interval([job("running", 11.0)]) == 11.0  # once per row
    assert refresh_interval([job("running", 60.0)]) == LONGEST_S  # the bar and ETA still move
    assert refresh_interval([job("running", 60.0), job("running", 9.0)]) == 9.0  # the fastest job's rows
    # A job that stops ends within a second or two: followed every second, whatever else runs.
    assert refresh_interval([job("running", 60.0), job("stopping", 9.0)]) == STOPPING_S


def test_the_live_chart_redraws_at_most_every_chart_s():
    first = chart_rows(None, 1, now=100.0, done=False)
    assert first == (1, 100.0)  # the first row: drawn at once
    assert chart_rows(first, 4, now=100.0 + CHART_S / 2, done=False) == first  # the same chart, not redrawn
    assert chart_rows(first, 5, now=100.0 + CHART_S, done=False) == (5, 100.0 + CHART_S)  # every CHART_S
    assert chart_rows(first, 3, now=101.0, done=True) == (3, 101.0)  # the job ended: all its rows
    assert chart_rows((9, 100.0), 2, now=101.0, done=False) == (2, 101.0)  # fewer rows: another job's count


def test_a_jobs_caption_shows_epochs_only_where_something_trains():
    from core.methods.registry import preset
    from ui.common import config_caption

    lda = preset("transfer", "recommended", weights="imagenet")
    assert config_caption(lda) == "transfer · mobilenet_v2_stages, 160px, head · none · lda head · seed 0"
    assert "100 epochs" in config_caption(lda.with_(classifier="trained"))  # a trained head has epochs
    assert "720 epochs" in config_caption(preset("scratch", "recommended"))
