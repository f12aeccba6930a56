"""A 20-line app on the edge_sdk runtime: where is the sound coming from, live.

python docs/examples/embed_app.py [VIDEO_URI] [AUDIO_URI]   (default: generated scenes with speech)
"""

import sys

from edge_sdk.bundle import shipped_bundles
from edge_sdk.runtime import Pipeline

video = sys.argv[1] if len(sys.argv) > 1 else "synthetic://av-digits?seconds=6&fps=5&realtime=1"
audio = sys.argv[2] if len(sys.argv) > 2 else None
bundle = shipped_bundles()["avnet_s-demo"]  # or any bundle folder / .zip from edge-sdk export

with Pipeline.from_bundle(bundle, video=video, audio=audio, task="localize") as pipe:
    for r in pipe:  # one result per frame: plain numbers, numpy arrays and timestamps
        (x, y), score = r.values["peak_xy"], r.values["score"]
        print(f"frame {r.seq:4d}  sound at ({x:5.0f}, {y:5.0f}) px  score {score:.2f}  latency {r.latency_ms:5.1f} ms")
print(pipe.final_stats()["latency_ms"]["capture_to_result"])
