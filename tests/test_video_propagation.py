"""napari_polyp.video.propagate: key-frame masks carried through a video.

Synthetic moving discs with a known answer; a stand-in refiner (keeps its prior) where speed
or determinism matters, and one test with the shipped click refiner on real frames."""
import numpy as np
import pytest

from napari_polyp.errors import UserError
from napari_polyp.video import Propagation, frame_quality, propagate

H, W = 96, 128


def _texture(rng, shape, smooth=2.0):
    from scipy import ndimage

    noise = ndimage.gaussian_filter(rng.normal(0, 1, shape), smooth)
    return (noise - noise.min()) / (np.ptp(noise) + 1e-9)


def disc_video(n=12, step=2.0, radius=14, start=(48, 30), seed=0):
    """A textured disc translating ``step`` px a frame to the right over a still textured
    background: (frames, true masks)."""
    rng = np.random.default_rng(seed)
    background = 60 + 80 * _texture(rng, (H, W + 64))
    skin = 150 + 90 * _texture(rng, (H, W + 64), 1.5)
    rr, cc = np.ogrid[:H, :W]
    frames, masks = [], []
    for t in range(n):
        cy, cx = start[0], start[1] + step * t
        disc = (rr - cy) ** 2 + (cc - cx) ** 2 <= radius ** 2
        shift = int(round(step * t))
        moving = skin[:, 32 - shift:32 - shift + W]  # the disc's texture moves with it
        grey = np.where(disc, moving, background[:, 32:32 + W])
        frames.append(np.stack([grey, grey * 0.8, grey * 0.7], -1).clip(0, 255).astype(np.uint8))
        masks.append(disc)
    return frames, masks


class KeepPrior:
    """A stand-in refiner: returns its prior (the mask channel) as sure logits."""

    input_size = 64

    def __init__(self):
        self.calls = 0

    def run(self, x):
        self.calls += 1
        return {"logits": 12.0 * (2.0 * x[:, 3:4] - 1.0)}


def dice(a, b):
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2 * np.logical_and(a, b).sum() / total


def test_a_moving_disc_is_followed_from_one_key():
    frames, truth = disc_video(n=11)
    result = propagate(frames, {0: truth[0]}, refine=False)
    assert isinstance(result, Propagation) and isinstance(result, list) and len(result) == 11
    assert all(m.dtype == bool and m.shape == (H, W) for m in result)
    scores = [dice(result[t], truth[t]) for t in range(1, 11)]
    assert min(scores) >= 0.9, scores
    assert result.sources == ["key"] + ["forward"] * 10
    assert result.stops == []
    assert all(result.quality[t].score > 0.5 for t in range(1, 11))


def test_the_refiner_step_keeps_a_good_carried_mask():
    frames, truth = disc_video(n=11)
    refiner = KeepPrior()
    result = propagate(frames, {0: truth[0]}, runner=refiner, refine_below=2.0)  # refine every step
    assert refiner.calls == 10 and result.refiner_runs == 10
    assert min(dice(result[t], truth[t]) for t in range(1, 11)) >= 0.9


def test_keys_come_back_unchanged():
    frames, truth = disc_video(n=10)
    keys = {0: truth[0].copy(), 6: truth[6].copy()}
    keys[6][40:44, 10:14] = True  # a person's mask need not be what propagation would make
    result = propagate(frames, keys, runner=KeepPrior())
    for k, mask in keys.items():
        assert result[k].dtype == bool and np.array_equal(result[k], mask)
        assert result.sources[k] == "key" and result.quality[k] is None
    assert not np.shares_memory(result[6], keys[6])


def test_between_two_keys_the_directions_are_blended_by_distance():
    frames, truth = disc_video(n=11)
    rr, cc = np.ogrid[:H, :W]
    big = (rr - 48) ** 2 + (cc - 50) ** 2 <= 20 ** 2  # key 10 drawn larger than the disc
    result = propagate(frames, {0: truth[0], 10: big}, refine=False)
    assert [result.sources[t] for t in range(1, 10)] == ["both"] * 9
    assert all(result.from_keys[t] == (0, 10) for t in range(1, 10))
    areas = [int(result[t].sum()) for t in range(11)]
    assert areas[1] < areas[5] < areas[9]
    # near each key its own mask wins
    assert abs(areas[1] - truth[1].sum()) < abs(areas[1] - big.sum())
    assert abs(areas[9] - big.sum()) < abs(areas[9] - truth[9].sum())
    assert result.quality[5].directions_agreement is not None


