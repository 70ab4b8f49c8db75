"""Defaults with a reason, in one place (docs/method.md §1 and §2).

Every default here is also the default of the matching ``IMAGESCORE.*`` config key
and of the matching keyword argument in :mod:`imagescore_det.scoring`.
"""

#: Threshold t[l] = THRESHOLD_RATIO * stat(mean[l]); 0.5 is the paper's "half the maximum".
THRESHOLD_RATIO = 0.5
#: Statistic of the reference mean map that the threshold scales: the paper's L-infinity choice.
THRESHOLD_STAT = "max"
THRESHOLD_STATS = ("max", "l1", "l2")

#: "overlap" counts the reference's commonly active units that the image also turns on
#: (range (-inf, 0]); "count" counts all of the image's active units (it can exceed 0).
FORMULA = "overlap"
FORMULAS = ("overlap", "count")

#: Detection activations are cropped to the image and pooled to C x GRID x GRID; 0 keeps native size.
GRID = 8

#: Share of the unlabelled set kept for pseudo-labelling (paper §3.2).
SELECT_FRACTION = 0.3

#: Version of the file written by ``Reference.save``; bumped when its layout changes.
REFERENCE_FORMAT_VERSION = 1
