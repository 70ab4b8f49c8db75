"""imagescore_det: image-score selection for semi-supervised detection (a Detectron2 plugin).

Detectron2 is not listed in install_requires: it is published on no package registry.
Install it with tools/setup_env.sh (a wheel from $DETECTRON2_WHEEL, or its official source at a pinned commit);
the scoring core and the classification mode work without it.
"""

from setuptools import find_packages, setup

setup(
    name="imagescore_det",
    version="0.1.0",
    description="Image-score selection of unlabelled images for semi-supervised object detection (Detectron2 plugin)",
    packages=find_packages(include=["imagescore_det", "imagescore_det.*"]),
    python_requires=">=3.9",
    install_requires=[
        "torch==2.14.1",
        "torchvision==0.29.1",
        "numpy",
        "fvcore",
        "pycocotools",
        "tqdm",
        "matplotlib",
        "pyyaml",
        "yacs",
        "pillow",
        "scikit-learn",
        "scipy",
        "scikit-image",  # the synthetic set's "photos" distractors crop its bundled photos
        "opencv-python-headless",  # Detectron2's Visualizer (the selection gallery) imports cv2
        "tifffile",  # the nuclei sets' TIFF stacks (tools/prepare_nuclei.py)
    ],
    extras_require={"test": ["pytest", "ruff==0.17.6"]},
)
