"""3D morphable models: the in-memory linear model (``model``), 3DDFA_V2's parameterisation (``tddfa``) and
the fitting code. Pure numpy (fp64 where it matters); the loaders that read model files live in models/."""
from .tddfa import frame_camera, reconstruct

__all__ = ["frame_camera", "reconstruct"]
