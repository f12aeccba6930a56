"""Live demo apps built from runtime parts. Not yet implemented: see the README's status."""
