"""GenerationRequest validation and payloads, Task parsing, file names."""

from __future__ import annotations

import math

import pytest

from runway_widget.errors import ApiframeError, ValidationError
from runway_widget.models import (
    ASPECT_RATIOS,
    DURATIONS,
    MODELS,
    GenerationRequest,
    Task,
    is_http_url,
    video_filename,
)

IMG = "https://example.com/first.png"
IMG2 = "https://example.com/last.png"
VID = "https://example.com/clip.mp4"


def fields_with_problems(request: GenerationRequest) -> list[str | None]:
    return [p.field for p in request.problems()]


# -- valid requests and their exact payloads ------------------------------------------------


def test_minimal_request_is_valid_and_payload_omits_unset_fields():
    request = GenerationRequest(prompt="a lighthouse in a storm")
    assert request.problems() == []
    assert request.validate() is request
    assert request.to_payload() == {
        "prompt": "a lighthouse in a storm",
        "generation_type": "text2video",
    }


def test_full_text2video_payload_is_exact_and_in_documented_order():
    request = GenerationRequest(
        prompt="waves",
        generation_type="text2video",
        aspect_ratio="9:16",
        model="gen3a_turbo",
        duration=10,
        flip=False,
        webhook_url="https://hooks.example.com/runway",
        webhook_secret="whsec-123",
    )
    request.validate()
    payload = request.to_payload()
    assert list(payload.items()) == [
        ("prompt", "waves"),
        ("generation_type", "text2video"),
        ("aspect_ratio", "9:16"),
        ("model", "gen3a_turbo"),
        ("duration", 10),
        ("flip", False),
        ("webhook_url", "https://hooks.example.com/runway"),
        ("webhook_secret", "whsec-123"),
    ]


def test_image2video_payload():
    request = GenerationRequest(
        prompt="pan over",
        generation_type="image2video",
        image_url=IMG,
        end_image_url=IMG2,
        model="gen3",
        duration=5,
        flip=True,
    )
    request.validate()
    assert request.to_payload() == {
        "prompt": "pan over",
        "generation_type": "image2video",
        "image_url": IMG,
        "end_image_url": IMG2,
        "model": "gen3",
        "duration": 5,
        "flip": True,
    }


def test_video2video_payload():
    request = GenerationRequest(
        prompt="as a watercolour", generation_type="video2video", video_url=VID
    )
    request.validate()
    assert request.to_payload() == {
        "prompt": "as a watercolour",
        "generation_type": "video2video",
        "video_url": VID,
    }


def test_public_payload_and_repr_never_hold_the_webhook_secret():
    request = GenerationRequest(
        prompt="p", webhook_url="https://h.example.com/x", webhook_secret="whsec-Very-Secret"
    )
    assert request.to_payload()["webhook_secret"] == "whsec-Very-Secret"
    assert "webhook_secret" not in request.public_payload()
    assert request.public_payload()["webhook_url"] == "https://h.example.com/x"
    assert "whsec-Very-Secret" not in repr(request)


# -- one test per rule ----------------------------------------------------------------------


@pytest.mark.parametrize("prompt", [None, "", "   ", "\n", 42])
def test_prompt_is_required(prompt):
    assert fields_with_problems(GenerationRequest(prompt=prompt)) == ["prompt"]


@pytest.mark.parametrize("kind", [None, "", "text2image", "TEXT2VIDEO", "img2video"])
def test_generation_type_must_be_one_of_three(kind):
    request = GenerationRequest(prompt="p", generation_type=kind)
    assert fields_with_problems(request) == ["generation_type"]
    assert "text2video, image2video, video2video" in request.problems()[0].message


def test_image_url_required_for_image2video():
    request = GenerationRequest(prompt="p", generation_type="image2video")
    assert fields_with_problems(request) == ["image_url"]
    assert "required" in request.problems()[0].message


