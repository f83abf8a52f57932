"""Tests of the model registry and the architectures in models/.

Checks: every family builds for its input spec with logits of the right shape;
``.keras`` save/load gives identical outputs; K-BranchCNN, VGG and the slim ResNets
have the parameter counts worked out by hand from their architectures; K-BranchCNN,
slim VGG and slim ResNet compute what an independent tf.nn re-implementation of the
upstream graphs computes, with every weight fetched by its TF1 variable name through
the documented naming rule (which must cover every model weight exactly once).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import models  # noqa: E402
from models import so2sat  # noqa: E402

RNG = np.random.default_rng(0)


def _batch(spec, n=2):
    return {k: RNG.normal(size=(n,) + tuple(s)).astype("float32") for k, s in spec.items()}


def _roundtrip(model, x, tmp_path):
    """Saves as .keras, reloads, and checks identical inference outputs."""
    y = np.asarray(model(x, training=False))
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    loaded = models.load_model(path)
    assert [t.name for t in loaded.inputs] == [t.name for t in model.inputs]
    np.testing.assert_array_equal(np.asarray(loaded(x, training=False)), y)
    return y


def _randomize_bn(model):
    """Gives BN statistics non-trivial values so inference really uses them."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.gamma.assign(RNG.uniform(0.5, 1.5, n))
            layer.beta.assign(RNG.normal(0, 0.1, n))
            layer.moving_mean.assign(RNG.normal(0, 0.1, n))
            layer.moving_variance.assign(RNG.uniform(0.5, 1.5, n))


def tf1_to_keras_path(tf1_name):
    """The documented rule: scope "/" -> ".", leaf weights/biases -> kernel/bias."""
    parts = tf1_name.split("/")
    leaf = {"weights": "kernel", "biases": "bias"}.get(parts[-1], parts[-1])
    return ".".join(parts[:-1]) + "/" + leaf


def _weights_by_tf1_name(model, tf1_names):
    by_path = {v.path: v for v in model.weights}
    mapped = {name: tf1_to_keras_path(name) for name in tf1_names}
    missing = sorted(p for p in mapped.values() if p not in by_path)
    assert not missing, f"TF1 names map to no Keras weight: {missing[:5]}"
    assert sorted(mapped.values()) == sorted(by_path), "some Keras weights have no TF1 name"
    return {name: by_path[path].numpy() for name, path in mapped.items()}


def _bn(x, w, scope, eps):
    return ((x - w[f"{scope}/moving_mean"]) / np.sqrt(w[f"{scope}/moving_variance"] + eps)
            * w[f"{scope}/gamma"] + w[f"{scope}/beta"])


BN_VARS = ("gamma", "beta", "moving_mean", "moving_variance")


# --------------------------------------------------------------------- registry

def test_registry_names_and_errors():
    names = models.names()
    for n in ("K-BranchCNN", "VGG16", "VGG19", "ResNet50", "ResNet101", "ResNet152",
              "DenseNet121", "DenseNet161", "DenseNet169", "DenseNet201", "Sen2LCZ-Net",
              "So2Sat-ResNet20", "GHS-S2Net", "keras:ResNet50"):
        assert n in names
    with pytest.raises(KeyError, match="unknown model"):
        models.get("NoSuchNet")
    with pytest.raises(TypeError, match="no option"):
        models.build("GHS-S2Net", {"image": (5, 5, 4)}, 2, bogus=1)
    with pytest.raises(ValueError, match="task"):
        models.build("GHS-S2Net", {"image": (5, 5, 4)}, 2, task="regression")
    with pytest.raises(ValueError, match="channels"):
        models.build("GHS-S2Net", {"image": (5, 5)}, 2)
    with pytest.raises(ValueError, match="takes one input"):
        models.build("ResNet50", models.default_input_spec("K-BranchCNN"), 19)
    with pytest.raises(ValueError, match="per_resolution"):
        models.build("K-BranchCNN", {"image": (120, 120, 10)}, 19)
    assert models.get("keras:Xception").options == {"application": "Xception"}
    assert models.default_input_spec("VGG16") == {"image": (120, 120, 10)}
    assert models.get("Sen2LCZ-Net").default_num_classes == 17
    assert models.get("Sen2LCZ-Net").default_task == "single_label"


