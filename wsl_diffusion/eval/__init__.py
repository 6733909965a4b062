"""Measurement of trained runs: posterior metrics, sample quality (FD, density/coverage, CAS) with a feature network, condensation."""