def test_video_url_required_for_video2video():
    request = GenerationRequest(prompt="p", generation_type="video2video")
    assert fields_with_problems(request) == ["video_url"]


@pytest.mark.parametrize("kind", ["text2video", "video2video"])
def test_image_url_and_end_image_url_only_for_image2video(kind):
    extra = {"video_url": VID} if kind == "video2video" else {}
    request = GenerationRequest(
        prompt="p", generation_type=kind, image_url=IMG, end_image_url=IMG2, **extra
    )
    assert fields_with_problems(request) == ["image_url", "end_image_url"]
    assert all("only for image2video" in p.message for p in request.problems())


@pytest.mark.parametrize("kind", ["text2video", "image2video"])
def test_video_url_only_for_video2video(kind):
    extra = {"image_url": IMG} if kind == "image2video" else {}
    request = GenerationRequest(prompt="p", generation_type=kind, video_url=VID, **extra)
    assert fields_with_problems(request) == ["video_url"]


@pytest.mark.parametrize("kind", ["image2video", "video2video"])
def test_aspect_ratio_only_for_text2video(kind):
    extra = {"image_url": IMG} if kind == "image2video" else {"video_url": VID}
    request = GenerationRequest(prompt="p", generation_type=kind, aspect_ratio="16:9", **extra)
    assert fields_with_problems(request) == ["aspect_ratio"]


@pytest.mark.parametrize("ratio", ASPECT_RATIOS)
def test_each_documented_aspect_ratio_is_accepted(ratio):
    assert GenerationRequest(prompt="p", aspect_ratio=ratio).problems() == []


@pytest.mark.parametrize("ratio", ["16/9", "2:1", "", "16:9 ", 1.77])
def test_other_aspect_ratios_are_refused(ratio):
    assert fields_with_problems(GenerationRequest(prompt="p", aspect_ratio=ratio)) == [
        "aspect_ratio"
    ]


@pytest.mark.parametrize("model", MODELS)
def test_both_models_are_accepted(model):
    assert GenerationRequest(prompt="p", model=model).problems() == []


@pytest.mark.parametrize("model", ["gen2", "gen4_turbo", "", "GEN3"])
def test_other_models_are_refused(model):
    assert fields_with_problems(GenerationRequest(prompt="p", model=model)) == ["model"]


@pytest.mark.parametrize("duration", DURATIONS)
def test_durations_5_and_10_are_accepted(duration):
    assert GenerationRequest(prompt="p", duration=duration).problems() == []


@pytest.mark.parametrize("duration", [0, 7, 15, "5", "10", True, 5.0, 10.0, -5])
def test_duration_must_be_the_integer_5_or_10(duration):
    assert fields_with_problems(GenerationRequest(prompt="p", duration=duration)) == ["duration"]


@pytest.mark.parametrize("flip", [True, False])
def test_flip_booleans_are_accepted(flip):
    assert GenerationRequest(prompt="p", flip=flip).problems() == []


@pytest.mark.parametrize("flip", [1, 0, "true", "yes"])
def test_flip_must_be_a_boolean(flip):
    assert fields_with_problems(GenerationRequest(prompt="p", flip=flip)) == ["flip"]


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/a.png",
        "javascript:alert(1)",
        "example.com/a.png",
        "http://",
        "https://exa mple.com/a.png",
        "file:///etc/passwd",
        "data:image/png;base64,AAAA",
        42,
    ],
)
@pytest.mark.parametrize("name", ["image_url", "end_image_url", "video_url", "webhook_url"])
def test_urls_must_be_http_or_https(name, url):
    kind = {"image_url": "image2video", "end_image_url": "image2video", "video_url": "video2video"}
    generation_type = kind.get(name, "text2video")
    required = {"image2video": {"image_url": IMG}, "video2video": {"video_url": VID}}
    values = {**required.get(generation_type, {}), name: url}
    request = GenerationRequest(prompt="p", generation_type=generation_type, **values)
    problems = request.problems()
    assert [p.field for p in problems] == [name]
    assert problems[0].message == f"{name} must be an http(s) URL"


