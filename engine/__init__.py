"""vison engine: everything that reads, computes or writes calibration data.

Layers, lower never imports higher: formats -> campaign -> tasks -> pipeline -> cli.
The engine never imports Textual.
"""

__version__ = "0.1.0"
