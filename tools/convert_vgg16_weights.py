#!/usr/bin/env python
"""Convert torchvision's ImageNet VGG16 weights into a Detectron2 checkpoint for configs/Base-VGG16.yaml.

conv1_1..conv5_3 come from ``features``; the box head's fc1/fc2 from ``classifier.0``/``classifier.3``
(fc6/fc7); ``classifier.6``, the ImageNet logits, is dropped. The output is a ``.pkl`` that
DetectionCheckpointer matches by name suffix, as Detectron2's convert-torchvision-to-d2.py does.
"""

import argparse

from imagescore_det.utils.detectron2_import import require_detectron2_or_help

require_detectron2_or_help(__doc__)

from imagescore_det.modeling.weights import convert_vgg16_file  # noqa: E402

USAGE_NOTE = """
The weights expect torchvision's input: set in the config (Base-VGG16.yaml already does)
  MODEL.WEIGHTS <output.pkl>
  INPUT.FORMAT "RGB"
  MODEL.PIXEL_MEAN [123.675, 116.28, 103.53]
  MODEL.PIXEL_STD [58.395, 57.12, 57.375]
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, epilog=USAGE_NOTE, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "input", help="torchvision VGG16 state dict, e.g. vgg16-397923af.pth (not VGG16-BN)"
    )
    parser.add_argument(
        "output", help="Detectron2 checkpoint to write, ending in .pkl (written atomically)"
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    dropped = convert_vgg16_file(args.input, args.output)
    print("Wrote %s; left out: %s" % (args.output, ", ".join(dropped) or "nothing"))


if __name__ == "__main__":
    main()
