"""Kernel templates shared by op families (one per shape of computation)."""
