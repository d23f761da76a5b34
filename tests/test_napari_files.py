"""Files open and save the right way in a real viewer (issue 16, items 4 and 6).

napari's builtin reader and labels writer also claim ``*.npz``; without a reader
preference napari asks (builtin preselected), and saving a labels layer as ``.npz``
through the builtin writer keeps only ``arr_0``.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari.errors import MultipleReaderError  # noqa: E402
from napari.settings import get_settings  # noqa: E402

from napari_probseg import session as S  # noqa: E402
from napari_probseg._reader import OUR_PATTERNS, PLUGIN, claim_our_files  # noqa: E402
from napari_probseg.inference import Prediction, bernoulli_entropy, uncertainty_peaks  # noqa: E402
from napari_probseg.label_colors import touching_pairs  # noqa: E402
from napari_probseg.outputs import write_prediction  # noqa: E402
from napari_probseg.sample_data import load_sample  # noqa: E402

pytestmark = pytest.mark.gui



def predict_output(folder: Path) -> Path:
    """A small ``probseg predict`` output (two worms side by side)."""
    p = np.zeros((2, 40, 60), np.float32)
    p[0, 5:15, 5:50] = 1
    p[1, 18:30, 5:50] = 0.9
    ent = bernoulli_entropy(p).max(0)
    return write_prediction(Prediction(p, p >= 0.75, ent, uncertainty_peaks(ent, p), [], 0.75), folder, "W01", {})[
        "probabilities"]


def test_predict_output_opens_as_a_session_without_asking_and_saves_whole(make_napari_viewer, tmp_path):
    path = predict_output(tmp_path)
    viewer = make_napari_viewer(show=True)
    with pytest.raises(MultipleReaderError):  # what the issue saw: napari asks, builtin preselected
        viewer.open(str(path), plugin=None)
    assert claim_our_files() == list(OUR_PATTERNS)  # what activating the plugin does (next test)
    assert claim_our_files() == []
    layers = viewer.open(str(path), plugin=None)  # as `napari W01_probabilities.npz` and drag-and-drop
    roles = [l.metadata.get("probseg_role") for l in layers]
    assert roles == ["probabilities", "entropy", "labels", "peaks", "items"]
    labels = viewer.layers["W01 labels"]
    assert not viewer.layers["W01 uncertainty (entropy)"].visible  # no speckle over the worms by default

    # File > Save All Layers: the session writer is the dialog's first (default) choice
    from napari.plugins._npe2 import file_extensions_string_for_layers

    filters, _ = file_extensions_string_for_layers(list(viewer.layers))
    assert filters.split(";;")[0] == "napari-probseg proofreading session (*.probseg.npz *.npz)"
    labels.data_setitem(np.nonzero(labels.data == 2), 0)  # a correction
    for name, selected in (("all.npz", False), ("all.probseg.npz", False), ("one.probseg.npz", True)):
        viewer.layers.selection = {labels} if selected else set(viewer.layers)
        assert viewer.layers.save(str(tmp_path / name), selected=selected) == [str(tmp_path / name)]
        back = S.Session.load(tmp_path / name)  # a full session, not arr_0
        assert back.image_name == "W01" and not (back.labels == 2).any() and back.probabilities.shape == (2, 40, 60)
    reopened = viewer.open(str(tmp_path / "one.probseg.npz"), plugin=None)
    assert [l.metadata.get("probseg_role") for l in reopened] == roles


def test_a_readers_choice_made_by_the_user_is_kept(make_napari_viewer):
    # make_napari_viewer gives this test fresh napari settings (and resets them afterwards)
    get_settings().plugins.extension2reader = {"*_probabilities.npz": "napari"}
    assert claim_our_files() == ["*.probseg.npz"]
    assert get_settings().plugins.extension2reader == {"*_probabilities.npz": "napari", "*.probseg.npz": PLUGIN}


def test_activating_the_plugin_makes_napari_open_our_files(tmp_path):
    """Fresh interpreter (the plugin activates once per process): before any use of the
    plugin napari asks; opening a sample activates it, and the same file then opens alone."""
    path = predict_output(tmp_path)
    code = textwrap.dedent(f"""
        from napari.components import ViewerModel
        from napari.errors import MultipleReaderError
        from napari.plugins import _initialize_plugins
        _initialize_plugins()
        v = ViewerModel()
        try:
            v.open({str(path)!r}, plugin=None)
            print("opened")
        except MultipleReaderError:
            print("asked")
        v.open_sample("napari-probseg", "D21")
        print(" ".join(l.metadata.get("probseg_role", "-") for l in ViewerModel().open({str(path)!r}, plugin=None)))
    """)
    env = {"NAPARI_CONFIG": str(tmp_path / "napari-settings.yaml"), "PYTHONPATH": str(Path(S.__file__).parents[1]),
           "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[:2] == ["asked", "probabilities entropy labels peaks items"]
    assert "napari-probseg" in (tmp_path / "napari-settings.yaml").read_text()


def test_neighbouring_worms_of_c10_get_different_colours(make_napari_viewer, tmp_path, data_dir):
    from napari_probseg.data import load_masks
    from napari_probseg.masks import labels_from_instances

    masks = load_masks(data_dir, "C10")  # the 15 ground-truth worms, some crossing
    lab = labels_from_instances(masks > 0)
    s = S.Session("C10", masks.astype(np.float32), np.zeros(lab.shape, np.float32), lab, [], image=load_sample("C10"),
                  items=[], channel_names=["C10 fluorescence", "C10 brightfield"])
    viewer = make_napari_viewer(show=True)
    viewer.open(str(s.save(tmp_path / "C10.probseg.npz")), plugin=PLUGIN)
    layer = viewer.layers["C10 labels"]
    pairs = touching_pairs(lab, gap=0)  # pixels of one worm next to pixels of another
    assert len(pairs) >= 2
    for a, b in touching_pairs(lab):  # within 16 px
        assert not np.allclose(layer.get_color(a), layer.get_color(b)), (a, b)


def test_one_name_for_the_plugin_in_naparis_menus(make_napari_viewer):
    from napari._app_model import get_app_model

    make_napari_viewer(show=False)
    menus = get_app_model().menus

    def titles(menu_id: str) -> list[str]:
        return [str(getattr(i, "title", None) or i.command.title) for i in menus.get_menu(menu_id)]

    assert "napari-probseg" in titles("napari/plugins") and "napari-probseg" in titles("napari/file/samples")
    assert titles("napari/plugins/napari-probseg") == ["Segment worms", "Proofreading", "Fine-tune", "Measure worms"]
