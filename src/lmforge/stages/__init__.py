"""One module per stage; each exposes `run(ctx, section, inputs) -> StageResult`."""
