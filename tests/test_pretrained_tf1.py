"""TF1 checkpoint -> Keras conversion, checked numerically against TF1 graphs written here.

The graphs are built with ``tf.compat.v1`` variables and ops under the exact upstream variable
scopes (``tf.layers`` names for K-BranchCNN, TF-slim names for VGG16 and ResNet-50 v1; no tf_slim
package), filled with random weights and random batch-norm statistics, run in inference mode on
fixed inputs and saved with ``tf.compat.v1.train.Saver`` together with Adam slots, ``beta1_power``,
``beta2_power`` and ``global_step``, as the published checkpoints hold them. The converted Keras
model must reproduce the graph's logits within 1e-5.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from pretrained import convert_tf1

v1 = tf.compat.v1
TOL = 1e-5


class Graph:
    """Collects variables (name -> numpy value) while a TF1 graph is written."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.values: dict = {}
        self.trainable: list = []

    def var(self, name, value, trainable=True):
        value = np.asarray(value, np.float32)
        v = v1.get_variable(name, shape=value.shape, dtype=tf.float32,
                            initializer=v1.zeros_initializer(), trainable=trainable)
        self.values[v] = value
        if trainable:
            self.trainable.append(v)
        return v

    def kernel(self, name, shape):
        fan_in = int(np.prod(shape[:-1]))
        return self.var(name, self.rng.standard_normal(shape, dtype=np.float32) * np.sqrt(2.0 / fan_in))

    def small(self, name, n, scale=0.1):
        return self.var(name, self.rng.normal(0.0, scale, n))

    def batch_norm(self, x, eps, gamma_scale=1.0):
        """TF1 inference batch norm (fused for NHWC maps, like tf.layers / slim)."""
        n = x.shape[-1]
        gamma = self.var("gamma", self.rng.uniform(0.5, 1.5, n) * gamma_scale)
        beta = self.small("beta", n)
        mean = self.var("moving_mean", self.rng.normal(0.0, 0.2, n), trainable=False)
        var = self.var("moving_variance", self.rng.uniform(0.5, 1.5, n), trainable=False)
        if len(x.shape) == 4:
            y, _, _ = v1.nn.fused_batch_norm(x, gamma, beta, mean, var, epsilon=eps, is_training=False)
            return y
        return v1.nn.batch_normalization(x, mean, var, beta, gamma, eps)


def run_and_save(build, feeds: dict, prefix: str, seed=0, adam_on=3):
    """Writes the graph ``build(graph, placeholders)``, runs it on ``feeds``, saves a checkpoint
    with Adam slots for the first ``adam_on`` trainable variables; returns the logits."""
    with tf.Graph().as_default():
        g = Graph(seed)
        ph = {k: v1.placeholder(tf.float32, (None,) + v.shape[1:], name=k) for k, v in feeds.items()}
        logits = build(g, ph)
        step = v1.train.get_or_create_global_step()
        loss = tf.reduce_sum(logits)
        train = v1.train.AdamOptimizer(1e-3).minimize(loss, global_step=step, var_list=g.trainable[:adam_on])
        del train
        saver = v1.train.Saver()
        with v1.Session() as sess:
            sess.run(v1.variables_initializer([v for v in v1.global_variables() if v not in g.values]))
            sess.run([v.initializer for v in g.values], {v.initial_value: x for v, x in g.values.items()})
            out = sess.run(logits, {ph[k]: v for k, v in feeds.items()})
            saver.save(sess, prefix, global_step=step)
    return out


# --------------------------------------------------------------------------------- K-BranchCNN

