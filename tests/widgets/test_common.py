"""widgets/_common.start_worker: results come back, and a finished worker lets go of its job
(napari keeps every worker a window made; a kept job's image or click session grew a long review
session by megabytes an item)."""
import gc
import weakref

import numpy as np

from napari_polyp.widgets._common import start_worker

WAIT_MS = 30_000


class Big:
    """Stands for what jobs are given: an image, a click session."""

    def __init__(self):
        self.pixels = np.zeros((600, 530, 3), np.uint8)


def _double(big, factor):
    return big.pixels.shape[0] * factor


def _count(big, n):
    for i in range(n):
        yield i
    return big.pixels.shape[1]


def test_a_function_worker_returns_and_then_lets_go_of_its_arguments(make_napari_viewer, qtbot):
    make_napari_viewer()  # napari registers its workers with the window's task list
    big = Big()
    alive = weakref.ref(big)
    returned, finished = [], []
    start_worker(_double, big, 2, on_return=returned.append, on_finished=lambda: finished.append(True))
    qtbot.waitUntil(lambda: bool(finished), timeout=WAIT_MS)  # (a quick job may end before a waitSignal listens)
    del big
    qtbot.waitUntil(lambda: (gc.collect(), alive() is None)[1], timeout=WAIT_MS)
    assert returned == [1200]


def test_a_generator_job_yields_returns_and_then_lets_go_of_its_arguments(make_napari_viewer, qtbot):
    make_napari_viewer()
    big = Big()
    alive = weakref.ref(big)
    yielded, returned, finished = [], [], []
    start_worker(_count(big, 3), on_yield=yielded.append, on_return=returned.append,
                 on_finished=lambda: finished.append(True))
    qtbot.waitUntil(lambda: bool(finished), timeout=WAIT_MS)
    del big
    qtbot.waitUntil(lambda: (gc.collect(), alive() is None)[1], timeout=WAIT_MS)
    assert yielded == [0, 1, 2] and returned == [530]


def test_a_generator_function_and_quit(make_napari_viewer, qtbot):
    """quit() stops a generator after its current item, as before."""
    make_napari_viewer()

    def forever(big):
        while True:
            yield big.pixels.shape

    yielded, finished = [], []
    worker = start_worker(forever, Big(), on_yield=yielded.append, on_finished=lambda: finished.append(True))
    qtbot.waitUntil(lambda: len(yielded) > 0, timeout=WAIT_MS)
    worker.quit()
    qtbot.waitUntil(lambda: bool(finished), timeout=WAIT_MS)
    assert yielded[0] == (600, 530, 3)


def _fails(_big):
    raise ValueError("/tmp/x.pt is not a readable PyTorch checkpoint")


def test_an_error_given_to_on_error_is_said_once_not_raised_again(make_napari_viewer, qtbot, monkeypatch):
    """napari re-raises a worker's error on the main thread unless told not to: its traceback had
    come beside the widget's one line (a checkpoint that is not one, chosen for a fine-tune)."""
    import sys

    make_napari_viewer()
    raised, said, finished = [], [], []
    monkeypatch.setattr(sys, "excepthook", lambda *info: raised.append(info))
    start_worker(_fails, Big(), on_error=said.append, on_finished=lambda: finished.append(True))
    qtbot.waitUntil(lambda: bool(finished), timeout=WAIT_MS)
    qtbot.wait(50)
    assert said == ["/tmp/x.pt is not a readable PyTorch checkpoint"] and raised == []
