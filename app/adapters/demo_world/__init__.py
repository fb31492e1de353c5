"""The demo world's technology for serving: an OpenCV renderer and an OpenCV checker (the reader of what
an image shows), and the trained model shipped in ``model/``. Its trainer lives in ``app.lab.demo_world``."""

from pathlib import Path


def model_path() -> str:
    """The folder of the demo-world model shipped with the package (``atelier models train-demo`` rebuilds it)."""
    return str(Path(__file__).parent / "model")