def tf1_kbranch(g: Graph, ph, num_classes=19):
    def conv_block(x, filters, k, scope):
        with v1.variable_scope(scope):
            with v1.variable_scope("conv_layer"):
                w = g.kernel("kernel", (k, k, x.shape[-1], filters))
                b = g.small("bias", filters)
            y = tf.nn.bias_add(tf.nn.conv2d(x, w, 1, "SAME"), b)
            with v1.variable_scope("batch_norm"):
                y = g.batch_norm(y, 1e-3)
            return tf.nn.relu(y)

    def fc_block(x, units, scope):
        with v1.variable_scope(scope):
            with v1.variable_scope("fc_layer"):
                w = g.kernel("kernel", (x.shape[-1], units))
                b = g.small("bias", units)
            y = tf.matmul(x, w) + b
            with v1.variable_scope("batch_norm"):
                y = g.batch_norm(y, 1e-3)
            return tf.nn.relu(y)

    def pool(x):
        return tf.nn.max_pool2d(x, 2, 2, "VALID")

    def flat(x):
        return tf.reshape(x, [-1, int(np.prod(x.shape[1:]))])

    with v1.variable_scope("CNN_10m_branch"):
        x = pool(conv_block(ph["10m"], 32, 5, "conv_block_0"))
        x = pool(conv_block(x, 32, 5, "conv_block_1"))
        x = conv_block(x, 64, 3, "conv_block_2")
        f10 = fc_block(flat(x), 128, "fc_block_0")
    with v1.variable_scope("CNN_20m_branch"):
        x = pool(conv_block(ph["20m"], 32, 3, "conv_block_0"))
        x = conv_block(x, 32, 3, "conv_block_1")
        x = conv_block(x, 64, 3, "conv_block_2")
        f20 = fc_block(flat(x), 128, "fc_block_0")
    with v1.variable_scope("CNN_60m_branch"):
        x = conv_block(ph["60m"], 32, 2, "conv_block_0")
        x = conv_block(x, 32, 2, "conv_block_1")
        x = conv_block(x, 32, 2, "conv_block_2")
        f60 = fc_block(flat(x), 128, "fc_block_0")
    with v1.variable_scope("feature_fusion"):
        x = fc_block(tf.concat([f10, f20, f60], -1), 128, "fc_block_0")
    with v1.variable_scope("classification"):
        with v1.variable_scope("fc_layer"):
            w = g.kernel("kernel", (128, num_classes))
            b = g.small("bias", num_classes)
        return tf.matmul(x, w) + b


# ------------------------------------------------------------------------------- slim VGG16/19

def tf1_vgg(g: Graph, ph, num_classes=19, fc_units=4096, variant="vgg_16"):
    def conv(x, filters, k, scope, relu=True):
        with v1.variable_scope(scope):
            w = g.kernel("weights", (k, k, x.shape[-1], filters))
            b = g.small("biases", filters)
        y = tf.nn.bias_add(tf.nn.conv2d(x, w, 1, "SAME"), b)
        return tf.nn.relu(y) if relu else y

    repeats = {"vgg_16": (2, 2, 3, 3, 3), "vgg_19": (2, 2, 4, 4, 4)}[variant]
    with v1.variable_scope(variant):
        x = ph["image"]
        for i, (reps, filters) in enumerate(zip(repeats, (64, 128, 256, 512, 512)), start=1):
            with v1.variable_scope(f"conv{i}"):
                for j in range(1, reps + 1):
                    x = conv(x, filters, 3, f"conv{i}_{j}")
            x = tf.nn.max_pool2d(x, 2, 2, "VALID")
        x = conv(x, fc_units, 7, "fc6")  # fc_conv_padding="SAME"
        x = conv(x, fc_units, 1, "fc7")
        x = tf.reduce_mean(x, [1, 2], keepdims=True)  # global_pool=True
        x = conv(x, num_classes, 1, "fc8", relu=False)
        return tf.squeeze(x, [1, 2])


# ------------------------------------------------------------------------------ slim ResNet v1

