"""Training: the localizer, the ROI detector, the I3D classifier, checkpoints and export, and the
bundle recipe that builds the bundled model from the synthetic world.

May import the inference modules and `ratscore.synth`; the inference modules never import it.
"""
