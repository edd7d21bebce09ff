"""The global tags of an m3cvc stream (docs/bitstream.md §8), named once: the writers add ``ENCODER``, the profile id
and the models; the encoder passes the profile's name and the backends its engines ran on."""
from __future__ import annotations

ENCODER = "ENCODER"  # "m3cvcav <version>", always this m3cvcav's
PROFILE_ID = "M3CV_PROFILE_ID"  # the sequence header's profile_id, as text
MODELS = "M3CV_MODELS"  # the header's model ids, comma-separated
PROFILE = "M3CV_PROFILE"  # the profile's name (the decoder's first choice of profile)
BACKEND = "M3CV_BACKEND"  # the backends the engines ran on (informative)
