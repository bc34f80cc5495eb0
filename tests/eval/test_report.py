"""Report pictures: curves from a history with evaluations every N epochs."""

import os


def test_history_curves_skip_epochs_without_evaluation(tmp_path):
    import matplotlib  # noqa: F401  (in the test extra: missing is a failure, not a silent skip)
    from keras_clip.eval.report import plot_history

    history = {
        "loss": [3.0, 2.0, 1.5, 1.0],
        "logit_scale": [14.0, 15.0, 16.0, 17.0],
        "val_zero_shot_top1": [None, 0.25, None, 0.5],
        "val_text_to_image_R@5": [None, 0.5, None, 0.75],
        "bad_records": [0, 0, 0, 0],
    }
    path = str(tmp_path / "curves.png")
    drawn = plot_history(history, path)
    assert drawn["loss"] == ([1, 2, 3, 4], [3.0, 2.0, 1.5, 1.0])
    assert drawn["val_zero_shot_top1"] == ([2, 4], [0.25, 0.5])  # epochs 2 and 4, not 1 and 2
    assert drawn["val_text_to_image_R@5"] == ([2, 4], [0.5, 0.75])
    assert "bad_records" not in drawn
    assert os.path.getsize(path) > 5000
    # Without evaluation: the three training panels only.
    assert set(plot_history({"loss": [1.0]}, str(tmp_path / "plain.png"))) == {"loss"}
