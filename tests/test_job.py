"""`Job`: the state a view shows, and the text made from it (on a fixed clock)."""

from __future__ import annotations

from runway_widget.models import GenerationRequest, Task
from runway_widget.widget.job import Job
from runway_widget.widget.job_view import clock, options_summary, status_label

REQUEST = {"prompt": "a lighthouse", "generation_type": "text2video", "model": "gen3",
           "duration": 10, "aspect_ratio": "9:16", "flip": True}


def test_durations_read_as_a_clock():
    assert clock(0) == "0:00"
    assert clock(65.9) == "1:05"
    assert clock(3 * 3600 + 62) == "3:01:02"
    assert clock(-5) == "0:00"


def test_the_label_follows_the_state_on_a_fixed_clock():
    job = Job("t1", REQUEST, submitted_at=1000.0)
    assert status_label(job, job.snapshot(), now=1003.0) == "submitted · 0:03"
    job.apply(Task("t1", "staged"))
    assert status_label(job, job.snapshot(), now=1010.0) == "queued · 0:10"
    job.apply(Task("t1", "processing", 40))
    job.advance(42.4)
    assert status_label(job, job.snapshot(), now=1075.0) == "processing · 42% · 1:15"
    job.apply(Task("t1", "finished", 100, "https://example.com/a.mp4"), when=1090.0)
    assert status_label(job, job.snapshot(), now=5000.0) == "finished · 1:30"


def test_the_options_read_in_one_line():
    assert options_summary(REQUEST) == "Text → video · gen3 · 10 s · 9:16 · flipped"


def test_a_job_never_shows_its_webhook_secret():
    request = GenerationRequest(prompt="p", webhook_url="https://example.com/h",
                                webhook_secret="whsec-never-shown")
    job = Job("t2", request)
    assert job.has_secret and job.request is request  # kept for "try again"
    assert "webhook_secret" not in job.payload
    assert "whsec" not in repr(job) and "whsec" not in job.describe()


def test_saving_is_one_at_a_time_and_says_how_it_ended():
    job = Job("t3", REQUEST)
    seen: list[tuple[bool, str | None]] = []
    job.subscribe(lambda j: seen.append((j.snapshot().saving, j.snapshot().save_error)))
    assert job.start_saving()
    assert not job.start_saving()  # a second click while the first save runs
    job.save_failed("disk full")
    assert job.start_saving()
    job.saved("/tmp/a.mp4")
    assert job.local_path == "/tmp/a.mp4"
    assert seen == [(True, None), (False, "disk full"), (True, None), (False, None)]
