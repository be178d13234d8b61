"""Shared building blocks: every family is assembled from these modules."""
