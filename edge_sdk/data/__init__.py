"""Data sets: AV-Digits (real spoken and handwritten digits), a video folder, a generated fallback."""
