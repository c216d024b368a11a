"""Writing deployables: the bundle (``writer``), its browser page (``web``) and Triton repositories (``triton``).

The reading side, torch-free, is ``torch2ort.runtime``.
"""
