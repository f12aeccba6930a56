"""Evaluation of audio-visual models on AV-Digits (speaker- and image-disjoint)."""
