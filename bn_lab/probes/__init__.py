"""What happens inside a network, measured without changing it: the diagnostics, the loss
landscape along the gradient, internal covariate shift.
"""
