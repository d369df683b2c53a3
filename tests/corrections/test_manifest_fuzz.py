"""Fuzzing the manifest reader (issue 25): whatever lines are appended (random JSON, deep
nesting, long strings, wrong types in known fields, text that is not JSON), reading never
raises and the good items still load as they were saved."""
import json
import warnings

import numpy as np
import pytest

from napari_polyp.corrections import CorrectionsDataset
from napari_polyp.corrections import manifest as M

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

GOOD = ("a", "b")
FIELDS = ("version", "image", "mask", "prediction", "strokes", "status", "threshold", "pixels_changed",
          "note", "format_version", "mask_sha256", "created", "extra", "name")

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                    st.text(max_size=40))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                           max_leaves=12)
# a record of another item ("g..." never cleans to a good stem) with wrong types in known fields
foreign_records = st.builds(lambda stem, fields: json.dumps({"stem": "g" + stem, **fields}),
                            st.text(max_size=20), st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6))
deep = st.builds(lambda depth, opener: "[" * depth + "]" * depth if opener else '{"a":' * depth + "1" + "}" * depth,
                 st.integers(10, 4000), st.booleans())
long_strings = st.builds(lambda n, c: json.dumps({"stem": "g", "note": c * n}),
                         st.integers(M.MAX_LINE_BYTES - 100, M.MAX_LINE_BYTES + 100), st.sampled_from("xé"))
raw_lines = st.one_of(st.text(max_size=60).map(lambda t: t.replace("\n", " ")),
                      json_values.map(json.dumps), st.just("NaN"), st.just('{"stem": "g", "threshold": Infinity}'))
lines = st.lists(st.one_of(foreign_records, deep, long_strings, raw_lines), min_size=1, max_size=8)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz") / "ds"
    ds = CorrectionsDataset(root)
    for seed, stem in enumerate(GOOD):
        image = np.random.default_rng(seed).integers(0, 256, (12, 16, 3), dtype=np.uint8)
        mask = np.zeros((12, 16), np.uint8)
        mask[seed:seed + 4, 2:8] = 1
        ds.save(image, mask, stem=stem, status="accepted")
    return root, (root / "manifest.jsonl").read_bytes(), {s: ds.load_mask(s) for s in GOOD}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow, HealthCheck.data_too_large])
@given(garbage=lines, torn=st.booleans())
def test_the_good_items_always_load(saved, garbage, torn):
    root, good_manifest, masks = saved
    text = "\n".join(garbage) + "\n"
    if torn:
        text += '{"stem": "a", "vers'  # and a last line cut short
    (root / "manifest.jsonl").write_bytes(good_manifest + text.encode("utf-8", "surrogatepass"))
    ds = CorrectionsDataset(root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        latest = ds.latest()
        assert set(GOOD) <= set(latest)
        for stem in GOOD:
            assert latest[stem].version == 1 and latest[stem].status == "accepted"
            np.testing.assert_array_equal(ds.load(stem)[1], masks[stem])
        assert {r.stem for r in ds.training_items()} >= set(GOOD)
        assert all(isinstance(r.version, int) and 1 <= r.version < M.MAX_VERSION for r in ds.records())
