"""The end-to-end migration: stages, their typed evidence, the torch-free bundle check and footprints."""