@pytest.mark.filterwarnings("ignore:Skipping nested container")
def test_weights_argument(tmp_path):
    spec = {"image": (5, 5, 4)}
    a = models.build("GHS-S2Net", spec, 2)
    _randomize_bn(a)
    a.save_weights(tmp_path / "a.weights.h5")
    a.save(tmp_path / "a.keras")
    x = _batch(spec)
    for f in ("a.weights.h5", "a.keras"):
        b = models.build("GHS-S2Net", spec, 2, weights=str(tmp_path / f))
        np.testing.assert_array_equal(np.asarray(b(x)), np.asarray(a(x)))
    with pytest.raises(FileNotFoundError, match="missing.weights.h5"):
        models.build("GHS-S2Net", spec, 2, weights=str(tmp_path / "missing.weights.h5"))
    with pytest.raises(ValueError, match="does not fit"):
        models.build("GHS-S2Net", spec, 3, weights=str(tmp_path / "a.weights.h5"))


# ----------------------------------------------------------------- K-BranchCNN

def kbranch_param_count(num_classes, sizes=(120, 60, 20)):
    """Parameters of K-BranchCNN, by hand: conv k*k*cin*cout + cout; dense in*out + out;
    batch norm 4 per channel (gamma, beta, moving mean, moving variance)."""
    def conv(k, cin, cout):
        return k * k * cin * cout + cout + 4 * cout

    def fc(n_in, n_out, bn=True):
        return n_in * n_out + n_out + (4 * n_out if bn else 0)

    s10, s20, s60 = sizes
    b10 = conv(5, 4, 32) + conv(5, 32, 32) + conv(3, 32, 64) + fc((s10 // 4) ** 2 * 64, 128)
    b20 = conv(3, 6, 32) + conv(3, 32, 32) + conv(3, 32, 64) + fc((s20 // 2) ** 2 * 64, 128)
    b60 = conv(2, 2, 32) + conv(2, 32, 32) + conv(2, 32, 32) + fc(s60 ** 2 * 32, 128)
    return b10 + b20 + b60 + fc(3 * 128, 128) + fc(128, num_classes, bn=False)


def kbranch_tf1_names():
    names = []
    for branch, n_conv in (("CNN_10m_branch", 3), ("CNN_20m_branch", 3), ("CNN_60m_branch", 3)):
        for i in range(n_conv):
            names += [f"{branch}/conv_block_{i}/conv_layer/{v}" for v in ("kernel", "bias")]
            names += [f"{branch}/conv_block_{i}/batch_norm/{v}" for v in BN_VARS]
        names += [f"{branch}/fc_block_0/fc_layer/{v}" for v in ("kernel", "bias")]
        names += [f"{branch}/fc_block_0/batch_norm/{v}" for v in BN_VARS]
    names += [f"feature_fusion/fc_block_0/fc_layer/{v}" for v in ("kernel", "bias")]
    names += [f"feature_fusion/fc_block_0/batch_norm/{v}" for v in BN_VARS]
    names += [f"classification/fc_layer/{v}" for v in ("kernel", "bias")]
    return names


def kbranch_reference(w, x):
    """Inference of the upstream TF1 graph with plain tf.nn ops."""
    def conv_block(t, scope):
        t = tf.nn.conv2d(t, w[f"{scope}/conv_layer/kernel"], 1, "SAME") + w[f"{scope}/conv_layer/bias"]
        return tf.nn.relu(_bn(t, w, f"{scope}/batch_norm", 1e-3))

    def fc_block(t, scope):
        t = tf.matmul(t, w[f"{scope}/fc_layer/kernel"]) + w[f"{scope}/fc_layer/bias"]
        return tf.nn.relu(_bn(t, w, f"{scope}/batch_norm", 1e-3))

    def pool(t):
        return tf.nn.max_pool2d(t, 2, 2, "VALID")

    def flat(t):
        return tf.reshape(t, [t.shape[0], -1])

    b = "CNN_10m_branch"
    t = pool(conv_block(x["10m"], f"{b}/conv_block_0"))
    t = pool(conv_block(t, f"{b}/conv_block_1"))
    f10 = fc_block(flat(conv_block(t, f"{b}/conv_block_2")), f"{b}/fc_block_0")
    b = "CNN_20m_branch"
    t = pool(conv_block(x["20m"], f"{b}/conv_block_0"))
    t = conv_block(t, f"{b}/conv_block_1")
    f20 = fc_block(flat(conv_block(t, f"{b}/conv_block_2")), f"{b}/fc_block_0")
    b = "CNN_60m_branch"
    t = x["60m"]
    for i in range(3):
        t = conv_block(t, f"{b}/conv_block_{i}")
    f60 = fc_block(flat(t), f"{b}/fc_block_0")
    t = fc_block(tf.concat([f10, f20, f60], -1), "feature_fusion/fc_block_0")
    return tf.matmul(t, w["classification/fc_layer/kernel"]) + w["classification/fc_layer/bias"]


def test_kbranch_params_names_reference_and_roundtrip(tmp_path):
    spec = models.default_input_spec("K-BranchCNN")
    assert spec == {"10m": (120, 120, 4), "20m": (60, 60, 6), "60m": (20, 20, 2)}
    model = models.build("K-BranchCNN", spec, 19)
    assert model.count_params() == kbranch_param_count(19) == 16_524_979
    assert [t.name for t in model.inputs] == ["10m", "20m", "60m"]
    _randomize_bn(model)
    w = _weights_by_tf1_name(model, kbranch_tf1_names())
    x = _batch(spec)
    y = _roundtrip(model, x, tmp_path)
    assert y.shape == (2, 19) and y.dtype == np.float32
    np.testing.assert_allclose(y, kbranch_reference(w, x).numpy(), rtol=1e-4, atol=1e-4)
    # Training mode really drops out (and is what train.py will run).
    assert not np.allclose(np.asarray(model(x, training=True)), y)


def test_kbranch_smaller_grids():
    spec = {"10m": (40, 40, 4), "20m": (20, 20, 6), "60m": (8, 8, 2)}
    model = models.build("K-BranchCNN", spec, 43)
    assert model.count_params() == kbranch_param_count(43, (40, 20, 8))
    assert model(_batch(spec)).shape == (2, 43)


# ------------------------------------------------------------------- slim VGG

def vgg_param_count(convs, bands, num_classes, fc_units=4096):
    filters = (64, 128, 256, 512, 512)
    total, cin = 0, bands
    for repeats, f in zip(convs, filters):
        for _ in range(repeats):
            total += 9 * cin * f + f
            cin = f
    total += 49 * 512 * fc_units + fc_units          # fc6: 7x7 conv
    total += fc_units * fc_units + fc_units          # fc7: 1x1 conv
    return total + fc_units * num_classes + num_classes  # fc8


def vgg_tf1_names(scope, convs):
    names = []
    for i, n in enumerate(convs, start=1):
        for j in range(1, n + 1):
            names += [f"{scope}/conv{i}/conv{i}_{j}/{v}" for v in ("weights", "biases")]
    for fc in ("fc6", "fc7", "fc8"):
        names += [f"{scope}/{fc}/{v}" for v in ("weights", "biases")]
    return names


def vgg_reference(w, x, scope, convs):
    t = x
    for i, n in enumerate(convs, start=1):
        for j in range(1, n + 1):
            s = f"{scope}/conv{i}/conv{i}_{j}"
            t = tf.nn.relu(tf.nn.conv2d(t, w[f"{s}/weights"], 1, "SAME") + w[f"{s}/biases"])
        t = tf.nn.max_pool2d(t, 2, 2, "VALID")
    t = tf.nn.relu(tf.nn.conv2d(t, w[f"{scope}/fc6/weights"], 1, "SAME") + w[f"{scope}/fc6/biases"])
    t = tf.nn.relu(tf.nn.conv2d(t, w[f"{scope}/fc7/weights"], 1, "SAME") + w[f"{scope}/fc7/biases"])
    t = tf.reduce_mean(t, [1, 2], keepdims=True)
    t = tf.nn.conv2d(t, w[f"{scope}/fc8/weights"], 1, "SAME") + w[f"{scope}/fc8/biases"]
    return tf.squeeze(t, [1, 2])


def test_vgg16_param_count():
    # Building the full 134M-parameter model costs ~1 GB here; the fc width is the only
    # thing that differs, so check the structure at fc_units=32 and the default width.
    import inspect

    from models import slim

    assert inspect.signature(slim.build_vgg).parameters["fc_units"].default == 4096
    assert vgg_param_count((2, 2, 3, 3, 3), 10, 19) == 134_342_419
    model = models.build("VGG16", {"image": (32, 32, 10)}, 19, fc_units=32)
    assert model.count_params() == vgg_param_count((2, 2, 3, 3, 3), 10, 19, fc_units=32)
    assert model.get_layer("vgg_16.fc6").kernel.shape == (7, 7, 512, 32)
    assert model(_batch({"image": (32, 32, 10)})).shape == (2, 19)


def test_vgg19_reference_and_roundtrip(tmp_path):
    spec = {"image": (64, 64, 10)}
    model = models.build("VGG19", spec, 19, fc_units=32)
    convs = (2, 2, 4, 4, 4)
    assert model.count_params() == vgg_param_count(convs, 10, 19, fc_units=32)
    w = _weights_by_tf1_name(model, vgg_tf1_names("vgg_19", convs))
    x = _batch(spec)
    y = _roundtrip(model, x, tmp_path)
    assert y.shape == (2, 19)
    np.testing.assert_allclose(y, vgg_reference(w, x["image"], "vgg_19", convs), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- slim ResNet

def resnet_param_count(units, bands, num_classes):
    """Convs without bias + BN (4 per channel) everywhere but the biased 1x1 logits."""
    def conv_bn(k, cin, cout):
        return k * k * cin * cout + 4 * cout

    total, cin = conv_bn(7, bands, 64), 64
    for n, base in zip(units, (64, 128, 256, 512)):
        for _ in range(n):
            depth = base * 4
            if cin != depth:
                total += conv_bn(1, cin, depth)  # projection shortcut
            total += conv_bn(1, cin, base) + conv_bn(3, base, base) + conv_bn(1, base, depth)
            cin = depth
    return total + 2048 * num_classes + num_classes


def resnet_tf1_names(scope, units):
    def conv(s):
        return [f"{s}/weights"] + [f"{s}/BatchNorm/{v}" for v in BN_VARS]

    names = conv(f"{scope}/conv1")
    cin = 64
    for b, (n, base) in enumerate(zip(units, (64, 128, 256, 512)), start=1):
        for u in range(1, n + 1):
            s = f"{scope}/block{b}/unit_{u}/bottleneck_v1"
            if cin != base * 4:
                names += conv(f"{s}/shortcut")
            names += conv(f"{s}/conv1") + conv(f"{s}/conv2") + conv(f"{s}/conv3")
            cin = base * 4
    return names + [f"{scope}/logits/weights", f"{scope}/logits/biases"]


def resnet_reference(w, x, scope, units):
    """slim resnet_v1 inference: conv2d_same, stride in the last unit of blocks 1-3."""
    eps = 1e-5

    def conv_bn(t, s, stride=1, relu=True):
        kernel = w[f"{s}/weights"]
        k = kernel.shape[0]
        if stride > 1 and k > 1:
            p = (k - 1) // 2
            t = tf.pad(t, [[0, 0], [p, k - 1 - p], [p, k - 1 - p], [0, 0]])
            t = tf.nn.conv2d(t, kernel, stride, "VALID")
        else:
            t = tf.nn.conv2d(t, kernel, stride, "SAME")
        t = _bn(t, w, f"{s}/BatchNorm", eps)
        return tf.nn.relu(t) if relu else t

    t = conv_bn(x, f"{scope}/conv1", 2)
    t = tf.nn.max_pool2d(t, 3, 2, "SAME")
    for b, (n, base, bstride) in enumerate(zip(units, (64, 128, 256, 512), (2, 2, 2, 1)), start=1):
        for u in range(1, n + 1):
            s = f"{scope}/block{b}/unit_{u}/bottleneck_v1"
            stride = bstride if u == n else 1
            if t.shape[-1] == base * 4:
                sc = t if stride == 1 else tf.nn.max_pool2d(t, 1, stride, "SAME")
            else:
                sc = conv_bn(t, f"{s}/shortcut", stride, relu=False)
            r = conv_bn(t, f"{s}/conv1")
            r = conv_bn(r, f"{s}/conv2", stride)
            r = conv_bn(r, f"{s}/conv3", relu=False)
            t = tf.nn.relu(sc + r)
    t = tf.reduce_mean(t, [1, 2], keepdims=True)
    t = tf.nn.conv2d(t, w[f"{scope}/logits/weights"], 1, "SAME") + w[f"{scope}/logits/biases"]
    return tf.squeeze(t, [1, 2])


def test_slim_resnet_reference_and_roundtrip(tmp_path):
    # Two units per block so identity subsampling (last unit, stride 2) is exercised;
    # 48 px: odd and even maps both occur (48 -> 24 -> 12 -> 6 -> 3 -> 2).
    units = (2, 2, 2, 1)
    spec = {"image": (48, 48, 10)}
    model = models.build("ResNet50", spec, 19, units=units)
    assert model.count_params() == resnet_param_count(units, 10, 19)
    _randomize_bn(model)
    w = _weights_by_tf1_name(model, resnet_tf1_names("resnet_v1_50", units))
    x = _batch(spec)
    y = _roundtrip(model, x, tmp_path)
    ref = resnet_reference(w, x["image"], "resnet_v1_50", units).numpy()
    # float32 sums over ~10^5 terms in a different order (oneDNN vs TF's reference convolutions):
    # absolute differences scale with the logits' magnitude (~70 here), so atol does too.
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5 * float(np.abs(ref).max()))
    # Stride sits in the last unit: block1's first unit keeps 12x12, its last halves it.
    assert model.get_layer("resnet_v1_50.block1.unit_1.bottleneck_v1.relu").output.shape[1] == 12
    assert model.get_layer("resnet_v1_50.block1.unit_2.bottleneck_v1.relu").output.shape[1] == 6


@pytest.mark.parametrize("name,units", [("ResNet50", (3, 4, 6, 3)), ("ResNet101", (3, 4, 23, 3)),
                                        ("ResNet152", (3, 8, 36, 3))])
def test_slim_resnet_full_param_counts(name, units):
    # Build at 32x32 (the parameter count does not depend on the patch size).
    model = models.build(name, {"image": (32, 32, 10)}, 19)
    assert model.count_params() == resnet_param_count(units, 10, 19)
    scope = f"resnet_v1_{name[6:]}"
    assert len(model.weights) == len(resnet_tf1_names(scope, units))


# -------------------------------------------------------------------- DenseNet

@pytest.mark.parametrize("name,builder,published", [
    ("DenseNet121", "own", 7_978_856),
    ("DenseNet161", "auto", 28_681_000), ("DenseNet169", "auto", 14_149_480),
    ("DenseNet201", "auto", 20_013_928)])
def test_densenet_counts_match_published(name, builder, published):
    # torchvision's DenseNets (3 bands, 1000 classes) have these parameter counts;
    # Keras counts the same as trainable (BN moving statistics are non-trainable).
    # DenseNet161 is built by models/applications.py; "own" checks that builder on 121.
    model = models.build(name, {"image": (32, 32, 3)}, 1000, builder=builder)
    assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == published


def test_densenet121_keras_applications_ten_bands():
    spec = {"image": (32, 32, 10)}
    model = models.build("DenseNet121", spec, 19)
    assert model.get_layer("conv1_conv").kernel.shape == (7, 7, 10, 64)
    # Published 3-band/1000-class count with the 10-band stem and a 19-class head.
    expected = 7_978_856 - 7 * 7 * 3 * 64 + 7 * 7 * 10 * 64 - (1024 * 1000 + 1000) + (1024 * 19 + 19)
    assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == expected
    assert model(_batch(spec)).shape == (2, 19)


# ----------------------------------------------------- keras.applications, hub

def test_keras_application_resnet_any_bands():
    model = models.build("keras:ResNet50", {"image": (32, 32, 10)}, 17, "single_label")
    assert model.get_layer("conv1_conv").kernel.shape == (7, 7, 10, 64)
    assert model(_batch({"image": (32, 32, 10)})).shape == (2, 17)


HUB_RESNET = dict(input_conv_filters=[64], input_conv_kernel_sizes=[3],
                  stackwise_num_filters=[64, 32], stackwise_num_blocks=[1, 1],
                  stackwise_num_strides=[1, 2], block_type="basic_block")


def test_hub_backbone_from_class_with_stem_and_roundtrip(tmp_path):
    spec = {"image": (32, 32, 10)}
    model = models.build("hub:ResNetBackbone", spec, 19, backbone_kwargs=HUB_RESNET, stem=True)
    assert model.get_layer("stem").kernel.shape == (1, 1, 10, 3)
    y = _roundtrip(model, _batch(spec), tmp_path)
    assert y.shape == (2, 19)
    # Without a forced stem the backbone takes the bands directly.
    plain = models.build("hub:ResNetBackbone", spec, 19, backbone_kwargs=HUB_RESNET)
    assert "stem" not in [layer.name for layer in plain.layers]
    with pytest.raises(TypeError, match="backbone_kwargs"):
        models.build("hub:ResNetBackbone", spec, 19)


# ---------------------------------------------------------------- So2Sat, GHS

def test_sen2lcz_fusion_is_mean_of_head_probabilities(tmp_path):
    spec = models.default_input_spec("Sen2LCZ-Net")
    assert spec == {"image": (32, 32, 10)}
    model = models.build("Sen2LCZ-Net", spec, 17, "single_label")
    heads = [model.get_layer(n).output for n in ("head_32", "head_16", "head_8", "head_4")]
    probe = keras.Model(model.inputs, heads + [model.output])
    x = _batch(spec)
    *head_logits, out = [np.asarray(t, dtype="float64") for t in probe(x)]
    mean_prob = np.mean([tf.nn.softmax(h).numpy() for h in head_logits], axis=0)
    np.testing.assert_allclose(tf.nn.softmax(out).numpy(), mean_prob, rtol=1e-5, atol=1e-6)
    # 4 conv blocks per stage for depth 17, filters 16/32/64/128.
    assert model.get_layer("stage3.conv3").kernel.shape == (3, 3, 128, 128)
    _roundtrip(model, x, tmp_path)


def test_fusion_logits_sigmoid_mode():
    layer = so2sat.FusionLogits("sigmoid")
    a = np.array([[2.0, -1.0, 0.0]], "float32")
    b = np.array([[-3.0, 4.0, 0.0]], "float32")
    out = np.asarray(layer([a, b]))
    expected = (tf.sigmoid(a) + tf.sigmoid(b)).numpy() / 2
    np.testing.assert_allclose(tf.sigmoid(out).numpy(), expected, rtol=1e-6)
    with pytest.raises(ValueError):
        so2sat.FusionLogits("tanh")


def test_so2sat_resnets(tmp_path):
    spec = {"image": (32, 32, 10)}
    model = models.build("So2Sat-ResNet11", spec, 17, "single_label")
    assert len(model.losses) > 0  # the upstream L2 penalty
    _roundtrip(model, _batch(spec), tmp_path)
    for depth in (20, 29):
        deeper = models.build(f"So2Sat-ResNet{depth}", spec, 17, "single_label")
        # 3 convs per unit + stem + 3 projection shortcuts.
        n_conv = sum(isinstance(layer, keras.layers.Conv2D) for layer in deeper.layers)
        assert n_conv == 3 * 3 * (depth - 2) // 9 + 1 + 3
        assert deeper(_batch(spec)).shape == (2, 17)
    with pytest.raises(ValueError, match="9n\\+2"):
        so2sat.build_so2sat_resnet(spec, 17, depth=12)


def test_ghs_s2net_structure_and_final_activation(tmp_path):
    spec = models.default_input_spec("GHS-S2Net")
    model = models.build("GHS-S2Net", spec, 2)
    weighted = [layer.name for layer in model.layers if layer.weights]
    assert weighted == ["conv1", "conv2", "bn1", "conv3", "conv4", "bn2", "dense1", "bn3", "dense2"]
    assert model.get_layer("conv4").output.shape[1:] == (1, 1, 512)
    # Keras-2 counts: 2x2 convs 4->128->128->512->512, dense 512->128->2, 3 BN.
    assert model.count_params() == (
        (4 * 4 * 128 + 128) + (4 * 128 * 128 + 128) + 4 * 128
        + (4 * 128 * 512 + 512) + (4 * 512 * 512 + 512) + 4 * 512
        + (512 * 128 + 128) + 4 * 128 + (128 * 2 + 2))
    x = _batch(spec)
    logits = _roundtrip(model, x, tmp_path)
    probs = models.build("GHS-S2Net", spec, 2, final_activation="sigmoid")
    probs.set_weights(model.get_weights())
    np.testing.assert_allclose(np.asarray(probs(x)), tf.sigmoid(logits).numpy(), rtol=1e-6)


def test_mixed_precision_outputs_float32_logits():
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = models.build("Sen2LCZ-Net", {"image": (32, 32, 10)}, 17, "single_label")
        assert model.get_layer("stage0.conv0").compute_dtype == "float16"
        y = model(_batch({"image": (32, 32, 10)}))
    finally:
        keras.config.set_dtype_policy(policy)
    assert y.dtype == "float32" and y.shape == (2, 17)
