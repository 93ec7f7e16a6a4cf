"""Deployment across processes and devices: every stage its own process (`hybridc serve`),
tensors streamed between them over ZeroMQ in a compact, checked wire format, and a client
(`hybridc pipeline`, `hybridc.pipeline`) that feeds samples pipelined and collects outputs
in order. Comes after runtime/ in the pipeline: a stage process runs its stage with
runtime.stages.run_stage."""
