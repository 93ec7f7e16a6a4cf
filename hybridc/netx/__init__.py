"""The one owner of Lava's netx HDF5 format, at the base of the pipeline.

- `fields`: reading a file's fields (scalars, pairs, text, neuron groups, layer groups).
- `layout`: netx's (W, H, C) layout against PyTorch's (C, H, W), and the conversions.
- `processes`: what netx hands Lava's processes for the fields; importing netx.
- `writer`: writing a netx file fast (the Loihi target's writers record into it).

The Loihi target writes with it; the Lava runners, the emulator and the profiler read
with it. It imports nothing else of hybridc but `errors`, so every stage may use it.
"""
