"""Writes the tensor name/shape manifests of the architectures crosskd loads, as timm and
torchvision name them, for the name-map tests of crates/crosskd-models/src/naming.

Run from the repository root (CPU only; no weights are downloaded, `pretrained=False` and
`weights=None` build randomly initialised models whose state dicts have the published names):

    python -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch torchvision timm
    /tmp/torchvenv/bin/python models/manifests/generate.py

Each file `LIBRARY-MODEL.json` holds the library versions and `tensors`: `[name, shape]` in
state-dict order.
"""

import json
import pathlib

import timm
import torch
import torchvision

OUT = pathlib.Path(__file__).resolve().parent

TIMM = ["mobilenetv2_100", "resnet18", "resnet34", "resnet50", "vgg16"]
TORCHVISION = ["mobilenet_v2", "resnet18", "resnet34", "resnet50", "vgg16"]


def write(library, name, state_dict):
    manifest = {
        "library": library,
        "model": name,
        "versions": {
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "timm": timm.__version__,
        },
        "tensors": [[k, list(v.shape)] for k, v in state_dict.items()],
    }
    path = OUT / f"{library}-{name}.json"
    path.write_text(json.dumps(manifest, separators=(",", ":")) + "\n")
    print(path.name, len(manifest["tensors"]), "tensors")


for name in TIMM:
    write("timm", name, timm.create_model(name, pretrained=False).state_dict())
for name in TORCHVISION:
    write("torchvision", name, getattr(torchvision.models, name)(weights=None).state_dict())
