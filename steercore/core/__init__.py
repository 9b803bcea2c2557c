"""The math of steering, independent of any model library: errors, matrix square roots, streaming activation
statistics, the steering maps and their registry, plans (a map per step and site), statistics files.

May import: torch, numpy, safetensors and the standard library. Never diffusers, transformers, matplotlib or
another steercore layer: everything else builds on this.
"""

__version__ = "0.1.0"  # written into every statistics file; steercore.__version__ re-exports it