def tf1_resnet_v1(g: Graph, ph, num_classes=19, units=(3, 4, 6, 3), scope="resnet_v1_50"):
    def conv_bn(x, depth, k, stride, name, relu=True, same=True, gamma_scale=1.0):
        with v1.variable_scope(name):
            w = g.kernel("weights", (k, k, x.shape[-1], depth))
            if stride > 1 and same:  # slim conv2d_same: explicit symmetric padding, then VALID
                beg = (k - 1) // 2
                x = tf.pad(x, [[0, 0], [beg, k - 1 - beg], [beg, k - 1 - beg], [0, 0]])
                y = tf.nn.conv2d(x, w, stride, "VALID")
            else:
                y = tf.nn.conv2d(x, w, stride, "SAME")
            with v1.variable_scope("BatchNorm"):
                y = g.batch_norm(y, 1e-5, gamma_scale)
        return tf.nn.relu(y) if relu else y

    def bottleneck(x, depth, depth_bottleneck, stride):
        with v1.variable_scope("bottleneck_v1"):
            if depth == x.shape[-1]:
                shortcut = x if stride == 1 else tf.nn.max_pool2d(x, 1, stride, "SAME")
            else:
                shortcut = conv_bn(x, depth, 1, stride, "shortcut", relu=False, same=False, gamma_scale=0.5)
            r = conv_bn(x, depth_bottleneck, 1, 1, "conv1")
            r = conv_bn(r, depth_bottleneck, 3, stride, "conv2")
            # small residual gains keep 16 units of random weights from blowing up the scale
            r = conv_bn(r, depth, 1, 1, "conv3", relu=False, gamma_scale=0.2)
            return tf.nn.relu(shortcut + r)

    with v1.variable_scope(scope):
        x = conv_bn(ph["image"], 64, 7, 2, "conv1")
        x = tf.nn.max_pool2d(x, 3, 2, "SAME")
        for b, (n, base, stride) in enumerate(zip(units, (64, 128, 256, 512), (2, 2, 2, 1)), start=1):
            with v1.variable_scope(f"block{b}"):
                for u in range(1, n + 1):
                    with v1.variable_scope(f"unit_{u}"):
                        x = bottleneck(x, base * 4, base, stride if u == n else 1)
        x = tf.reduce_mean(x, [1, 2], keepdims=True)
        with v1.variable_scope("logits"):
            w = g.kernel("weights", (1, 1, x.shape[-1], num_classes))
            bias = g.small("biases", num_classes)
        return tf.squeeze(tf.nn.bias_add(tf.nn.conv2d(x, w, 1, "SAME"), bias), [1, 2])


# ------------------------------------------------------------------------------------------ tests

import zipfile  # noqa: E402

import models  # noqa: E402
import pretrained  # noqa: E402

KBRANCH_SPEC = {"10m": (120, 120, 4), "20m": (60, 60, 6), "60m": (20, 20, 2)}
IMAGE_SPEC = {"image": (120, 120, 10)}


def _inputs(spec, batch=2, seed=1):
    rng = np.random.default_rng(seed)
    return {k: rng.normal(size=(batch,) + tuple(s)).astype(np.float32) for k, s in spec.items()}


def _close(keras_out, tf1_out):
    np.testing.assert_allclose(np.asarray(keras_out), tf1_out, rtol=TOL, atol=TOL)


def _zip_folder(folder, archive):
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        for p in sorted(folder.rglob("*")):
            zf.write(p, "K-BranchCNN/" + str(p.relative_to(folder)))
    return archive


@pytest.fixture(scope="module")
def kbranch(tmp_path_factory):
    """A K-BranchCNN TF1 checkpoint, zipped like the published one, and the graph's logits."""
    root = tmp_path_factory.mktemp("kbranch")
    feeds = _inputs(KBRANCH_SPEC)
    logits = run_and_save(tf1_kbranch, feeds, str(root / "ckpt" / "K-BranchCNN.ckpt"))
    archive = _zip_folder(root / "ckpt", root / "K-BranchCNN.zip")
    return {"root": root, "ckpt": root / "ckpt", "zip": archive, "feeds": feeds, "logits": logits}


def test_checkpoint_holds_upstream_names_and_optimizer_slots(kbranch):
    names = set(tf.train.load_checkpoint(convert_tf1.find_checkpoint(kbranch["ckpt"])).get_variable_to_shape_map())
    for n in ("CNN_10m_branch/conv_block_0/conv_layer/kernel", "CNN_60m_branch/fc_block_0/batch_norm/moving_variance",
              "feature_fusion/fc_block_0/fc_layer/bias", "classification/fc_layer/kernel",
              "CNN_10m_branch/conv_block_0/conv_layer/kernel/Adam_1", "beta1_power", "beta2_power", "global_step"):
        assert n in names
    model_vars = convert_tf1.read_checkpoint(kbranch["ckpt"])
    assert not [n for n in model_vars if "Adam" in n or "power" in n or "step" in n]
    assert len(model_vars) == 80  # 13 conv/fc blocks x (kernel, bias, 4 batch-norm) + classification (2)
    assert convert_tf1.detect_architecture(model_vars) == "K-BranchCNN"


@pytest.fixture(scope="module")
def converted(kbranch):
    """The zipped checkpoint fetched from a local file and converted into a fresh cache."""
    cache = kbranch["root"] / "cache"
    report = pretrained.convert("K-BranchCNN", cache=cache, url=str(kbranch["zip"]), progress=False)
    return cache, report


