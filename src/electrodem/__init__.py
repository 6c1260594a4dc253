"""electrodem: discrete-element simulation of battery electrode manufacturing.

Layers (imports only go downwards): ``cli`` -> ``process`` -> ``engine``; ``analysis`` -> ``io``.
The engine knows nothing about batteries; the analysis never imports the engine.
"""

__version__ = "0.1.0"
