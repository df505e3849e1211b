"""The one home of orchestration over frames and shots (DESIGN.md "Rooms"): what runs models and kernels over
a shot. Nodes, the command line, the demo and bench call these; nothing else loops over frames with models.

- :mod:`.synthesis`: face meshes in frames, UV textures from a photo or a shot, face replace, face paint, and
  pasting a processed crop sequence back (unstabilise).
"""
