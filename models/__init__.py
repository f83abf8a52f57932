"""Model registry: ``models.build(name, input_spec, num_classes, task, weights, **kwargs)``.

Every model is a Keras 3 functional model whose inputs are named after the keys of
``input_spec`` ({name: (H, W, C)}, as ``prep.reader.input_spec`` gives it) and whose
output is a float32 ``logits`` layer: no sigmoid/softmax. Configs serialise and
``.keras`` files load again (``models.load_model`` makes sure every custom layer is
registered first).

Names (``models.names()``):

=====================  ===================================================  =========================
name                   what                                                 module
=====================  ===================================================  =========================
K-BranchCNN            BigEarthNet 3-branch CNN, inputs "10m" "20m" "60m"    models/kbranch.py
VGG16, VGG19           TF-slim vgg_16/19 (SAME fc convs, global pool)       models/slim.py
ResNet50/101/152       TF-slim resnet_v1_50/101/152 (stride in last unit)   models/slim.py
DenseNet121/161/       DenseNet-BC (keras.applications; 161 built here)     models/applications.py
169/201
Sen2LCZ-Net            So2Sat multi-level fusion CNN (sen2LCZ_drop)         models/so2sat.py
So2Sat-ResNet11/20/29  So2Sat CIFAR-style bottleneck ResNet v2              models/so2sat.py
GHS-S2Net              per-pixel built-up classifier on 5x5x4 windows       models/ghs.py
keras:<Application>    any keras.applications model, e.g. keras:ResNet50    models/applications.py
hub:<Backbone|preset>  any keras-hub image backbone + new stem + head       models/hub.py
=====================  ===================================================  =========================

``weights`` is None (random init), a path to a ``.weights.h5`` / ``.keras`` file of the
same architecture, or a registered pretrained name, resolved lazily through
``pretrained.resolve(name)`` (which must return the path of such a file).
"""

from prep.quiet import import_tensorflow

import_tensorflow()  # before Keras imports it: without TensorFlow's start-up banner

from models import preprocess  # noqa: E402,F401  registers the Preprocess layer for .keras files
from models.registry import (  # noqa: E402
    KERAS_LISTED,
    LOGITS_LAYER,
    PREFIXES,
    TASKS,
    ModelInfo,
    build,
    default_input_spec,
    get,
    load_model,
    load_weights,
    names,
    normalize_input_spec,
    options,
    register,
)

__all__ = ["build", "names", "get", "default_input_spec", "load_weights", "load_model",
           "register", "ModelInfo", "TASKS", "LOGITS_LAYER", "normalize_input_spec", "options", "KERAS_LISTED", "PREFIXES"]
