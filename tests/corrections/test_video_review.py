"""Review on video, headless: keys, Propagate from a key, accepting the propagated range."""
import functools

import numpy as np
import pytest

from napari_polyp import jobs
from napari_polyp.corrections.review import ReviewSession
from napari_polyp.corrections.video_review import VideoReview
from napari_polyp.errors import UserError
from napari_polyp.video import propagate



@pytest.fixture
def clip(moving_disc, tmp_path):
    """(make(n) -> session, VideoReview of an n-frame moving disc; fix(session, frame, status))."""
    def make(n=12):
        session = ReviewSession(moving_disc.write(tmp_path, n), tmp_path / "ds")
        return session, VideoReview(session, propagate_fn=functools.partial(propagate, refine=False))

    def fix(session, frame, status):  # what a person does: the frame's mask made right, saved (a key)
        mask = moving_disc.disc(frame).astype(np.uint8)
        return session.commit(frame, mask, status, image=session.image(frame))
    return make, fix


def _run(job):
    events = list(job)
    finished = [e for e in events if isinstance(e, jobs.Finished)]
    return events, (finished[0].value if finished else None)


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_propagate_fills_the_frames_after_a_key_and_accept_range_saves_them_with_provenance(clip, moving_disc,
                                                                                          tmp_path):
    make, _fix = clip
    session, video = make()
    _fix(session, 0, "corrected")
    assert video.keys() == [0] and video.state(0) == "key"
    events, filled = _run(video.propagate(0, +1, limit=6))
    assert filled == [1, 2, 3, 4, 5, 6]
    assert [e.done for e in events if isinstance(e, jobs.Progress)] == [1, 2, 3, 4, 5, 6]
    assert video.state(3) == "propagated from key 0" and video.state(7) == "unreviewed"
    assert _dice(video.propagated(6).mask(0.5) > 0, moving_disc.disc(6)) > 0.85  # moved with the disc
    records = video.accept_range(0, +1, limit=6)
    assert [r.extra["frame"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert all(r.status == "accepted" and r.extra["propagated_from"] == 0 and r.model == "propagation"
               for r in records)
    again = VideoReview(ReviewSession(session.items[0].source_path, tmp_path / "ds"))
    assert again.keys() == [0] and again.state(4) == "accepted from key 0"  # read back from the manifest


def test_a_later_key_bounds_the_span_and_both_keys_are_blended(clip):
    make, _fix = clip
    session, video = make()
    _fix(session, 0, "corrected")
    _fix(session, 5, "accepted")
    assert video.span(0, +1) == [1, 2, 3, 4] and video.span(5, -1) == [4, 3, 2, 1]
    _, filled = _run(video.propagate(5, -1))
    assert filled == [1, 2, 3, 4]
    assert video.propagated(4).provenance.propagated_from == 5  # the nearer key
    assert video.propagated(1).provenance.propagated_from == 0


def test_a_key_saved_empty_bounds_the_span_and_carries_nothing(clip):
    """A frame saved with an empty mask (the lesion out of view) is a key: a Propagate from a
    neighbouring key stops before it instead of failing on it, and one from it is refused by name."""
    make, _fix = clip
    session, video = make(8)
    _fix(session, 0, "corrected")
    session.commit(5, np.zeros_like(session.saved_mask(0)), "corrected", image=session.image(5))
    assert video.is_key(5)
    events, filled = _run(video.propagate(0, +1))
    assert filled == [1, 2, 3, 4] and not [e for e in events if isinstance(e, jobs.Failed)]
    assert video.propagated(4).provenance.propagated_from == 0
    with pytest.raises(UserError, match="frame 5 is saved with an empty mask"):
        list(video.propagate(5, +1))


def test_messages_name_the_video_frames_not_positions_in_the_span(clip):
    make, _fix = clip
    session, video = make(12)
    _fix(session, 6, "corrected")
    seen = {}

    def records_numbers(frames, key_masks, frame_numbers=None, **kwargs):
        seen["numbers"] = list(frame_numbers)
        return propagate(frames, key_masks, refine=False, frame_numbers=frame_numbers, **kwargs)

    video.propagate_fn = records_numbers
    _run(video.propagate(6, +1, limit=3))
    assert seen["numbers"] == [6, 7, 8, 9]


def test_accept_range_takes_the_carried_frames_whatever_propagated_last_and_names_the_doubtful_one(clip):
    make, _fix = clip
    session, video = make(10)
    _fix(session, 0, "corrected")
    _fix(session, 9, "corrected")
    _run(video.propagate(0, +1, limit=3))
    _run(video.propagate(9, -1, limit=2))  # the last Propagate ran elsewhere, backward
    video._unsure.add(3)  # as if frame 3 were carried past a jump
    assert video.first_unsure(0, +1) == 3 and video.first_unsure(9, -1) is None
    assert [r.extra["frame"] for r in video.accept_range(0, +1)] == [1, 2]
    assert [r.extra["frame"] for r in video.accept_range(9, -1)] == [8, 7]


def test_propagating_from_a_frame_that_is_not_a_key_is_refused(clip):
    _, video = clip[0](4)
    with pytest.raises(UserError, match="frame 2 is not a key"):
        list(video.propagate(2, +1))


def test_a_folder_of_images_is_not_a_video(tmp_path):
    import imageio.v3 as iio

    (tmp_path / "images").mkdir()
    iio.imwrite(tmp_path / "images" / "a.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(UserError, match="video"):
        VideoReview(ReviewSession(tmp_path / "images", tmp_path / "ds"))


def test_cancel_stops_the_propagation_and_keeps_nothing_half(clip):
    make, _fix = clip
    session, video = make()
    _fix(session, 0, "corrected")
    job = video.propagate(0, +1, limit=8)
    first = next(e for e in job if isinstance(e, jobs.Progress))
    job.close()  # what Cancel does to the worker's generator
    assert first.done == 1
    assert all(video.propagated(t) is None for t in range(1, 9))


def test_a_propagated_frame_fixed_by_hand_becomes_a_key(clip, moving_disc):
    make, _fix = clip
    session, video = make(6)
    _fix(session, 0, "corrected")
    _run(video.propagate(0, +1))
    carried = video.propagated(3)
    fixed = moving_disc.disc(3).astype(np.uint8)
    fixed[:4, :4] = 1  # an edit the flow did not make
    record = session.commit(3, fixed, "accepted", basis=carried, image=session.image(3))
    assert record.status == "corrected" and record.extra["propagated_from"] == 0
    assert video.is_key(3) and video.span(0, +1) == [1, 2]


def test_accept_range_stops_before_a_frame_carried_past_a_jump(moving_disc, tmp_path):
    from napari_polyp.video import Doubt

    def jumps_at_4(frames, key_masks, **kwargs):  # the flow explains no step from frame 4 on
        result = propagate(frames, key_masks, refine=False, **kwargs)
        result.confidence[4:] = [0.0] * (len(result) - 4)
        result.doubts.append(Doubt(0, "forward", 4, "a jump"))
        return result

    session = ReviewSession(moving_disc.write(tmp_path, 8), tmp_path / "ds")
    video = VideoReview(session, propagate_fn=jumps_at_4)
    session.commit(0, moving_disc.disc(0).astype(np.uint8), "corrected", image=session.image(0))
    _, filled = _run(video.propagate(0, +1))
    assert filled == [1, 2, 3, 4, 5, 6, 7]  # carried, not left empty
    assert any("carried on past frame 4" in s for s in video.stops)
    assert not video.is_unsure(3) and video.is_unsure(4)
    assert video.state(3) == "propagated from key 0" and video.state(4) == "doubtful from key 0"
    records = video.accept_range(0, +1)
    assert [r.extra["frame"] for r in records] == [1, 2, 3]  # a person looks at frame 4 first
    assert session.record(4) is None


def test_the_carried_frames_rank_by_their_quality_worst_first(clip):
    """Issue 28: the table sorts frames by the quality score, worst first: a person fixes the
    worst frame, it becomes a key, propagation runs again from it."""
    from napari_polyp.video import FrameQuality

    def worst_at_5(frames, key_masks, **kwargs):
        result = propagate(frames, key_masks, refine=False, **kwargs)
        result.quality[5] = FrameQuality(score=0.1)
        result.quality[2] = FrameQuality(score=0.6)
        return result

    make, _fix = clip
    session, video = make(10)
    video.propagate_fn = worst_at_5
    _fix(session, 0, "corrected")
    _run(video.propagate(0, +1, limit=6))
    assert video.doubt(5) == pytest.approx(0.9) and video.doubt(2) == pytest.approx(0.4)
    assert video.doubt(0) is None and video.doubt(8) is None  # a key; a frame not carried
    order = video.most_uncertain_first(range(10))
    assert order[:2] == [5, 2] and set(order[:6]) == {1, 2, 3, 4, 5, 6}
    _fix(session, 5, "corrected")  # the worst fixed: a key, no longer carried
    assert video.is_key(5) and video.doubt(5) is None
    assert video.most_uncertain_first(range(10))[0] == 2