def test_kbranch_converts_through_the_registry_and_matches_tf1(kbranch, converted, monkeypatch):
    cache, report = converted
    assert report["assigned"] == 80 and report["parameters"] == 16_524_979
    paths = pretrained.converted_paths("K-BranchCNN", cache)
    assert all(p.is_file() for p in paths.values())
    meta = json.loads(paths["meta"].read_text())
    assert meta["entry"]["architecture"] == "K-BranchCNN" and len(meta["source_sha256"]) == 64

    # models.build(..., weights=NAME) goes through pretrained.resolve and the cache
    monkeypatch.setenv("EORECORDS_CACHE", str(cache))
    model = models.build("K-BranchCNN", KBRANCH_SPEC, 19, "multi_label", weights="bigearthnet19-kbranchcnn")
    _close(model(kbranch["feeds"], training=False), kbranch["logits"])
    # the saved full model gives the same logits
    full = models.load_model(paths["keras"])
    _close(full(kbranch["feeds"], training=False), kbranch["logits"])
    assert pretrained.resolve("K-BranchCNN", download=False) == paths["weights"]


def test_convert_accepts_the_zip_as_source(kbranch, tmp_path):
    report = pretrained.convert("K-BranchCNN", cache=tmp_path, source=kbranch["zip"], progress=False)
    assert report["assigned"] == 80
    assert (tmp_path / "extracted" / "bigearthnet19-kbranchcnn" / "K-BranchCNN").is_dir()


