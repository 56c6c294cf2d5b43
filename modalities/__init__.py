"""Every modality package; importing this registers their encoders, datasets and views."""
from modalities import audio  # noqa: F401
from modalities import sequence  # noqa: F401
from modalities import text  # noqa: F401
from modalities import medical  # noqa: F401
