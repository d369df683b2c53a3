"""Live playback (napari_polyp/inference/live.py): the clock decides the frame, a slow network skips frames."""
import numpy as np

from napari_polyp.inference import Prediction
from napari_polyp.inference.live import PlaybackClock, live_masks


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class SlowNetwork:
    """Takes ``cost`` seconds of the fake clock per frame."""

    def __init__(self, clock, cost):
        self.clock, self.cost, self.seen = clock, cost, []

    def predict(self, image, attention=True):
        self.seen.append(int(image[0, 0, 0]))
        self.clock.t += self.cost
        return Prediction(np.full(image.shape[:2], 0.9, np.float32))


def _video(n):
    return np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 3), np.uint8)


def test_a_fast_network_segments_every_frame_at_the_video_rate(monkeypatch):
    now = FakeClock()
    monkeypatch.setattr("napari_polyp.inference.live.time.sleep", lambda s: setattr(now, "t", now.t + max(s, 1e-3)))
    net = SlowNetwork(now, cost=0.01)
    shown = list(live_masks(net, _video(20), PlaybackClock(25, 0, 20, now=now)))
    assert [s.frame for s in shown] == list(range(20)) and shown[-1].dropped == 0
    assert abs(shown[-1].fps - 25) < 2 and shown[0].mask.dtype == np.uint8 and shown[0].mask.all()


def test_a_slow_network_skips_frames_instead_of_falling_behind(monkeypatch):
    now = FakeClock()
    monkeypatch.setattr("napari_polyp.inference.live.time.sleep", lambda s: setattr(now, "t", now.t + max(s, 1e-3)))
    net = SlowNetwork(now, cost=0.1)  # 10 fps for a 25 fps video
    shown = list(live_masks(net, _video(50), PlaybackClock(25, 0, 50, now=now)))
    frames = [s.frame for s in shown]
    assert frames == net.seen and frames == sorted(set(frames))
    assert all(b - a in (2, 3) for a, b in zip(frames, frames[1:]))  # 2.5 frames per network call
    assert now.t < 50 / 25 + 0.2  # the video took its own length, not the network's
    assert shown[-1].dropped == frames[-1] + 1 - len(frames)


def test_stop_ends_the_playback():
    import threading

    stop = threading.Event()
    clock = PlaybackClock(1000, 0, 10**6)
    net = SlowNetwork(FakeClock(), cost=0.0)
    endless = type("Endless", (), {"__getitem__": lambda self, t: _video(1)[0]})()
    for count, _ in enumerate(live_masks(net, endless, clock, stop=stop), 1):
        if count == 3:
            stop.set()
    assert count == 3


def test_a_video_without_a_frame_rate_plays_at_25():
    assert PlaybackClock(0, 0, 10).fps == 25.0


def test_outline_is_the_border_of_the_mask():
    from napari_polyp.display import outline

    mask = np.zeros((12, 12), np.uint8)
    mask[2:10, 3:9] = 1
    ring = outline(mask)
    assert ring[2, 3:9].all() and ring[9, 3:9].all() and ring[4:8, 5:7].sum() == 0
    assert ring[2:10, 3:9].sum() == 8 * 6 - 4 * 2 and not ring[mask == 0].any()
    edge = np.ones((5, 5), np.uint8)  # the image border counts as background
    assert outline(edge, width=1).sum() == 16 and not outline(edge, width=1)[1:4, 1:4].any()


def test_each_frame_comes_with_its_outline_drawn_in(monkeypatch):
    from napari_polyp.display import MASK_RGB, outline

    now = FakeClock()
    monkeypatch.setattr("napari_polyp.inference.live.time.sleep", lambda s: setattr(now, "t", now.t + max(s, 1e-3)))

    class Square:
        def predict(self, image, attention=True):
            probability = np.zeros(image.shape[:2], np.float32)
            probability[2:9, 3:10] = 0.9
            return Prediction(probability)

    video = np.full((3, 12, 12, 3), 50, np.uint8)
    shown = list(live_masks(Square(), video, PlaybackClock(25, 0, 3, now=now)))
    ring = outline(shown[0].mask)
    assert ring.any() and (shown[0].picture[ring] == MASK_RGB).all()
    assert (shown[0].picture[~ring] == 50).all() and (video == 50).all()  # a copy: the video is untouched


def test_live_leaves_the_display_a_core():
    from napari_polyp.inference.live import network_threads

    assert [network_threads(t) for t in (1, 2, 8)] == [1, 1, 7]


class DiscNetwork:
    """Finds the bright disc of a frame exactly; takes ``cost`` seconds of the fake clock."""

    def __init__(self, clock, cost):
        self.clock, self.cost, self.seen = clock, cost, []

    def predict(self, image, attention=True):
        self.seen.append(image)
        self.clock.t += self.cost
        return Prediction((image[..., 0] > 128).astype(np.float32))


def _moving_disc(n, size=96, radius=14, step=2):
    yy, xx = np.mgrid[0:size, 0:size]
    texture = ((xx * 7 + yy * 13) % 50 + 40).astype(np.uint8)  # something for the flow to follow
    video = np.repeat(texture[None, :, :, None], 3, -1).repeat(n, 0)
    truths = []
    for t in range(n):
        disc = (yy - size // 2) ** 2 + (xx - 20 - step * t) ** 2 < radius ** 2
        video[t][disc] = 220
        truths.append(disc)
    return video, truths


def test_carry_shows_every_frame_of_a_slow_network_with_the_disc_where_it_moved(monkeypatch):
    now = FakeClock()
    monkeypatch.setattr("napari_polyp.inference.live.time.sleep", lambda s: setattr(now, "t", now.t + max(s, 1e-3)))
    video, truths = _moving_disc(30)
    net = DiscNetwork(now, cost=0.06)  # 1.5 frame times at 25 fps: alone it skips every other frame
    alone = list(live_masks(net, video, PlaybackClock(25, 0, 30, now=now)))
    now.t = 0.0
    shown = list(live_masks(DiscNetwork(now, cost=0.06), video, PlaybackClock(25, 0, 30, now=now), carry=True))
    assert alone[-1].dropped >= 8
    assert shown[-1].dropped <= 2 and len(shown) >= 28  # (the flow's own time is not on the fake clock)
    flowed = [s for s in shown if s.by_flow]
    assert len(flowed) == shown[-1].carried >= 10
    runs = "".join("f" if s.by_flow else "n" for s in shown)
    assert "n" * 3 not in runs[2:] and "f" * 4 not in runs  # network, flow, network, ...: never 4 flows in a row
    dice = [2 * (s.mask.astype(bool) & truths[s.frame]).sum() / (s.mask.sum() + truths[s.frame].sum())
            for s in flowed]
    assert min(dice) > 0.85  # carried to where the disc is now, not left where the network saw it


def test_carry_skips_no_frame_when_the_due_frame_is_barely_late(monkeypatch):
    # 85 ms a frame: when the network is done, frame 2 is due by only 5 ms while frame 1 is
    # 45 ms late; asking the due frame whether it is late ran the network on it and skipped 1
    now = FakeClock()
    monkeypatch.setattr("napari_polyp.inference.live.time.sleep", lambda s: setattr(now, "t", now.t + max(s, 1e-3)))
    video, _ = _moving_disc(40)
    shown = list(live_masks(DiscNetwork(now, cost=0.085), video, PlaybackClock(25, 0, 40, now=now), carry=True))
    assert [s.frame for s in shown] == list(range(40)) and shown[-1].dropped == 0
    assert 15 <= shown[-1].carried <= 25  # about every other frame is the network's own