def test_webhook_secret_must_be_a_string():
    request = GenerationRequest(prompt="p", webhook_secret=1234)
    assert fields_with_problems(request) == ["webhook_secret"]


def test_validate_names_every_problem_at_once():
    request = GenerationRequest(
        prompt="",
        generation_type="text2video",
        image_url="not a url",
        video_url=VID,
        aspect_ratio="5:4",
        model="gen9",
        duration=6,
        flip="no",
        webhook_url="ftp://x",
    )
    with pytest.raises(ValidationError) as caught:
        request.validate()
    error = caught.value
    assert error.status_code is None
    assert set(error.fields) == {
        "prompt",
        "image_url",
        "video_url",
        "aspect_ratio",
        "model",
        "duration",
        "flip",
        "webhook_url",
    }
    assert len(error.problems) == len(request.problems()) >= 9
    for problem in error.problems:
        assert problem in str(error)
    assert str(error).startswith("invalid request: ")


def test_an_unknown_generation_type_does_not_add_only_for_noise():
    request = GenerationRequest(prompt="p", generation_type="nope", image_url=IMG, video_url=VID)
    assert fields_with_problems(request) == ["generation_type"]


def test_from_payload_ignores_unknown_keys_and_keeps_missing_ones_unset():
    request = GenerationRequest.from_payload(
        {"prompt": "p", "generation_type": "text2video", "duration": 5, "seed": 7}
    )
    assert request.to_payload() == {"prompt": "p", "generation_type": "text2video", "duration": 5}
    empty = GenerationRequest.from_payload({})
    assert fields_with_problems(empty) == ["prompt", "generation_type"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://example.com/a.png", True),
        ("http://127.0.0.1:8000/x", True),
        ("HTTPS://EXAMPLE.COM", True),
        ("https://example.com/a b.png", False),
        ("//example.com/a.png", False),
        ("mailto:someone@example.com", False),
        (None, False),
        (b"https://example.com", False),
    ],
)
def test_is_http_url(value, expected):
    assert is_http_url(value) is expected


# -- Task parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (40, 40),
        (40.6, 41),
        ("40", 40),
        (" 55 ", 55),
        ("72%", 72),
        ("12.4", 12),
        (0, 0),
        ("100", 100),
        (150, 100),
        (-3, 0),
        ("abc", None),
        ("", None),
        ("nan", None),
        (math.nan, None),
        (None, None),
        (True, None),
        ([40], None),
        ({"value": 40}, None),
    ],
)
def test_percentage_from_number_string_or_garbage(raw, expected):
    task = Task.from_json({"task_id": "t", "status": "processing", "percentage": raw})
    assert task.percentage == expected


def test_missing_percentage_is_none():
    assert Task.from_json({"task_id": "t", "status": "staged"}).percentage is None


def test_finished_task():
    task = Task.from_json(
        {
            "task_id": "abc",
            "task_type": "runway",
            "status": "finished",
            "percentage": "100",
            "video_url": "https://cdn.example.com/abc.mp4",
        }
    )
    assert (task.task_id, task.status, task.percentage) == ("abc", "finished", 100)
    assert task.video_url == "https://cdn.example.com/abc.mp4"
    assert task.is_finished and task.is_done and not task.is_failed
    assert task.raw["task_type"] == "runway"


@pytest.mark.parametrize("key", ["message", "error"])
def test_failed_task_carries_its_message_from_message_or_error(key):
    task = Task.from_json({"task_id": "abc", "status": "failed", key: "moderation refused"})
    assert task.is_failed and task.is_done and not task.is_finished
    assert task.message == "moderation refused"


def test_message_wins_over_error():
    task = Task.from_json({"task_id": "a", "status": "failed", "message": "m", "error": "e"})
    assert task.message == "m"


