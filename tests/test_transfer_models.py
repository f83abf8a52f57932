"""Transfer-learning models (models/transfer.py): heads, freezing, RGB preprocessing, local weights only."""
from __future__ import annotations

import types

import keras
import numpy as np
import pytest

import models
from models import transfer
from tests.conftest import command_flags


@pytest.mark.parametrize("backbone", list(transfer.BACKBONES))
def test_frozen_backbone_with_a_512_relu_head(backbone):
    m = models.build(f"TL-{backbone}", {"image": (80, 80, 3)}, 29, "single_label")
    assert m.output_shape == (None, 29)
    trainable = sum(int(np.prod(v.shape)) for v in m.trainable_weights)
    features = m.get_layer("hidden").input.shape[-1]
    assert trainable == features * 512 + 512 + 512 * 29 + 29  # only the head trains
    assert m.get_layer("hidden").activation is keras.activations.relu


def test_unfreeze_fine_tunes_the_backbone():
    m = models.build("TL-DenseNet121", {"image": (64, 64, 3)}, 5, "single_label", unfreeze=True)
    assert sum(int(np.prod(v.shape)) for v in m.trainable_weights) > 5_000_000


def test_inputs_must_be_rgb_and_large_enough():
    with pytest.raises(ValueError, match="3 channels"):
        models.build("TL-ResNet50", {"image": (64, 64, 4)}, 5, "single_label")
    with pytest.raises(ValueError, match="at least 75x75"):
        models.build("TL-InceptionV3", {"image": (64, 64, 3)}, 5, "single_label")


@pytest.mark.parametrize("mode, module", [("inception", "inception_v3"), ("caffe", "resnet50"),
                                          ("torch", "densenet")])
def test_each_backbone_s_own_preprocessing_of_rgb(mode, module):
    rng = np.random.default_rng(0)
    rgb = rng.uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    ours = np.asarray(transfer.BackbonePreprocess(mode)(rgb))
    theirs = getattr(keras.applications, module).preprocess_input(rgb.copy())  # expects RGB input
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-4)


def test_channel_order_is_rgb():
    red = np.zeros((1, 2, 2, 3), np.float32)
    red[..., 0] = 255.0  # pure red in RGB
    bgr = np.asarray(transfer.BackbonePreprocess("caffe")(red))
    assert bgr[0, 0, 0, 2] == pytest.approx(255.0 - 123.68)  # ResNet50's BGR: red is the last channel
    assert bgr[0, 0, 0, 0] == pytest.approx(-103.939)
    inc = np.asarray(transfer.BackbonePreprocess("inception")(red))
    assert inc[0, 0, 0].tolist() == [1.0, -1.0, -1.0]  # InceptionV3 keeps RGB


def test_weights_from_a_local_file_only(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        models.build("TL-EfficientNetV2B0", {"image": (64, 64, 3)}, 5, "single_label", backbone_weights="imagenet")
    base = keras.applications.EfficientNetV2B0(include_top=False, weights=None, input_shape=(64, 64, 3),
                                               pooling="avg", include_preprocessing=True)
    path = tmp_path / "efficientnetv2-b0_notop.weights.h5"
    base.save_weights(str(path))
    m = models.build("TL-EfficientNetV2B0", {"image": (64, 64, 3)}, 5, "single_label", backbone_weights=str(path))
    got = [w for w in m.weights if "stem_conv" in w.path][0]
    want = [w for w in base.weights if "stem_conv" in w.path][0]
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_saved_model_round_trip(tmp_path):
    m = models.build("TL-ResNet50", {"image": (32, 32, 3)}, 4, "single_label")
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    path = tmp_path / "m.keras"
    m.save(path)
    np.testing.assert_allclose(models.load_model(str(path)).predict(x, verbose=0), m.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)


def test_sgd_with_nesterov():
    from models import training

    cfg = types.SimpleNamespace(optimizer="sgd", weight_decay=0.0, momentum=0.9, nesterov=True)
    opt = training.make_optimizer(cfg, 1e-3)
    assert opt.nesterov and opt.momentum == pytest.approx(0.9)


def test_upstream_flagfile():
    import os

    from absl import flags

    import train

    path = os.path.join(os.path.dirname(models.__path__[0]), "configs", "sentinel2_global_lulc", "InceptionV3.flags")
    with command_flags(train):  # train.py's flags, removed again after the test
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["train.py", f"--flagfile={path}", "--data_dir=d", "--out_dir=r"])
        cfg = train.config_from_flags()
    assert (cfg.model, cfg.epochs, cfg.batch_size, cfg.learning_rate) == ("TL-InceptionV3", 10, 8, 1e-3)
    assert (cfg.optimizer, cfg.momentum, cfg.nesterov, cfg.lr_schedule) == ("sgd", 0.9, True, "constant")
    assert (cfg.bands, cfg.normalize, cfg.augment) == ("rgb", None, None)
    assert dict(cfg.model_options) == {"backbone_weights": "imagenet"}
    assert models.default_input_spec("TL-InceptionV3") == {"image": (224, 224, 3)}


def test_fold_runs_replace_the_fold_in_data_and_out_dirs():
    import train
    from prep.errors import UsageError

    cfg = train.TrainConfig("lulc_fold{fold}", "runs/fold{fold}")
    runs = train.fold_configs(cfg, None, 3)
    assert [(r.data_dir, r.out_dir) for r in runs] == [(f"lulc_fold{k}", f"runs/fold{k}") for k in range(3)]
    assert [(r.data_dir, r.out_dir) for r in train.fold_configs(cfg, 2, 0)] == [("lulc_fold2", "runs/fold2")]
    assert train.fold_configs(train.TrainConfig("d", "r"), None, 0) == [train.TrainConfig("d", "r")]
    with pytest.raises(UsageError, match="--out_dir must contain"):
        train.fold_configs(train.TrainConfig("d{fold}", "r"), 1, 0)
    with pytest.raises(UsageError, match="not both"):
        train.fold_configs(cfg, 1, 5)


def _config(*args):
    from absl import flags

    import train

    with command_flags(train):  # train.py's flags, removed again after the test
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["train.py", "--data_dir=d", "--out_dir=r", *args])
        return train.config_from_flags()


def _backbone(model):
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


@pytest.mark.parametrize("args, trainable", [((), False), (("--unfreeze",), True), (("--nounfreeze",), False)])
def test_unfreeze_flag_fine_tunes_the_backbone(args, trainable):
    from models import training

    cfg = _config("--model=TL-ResNet50", *args)
    assert cfg.unfreeze is trainable
    m = models.build(cfg.model, {"image": (32, 32, 3)}, 4, "single_label",
                     **training.model_options(cfg.model, cfg.model_options, cfg.unfreeze))
    backbone = _backbone(m)
    assert backbone.trainable is trainable
    assert bool(backbone.trainable_weights) is trainable


def test_unfreeze_flag_is_refused_by_a_model_without_the_option():
    from models import training
    from prep.errors import UsageError

    assert "unfreeze" in models.options("TL-InceptionV3") and "unfreeze" not in models.options("K-BranchCNN")
    cfg = _config("--model=K-BranchCNN", "--unfreeze")
    with pytest.raises(UsageError, match="^--unfreeze: model K-BranchCNN has no backbone to fine-tune"):
        training.model_options(cfg.model, cfg.model_options, cfg.unfreeze)
    assert training.model_options("K-BranchCNN", {"x": 1}) == {"x": 1}  # without the flag: options as given
