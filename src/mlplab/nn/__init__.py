"""Networks as lists of layers: layers, activations, losses, initialisation, the network,
its layer specs, model files and export (arrays only: no data sets, no files of them)."""