def test_no_message_is_none():
    task = Task.from_json({"task_id": "a", "status": "failed", "message": "", "error": None})
    assert task.message is None


@pytest.mark.parametrize("status", ["staged", "starting", "processing", "queued", "upscaling", ""])
def test_any_other_status_is_still_running(status):
    task = Task.from_json({"task_id": "a", "status": status, "percentage": "10"})
    assert not task.is_done and not task.is_finished and not task.is_failed


def test_missing_status_is_unknown_and_running():
    task = Task.from_json({"task_id": "a"})
    assert task.status == "unknown" and not task.is_done


def test_empty_or_non_string_video_url_is_none():
    assert Task.from_json({"task_id": "a", "status": "finished", "video_url": ""}).video_url is None
    assert Task.from_json({"task_id": "a", "status": "finished", "video_url": 3}).video_url is None


@pytest.mark.parametrize(
    "data",
    [None, [], ["task_id"], "task", {}, {"status": "finished"}, {"task_id": 17}, {"task_id": None}],
)
def test_wrong_shape_is_an_apiframe_error_not_a_key_error(data):
    with pytest.raises(ApiframeError) as caught:
        Task.from_json(data)
    assert type(caught.value) is ApiframeError
    assert "unexpected task shape" in str(caught.value)


def test_raw_is_kept_as_received():
    data = {"task_id": "a", "status": "processing", "percentage": "40", "eta": 12}
    task = Task.from_json(data)
    assert dict(task.raw) == data
    assert task.raw is not data


def test_same_progress_compares_what_a_user_sees():
    a = Task.from_json({"task_id": "a", "status": "processing", "percentage": "40", "x": 1})
    b = Task.from_json({"task_id": "a", "status": "processing", "percentage": 40, "x": 2})
    c = Task.from_json({"task_id": "a", "status": "processing", "percentage": "41"})
    d = Task.from_json({"task_id": "a", "status": "finished", "percentage": "40"})
    assert a.same_progress(b)
    assert not a.same_progress(c)
    assert not a.same_progress(d)
    assert not a.same_progress(None)


# -- file names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "task_id", "expected"),
    [
        ("A lighthouse in a storm", "29e983ca-1111-2222", "a-lighthouse-in-a-storm-29e983ca.mp4"),
        ("A lighthouse in a storm", None, "a-lighthouse-in-a-storm.mp4"),
        ("../../etc/passwd", "x/y", "etc-passwd-xy.mp4"),
        ("", "abc", "runway-video-abc.mp4"),
        (None, None, "runway-video.mp4"),
        ("Café — ünïcode!", "1", "caf-n-code-1.mp4"),
    ],
)
def test_video_filename(prompt, task_id, expected):
    assert video_filename(prompt, task_id) == expected


def test_video_filename_is_bounded():
    name = video_filename("word " * 100, "abcdef0123456789")
    assert len(name) <= 48 + 1 + 8 + 4
    assert name.endswith("-abcdef01.mp4")


def test_a_gateways_queue_position_is_read_defensively_and_said_in_words():
    from runway_widget.models import ordinal, waiting_label

    raw = {"task_id": "t", "status": "staged", "percentage": 0}
    assert Task.from_json({**raw, "queue_position": 3}).queue_position == 3
    assert Task.from_json({**raw, "queue_position": "12"}).queue_position == 12
    for odd in (0, -1, 2.5, "x", True, None, 10**12, float("nan")):
        assert Task.from_json({**raw, "queue_position": odd}).queue_position is None
    assert waiting_label(Task.from_json({**raw, "queue_position": 3})) == "queued · 3rd in line"
    assert waiting_label(Task.from_json(raw)) is None
    moved = Task.from_json({**raw, "queue_position": 2})
    assert not moved.same_progress(Task.from_json({**raw, "queue_position": 3}))
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "101st",
        "111th",
    ]
