"""Data for imagescore_det: VOC-style dataset registration, datasets declared in the config
(:mod:`.registry`: COCO, VOC and image-folder sets), image folders and the scoring mapper that
skips unreadable files (:mod:`.folder`), VOC-to-COCO conversion, the synthetic VOC-format generator,
the real nuclei sets (:mod:`.nuclei`, read from PyPI wheels) and pseudo-label I/O.

This file imports nothing on purpose: :mod:`imagescore_det.data.synthetic` and :mod:`.nuclei` need no
Detectron2, so data can be made where it is not installed; the modules that register
datasets import Detectron2 themselves.
"""