def test_load_into_for_fine_tuning_skips_only_the_new_head(kbranch, converted):
    cache, _ = converted
    model = models.build("K-BranchCNN", KBRANCH_SPEC, 43, "multi_label")
    with pytest.raises(pretrained.ConversionError, match="classification.fc_layer"):
        pretrained.load_into(model, "bigearthnet19-kbranchcnn", cache=cache)
    report = pretrained.load_into(model, "bigearthnet19-kbranchcnn", cache=cache, skip_mismatch=True)
    assert [s.split(":")[0] for s in report["skipped"]] == ["classification.fc_layer"]
    ref = models.build("K-BranchCNN", KBRANCH_SPEC, 19, "multi_label")
    convert_tf1.convert(kbranch["ckpt"], ref)
    for name in ("CNN_10m_branch.conv_block_0.conv_layer", "feature_fusion.fc_block_0.batch_norm"):
        for a, b in zip(model.get_layer(name).get_weights(), ref.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    # straight from the TF1 checkpoint folder, and from a .keras file, the same way
    report = pretrained.load_into(model, kbranch["ckpt"], skip_mismatch=True)
    assert any("classification/fc_layer/kernel" in s for s in report["skipped"])
    again = models.build("K-BranchCNN", KBRANCH_SPEC, 19, "multi_label")
    pretrained.load_into(again, pretrained.converted_paths("K-BranchCNN", cache)["keras"])
    _close(again(kbranch["feeds"], training=False), kbranch["logits"])


def test_conversion_fails_loudly_on_missing_unmapped_and_misshapen_variables(kbranch):
    variables = convert_tf1.read_checkpoint(kbranch["ckpt"])
    model = models.build("K-BranchCNN", KBRANCH_SPEC, 19, "multi_label")
    missing = dict(variables)
    del missing["CNN_20m_branch/conv_block_1/batch_norm/moving_mean"]
    with pytest.raises(convert_tf1.ConversionError,
                       match="missing in checkpoint: CNN_20m_branch/conv_block_1/batch_norm/moving_mean"):
        convert_tf1.assign(model, missing, "K-BranchCNN")
    extra = dict(variables, **{"CNN_10m_branch/conv_block_3/conv_layer/kernel": np.zeros((3, 3, 64, 64))})
    with pytest.raises(convert_tf1.ConversionError, match="unmapped in checkpoint: CNN_10m_branch/conv_block_3"):
        convert_tf1.assign(model, extra, "K-BranchCNN")
    bad = dict(variables, **{"CNN_60m_branch/conv_block_0/conv_layer/kernel": np.zeros((3, 3, 2, 32))})
    with pytest.raises(convert_tf1.ConversionError, match=r"shape mismatch: CNN_60m_branch/conv_block_0/conv_layer"
                                                          r"/kernel is \(3, 3, 2, 32\)"):
        convert_tf1.assign(model, bad, "K-BranchCNN")
    wide = models.build("K-BranchCNN", KBRANCH_SPEC, 43, "multi_label")
    with pytest.raises(convert_tf1.ConversionError, match="classification/fc_layer/kernel is"):
        convert_tf1.convert(kbranch["ckpt"], wide)
    # a 1x1-conv kernel stored as a dense matrix (or the reverse) is reshaped, nothing else is
    assert convert_tf1._fit(np.ones((8, 3)), (1, 1, 8, 3)).shape == (1, 1, 8, 3)
    assert convert_tf1._fit(np.ones((1, 1, 8, 3)), (8, 3)).shape == (8, 3)
    assert convert_tf1._fit(np.ones((8, 3)), (1, 1, 3, 8)) is None
    assert convert_tf1._fit(np.ones((2, 2, 8, 3)), (4, 8, 3)) is None
    with pytest.raises(convert_tf1.ConversionError, match="match no known architecture"):
        convert_tf1.detect_architecture(["vgg_16/conv1/conv1_1/weights", "CNN_10m_branch/x/kernel"])


def test_vgg16_slim_checkpoint_matches_tf1(tmp_path):
    # fc6/fc7 narrowed from 4096 to 256 channels to keep the test small; every name and shape
    # rule is the same as for the published model
    feeds = _inputs(IMAGE_SPEC)
    logits = run_and_save(lambda g, ph: tf1_vgg(g, ph, fc_units=256), feeds, str(tmp_path / "vgg_16.ckpt"))
    model = models.build("VGG16", IMAGE_SPEC, 19, "multi_label", fc_units=256)
    report = pretrained.convert_source(tmp_path, model, architecture="VGG16")
    assert report["assigned"] == 32 and report["architecture"] == "VGG16"
    _close(model(feeds, training=False), logits)
    vgg19 = models.build("VGG19", IMAGE_SPEC, 19, "multi_label", fc_units=256)
    with pytest.raises(convert_tf1.ConversionError, match="missing in checkpoint: vgg_19/conv1/conv1_1/weights"):
        convert_tf1.convert(tmp_path, vgg19, "VGG19")


def test_resnet50_slim_checkpoint_matches_tf1(tmp_path):
    feeds = _inputs(IMAGE_SPEC)
    logits = run_and_save(tf1_resnet_v1, feeds, str(tmp_path / "resnet_v1_50.ckpt"))
    model = models.build("ResNet50", IMAGE_SPEC, 19, "multi_label")
    report = convert_tf1.convert(tmp_path, model)
    assert report["architecture"] == "ResNet50" and report["parameters"] == 23_622_035
    _close(model(feeds, training=False), logits)


# ------------------------------------------------------------------------------------------ README

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_blocks(section: str) -> list[tuple[str, str]]:
    """(language, code) of every fenced block in the README section headed ``## <section>``."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    body = text[start:end if end >= 0 else len(text)]
    return re.findall(r"^```(\w+)\n(.*?)^```$", body, re.M | re.S)


def test_readme_pretrained_snippet_runs_as_written(kbranch, tmp_path, monkeypatch):
    """The README's offline recipe: `convert --source` on a local zip, then its Python block."""
    blocks = readme_blocks("Pretrained checkpoints")
    (convert_line,) = [line.split("#")[0] for lang, code in blocks if lang == "bash"
                       for line in code.splitlines() if "--source" in line]
    (snippet,) = [code for lang, code in blocks if lang == "python"]
    args = shlex.split(convert_line)
    assert args[:4] == ["python", "-m", "pretrained", "convert"]
    source = args[args.index("--source") + 1]
    shutil.copyfile(kbranch["zip"], tmp_path / source)  # the file the recipe says was obtained elsewhere
    cache = tmp_path / "cache"
    env = {**os.environ, "EORECORDS_CACHE": str(cache)}
    done = subprocess.run([sys.executable, *args[1:], "--noprogress"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "bigearthnet19-kbranchcnn: 80 weights, 16,524,979 parameters" in done.stdout

    # the Python block as written, with the cache above and no way to download anything
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EORECORDS_CACHE", str(cache))

    def no_download(*args, **kwargs):
        raise AssertionError("the README snippet tried to download")

    monkeypatch.setattr(pretrained.fetch, "download", no_download)
    namespace: dict = {}
    exec(compile(snippet, str(README), "exec"), namespace)
    _close(namespace["model"](kbranch["feeds"], training=False), kbranch["logits"])
