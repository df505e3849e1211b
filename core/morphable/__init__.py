"""3D morphable models: the in-memory linear model (``model``), 3DDFA_V2's parameterisation (``tddfa``) and
the fitting code. Pure numpy (fp64 where it matters); the loaders that read model files live in models/."""
# NB: the function ``fit`` is not re-exported here: it would shadow the submodule ``core.morphable.fit``
from .fit import FitOptions, FitResult, ibug68_from_fit, vertices_frame
from .model import MorphableModel
from .shot import ShotFit, fit_shot
from .tddfa import frame_camera, reconstruct

__all__ = ["FitOptions", "FitResult", "MorphableModel", "ShotFit", "fit_shot", "frame_camera",
           "ibug68_from_fit", "reconstruct", "vertices_frame"]