def _with_a_cut(n_before=6, n_after=4):
    frames, truth = disc_video(n=n_before + n_after)
    rng = np.random.default_rng(5)
    other = (255 * _texture(rng, (H, W))).astype(np.uint8)
    for t in range(n_before, n_before + n_after):  # another scene: blue and dark
        frames[t] = np.stack([other // 6, other // 5, other], -1)
    return frames, truth


def test_a_scene_cut_stops_propagation_and_says_so():
    frames, truth = _with_a_cut()
    result = propagate(frames, {0: truth[0]}, refine=False)
    assert len(result.stops) == 1
    stop = result.stops[0]
    assert (stop.key, stop.direction, stop.frame, stop.reason) == (0, "forward", 6, "scene cut")
    assert "scene cut" in result.summary() and "frame 6" in result.summary()
    assert result.sources[1:6] == ["forward"] * 5 and result.sources[6:] == ["none"] * 4
    assert not any(result[t].any() for t in range(6, 10))
    assert result.worst_first()[:4] == [6, 7, 8, 9]  # frames not reached come first


def _with_a_jump(n_before=6, n_after=4, shift=60):
    """The view jumps at frame ``n_before``: the disc reappears ``shift`` px further right over
    the same background (no scene cut: the colours stay)."""
    frames, truth = disc_video(n=n_before + n_after)
    after, after_truth = disc_video(n=n_after, start=(48, 30 + shift))
    frames[n_before:], truth[n_before:] = after, after_truth
    return frames, truth


def test_a_step_the_flow_does_not_explain_is_carried_on_and_said():
    frames, truth = _with_a_jump()
    result = propagate(frames, {0: truth[0]}, refine=False)
    assert result.stops == [] and result.sources[1:] == ["forward"] * 9
    assert len(result.doubts) == 1 and (result.doubts[0].key, result.doubts[0].frame) == (0, 6)
    assert "carried on past frame 6" in result.summary()
    assert result.confidence[5] > 0.5 and result.confidence[6:] == [0.0] * 4
    assert result.worst_first()[:4] == [6, 7, 8, 9]  # a person checks them first
    assert all(result[t].any() for t in range(6, 10))  # a guess, not an empty frame


def test_a_second_step_the_flow_does_not_explain_stops_propagation():
    frames, truth = _with_a_jump(n_before=4, n_after=6)
    again, again_truth = disc_video(n=3, start=(48, 20))  # and back again at frame 7
    frames[7:], truth[7:] = again, again_truth
    result = propagate(frames, {0: truth[0]}, refine=False)
    assert [d.frame for d in result.doubts] == [4]
    assert [(s.frame, s.reason) for s in result.stops] == [(7, "low confidence")]
    assert "second step the flow does not explain, after frame 4" in result.stops[0].detail
    assert result.sources[4:7] == ["forward"] * 3 and result.sources[7:] == ["none"] * 3


def test_between_two_keys_a_frame_reached_past_a_jump_by_one_direction_and_unsurely_by_the_other_is_doubtful():
    """Keys on both sides of a jump, frames noisy enough that neither direction is sure far from
    its key: where the direction that came past the jump and the other disagree, the frame is at
    confidence 0 (Review's "doubtful": Accept range stops before it); near a key it is not."""
    frames, truth = _with_a_jump()
    rng = np.random.default_rng(1)
    frames = [np.clip(f + rng.normal(0, 30, f.shape), 0, 255).astype(np.uint8) for f in frames]
    result = propagate(frames, {0: truth[0], 9: truth[9]}, refine=False)
    assert result.sources[5] == result.sources[6] == "both"
    assert result.confidence[5] == 0.0 and result.confidence[6] == 0.0
    assert all(result.confidence[t] > 0.0 for t in (1, 7, 8))
    assert set(result.worst_first()[:2]) == {5, 6}


def test_a_smooth_direction_between_two_keys_is_not_doubted_for_the_other_coming_past_a_jump():
    frames, truth = _with_a_jump()
    result = propagate(frames, {0: truth[0], 9: truth[9]}, refine=False)
    assert len(result.doubts) == 2  # each direction came past the jump
    assert min(result.confidence[1:9]) > 0.9 and min(dice(result[t], truth[t]) for t in range(1, 9)) > 0.95


def test_messages_number_the_frames_as_the_caller_does():
    """Review propagates over a stretch of a longer video: its messages name the video's frames."""
    frames, truth = _with_a_jump()
    result = propagate(frames[2:], {0: truth[2]}, refine=False, frame_numbers=range(102, 110))
    assert (result.doubts[0].key, result.doubts[0].frame) == (102, 106)
    assert "from key frame 102 carried on past frame 106" in result.summary()
    assert "frame 106 does not match frame 105" in result.summary()
    with pytest.raises(UserError, match="the mask of key frame 104 is empty"):
        propagate(frames[2:], {0: truth[2], 2: np.zeros_like(truth[4])}, refine=False, frame_numbers=range(102, 110))
    with pytest.raises(UserError, match="frame_numbers has 3 numbers for 8 frames"):
        propagate(frames[2:], {0: truth[2]}, refine=False, frame_numbers=[1, 2, 3])


def test_with_the_network_to_take_over_that_step_stops_propagation():
    frames, truth = _with_a_jump()
    network = [m.astype(np.float32) * 0.9 for m in truth]
    result = propagate(frames, {0: truth[0]}, network, refine=False)
    assert [(s.frame, s.reason) for s in result.stops] == [(6, "low confidence")] and result.doubts == []
    assert result.sources[6:] == ["network"] * 4
    assert all(np.array_equal(result[t], truth[t]) for t in range(6, 10))


def test_frames_no_direction_reaches_take_the_network_mask():
    frames, truth = _with_a_cut()
    network = [m.astype(np.float32) * 0.9 for m in truth]
    result = propagate(frames, {0: truth[0]}, network, refine=False)
    assert result.sources[6:] == ["network"] * 4
    assert all(np.array_equal(result[t], truth[t]) for t in range(6, 10))
    assert result.quality[2].network_agreement is not None


def test_a_backward_key_fills_the_frames_before_it():
    frames, truth = disc_video(n=8)
    result = propagate(frames, {5: truth[5]}, refine=False)
    assert result.sources[:5] == ["backward"] * 5 and result.sources[6:] == ["forward"] * 2
    assert min(dice(result[t], truth[t]) for t in range(8)) >= 0.9


def test_frames_are_read_one_at_a_time():
    frames, truth = disc_video(n=10)

    class Lazy:
        def __init__(self):
            self.reads = []

        def __len__(self):
            return len(frames)

        def __getitem__(self, index):
            assert isinstance(index, int)
            self.reads.append(index)
            return frames[index]

    lazy = Lazy()
    result = propagate(lazy, {0: truth[0]}, refine=False)
    assert len(result) == 10 and sorted(set(lazy.reads)) == list(range(10))


def test_frame_quality_without_ground_truth():
    p = np.zeros((20, 20), np.float32)
    p[5:15, 5:15] = 1.0
    sure = frame_quality(p, network_probability=p)
    assert sure.score == pytest.approx(1.0) and sure.network_agreement == pytest.approx(1.0)
    unsure = frame_quality(p * 0.6, network_probability=np.zeros_like(p))
    assert unsure.network_agreement == 0.0 and unsure.score == 0.0 and unsure.certainty < 0.9


@pytest.mark.parametrize("keys, message", [
    ({12: None}, "key frame 12 is out of range: the video has 10 frames"),
    ({-1: None}, "key frame -1 is out of range"),
    ({"3": None}, "is not a whole number"),
    ({}, "no key frames"),
    ({0: np.ones((H + 1, W), bool)}, "the mask of key frame 0 has shape (97, 128), the frames are 96×128"),
    ({0: np.zeros((H, W), bool)}, "the mask of key frame 0 is empty"),
])
def test_bad_keys_are_one_clear_message(keys, message):
    frames, truth = disc_video(n=10)
    keys = {k: (truth[0] if v is None else v) for k, v in keys.items()}
    with pytest.raises(UserError) as err:
        propagate(frames, keys, refine=False)
    assert message in str(err.value)


def test_bad_videos_are_one_clear_message():
    frames, truth = disc_video(n=6)
    with pytest.raises(UserError, match="the video has one frame"):
        propagate(frames[:1], {0: truth[0]}, refine=False)
    odd = list(frames)
    odd[3] = odd[3][:50]
    with pytest.raises(UserError, match="frame 3 is 128×50 px"):
        propagate(odd, {0: truth[0]}, refine=False)

    class Broken:
        def __len__(self):
            return 6

        def __getitem__(self, index):
            if index == 4:
                raise RuntimeError("corrupt packet")
            return frames[index]

    with pytest.raises(UserError, match=r"frame 4 cannot be read \(RuntimeError: corrupt packet\)"):
        propagate(Broken(), {0: truth[0]}, refine=False)
    with pytest.raises(UserError, match="probabilities has 5 frames, the video 6"):
        propagate(frames, {0: truth[0]}, [np.zeros((H, W))] * 5, refine=False)


def test_the_shipped_refiner_carries_a_real_polyp(shared_data):
    """Three consecutive CVC-ClinicDB frames, the true mask of the first as the key, the shipped
    click refiner at every step (no clicks)."""
    from napari_polyp.io import read_image, read_mask

    folder = shared_data / "cvc612-seq"
    frames = [read_image(folder / "images" / f"{i:02d}.jpg") for i in (1, 2, 3)]
    truth = [read_mask(folder / "masks" / f"{i:02d}.png") > 0 for i in (1, 2, 3)]
    result = propagate(frames, {0: truth[0]}, refine_below=2.0, threads=2)
    assert result.refiner_runs == 2
    assert min(dice(result[t], truth[t]) for t in (1, 2)) >= 0.85


def test_smoothing_carries_the_previous_probability_through_a_missed_frame():
    from napari_polyp.video import smooth_probabilities

    frames, truth = disc_video(n=8)
    network = [m.astype(np.float32) for m in truth]
    network[4] = np.zeros((H, W), np.float32)  # the network misses the disc once
    smoothed = list(smooth_probabilities(frames, network, weight=0.6))
    assert len(smoothed) == 8 and all(p.dtype == np.float32 and p.shape == (H, W) for p in smoothed)
    assert np.array_equal(smoothed[0], network[0])
    assert dice(smoothed[4] >= 0.5, truth[4]) >= 0.8  # the warped previous frame fills the miss
    assert dice(network[4] >= 0.5, truth[4]) == 0.0
    assert all(dice(p >= 0.5, m) >= 0.9 for p, m in zip(smoothed, truth) if p is not smoothed[4])


def test_smoothing_restarts_at_a_scene_cut():
    from napari_polyp.video import smooth_probabilities

    frames, truth = _with_a_cut()
    network = [m.astype(np.float32) for m in truth[:6]] + [np.zeros((H, W), np.float32)] * 4
    smoothed = list(smooth_probabilities(frames, network, weight=0.6))
    assert all(not (p >= 0.5).any() for p in smoothed[6:])  # nothing carried across the cut
    with pytest.raises(UserError, match="smoothing weight is 1"):
        list(smooth_probabilities(frames, network, weight=1))


def test_a_backward_pass_reads_a_video_forward_in_chunks():
    """A video file decodes forward cheaply and seeks backward dearly: a backward pass reads
    each chunk of frames in forward order, and each frame about once."""
    frames, truth = disc_video(n=40, step=0.75)

    class Video:
        def __init__(self):
            self.reads = []

        def __len__(self):
            return len(frames)

        def __getitem__(self, index):
            self.reads.append(index)
            return frames[index]

    video = Video()
    result = propagate(video, {39: truth[39]}, refine=False)
    assert result.sources[:39] == ["backward"] * 39
    backward_steps = sum(1 for a, b in zip(video.reads, video.reads[1:]) if b < a)
    assert backward_steps <= 3  # one jump back a chunk (16 frames), not one a frame
    assert len(video.reads) <= 41


def test_a_video_file_is_propagated_from_its_lazy_frames(tmp_path):
    av = pytest.importorskip("av")
    from napari_polyp.io.video import VideoFrames

    frames, truth = disc_video(n=12)
    path = tmp_path / "disc.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.bit_rate = 2_000_000
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    video = VideoFrames(path)
    result = propagate(video, {0: truth[0], 11: truth[11]}, refine=False)
    assert len(result) == 12 and result.sources[1:11] == ["both"] * 10
    assert min(dice(result[t], truth[t]) for t in range(12)) >= 0.9


def test_a_segment_too_long_to_keep_is_filled_by_the_nearer_key(monkeypatch):
    import napari_polyp.video as video

    monkeypatch.setattr(video, "MAX_SEGMENT_BYTES", 1)  # no forward pass kept for a blend
    frames, truth = disc_video(n=11)
    calls = []
    result = propagate(frames, {0: truth[0], 10: truth[10]}, refine=False,
                       progress=lambda done, total: calls.append((done, total)))
    assert result.sources[1:6] == ["forward"] * 5 and result.sources[6:10] == ["backward"] * 4
    assert min(dice(result[t], truth[t]) for t in range(11)) >= 0.9
    assert calls[-1] == (9, 9) and len(calls) == 9
