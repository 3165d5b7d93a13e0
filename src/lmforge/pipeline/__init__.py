"""The pipeline: stage graph, runner, content-hash cache, artifact store, events."""
