"""Live demo apps, each a thin composition of runtime parts: ``edge-sdk demo localize|sync|retrieve|speaker`` (:mod:`.demo`)."""
