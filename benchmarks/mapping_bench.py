"""Where the spikes cross chips: examples/multi_chip/model.py (three convs on 2x256x256,
2.88M neurons) mapped on Kapoho Point four ways, in the same run: groups of a channel's rows
only or spatial tiles where they read fewer (hybridc.mapping.fit.ORDERS), each placed in
layer order only or also in stripes (fit.place_in_stripes; the mapping keeps whichever
crosses fewer axons). Per way: cores, chips, the input axons crossing chips (the manifest's
`axons_crossing_chips`), and the spike deliveries to a core on another chip in one inference
of random spikes at rate 0.1 (`hybridc profile`'s `spikes_crossing_chips`, the emulator on
the build's netx file), with the mapping's time.

    python benchmarks/mapping_bench.py
"""

import runpy
import sys
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import hybridc  # noqa: E402
from hybridc.mapping import fit  # noqa: E402
from hybridc.profiling.report import profile_build  # noqa: E402


def main():
    example = runpy.run_path(str(ROOT / "examples" / "multi_chip" / "model.py"))
    orders, stripes = fit.ORDERS, fit.place_in_stripes
    print("| groups | placement | cores | chips | input axons crossing chips | spike deliveries to another chip "
          "an inference | mapping s |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, kept in (("a channel's rows", ("CHW",)), ("spatial tiles where they read fewer", orders)):
            for placement, allowed in (("layer order", False), ("stripes where they cross less", True)):
                fit.ORDERS = kept
                fit.place_in_stripes = stripes if allowed else (lambda *args: False)
                build = Path(tmp) / f"{len(kept)}{allowed}"
                compiled = hybridc.compile(example["model"], example["example_input"], system="kapoho-point",
                                           output_dir=build)
                began = time.perf_counter()
                fit.map_stages(compiled.manifest.stages, compiled.directory, "kapoho-point")
                seconds = time.perf_counter() - began
                use = compiled.manifest.mapping["utilisation"]
                loihi = profile_build(build, data="random:0.1", samples=1, measure=False).loihi
                print(f"| {label} | {placement} | {use['cores_used']} | {use['chips_used']} | "
                      f"{use['axons_crossing_chips']:,} | {loihi['spikes_crossing_chips']:,.0f} | {seconds:.2f} |")
    fit.ORDERS, fit.place_in_stripes = orders, stripes


if __name__ == "__main__":
    main()
