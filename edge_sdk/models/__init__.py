"""Model code (torch): the front end, the towers, AVNet, and the shipped checkpoints."""
