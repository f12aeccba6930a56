"""The streaming runtime (sources, aligner, backends, tasks, sinks). Not yet implemented: see the README's status."""
